/**
 * Active rebalancing (issue 12, "load spreads again when a replica comes back";
 * src/grpc/agent-rebalance.ts) over real gRPC: 3 SyncService replicas in this process and 30 real
 * SyncClient agents, each with its own shuffled order. One replica gone and back → the counts
 * converge to within the slack, no agent applies anything again (each keeps its state and the
 * next replica holds its version), shedding stays within one agent per half interval, and a
 * replica never sheds below its share. The rule itself (fair share, slack, only replica, unknown
 * count, nothing settled) on a fake service. Waits are conditions with deadlines; everything is
 * stopped in afterEach.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ControllerTargets } from '../agent/controller-targets.js';
import { isRebalancing, rebalancingReason, Rebalancer, shedLimit, type Shedder } from '../src/grpc/agent-rebalance.js';
import type { SyncServiceOptions } from '../src/grpc/sync-service.js';
import { waitFor } from './support/grpc-harness.js';
import { logCapture } from './support/log-capture.js';
import { nthState } from './support/memory-state-source.js';
import { seededRandom } from './support/seeded-random.js';
import { agent, replica, type Replica } from './support/sync-replicas-harness.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const INTERVAL_MS = 150;
const AGENTS = 30;

describe('rebalancing over real gRPC', () => {
  it('3 replicas, one gone and back: counts converge within the slack, nothing is resent, shedding is bounded in rate', async () => {
    let live = 3;
    const hosts = Array.from({ length: AGENTS }, (_, i) => `host-${String(i).padStart(2, '0')}`);
    const rebalance: SyncServiceOptions['rebalance'] = { replicas: () => live, agents: () => hosts.length, intervalMs: INTERVAL_MS, random: seededRandom(7) };
    const { logger: replicaLog, lines: replicaLines } = logCapture();
    const started = new Map<Replica, number>();
    const start = async (port = 0): Promise<Replica> => {
      const r = await replica(cleanups, { rebalance, logger: replicaLog }, port);
      for (const h of hosts) r.source.set(nthState(h, 1));
      started.set(r, Date.now());
      return r;
    };
    const [a, b] = [await start(), await start()];
    let c = await start();
    const targets = [a.target, b.target, c.target];
    const { logger: agentLog, lines: agentLines } = logCapture();
    const agents = hosts.map((h, i) => agent(cleanups, h, new ControllerTargets(targets, { random: seededRandom(300 + i) }), { logger: agentLog }));
    const counts = (rs: readonly Replica[]): number[] => rs.map((r) => r.service.openStreams());
    const sum = (ns: readonly number[]): number => ns.reduce((x, y) => x + y, 0);
    const within = (rs: readonly Replica[], limit: number): boolean => sum(counts(rs)) === AGENTS && counts(rs).every((n) => n <= limit);
    const threeLimit = shedLimit(AGENTS, 3).limit;
    const twoLimit = shedLimit(AGENTS, 2).limit;
    expect([threeLimit, twoLimit]).toEqual([12, 18]);

    await waitFor('every agent applied state 1', () => agents.every((x, i) => x.held()?.version === nthState(hosts[i]!, 1).version), 30_000);
    await waitFor('three replicas: every count within the slack', () => within([a, b, c], threeLimit), 30_000);

    // C goes: its agents land on A and B, which may hold up to 18 each now.
    live = 2;
    c.stop();
    await waitFor('two replicas carry every agent within the slack', () => within([a, b], twoLimit), 30_000);

    // C comes back on its port: A and B shed down to 12, never below the fair share of 10.
    const aOrB = [a, b];
    const samples: number[][] = [];
    const shedBefore = a.service.agentsRebalanced() + b.service.agentsRebalanced();
    c = await start(Number(targets[2]!.split(':')[1]));
    expect(c.target).toBe(targets[2]);
    live = 3;
    const backAt = Date.now();
    await waitFor('the returned replica took its share and every count is within the slack', () => {
      samples.push(counts(aOrB));
      return within([a, b, c], threeLimit);
    }, 40_000);
    const tookMs = Date.now() - backAt;
    expect(c.service.openStreams()).toBeGreaterThanOrEqual(AGENTS - 2 * threeLimit);
    for (const s of samples) for (const n of s) expect(n).toBeGreaterThanOrEqual(shedLimit(AGENTS, 3).fairShare);

    // Bounded rate: at most one agent per half interval on each replica since it started.
    for (const [r, at] of started) expect(r.service.agentsRebalanced()).toBeLessThanOrEqual(Math.floor((Date.now() - at) / (INTERVAL_MS / 2)) + 1);
    // Every agent on the returned replica was asked to move by A or B (nothing else moves them here).
    expect(a.service.agentsRebalanced() + b.service.agentsRebalanced() - shedBefore).toBeGreaterThanOrEqual(c.service.openStreams());
    expect(tookMs).toBeGreaterThanOrEqual((INTERVAL_MS / 2) * Math.ceil((c.service.openStreams() - 1) / 2));

    // Agents moved keeping their state: one apply each, ever; the move is logged at info, not as an error.
    for (const [i, x] of agents.entries()) expect(x.applies).toEqual([{ version: nthState(hosts[i]!, 1).version, delta: false }]);
    expect(agentLines).toContainEqual(expect.objectContaining({ level: 30, msg: 'sync: replica rebalancing, moving to another', reason: expect.stringMatching(/^rebalancing: /) }));
    expect(replicaLines).toContainEqual(expect.objectContaining({ level: 30, msg: 'sync: rebalancing: agent asked to move to another replica', replicas: 3, fairShare: 10, limit: 12 }));
    expect(agents.some((x) => x.events.some((e) => e.type === 'rejected' && isRebalancing(e.reason)))).toBe(true);
    for (const x of agents) if (x.client.connected) expect(x.client.lastError).toBeUndefined();
  }, 150_000);

  it('the only replica never sheds, however many agents it holds', async () => {
    const r = await replica(cleanups, { rebalance: { replicas: () => 1, agents: () => 1, intervalMs: 50 } });
    const hosts = ['x0', 'x1', 'x2', 'x3', 'x4', 'x5'];
    for (const h of hosts) r.source.set(nthState(h, 1));
    const agents = hosts.map((h) => agent(cleanups, h, new ControllerTargets([r.target])));
    await waitFor('every agent applied', () => agents.every((x) => x.held() !== undefined) && r.service.openStreams() === hosts.length, 20_000);
    const until = Date.now() + 1_000;
    await waitFor('20 intervals passed', () => Date.now() >= until, 5_000);
    expect(r.service.agentsRebalanced()).toBe(0);
    expect(r.service.openStreams()).toBe(hosts.length);
  }, 30_000);
});

class FakeService implements Shedder {
  readonly shed: string[] = [];
  constructor(
    public streams: number,
    public settled = true,
  ) {}
  open(): number {
    return this.streams;
  }
  shedOne(reason: string): string | undefined {
    if (!this.settled) return undefined;
    this.shed.push(reason);
    this.streams -= 1;
    return `h${this.streams}`;
  }
}

describe('Rebalancer (the rule)', () => {
  it('sheds an eighth of the excess (at least one) per step above ceil(ceil(A/R) × slack), none at or below it, none when alone or the count is unknown', () => {
    const { logger } = logCapture();
    expect(shedLimit(30, 3)).toEqual({ fairShare: 10, limit: 12 });
    expect(shedLimit(5000, 3)).toEqual({ fairShare: 1667, limit: 2001 });
    expect(shedLimit(7, 2, 1)).toEqual({ fairShare: 4, limit: 4 });
    let replicas: number | undefined = 3;
    const service = new FakeService(15);
    const r = new Rebalancer({ replicas: () => replicas, agents: () => 30 }, service, logger);
    expect(r.step()).toEqual(['h14']);
    expect(service.shed).toEqual([rebalancingReason(15, 10, 3)]);
    expect(r.step()).toEqual(['h13']);
    expect(r.step()).toEqual(['h12']);
    expect(r.step()).toEqual([]);
    expect(service.streams).toBe(12);
    expect(r.shedTotal).toBe(3);
    replicas = 1;
    service.streams = 30;
    expect(r.step()).toEqual([]);
    replicas = undefined;
    expect(r.step()).toEqual([]);
    replicas = 3;
    service.settled = false;
    expect(r.step()).toEqual([]);
    expect(r.shedTotal).toBe(3);
    // Agents counted below the streams held: the streams count (10 over 2: share 5, limit 6).
    const lone = new FakeService(10);
    expect(new Rebalancer({ replicas: () => 2, agents: () => 0 }, lone, logger).step()).toEqual(['h9']);
    expect(lone.shed).toEqual([rebalancingReason(10, 5, 2)]);
    expect(isRebalancing(rebalancingReason(1, 1, 2))).toBe(true);
    expect(isRebalancing('at capacity (2 agents): try another replica')).toBe(false);
    expect(() => new Rebalancer({ replicas: () => 2, agents: () => 1, slack: 0.9 }, lone, logger)).toThrow(/slack/);
  });

  it('a large excess falls geometrically: a replica back among 3 with 5,000 agents is refilled in tens of steps, never shedding below the limit', () => {
    const { logger } = logCapture();
    const service = new FakeService(2500);
    const r = new Rebalancer({ replicas: () => 3, agents: () => 5000 }, service, logger);
    const { limit } = shedLimit(5000, 3);
    const batches: number[] = [];
    for (let moved = r.step(); moved.length > 0 && batches.length < 1000; moved = r.step()) batches.push(moved.length);
    expect(service.streams).toBe(limit);
    expect(batches[0]).toBe(Math.ceil((2500 - limit) / 8));
    // Never more than an eighth of what was above the limit before the step.
    let open = 2500;
    for (const b of batches) {
      expect(b).toBeLessThanOrEqual(Math.max(1, Math.ceil((open - limit) / 8)));
      open -= b;
    }
    expect(batches.length).toBeGreaterThan(8);
    expect(batches.length).toBeLessThan(60);
    expect(r.shedTotal).toBe(2500 - limit);
  });
});
