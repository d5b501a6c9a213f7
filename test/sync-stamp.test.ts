/**
 * "Never backwards" (issue 12 item 1) over real gRPC: input stamps (src/grpc/input-stamp.ts) on
 * Snapshot/Delta and in Hello. Several SyncService instances in this process, each with its own
 * stamped in-memory source (a replica's compiled states and what they were compiled from), and
 * real SyncClient agents (or raw streams playing an agent). An agent that applied replica A's
 * state at a newer policy (or Marathon) stamp moves to replica B that is behind: B sends it
 * nothing until B catches up, then the newest state. An agent refuses a state with an older stamp
 * from a server that sends one anyway. An agent of an earlier release (no stamp) is unaffected.
 * The ways out of a hold that would never end (Consul's index went backwards, a clock far ahead).
 * The state file keeps the stamp; a file without one still loads. Every wait is a condition with
 * a deadline; everything started is stopped in afterEach.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { Agent } from '../agent/agent-runner.js';
import { ControllerTargets } from '../agent/controller-targets.js';
import { RecordingRunner } from './support/recording-runner.js';
import { loadSavedState, loadState, saveState, statePath } from '../agent/state-store.js';
import { SyncClient, type SyncClientEvent } from '../agent/sync-client.js';
import type { DesiredState } from '../src/compile/desired-state.js';
import { ControllerStatus } from '../src/controller/controller-status.js';
import { DesiredStateStore } from '../src/controller/desired-state-store.js';
import { behindReason, NO_STAMP, type InputStamp } from '../src/grpc/input-stamp.js';
import { loadSyncProto, type AgentMessage__Output, type ControllerMessage } from '../src/grpc/proto.js';
import type { SourceStamp } from '../src/grpc/state-source.js';
import { SyncService } from '../src/grpc/sync-service.js';
import { openRawStream, serveOnce, startServer, stopServer, waitFor, type RunningServer } from './support/grpc-harness.js';
import { logCapture } from './support/log-capture.js';
import { MemoryStateSource, nthState } from './support/memory-state-source.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A replica's states and the stamp they were compiled from. */
class StampedSource extends MemoryStateSource {
  stampNow: SourceStamp = NO_STAMP;
  stamp(): SourceStamp {
    return this.stampNow;
  }
}

interface Replica {
  readonly source: StampedSource;
  readonly service: SyncService;
  readonly running: RunningServer;
  readonly logs: ReturnType<typeof logCapture>;
  stop(): void;
}

async function replica(stamp: SourceStamp): Promise<Replica> {
  const source = new StampedSource();
  source.stampNow = stamp;
  const logs = logCapture();
  const service = new SyncService(source, { insecure: true, pingIntervalMs: 50, logger: logs.logger });
  const { running, stop } = await serveOnce(service);
  cleanups.push(stop);
  return { source, service, running, logs, stop };
}

interface TestAgent {
  readonly client: SyncClient;
  readonly events: SyncClientEvent[];
  readonly applies: { version: string; stamp: InputStamp | undefined }[];
  held(): DesiredState | undefined;
  stamp(): InputStamp;
}

function agent(hostId: string, targets: readonly string[], start?: { state: DesiredState; stamp: InputStamp }): TestAgent {
  const events: SyncClientEvent[] = [];
  const applies: { version: string; stamp: InputStamp | undefined }[] = [];
  let held = start?.state;
  let stamp = start?.stamp ?? NO_STAMP;
  const client = new SyncClient({
    targets: new ControllerTargets([...targets], { random: () => 0 }),
    credentials: grpc.credentials.createInsecure(),
    hostId,
    agentVersion: 'test',
    held: () => held,
    heldStamp: () => stamp,
    apply: async (s, _d, st) => {
      applies.push({ version: s.version, stamp: st });
      held = s;
      stamp = st ?? NO_STAMP;
    },
    backoff: { initialMs: 20, maxMs: 100 },
    firstMessageTimeoutMs: 5_000,
    onEvent: (e) => events.push(e),
  });
  cleanups.push(() => client.close());
  client.start();
  return { client, events, applies, held: () => held, stamp: () => stamp };
}

/** Pings B answered (the agent's lastSeen moves on) `n` more times: the stream is alive and held. */
async function pongs(r: Replica, hostId: string, n: number): Promise<void> {
  const seen = new Set<number>();
  await waitFor(`${n} more pongs on the held stream`, () => {
    const at = r.service.agent(hostId)?.lastSeen;
    if (at !== undefined) seen.add(at);
    return seen.size > n;
  });
}

describe('a replica behind the agent holds it', () => {
  it('policy stamp: the agent applied A at index 20, moves to B at index 10 → B sends nothing until it catches up, then the newest state', async () => {
    const host = 'host-1';
    const a = await replica({ policy: 20, cluster: 0 });
    const b = await replica({ policy: 10, cluster: 0 });
    a.source.set(nthState(host, 1));
    b.source.set(nthState(host, 0)); // B compiled the older policy
    const ag = agent(host, [a.running.target]);
    await waitFor('the agent applied A’s state', () => ag.held()?.version === nthState(host, 1).version);
    expect(ag.stamp()).toEqual({ policy: 20, cluster: 0 });
    ag.client.setCandidates([a.running.target, b.running.target]); // B becomes known (Consul, DNS)

    a.stop();
    await waitFor('the agent is on B, held', () => b.service.agent(host)?.connected === true && b.service.agent(host)?.heldBehind !== null);
    expect(b.service.agent(host)?.heldBehind).toContain('policy index 10 < 20');
    expect(b.service.agent(host)?.appliedStamp).toEqual({ policyIndex: 20, clusterAsOf: null });
    // B changes (still the old policy): still held; the stream stays open and answers pings.
    b.source.set(nthState(host, 2));
    await pongs(b, host, 3);
    expect(b.service.agent(host)?.connected).toBe(true);
    expect(ag.held()?.version).toBe(nthState(host, 1).version);
    expect(ag.applies.map((x) => x.version)).toEqual([nthState(host, 1).version]);
    expect(b.logs.lines.filter((l) => l.msg === 'sync: holding the agent: this replica is behind the state it applied')).toHaveLength(1);
    expect(b.service.agentsHeldBehind()).toBe(1);

    // B catches up (its policy follow reads index 25): the newest state goes out at once.
    b.source.stampNow = { policy: 25, cluster: 0 };
    b.service.restamped();
    await waitFor('the agent applied B’s newest state', () => ag.held()?.version === nthState(host, 2).version);
    expect(ag.stamp()).toEqual({ policy: 25, cluster: 0 });
    expect(b.service.agent(host)?.heldBehind).toBeNull();
    expect(b.logs.lines.some((l) => l.msg === 'sync: caught up with the agent: sending')).toBe(true);
    expect(ag.applies.map((x) => x.version)).toEqual([nthState(host, 1).version, nthState(host, 2).version]);

    // Counted on /metrics (counter) and the gauge of agents held now is back to 0.
    const status = new ControllerStatus({
      store: new DesiredStateStore(),
      agents: () => b.service.agents(),
      feed: { start: async () => undefined, stop: async () => undefined, status: () => ({ source: 'test', ready: true }) },
      policy: { path: 'p', valid: true, loadedAt: null, lastError: null, reloadErrors: 0, warnings: [] },
      agentsHeldBehind: () => b.service.agentsHeldBehind(),
    });
    expect(status.metrics()).toMatch(/^portcullis_agents_held_behind_total 1$/m);
    expect(status.metrics()).toMatch(/^portcullis_agents_held_behind 0$/m);
  }, 30_000);

  it('an agent that holds B’s version already is not held (nothing to send), and B becomes its delta base', async () => {
    const host = 'host-2';
    const b = await replica({ policy: 10, cluster: 0 });
    b.source.set(nthState(host, 1));
    const ag = agent(host, [b.running.target], { state: nthState(host, 1), stamp: { policy: 20, cluster: 0 } });
    await waitFor('the agent is on B', () => b.service.agent(host)?.connected === true && b.service.agent(host)?.inSync === true);
    expect(b.service.agent(host)?.heldBehind).toBeNull();
    expect(ag.applies).toEqual([]);
  });

  it('Marathon stamp: B’s view is older than the agent’s beyond the skew → held; released on a tick once B’s view is fresh again', async () => {
    const host = 'host-3';
    const now = Date.now();
    const b = await replica({ policy: 0, cluster: now - 60_000 }); // B's Marathon stream was down a minute ago
    b.source.set(nthState(host, 2));
    const ag = agent(host, [b.running.target], { state: nthState(host, 1), stamp: { policy: 0, cluster: now } });
    await waitFor('held', () => b.service.agent(host)?.heldBehind?.includes('Marathon view as of') === true);
    await pongs(b, host, 2);
    expect(ag.applies).toEqual([]);
    // Within the skew: not behind. No restamped(): the tick re-checks a held stream.
    b.source.stampNow = { policy: 0, cluster: now - 1_000 };
    await waitFor('released and applied', () => ag.held()?.version === nthState(host, 2).version);
    expect(ag.stamp().cluster).toBe(now - 1_000);
  });

  it('an agent of an earlier release (no stamp in Hello) is sent the state at once, stamped', async () => {
    const host = 'host-4';
    const b = await replica({ policy: 10, cluster: 0 });
    b.source.set(nthState(host, 2));
    const raw = openRawStream(b.running.target);
    cleanups.push(() => raw.close());
    raw.send({ hello: { hostId: host, agentVersion: 'old', appliedVersion: nthState(host, 1).version } });
    await waitFor('a snapshot', () => raw.of('snapshot').length === 1);
    const snap = raw.of('snapshot')[0]!.snapshot!;
    expect(snap.version).toBe(nthState(host, 2).version);
    expect(snap.policyStamp).toBe(10);
    expect(b.service.agent(host)?.heldBehind).toBeNull();
  });
});

describe('the ways out of a hold that would never end', () => {
  it('Consul’s index went backwards (a read started after the stream opened answers below the agent’s stamp): the state is sent with policy stamp 0, and accepted', async () => {
    const host = 'host-5';
    const b = await replica({ policy: 7, cluster: 0, consulRead: { startedAt: Date.now() - 60_000, index: 7 } });
    b.source.set(nthState(host, 2));
    const ag = agent(host, [b.running.target], { state: nthState(host, 1), stamp: { policy: 120, cluster: 0 } });
    await waitFor('held (the read is older than the stream)', () => b.service.agent(host)?.heldBehind !== null && b.service.agent(host)?.heldBehind !== undefined);
    b.source.stampNow = { policy: 7, cluster: 0, consulRead: { startedAt: Date.now() + 1, index: 7 } };
    b.service.restamped();
    await waitFor('applied', () => ag.held()?.version === nthState(host, 2).version);
    expect(ag.stamp()).toEqual({ policy: 0, cluster: 0 });
    expect(b.logs.lines.some((l) => String(l.msg).startsWith("sync: the agent's policy stamp is from a Consul history that no longer exists"))).toBe(true);
    // The next state carries the replica's real stamp again.
    b.source.set(nthState(host, 3));
    await waitFor('next applied', () => ag.held()?.version === nthState(host, 3).version);
    expect(ag.stamp()).toEqual({ policy: 7, cluster: 0 });
  });

  it('a Marathon stamp far ahead of the replica’s clock (a wrong clock) is not compared', async () => {
    const host = 'host-6';
    const now = Date.now();
    const b = await replica({ policy: 0, cluster: now });
    b.source.set(nthState(host, 2));
    const ag = agent(host, [b.running.target], { state: nthState(host, 1), stamp: { policy: 0, cluster: now + 3_600_000 } });
    await waitFor('applied', () => ag.held()?.version === nthState(host, 2).version);
    expect(ag.stamp()).toEqual({ policy: 0, cluster: 0 });
    expect(b.service.agentsHeldBehind()).toBe(0);
  });
});

describe('the agent refuses a state with an older stamp (defence in depth)', () => {
  /** A misbehaving server: answers every Hello with a Snapshot of `state` stamped `stamp`, records what the agent says. */
  async function misbehaving(state: DesiredState, stamp: InputStamp): Promise<{ said: AgentMessage__Output[]; target: string }> {
    const said: AgentMessage__Output[] = [];
    const proto = loadSyncProto();
    const running = await startServer((server) =>
      server.addService(proto.service, {
        Sync: (call: grpc.ServerDuplexStream<AgentMessage__Output, ControllerMessage>) => {
          call.on('data', (m: AgentMessage__Output) => {
            said.push(m);
            if (m.msg !== 'hello') return;
            const sets = Object.entries(state.sets).map(([kind, members]) => ({ kind, members: [...members] }));
            call.write({ snapshot: { seq: 1, version: state.version, mode: state.mode, sets, policyStamp: stamp.policy, clusterStampMs: stamp.cluster } });
          });
          call.on('error', () => undefined);
        },
      }),
    );
    cleanups.push(() => stopServer(running));
    return { said, target: running.target };
  }

  it('a Snapshot behind the applied stamp: ApplyError with a clear message, nothing applied; Hello carried the stamp', async () => {
    const host = 'host-7';
    const server = await misbehaving(nthState(host, 2), { policy: 5, cluster: 0 });
    const ag = agent(host, [server.target], { state: nthState(host, 1), stamp: { policy: 20, cluster: 1_000 } });
    await waitFor('an ApplyError', () => server.said.some((m) => m.msg === 'applyError'));
    const hello = server.said.find((m) => m.msg === 'hello')!.hello!;
    expect(hello.appliedPolicyStamp).toBe(20);
    expect(hello.appliedClusterStampMs).toBe(1_000);
    const error = server.said.find((m) => m.msg === 'applyError')!.applyError!;
    expect(error.message).toContain('input stamp is behind the state applied (policy index 5 < 20)');
    expect(ag.applies).toEqual([]);
    expect(ag.held()?.version).toBe(nthState(host, 1).version);
  });

  it('an agent whose state has no stamp (0) takes it', async () => {
    const host = 'host-8';
    const server = await misbehaving(nthState(host, 2), { policy: 5, cluster: 0 });
    const ag = agent(host, [server.target], { state: nthState(host, 1), stamp: NO_STAMP });
    await waitFor('applied and acked', () => server.said.some((m) => m.msg === 'ack'));
    expect(ag.held()?.version).toBe(nthState(host, 2).version);
    expect(server.said.some((m) => m.msg === 'applyError')).toBe(false);
    expect(ag.stamp()).toEqual({ policy: 5, cluster: 0 });
  });
});

describe('the stamp rule', () => {
  it('compares only components both sides know; the cluster time with the skew', () => {
    expect(behindReason({ policy: 5, cluster: 0 }, { policy: 6, cluster: 0 })).toContain('policy index 5 < 6');
    expect(behindReason({ policy: 0, cluster: 0 }, { policy: 6, cluster: 9_000 })).toBeUndefined();
    expect(behindReason({ policy: 6, cluster: 10_000 }, { policy: 6, cluster: 11_999 })).toBeUndefined();
    expect(behindReason({ policy: 6, cluster: 10_000 }, { policy: 6, cluster: 12_001 })).toContain('Marathon view');
    expect(behindReason({ policy: 7, cluster: 10_000 }, { policy: 6, cluster: 12_001 })).not.toContain('policy');
  });
});

describe('the agent process (agent-runner.ts) carries the stamp', () => {
  it('boots from a saved state with its stamp, announces it (held by a replica behind it), then saves the stamp of the state it applies', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'portcullis-stamp-agent-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    await saveState(dir, nthState('h1', 1), { policy: 30, cluster: 0 });
    const b = await replica({ policy: 20, cluster: 0 });
    b.source.set(nthState('h1', 2));
    const { logger } = logCapture();
    const agent = new Agent({ controller: b.running.target, credentials: grpc.credentials.createInsecure(), hostId: 'h1', addresses: ['10.0.0.1'], stateDir: dir, refreshIntervalMs: 60_000, families: [4], runner: new RecordingRunner(), agentVersion: 'test', logger });
    cleanups.push(() => agent.stop());
    await agent.start();
    await waitFor('held on its saved stamp', () => b.service.agent('h1')?.heldBehind === 'policy index 20 < 30');
    expect(agent.status()).toMatchObject({ appliedVersion: nthState('h1', 1).version, appliedFrom: 'disk', appliedStamp: { policyIndex: 30, clusterAsOf: null } });

    b.source.stampNow = { policy: 31, cluster: 0 };
    b.service.restamped();
    await waitFor('applied and saved with the new stamp', () => loadSavedState(dir)?.stamp.policy === 31);
    expect(loadSavedState(dir)?.state.version).toBe(nthState('h1', 2).version);
    expect(agent.status()).toMatchObject({ appliedFrom: 'controller', appliedStamp: { policyIndex: 31, clusterAsOf: null } });
  });
});

describe('the state file keeps the stamp', () => {
  it('round trip; a file of an earlier release (no stamp) loads with stamp 0; a bad stamp reads as 0', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'portcullis-stamp-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const state = nthState('h', 3);
    await saveState(dir, state, { policy: 42, cluster: 1_700_000_000_000 });
    expect(loadSavedState(dir)).toEqual({ state, stamp: { policy: 42, cluster: 1_700_000_000_000 } });
    expect(loadState(dir)).toEqual(state);

    const stored = JSON.parse(await readFile(statePath(dir), 'utf8')) as Record<string, unknown>;
    delete stored.stamp;
    await writeFile(statePath(dir), JSON.stringify(stored));
    expect(loadSavedState(dir)).toEqual({ state, stamp: NO_STAMP });

    await writeFile(statePath(dir), JSON.stringify({ ...stored, stamp: { policy: -1, cluster: 'x' } }));
    expect(loadSavedState(dir)).toEqual({ state, stamp: NO_STAMP });
  });
});
