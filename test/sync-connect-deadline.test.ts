/**
 * The agent's connect deadline and idle deadline (issue 12: "its agents reach another replica
 * within seconds"), over real gRPC with real mTLS on loopback:
 * - a replica that accepts TCP and never answers the TLS handshake (a black hole: a hung replica,
 *   or one whose handshake queue never frees) is given up after `queuedWaitMs` (the connection
 *   is up, so it may be queued), not after the 120 s first-message deadline, and the agent
 *   applies its state from the next replica; without the queued wait (0), after
 *   `connectTimeoutMs`;
 * - without the connect deadline (0) the agent is still stuck there after several deadlines' worth
 *   of time (what the deadline changes);
 * - a replica that opened the stream, sent one Ping and went silent is given up after
 *   `idleTimeoutMs`.
 * Every wait is a condition with a deadline; every server, socket and client is closed in afterEach.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ConnectDeadline } from '../agent/connect-deadline.js';
import { ControllerTargets, type Target } from '../agent/controller-targets.js';
import { DEFAULT_CONNECT_TIMEOUT_MS, SyncClient } from '../agent/sync-client.js';
import type { DesiredState } from '../src/compile/desired-state.js';
import { connectTimeoutOption } from '../src/cli/commands/agent.js';
import { loadSyncProto, type SyncHandlers } from '../src/grpc/proto.js';
import { UsageError } from '../src/usage-error.js';
import { SyncService } from '../src/grpc/sync-service.js';
import { loadClientCredentials, readTlsFiles, serverCredentialsFrom } from '../src/tls/credentials.js';
import { makeTestPki, type TestPki } from '../src/tls/pki.js';
import { startServer, stopServer, waitFor } from './support/grpc-harness.js';
import { logCapture } from './support/log-capture.js';
import { MemoryStateSource, nthState } from './support/memory-state-source.js';

let tmp: string;
let pki: TestPki;
const cleanups: (() => unknown)[] = [];

beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'pcut-connect-'));
  pki = await makeTestPki(path.join(tmp, 'pki'), { hosts: ['host-a'], controllerNames: ['controller'] });
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});
afterAll(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

/** A listening TCP socket on 127.0.0.1 port 0 that accepts and never sends a byte (no TLS answer). */
async function blackHole(): Promise<{ target: Target; accepted: () => number }> {
  const sockets = new Set<net.Socket>();
  let accepted = 0;
  const server = net.createServer((socket) => {
    accepted += 1;
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  );
  return { target: `127.0.0.1:${(server.address() as net.AddressInfo).port}`, accepted: () => accepted };
}

async function tlsReplica(handlers?: SyncHandlers): Promise<{ target: Target; service: SyncService | undefined }> {
  const credentials = serverCredentialsFrom(await readTlsFiles(pki.files('controller')));
  if (handlers) {
    const running = await startServer((server) => server.addService(loadSyncProto().service, handlers), credentials);
    cleanups.push(() => stopServer(running));
    return { target: running.target, service: undefined };
  }
  const source = new MemoryStateSource();
  source.set(nthState('host-a', 1));
  const service = new SyncService(source, { pingIntervalMs: 200 });
  const running = await startServer((server) => service.addToServer(server), credentials);
  cleanups.push(() => {
    service.close();
    stopServer(running);
  });
  return { target: running.target, service };
}

async function agent(targets: readonly Target[], extra: Partial<ConstructorParameters<typeof SyncClient>[0]>) {
  let held: DesiredState | undefined;
  const { logger, lines } = logCapture();
  // This agent's order starts with the first target given.
  const order = new ControllerTargets(targets);
  while (order.current() !== targets[0]) order.advance();
  const client = new SyncClient({
    targets: order,
    credentials: await loadClientCredentials(pki.files('host-a')),
    hostId: 'host-a',
    agentVersion: 'test',
    held: () => held,
    apply: async (s) => {
      held = s;
    },
    backoff: { initialMs: 20, maxMs: 100 },
    logger,
    ...extra,
  });
  cleanups.push(() => client.close());
  return { client, lines, held: () => held };
}

describe('connect deadline', () => {
  it('a replica that takes the connection and never answers TLS is left after queuedWaitMs, not at each connect deadline', async () => {
    const hole = await blackHole();
    const good = await tlsReplica();
    const a = await agent([hole.target, good.target], { connectTimeoutMs: 300, queuedWaitMs: 1_500 });
    const startedAt = Date.now();
    a.client.start();
    await waitFor('the agent applied its state from the answering replica', () => a.held()?.version === nthState('host-a', 1).version, 10_000);
    const took = Date.now() - startedAt;
    expect(hole.accepted()).toBe(1);
    expect(took).toBeGreaterThanOrEqual(1_500);
    expect(took).toBeLessThan(8_000);
    const warned = a.lines.find((l) => l.msg === 'sync: cannot connect to the controller');
    expect(warned).toMatchObject({ level: 40, controller: hole.target, next: good.target });
    expect(Number(/^not connected within (\d+) ms/.exec(String(warned?.reason))?.[1])).toBeGreaterThanOrEqual(1_500);
  }, 30_000);

  it('without the queued wait (0) a replica that never answers TLS is left after connectTimeoutMs and the next one serves the agent', async () => {
    const hole = await blackHole();
    const good = await tlsReplica();
    const a = await agent([hole.target, good.target], { connectTimeoutMs: 1_000, queuedWaitMs: 0 });
    expect(a.client.target).toBe(hole.target);
    const startedAt = Date.now();
    a.client.start();
    await waitFor('the agent applied its state from the answering replica', () => a.held()?.version === nthState('host-a', 1).version, 10_000);
    const took = Date.now() - startedAt;
    expect(hole.accepted()).toBeGreaterThanOrEqual(1);
    expect(took).toBeGreaterThanOrEqual(1_000);
    expect(took).toBeLessThan(8_000);
    expect(good.service!.agent('host-a')?.connected).toBe(true);
    expect(a.lines).toContainEqual(expect.objectContaining({ level: 40, msg: 'sync: cannot connect to the controller', controller: hole.target, next: good.target, reason: expect.stringMatching(/^not connected within 1000 ms/) }));
    // The channel left behind is closed: the agent keeps one channel, not one per replica tried.
    expect(a.client.channelTargets).toEqual([good.target]);
    expect(DEFAULT_CONNECT_TIMEOUT_MS).toBe(5_000);
  }, 30_000);

  it('without it (0) the agent is still waiting on the black hole after 3 s', async () => {
    const hole = await blackHole();
    const good = await tlsReplica();
    const a = await agent([hole.target, good.target], { connectTimeoutMs: 0 });
    a.client.start();
    await waitFor('the black hole took the connection', () => hole.accepted() >= 1, 5_000);
    const until = Date.now() + 3_000;
    await waitFor('3 s passed', () => Date.now() >= until || a.held() !== undefined, 5_000);
    expect(a.held()).toBeUndefined();
    expect(a.client.target).toBe(hole.target);
    expect(good.service!.agent('host-a')).toBeUndefined();
  }, 30_000);
});

describe('connect deadline doubling', () => {
  it('doubles after each deadline missed in a row, up to the cap, and is back at the base once a controller answered', () => {
    const d = new ConnectDeadline(5_000, 120_000);
    const seen = [d.next()];
    for (let i = 0; i < 7; i++) {
      d.missedOne();
      seen.push(d.next());
    }
    expect(seen).toEqual([5_000, 10_000, 20_000, 40_000, 80_000, 120_000, 120_000, 120_000]);
    d.reset();
    expect(d.next()).toBe(5_000);
    expect(new ConnectDeadline(0, 120_000).next()).toBe(0);
    expect(new ConnectDeadline(200_000, 120_000).next()).toBe(200_000);
  });

  it('over real gRPC: each replica that never answers TLS in a row is given twice as long as the one before', async () => {
    const holes = [await blackHole(), await blackHole()];
    const reasons: string[] = [];
    const a = await agent([holes[0]!.target, holes[1]!.target], {
      connectTimeoutMs: 300,
      queuedWaitMs: 0,
      onEvent: (e) => {
        if (e.type === 'disconnected') reasons.push(e.reason.slice(0, 27));
      },
    });
    a.client.start();
    await waitFor('three connect deadlines missed', () => reasons.length >= 3, 15_000);
    expect(reasons.slice(0, 3)).toEqual(['not connected within 300 ms', 'not connected within 600 ms', 'not connected within 1200 m']);
    expect(holes.every((h) => h.accepted() >= 1)).toBe(true);
  }, 30_000);
});

describe('idle deadline', () => {
  it('a replica that answered once and then went silent is left after idleTimeoutMs', async () => {
    let opened = 0;
    const silent = await tlsReplica({
      Sync: (call) => {
        opened += 1;
        call.on('error', () => undefined);
        call.write({ ping: { nonce: 1 } });
      },
    });
    const good = await tlsReplica();
    const a = await agent([silent.target, good.target], { idleTimeoutMs: 1_000 });
    a.client.start();
    await waitFor('the silent replica opened the stream', () => opened >= 1, 10_000);
    const openedAt = Date.now();
    await waitFor('the agent applied its state from the other replica', () => a.held()?.version === nthState('host-a', 1).version, 10_000);
    expect(Date.now() - openedAt).toBeGreaterThanOrEqual(900);
    expect(a.lines).toContainEqual(expect.objectContaining({ level: 30, msg: 'sync: stream ended', controller: silent.target, reason: 'no message from the controller for 1000 ms' }));
  }, 30_000);
});

describe('--connect-timeout', () => {
  it('defaults to 5 s, takes seconds or off, refuses anything else', () => {
    expect(connectTimeoutOption(undefined)).toBe(DEFAULT_CONNECT_TIMEOUT_MS);
    expect(connectTimeoutOption('2.5')).toBe(2_500);
    expect(connectTimeoutOption('off')).toBe(0);
    for (const bad of ['0', 'soon', '', '4000']) expect(() => connectTimeoutOption(bad)).toThrow(UsageError);
  });
});
