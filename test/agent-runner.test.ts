/**
 * The agent process wiring (agent/agent-runner.ts) against a real in-process Sync service (gRPC
 * on loopback, port 0) and a recording kernel (fake CommandRunner): the saved state is applied
 * before the first connection and announced in Hello; a controller state is applied, then saved;
 * the drift timer repairs and counts; /metrics shows it. The real-kernel behaviour of the same
 * code is covered by test/e2e (fail static, drift).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { Agent } from '../agent/agent-runner.js';
import { RecordingRunner } from './support/recording-runner.js';
import { loadState, saveState } from '../agent/state-store.js';
import { SyncService } from '../src/grpc/sync-service.js';
import { startServer, stopServer, waitFor, type RunningServer } from './support/grpc-harness.js';
import { MemoryStateSource, nthState } from './support/memory-state-source.js';
import { logCapture } from './support/log-capture.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(options: { saved?: boolean; refreshMs?: number } = {}) {
  const dir = mkdtempSync(path.join(tmpdir(), 'pcut-agent-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const saved = nthState('h1', 1);
  if (options.saved) await saveState(dir, saved);
  const source = new MemoryStateSource();
  const service = new SyncService(source, { insecure: true, pingIntervalMs: 200 });
  const running: RunningServer = await startServer((s) => service.addToServer(s));
  cleanups.push(() => {
    service.close();
    stopServer(running);
  });
  const runner = new RecordingRunner();
  const { logger, lines } = logCapture();
  const agent = new Agent({
    controller: running.target,
    credentials: grpc.credentials.createInsecure(),
    hostId: 'h1',
    addresses: ['10.0.0.1'],
    stateDir: dir,
    refreshIntervalMs: options.refreshMs ?? 60_000,
    families: [4],
    runner,
    agentVersion: 'test',
    logger,
  });
  cleanups.push(() => agent.stop());
  return { dir, saved, source, service, runner, agent, lines, stopController: () => stopServer(running) };
}

const restores = (runner: RecordingRunner) => runner.callsTo(['ipset', 'restore']).length;

describe('agent runner', () => {
  it('is not "connected" while the connection is only being opened: a controller address that accepts and never answers', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'pcut-agent-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const sockets: net.Socket[] = [];
    const silent = net.createServer((socket) => sockets.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => {
      for (const socket of sockets) socket.destroy();
      return new Promise<void>((resolve) => silent.close(() => resolve()));
    });
    const agent = new Agent({
      controller: `127.0.0.1:${(silent.address() as net.AddressInfo).port}`,
      credentials: grpc.credentials.createInsecure(),
      hostId: 'h1',
      addresses: ['10.0.0.1'],
      stateDir: dir,
      refreshIntervalMs: 60_000,
      families: [4],
      runner: new RecordingRunner(),
      agentVersion: 'test',
      logger: logCapture().logger,
    });
    cleanups.push(() => agent.stop());
    await agent.start();
    await waitFor('the agent opened a TCP connection', () => sockets.length > 0);
    expect((agent.status() as { connected: boolean }).connected).toBe(false);
  });


  it('applies the saved state before connecting and announces it in Hello', async () => {
    const { saved, service, runner, agent, lines } = await setup({ saved: true });
    await agent.start();
    const boot = lines.find((l) => l['msg'] === 'applied');
    expect(boot).toMatchObject({ source: 'disk', version: saved.version });
    // The kernel was written before the agent said it started (and so before any connection).
    expect(lines.findIndex((l) => l['msg'] === 'applied')).toBeLessThan(lines.findIndex((l) => l['msg'] === 'agent started'));
    expect(restores(runner)).toBe(1);
    await waitFor('the Hello', () => service.agents().some((a) => a.hostId === 'h1' && a.appliedVersion === saved.version));
    expect(agent.readiness().ready).toBe(true);
  });

  it('says that it booted from its saved state while the controller is down: /status, /metrics, log', async () => {
    const { saved, agent, lines, stopController } = await setup({ saved: true });
    stopController();
    const before = Date.now();
    await agent.start();
    await waitFor('the first connection attempt fails', () => (agent.status() as { connected: boolean }).connected === false);
    const status = agent.status() as Record<string, unknown>;
    expect(status).toMatchObject({ connected: false, appliedVersion: saved.version, appliedFrom: 'disk', bootedFromDisk: { version: saved.version } });
    const boot = status['bootedFromDisk'] as { savedAt: string; appliedAt: string };
    expect(Date.parse(boot.appliedAt)).toBeGreaterThanOrEqual(before - 1000);
    expect(Date.parse(boot.savedAt)).toBeLessThanOrEqual(Date.parse(boot.appliedAt));
    expect(status['appliedAt']).toBe(boot.appliedAt);
    expect(agent.metrics()).toMatch(/^portcullis_agent_applied_from_disk 1$/m);
    expect(lines.find((l) => l['msg'] === 'applied')).toMatchObject({ source: 'disk', version: saved.version, savedAt: boot.savedAt });
  });

  it('applies a controller state, then saves it; a newer one replaces it on disk', async () => {
    const { dir, source, agent, lines } = await setup();
    await agent.start();
    expect(agent.readiness()).toEqual({ ready: false, reason: 'no state applied yet' });
    for (const n of [2, 3]) {
      const state = nthState('h1', n);
      source.set(state);
      await waitFor(`state ${n} applied`, () => lines.some((l) => l['msg'] === 'applied' && l['source'] === 'controller' && l['version'] === state.version));
      await waitFor(`state ${n} saved`, () => loadState(dir)?.version === state.version);
    }
    expect(agent.status()).toMatchObject({ appliedVersion: nthState('h1', 3).version, appliedFrom: 'controller', bootedFromDisk: null });
    expect(agent.metrics()).toMatch(/^portcullis_agent_applied_from_disk 0$/m);
  });

  it('writes a controller Delta to the kernel as sent, and reports the state the dataplane holds', async () => {
    const { source, runner, agent, lines } = await setup();
    await agent.start();
    const [s2, s3] = [nthState('h1', 2), nthState('h1', 3)];
    source.set(s2);
    await waitFor('state 2 applied', () => (agent.status() as { appliedVersion: string | null }).appliedVersion === s2.version);
    runner.calls.length = 0;
    source.set(s3);
    await waitFor('state 3 applied', () => lines.some((l) => l['msg'] === 'applied' && l['version'] === s3.version));
    const written = lines.filter((l) => l['event'] === 'dataplane.applied').map((l) => [l['path'], l['difference'] ?? l['reason']]);
    expect(written).toEqual([['full', 'no base'], ['delta', 'wire']]);
    expect(runner.callsTo(['ipset', 'restore']).map((c) => c.input?.split('\n').every((line) => line === '' || / -exist$/.test(line)))).toEqual([true]);
    expect(agent.status()).toMatchObject({ appliedVersion: s3.version, appliedFrom: 'controller', mode: 'enforce', dataplane: { deltaApplies: 1 } });
  });

  it('a refused apply is reported and neither saved nor counted as applied', async () => {
    const { dir, source, runner, agent, lines } = await setup({ saved: true });
    await agent.start();
    runner.fail(['ipset', 'restore'], 'ipset v7.17: Kernel error received: set type not supported');
    source.set(nthState('h1', 4));
    await waitFor('the apply failure', () => lines.some((l) => l['msg'] === 'apply failed: the kernel keeps the previous state'));
    expect(loadState(dir)?.version).toBe(nthState('h1', 1).version);
    expect((agent.status() as { appliedVersion: string }).appliedVersion).toBe(nthState('h1', 1).version);
    expect(agent.metrics()).toMatch(/^portcullis_agent_apply_failures_total 1$/m);
  });

  it('repairs drift on the timer and counts it in /metrics', async () => {
    // The recording kernel answers every iptables-save / ipset save with nothing: everything we
    // own looks gone, so each check finds drift and re-applies.
    const { runner, agent, lines } = await setup({ saved: true, refreshMs: 50 });
    await agent.start();
    await waitFor('two repairs', () => lines.filter((l) => l['msg'] === 'drift repaired').length >= 2);
    const repaired = lines.find((l) => l['msg'] === 'drift repaired');
    expect(repaired?.['drift']).toEqual(expect.arrayContaining([expect.any(String)]));
    expect(restores(runner)).toBeGreaterThanOrEqual(3);
    const repairs = Number(/^portcullis_agent_drift_repairs_total (\d+)$/m.exec(agent.metrics())?.[1]);
    expect(repairs).toBeGreaterThanOrEqual(2);
    expect(agent.metrics()).toMatch(/^portcullis_agent_drift_repairs_by_kind_total\{kind="[a-z-]+"\} \d+$/m);
  });
});
