/**
 * `portcullis agent --uninstall` against the real kernel (root), in a throwaway network namespace:
 * the agent is installed (in-process Agent whose kernel commands run in the namespace, fed by a
 * real Sync service on loopback), then the real CLI (`bin/portcullis.js`, built dist) uninstalls
 * inside the namespace. Compared with before the install: `iptables-save`, `ip6tables-save`
 * (the one documented difference: an empty built-in `mangle` table may stay, its built-in chains
 * with policy ACCEPT and no rule), `ipset list`, and the state directory: every file the agent
 * wrote is gone, a foreign file stays, a directory the agent created is removed.
 * Run under the kernel lock: flock /tmp/portcullis-kernel.lock npx vitest run <this file>.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../agent/agent-runner.js';
import { ExecCommandRunner } from '../agent/dataplane/command-runner.js';
import { packageRoot } from '../src/package-root.js';
import { SyncService } from '../src/grpc/sync-service.js';
import { startServer, stopServer, waitFor, type RunningServer } from './support/grpc-harness.js';
import { MemoryStateSource, nthState } from './support/memory-state-source.js';
import { run, runOk } from './support/netns.js';

const isRoot = process.getuid?.() === 0;
const ns = `pcut-${process.pid}-${Math.floor(Math.random() * 1e6)}-un`;
const inNs = new ExecCommandRunner({ prefix: ['ip', 'netns', 'exec', ns] });
let tmp = '';
let running: RunningServer | undefined;
let service: SyncService | undefined;
const source = new MemoryStateSource();

interface Table {
  /** `:CHAIN POLICY` lines, counters dropped. */
  readonly chains: string[];
  readonly rules: string[];
}

/** iptables-save text → table name → chains and rules (comments and counters dropped). */
function tables(save: string): Map<string, Table> {
  const out = new Map<string, Table>();
  let current: Table | undefined;
  for (const line of save.split('\n')) {
    if (line.startsWith('*')) {
      current = { chains: [], rules: [] };
      out.set(line.slice(1), current);
    } else if (line.startsWith(':')) current?.chains.push(line.replace(/\s*\[\d+:\d+\]$/, ''));
    else if (line.startsWith('-')) current?.rules.push(line);
  }
  return out;
}

interface Snapshot {
  readonly v4: Map<string, Table>;
  readonly v6: Map<string, Table>;
  readonly ipset: string;
  readonly files: string[] | null;
}

async function snapshot(stateDir: string): Promise<Snapshot> {
  const out = async (argv: string[]): Promise<string> => (await runOk('ip', ['netns', 'exec', ns, ...argv])).stdout;
  return {
    v4: tables(await out(['iptables-save'])),
    v6: tables(await out(['ip6tables-save'])),
    ipset: await out(['ipset', 'save']),
    files: existsSync(stateDir) ? readdirSync(stateDir).sort() : null,
  };
}

const BUILT_IN_MANGLE = [':PREROUTING ACCEPT', ':INPUT ACCEPT', ':FORWARD ACCEPT', ':OUTPUT ACCEPT', ':POSTROUTING ACCEPT'];

/** `after` equals `before`, but for an empty built-in mangle table the install brought in. */
function expectKernelAsBefore(before: Map<string, Table>, after: Map<string, Table>): void {
  for (const [name, table] of after) {
    const was = before.get(name);
    if (was) {
      expect(table, `table ${name}`).toEqual(was);
      continue;
    }
    expect(name, 'the only table the install may leave is mangle').toBe('mangle');
    expect(table.rules, 'no rule in the mangle table left behind').toEqual([]);
    expect([...table.chains].sort()).toEqual([...BUILT_IN_MANGLE].sort());
  }
  for (const name of before.keys()) expect(after.has(name), `table ${name} still there`).toBe(true);
}

async function install(stateDir: string): Promise<void> {
  const agent = new Agent({
    controller: running!.target,
    credentials: grpc.credentials.createInsecure(),
    hostId: 'host-a',
    addresses: ['10.0.0.1'],
    stateDir,
    refreshIntervalMs: 60_000,
    families: [4, 6],
    runner: inNs,
    agentVersion: 'test',
    logger: pino({ level: 'silent' }),
  });
  try {
    await agent.start();
    await waitFor('state applied', () => (agent.status() as { appliedVersion: string | null }).appliedVersion === nthState('host-a', 1).version, 20_000);
    await waitFor('state saved', () => existsSync(path.join(stateDir, 'desired-state.json')), 10_000);
  } finally {
    await agent.stop();
  }
}

async function uninstallCli(stateDir: string): Promise<Record<string, unknown>> {
  const r = await run('ip', ['netns', 'exec', ns, process.execPath, path.join(packageRoot(), 'bin', 'portcullis.js'), 'agent', '--uninstall', '--state-dir', stateDir], { timeoutMs: 60_000 });
  expect(r.code, r.stderr).toBe(0);
  const line = r.stdout.split('\n').filter((l) => l.includes('uninstalled')).at(-1);
  expect(line, r.stdout).toBeDefined();
  return JSON.parse(line as string) as Record<string, unknown>;
}

describe.skipIf(!isRoot)('agent --uninstall leaves the kernel and the state directory as before the install', () => {
  beforeAll(async () => {
    tmp = mkdtempSync(path.join(tmpdir(), 'pcut-uninstall-'));
    await runOk('ip', ['netns', 'add', ns]);
    source.set(nthState('host-a', 1));
    service = new SyncService(source, { insecure: true, pingIntervalMs: 200 });
    running = await startServer((s) => service!.addToServer(s));
  });

  afterAll(async () => {
    service?.close();
    stopServer(running);
    await run('ip', ['netns', 'del', ns]);
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('a state directory that existed keeps its foreign file only; kernel and ipsets as before', async () => {
    const stateDir = path.join(tmp, 'existing');
    mkdirSync(stateDir);
    writeFileSync(path.join(stateDir, 'notes.txt'), 'the operator\'s\n');
    const before = await snapshot(stateDir);
    await install(stateDir);
    // Leftovers an agent writes on a failed apply or a crash mid-write, owned by it too.
    writeFileSync(path.join(stateDir, 'failed-apply.error'), '{}\n');
    writeFileSync(path.join(stateDir, '.desired-state.json.0123456789ab.tmp'), '');
    const during = await snapshot(stateDir);
    expect(during.files).toEqual(expect.arrayContaining(['desired-state.json', 'last-apply.ipset4', 'last-apply.iptables6', 'notes.txt']));
    expect(during.v4.get('mangle')?.rules.some((r) => r.includes('PCU-'))).toBe(true);
    expect(during.v6.get('mangle')?.rules.some((r) => r.includes('PCU-'))).toBe(true);
    expect(during.ipset).toMatch(/pcu4-/);

    const line = await uninstallCli(stateDir);
    expect(line['keptFiles']).toEqual(['notes.txt']);
    expect(line['removedFiles']).toEqual(expect.arrayContaining(['desired-state.json', 'failed-apply.error', 'last-apply.iptables4', '.desired-state.json.0123456789ab.tmp']));
    expect(line['removedDirs']).toEqual([]);

    const after = await snapshot(stateDir);
    expect(after.files).toEqual(['notes.txt']);
    expect(after.ipset).toBe(before.ipset);
    expectKernelAsBefore(before.v4, after.v4);
    expectKernelAsBefore(before.v6, after.v6);
  });

  it('a state directory the agent created is removed with everything in it', async () => {
    const parent = path.join(tmp, 'made');
    const stateDir = path.join(parent, 'by', 'agent');
    const before = await snapshot(stateDir);
    expect(before.files).toBeNull();
    await install(stateDir);
    expect(readdirSync(stateDir)).toEqual(expect.arrayContaining(['.portcullis-created', 'desired-state.json']));
    const line = await uninstallCli(stateDir);
    expect(line['keptFiles']).toEqual([]);
    expect(line['removedDirs']).toEqual([stateDir, path.dirname(stateDir), parent]);
    expect(existsSync(parent)).toBe(false);
    expect(existsSync(tmp)).toBe(true);
    const after = await snapshot(stateDir);
    expect(after.ipset).toBe(before.ipset);
    expectKernelAsBefore(before.v4, after.v4);
    expectKernelAsBefore(before.v6, after.v6);
  });
});
