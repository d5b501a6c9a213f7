/**
 * Controller replicas over real gRPC (issue 12, items 2 and the Typha cap): several SyncService
 * instances in this process, each with its own StateSource holding the same states (as replicas
 * compiling the same policy and Marathon view do: versions are content hashes), and real
 * SyncClient agents dialling a ControllerTargets. Agents spread over 3 replicas; a closed
 * replica's agents reach another within a bounded time and a later change reaches them as a
 * Delta; a replica at its cap refuses and the agent lands on another; Consul-fed and DNS-fed
 * targets (the Consul API double, an injected lookup). Every wait is a condition with a
 * deadline; everything started is stopped in afterEach.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ControllerTargets, type Target } from '../agent/controller-targets.js';
import type { SyncClient } from '../agent/sync-client.js';
import { targetSource } from '../agent/target-source.js';
import type { SyncServiceOptions } from '../src/grpc/sync-service.js';
import { AgentCap, isAtCapacity } from '../src/grpc/agent-cap.js';
import { ControllerStatus } from '../src/controller/controller-status.js';
import { DesiredStateStore } from '../src/controller/desired-state-store.js';
import { ConsulDouble } from './support/consul-double.js';
import { waitFor } from './support/grpc-harness.js';
import { logCapture } from './support/log-capture.js';
import { nthState, PatchingSource } from './support/memory-state-source.js';
import { agent as harnessAgent, replica as harnessReplica, servingReplica, type Replica, type TestAgent } from './support/sync-replicas-harness.js';
import { seededRandom } from './support/seeded-random.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const replica = (options: SyncServiceOptions = {}, port = 0): Promise<Replica> => harnessReplica(cleanups, options, port);
const agent = (hostId: string, targets: ControllerTargets, extra: Partial<ConstructorParameters<typeof SyncClient>[0]> = {}): TestAgent => harnessAgent(cleanups, hostId, targets, extra);

describe('agents over several controller replicas', () => {
  it('an agent that comes from a replica killed during a change gets the new replica\'s own patch from the version it announces as a Delta', async () => {
    const a = await replica();
    const patching = new PatchingSource();
    const b = await harnessReplica(cleanups, {}, 0, patching);
    a.source.set(nthState('host-m', 1));
    b.source.set(nthState('host-m', 1));
    const targets = new ControllerTargets([a.target]);
    const m = agent('host-m', targets);
    await waitFor('the agent applied state 1 from A', () => m.held()?.version === nthState('host-m', 1).version, 20_000);
    // The change reaches B; A dies before it sends it, and the agent moves to B announcing state 1.
    b.source.set(nthState('host-m', 2));
    m.client.setCandidates([a.target, b.target]);
    a.stop();
    await waitFor('the agent applied state 2 from B', () => m.held()?.version === nthState('host-m', 2).version, 20_000);
    expect(m.applies).toEqual([{ version: nthState('host-m', 1).version, delta: false }, { version: nthState('host-m', 2).version, delta: true }]);
    expect(patching.patches).toBeGreaterThanOrEqual(1);
  }, 40_000);

  it('spread over 3 replicas; one closed: its agents reach another, resume without a resend, and the next change arrives as a Delta', async () => {
    const replicas = [await replica(), await replica(), await replica()];
    const hosts = Array.from({ length: 12 }, (_, i) => `host-${i}`);
    for (const r of replicas) for (const h of hosts) r.source.set(nthState(h, 1));
    const agents = new Map(hosts.map((h, i) => [h, agent(h, new ControllerTargets(replicas.map((r) => r.target), { random: seededRandom(1000 + i) }))]));

    await waitFor('every agent applied state 1', () => hosts.every((h) => agents.get(h)!.held()?.version === nthState(h, 1).version), 30_000);
    await waitFor('every agent is attached to one replica', () => replicas.reduce((n, r) => n + r.service.openStreams(), 0) === hosts.length, 30_000);
    const counts = replicas.map((r) => r.service.openStreams());
    for (const n of counts) expect(n).toBeGreaterThanOrEqual(1);

    // Close the replica serving the most agents.
    const gone = replicas[counts.indexOf(Math.max(...counts))]!;
    const moved = hosts.filter((h) => servingReplica(replicas, h) === gone);
    expect(moved.length).toBeGreaterThanOrEqual(1);
    const left = replicas.filter((r) => r !== gone);
    const closedAt = Date.now();
    gone.stop();
    await waitFor('the closed replica\'s agents are attached to another', () => moved.every((h) => servingReplica(left, h) !== undefined), 20_000);
    expect(Date.now() - closedAt).toBeLessThan(20_000);
    // They hold what the new replica compiled: nothing was resent.
    for (const h of moved) expect(agents.get(h)!.applies).toEqual([{ version: nthState(h, 1).version, delta: false }]);

    // A change on the replicas left reaches every agent, as a Delta also where the agent moved.
    for (const r of left) for (const h of hosts) r.source.set(nthState(h, 2));
    await waitFor('every agent applied state 2', () => hosts.every((h) => agents.get(h)!.held()?.version === nthState(h, 2).version), 30_000);
    for (const h of hosts) expect(agents.get(h)!.applies.at(-1)).toEqual({ version: nthState(h, 2).version, delta: true });
    await waitFor('the replicas left record the moved agents in sync', () => moved.every((h) => servingReplica(left, h)?.service.agent(h)?.inSync === true), 20_000);
    for (const h of moved) expect(servingReplica(left, h)!.service.agent(h)).toMatchObject({ inSync: true, appliedVersion: nthState(h, 2).version });
  }, 90_000);

  it('a replica at its cap refuses with the reason (counted, not a connection problem) and the agent lands on another', async () => {
    const full = await replica({ maxAgents: 1 });
    const other = await replica();
    for (const r of [full, other]) for (const h of ['first', 'second']) r.source.set(nthState(h, 1));
    const first = agent('first', new ControllerTargets([full.target]));
    await waitFor('the first agent holds the capped replica\'s one place', () => full.service.agent('first')?.connected === true && first.held() !== undefined, 20_000);

    const targets = new ControllerTargets([full.target, other.target]);
    if (targets.current() !== full.target) targets.advance();
    expect(targets.current()).toBe(full.target);
    const { logger, lines } = logCapture();
    const second = agent('second', targets, { logger });
    await waitFor('the second agent applied its state from the other replica', () => other.service.agent('second')?.connected === true && second.held()?.version === nthState('second', 1).version, 20_000);

    expect(second.events).toContainEqual({ type: 'rejected', reason: 'at capacity (1 agents): try another replica' });
    expect(full.service.agentsRefusedAtCapacity()).toBeGreaterThanOrEqual(1);
    expect(full.service.openStreams()).toBe(1);
    expect(full.service.agent('second')).toBeUndefined();
    expect(lines).toContainEqual(expect.objectContaining({ level: 30, msg: 'sync: replica at capacity, trying another', controller: full.target, next: other.target }));
    expect(lines.filter((l) => l['msg'] === 'sync: cannot connect to the controller')).toEqual([]);
    const status = new ControllerStatus({
      store: new DesiredStateStore(),
      agents: () => full.service.agents(),
      feed: { start: async () => undefined, stop: async () => undefined, status: () => ({ source: 'test', ready: true }) },
      policy: { path: 'p', valid: true, loadedAt: null, lastError: null, reloadErrors: 0, warnings: [] },
      agentsRefusedAtCapacity: () => full.service.agentsRefusedAtCapacity(),
    });
    expect(status.metrics()).toMatch(new RegExp(`^# TYPE portcullis_agents_refused_at_capacity_total counter\\nportcullis_agents_refused_at_capacity_total ${full.service.agentsRefusedAtCapacity()}$`, 'm'));
  }, 60_000);
});

describe('a replica that comes back', () => {
  it('takes the agents the capped replicas refuse, and those of a replica lost later', async () => {
    const a = await replica({ maxAgents: 2 });
    const b = await replica({ maxAgents: 2 });
    const downC = await replica();
    const port = downC.running.port;
    downC.stop();
    const hosts = ['h0', 'h1', 'h2', 'h3', 'h4'];
    const all = [a.target, b.target, downC.target];
    const agents = new Map<string, TestAgent>();
    for (const [i, h] of hosts.slice(0, 4).entries()) agents.set(h, agent(h, new ControllerTargets(all, { random: seededRandom(50 + i) })));
    const set = (r: Replica): void => {
      for (const h of hosts) r.source.set(nthState(h, 1));
    };
    set(a);
    set(b);
    await waitFor('four agents fill the two capped replicas', () => a.service.openStreams() === 2 && b.service.openStreams() === 2, 30_000);

    const c = await replica({}, port);
    set(c);
    expect(c.target).toBe(downC.target);
    agents.set('h4', agent('h4', new ControllerTargets(all, { random: seededRandom(99) })));
    await waitFor('the fifth agent lands on the returned replica', () => c.service.agent('h4')?.connected === true && agents.get('h4')!.held() !== undefined, 30_000);

    const movedFromA = hosts.filter((h) => a.service.agent(h)?.connected === true);
    expect(movedFromA).toHaveLength(2);
    a.stop();
    await waitFor('the lost replica\'s agents are on the returned one (the other is full)', () => movedFromA.every((h) => c.service.agent(h)?.connected === true), 30_000);
    expect(b.service.openStreams()).toBe(2);
    expect(c.service.openStreams()).toBe(3);
    for (const h of hosts) expect(agents.get(h)!.held()?.version).toBe(nthState(h, 1).version);
  }, 90_000);
});

describe('AgentCap (the per-replica connection cap)', () => {
  it('refuses beyond N open streams, lets a host already attached in again, logs once per 10 s with the count, counts every refusal', () => {
    const { logger, lines } = logCapture();
    let now = 0;
    const cap = new AgentCap(2, logger, () => now);
    expect(cap.admit('a', 1, false)).toBeUndefined();
    expect(cap.admit('b', 2, true)).toBeUndefined();
    expect(cap.admit('c', 2, false)).toBe('at capacity (2 agents): try another replica');
    expect(isAtCapacity(cap.admit('d', 2, false)!)).toBe(true);
    now = 9_999;
    cap.admit('e', 2, false);
    now = 10_000;
    cap.admit('f', 2, false);
    expect(cap.refusedTotal).toBe(4);
    const logged = lines.filter((l) => l['msg'] === 'sync: at capacity, agents refused (they try another replica)');
    expect(logged.map((l) => [l['level'], l['hostId'], l['refused'], l['refusedTotal']])).toEqual([
      [30, 'c', 1, 1],
      [30, 'f', 3, 4],
    ]);
    expect(new AgentCap(0, logger, () => now).admit('x', 1_000_000, false)).toBeUndefined();
    expect(isAtCapacity('certificate is for [a], not host b')).toBe(false);
    expect(() => new AgentCap(-1, logger, () => now)).toThrow(/whole number/);
  });
});

describe('where the replicas come from', () => {
  it('Consul: passing instances become the targets; one removed leaves the list, one added joins, an outage keeps the list', async () => {
    const a = await replica();
    const b = await replica();
    const c = await replica();
    for (const r of [a, b, c]) r.source.set(nthState('h', 1));
    const consul = new ConsulDouble();
    const url = await consul.start();
    cleanups.push(() => consul.close());
    const port = (r: Replica): number => r.running.port;
    consul.addRemoteInstance({ node: 'node-a', nodeAddress: '127.0.0.1', id: 'portcullis-a', name: 'portcullis', port: port(a) });
    consul.addRemoteInstance({ node: 'node-b', nodeAddress: '127.0.0.1', id: 'portcullis-b', name: 'portcullis', port: port(b) });
    const { logger, lines } = logCapture();
    const source = targetSource({ kind: 'consul', url, service: 'portcullis' }, { logger, consulWaitMs: 500, consulTimeoutMs: 2_000 });
    cleanups.push(() => source.stop());
    const targets = new ControllerTargets(await source.initial());
    expect(targets.candidates).toEqual([]);
    const h = agent('h', targets, { refreshTargets: () => source.refresh() });
    source.start((list) => h.client.setCandidates(list));

    await waitFor('the agent applied its state from a Consul-listed replica', () => h.held() !== undefined && (a.service.agent('h')?.connected === true || b.service.agent('h')?.connected === true), 20_000);
    expect([...targets.candidates].sort()).toEqual([a.target, b.target].sort());

    // The instance the agent is NOT on leaves; the one it is on stays in use.
    const on = a.service.agent('h')?.connected ? a : b;
    const off = on === a ? b : a;
    expect(consul.removeInstance(off === a ? 'node-a' : 'node-b', off === a ? 'portcullis-a' : 'portcullis-b')).toBe(true);
    await waitFor('the removed instance leaves the list', () => targets.candidates.length === 1, 20_000);
    expect(targets.candidates).toEqual([on.target]);
    expect(on.service.agent('h')?.connected).toBe(true);
    consul.addRemoteInstance({ node: 'node-c', nodeAddress: '127.0.0.1', id: 'portcullis-c', name: 'portcullis', port: port(c) });
    await waitFor('the added instance joins the list', () => targets.candidates.includes(c.target), 20_000);
    expect([...targets.candidates].sort()).toEqual([on.target, c.target].sort());

    // Consul down: the list stays, the stream stays; the replica in use closing moves the agent to the other listed one.
    consul.setOutage('refuse');
    await waitFor('the follower saw the outage', () => lines.some((l) => l['msg'] === 'sync: cannot read the controllers from Consul: keeping the last list'), 20_000);
    expect([...targets.candidates].sort()).toEqual([on.target, c.target].sort());
    on.stop();
    await waitFor('the agent moved to the other listed replica during the outage', () => c.service.agent('h')?.connected === true, 20_000);
    expect(h.held()?.version).toBe(nthState('h', 1).version);
  }, 90_000);

  it('DNS: a name counts as each of its addresses, verified under the name; a full failed round resolves again; a failed lookup keeps the addresses', async () => {
    const { logger, lines } = logCapture();
    let answers: { address: string; family: number }[] | Error = [
      { address: '127.0.0.1', family: 4 },
      { address: '::1', family: 6 },
    ];
    let lookups = 0;
    const lookup = async (host: string) => {
      lookups += 1;
      expect(host).toBe('ctl.example');
      if (answers instanceof Error) throw answers;
      return answers;
    };
    const source = targetSource({ kind: 'list', controllers: ['ctl.example:1', '127.0.0.1:2'] }, { logger, lookup });
    expect(await source.initial()).toEqual(['127.0.0.1:1', '127.0.0.1:2', '[::1]:1']);
    expect(source.channelOptionsFor('[::1]:1')).toEqual({ 'grpc.ssl_target_name_override': 'ctl.example', 'grpc.default_authority': 'ctl.example' });
    expect(source.channelOptionsFor('127.0.0.1:2')).toBeUndefined();

    // Nothing listens on ports 1 and 2: every attempt fails, each full round asks for a refresh.
    const seen: (readonly Target[])[] = [];
    answers = [{ address: '127.0.0.1', family: 4 }];
    const targets = new ControllerTargets(await source.initial());
    const h = agent('h', targets, { refreshTargets: () => source.refresh() });
    source.start((list) => {
      seen.push(list);
      h.client.setCandidates(list);
    });
    await waitFor('a failed round re-resolved the name', () => seen.length >= 1, 20_000);
    expect(seen[0]).toEqual(['127.0.0.1:1', '127.0.0.1:2']);
    await waitFor('the list has the new answer', () => targets.candidates.length === 2, 5_000);
    await waitFor('the channel of the address that left is closed', () => !h.client.channelTargets.includes('[::1]:1'), 10_000);
    expect(h.client.channelTargets.every((t) => targets.candidates.includes(t))).toBe(true);

    answers = new Error('SERVFAIL');
    const before = lookups;
    await waitFor('a failed lookup during a later round', () => lookups > before && seen.length >= 2, 20_000);
    expect(seen.at(-1)).toEqual(['127.0.0.1:1', '127.0.0.1:2']);
    expect(lines).toContainEqual(expect.objectContaining({ level: 40, msg: 'sync: cannot resolve the controller name: keeping the addresses it had', controller: 'ctl.example:1' }));
  }, 60_000);
});
