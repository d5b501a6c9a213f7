/**
 * The incremental compiler equals the full compiler after every step of long random change
 * sequences (task starts, stops, moves, scale, app label/port changes, host address changes,
 * hosts joining/leaving, apps removed, a policy switch), and it reports every host whose version
 * changed. Plus: a move recomputes only the hosts it can affect.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compile } from '../src/compile/compile.js';
import { IncrementalCompiler } from '../src/compile/incremental-compiler.js';
import type { App, AppPort, ClusterState, Host, Task } from '../src/inventory/cluster-state.js';
import { ALLOW_FROM_LABEL } from '../src/policy/policy-model.js';
import { app, cluster, group, host, policy, task } from './support/policy-builder.js';
import { scenarioArb, type Scenario } from './support/random-cluster.js';
import { modedScenarioArb } from './support/group-mode-scenario.js';

const HOST_PORTS = [22, 80, 31000, 31001, 31002, 31005, 31010];
const LABELS = [undefined, 'g0', 'g1, n0', 'g2, g3', 'any', 'nope'];
const TIERS = [undefined, 'front', 'back'];

type Step =
  | { kind: 'start'; app: number; host: number; ports: number[] }
  | { kind: 'stop'; pick: number }
  | { kind: 'move'; pick: number; host: number; ports: number[] }
  | { kind: 'scale'; app: number; host: number; count: number; down: boolean }
  | { kind: 'app-labels'; app: number; tier: number; allow: number }
  | { kind: 'app-ports'; app: number; portCount: number; label: number }
  | { kind: 'app-remove'; app: number }
  | { kind: 'host-addresses'; host: number; variant: number }
  | { kind: 'host-add'; host: number }
  | { kind: 'host-remove'; host: number }
  | { kind: 'stray-task'; host: number };

const portsArb = fc.array(fc.constantFrom(...HOST_PORTS), { minLength: 2, maxLength: 2 });
const idx = fc.nat({ max: 1000 });
const stepArb: fc.Arbitrary<Step> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('start' as const), app: idx, host: idx, ports: portsArb }) },
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('stop' as const), pick: idx }) },
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('move' as const), pick: idx, host: idx, ports: portsArb }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('scale' as const), app: idx, host: idx, count: fc.integer({ min: 1, max: 3 }), down: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('app-labels' as const), app: idx, tier: idx, allow: idx }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('app-ports' as const), app: idx, portCount: fc.integer({ min: 1, max: 2 }), label: idx }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('app-remove' as const), app: idx }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('host-addresses' as const), host: idx, variant: fc.nat({ max: 4 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('host-add' as const), host: idx }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('host-remove' as const), host: idx }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('stray-task' as const), host: idx }) },
);

const HOST_IDS = ['h0', 'h1', 'h2', 'h3', 'h4', 'h5'];

function addressesFor(i: number, variant: number): string[] {
  switch (variant) {
    case 0: return [`10.0.${i}.${i + 1}`];
    case 1: return [`10.0.${i}.${i + 1}`, `fd00::1:${i}`];
    case 2: return [];
    case 3: return [`10.9.${i}.7`];
    default: return ['not-an-address', `10.0.${i}.${i + 1}`];
  }
}

/** Applies one step to a cluster (a new immutable value; unchanged parts keep their identity). */
function applyStep(c: ClusterState, s: Step, appPool: readonly App[], n: { next: number }): ClusterState {
  const { hosts, apps, tasks } = c;
  const hostId = (k: number) => (hosts.length > 0 ? hosts[k % hosts.length]!.id : 'h0');
  const appId = (k: number) => appPool[k % appPool.length]!.id;
  const newTask = (a: string, h: string, ports: number[]): Task => ({ id: `n${n.next++}`, appId: a, hostId: h, hostPorts: ports });
  const setApp = (updated: App) => ({ hosts, apps: [...apps.filter((a) => a.id !== updated.id), updated], tasks });
  const setHost = (updated: Host) => ({ hosts: [...hosts.filter((h) => h.id !== updated.id), updated], apps, tasks });
  switch (s.kind) {
    case 'start':
      return { hosts, apps, tasks: [...tasks, newTask(appId(s.app), hostId(s.host), s.ports)] };
    case 'stop':
      return tasks.length === 0 ? c : { hosts, apps, tasks: tasks.filter((_, i) => i !== s.pick % tasks.length) };
    case 'move': {
      if (tasks.length === 0) return c;
      const old = tasks[s.pick % tasks.length]!;
      return { hosts, apps, tasks: [...tasks.filter((t) => t !== old), newTask(old.appId, hostId(s.host), s.ports)] };
    }
    case 'scale': {
      const a = appId(s.app);
      if (s.down) {
        let left = s.count;
        return { hosts, apps, tasks: tasks.filter((t) => !(t.appId === a && left-- > 0)) };
      }
      const added = Array.from({ length: s.count }, (_, i) => newTask(a, hostId(s.host + i), [31000 + i, 31010]));
      return { hosts, apps, tasks: [...tasks, ...added] };
    }
    case 'app-labels': {
      const base = apps.find((a) => a.id === appId(s.app)) ?? appPool[s.app % appPool.length]!;
      const labels: Record<string, string> = {};
      const tier = TIERS[s.tier % TIERS.length];
      const allow = LABELS[s.allow % LABELS.length];
      if (tier) labels['tier'] = tier;
      if (allow) labels[ALLOW_FROM_LABEL] = allow;
      return setApp({ ...base, labels });
    }
    case 'app-ports': {
      const base = apps.find((a) => a.id === appId(s.app)) ?? appPool[s.app % appPool.length]!;
      const label = LABELS[s.label % LABELS.length];
      const ports = Array.from({ length: s.portCount }, (_, i): AppPort => ({
        ...(i === 0 ? { name: 'http' } : {}),
        protocols: i === 0 ? (['tcp'] as const) : (['tcp', 'udp'] as const),
        labels: (label && i === 0 ? { [ALLOW_FROM_LABEL]: label } : {}) as Record<string, string>,
      }));
      return setApp({ ...base, ports });
    }
    case 'app-remove':
      return { hosts, apps: apps.filter((a) => a.id !== appId(s.app)), tasks };
    case 'host-addresses': {
      const i = s.host % HOST_IDS.length;
      return setHost({ id: HOST_IDS[i]!, addresses: addressesFor(i, s.variant) });
    }
    case 'host-add': {
      const i = s.host % HOST_IDS.length;
      return hosts.some((h) => h.id === HOST_IDS[i]) ? c : setHost({ id: HOST_IDS[i]!, addresses: addressesFor(i, 0) });
    }
    case 'host-remove':
      return hosts.length <= 1 ? c : { hosts: hosts.filter((_, i) => i !== s.host % hosts.length), apps, tasks };
    case 'stray-task':
      return { hosts, apps, tasks: [...tasks, newTask(s.host % 2 === 0 ? '/nope/app' : appId(s.host), s.host % 2 === 0 ? hostId(s.host) : 'h-unknown', [31001, 31002])] };
  }
}

function check(inc: IncrementalCompiler, c: ClusterState): void {
  const full = compile(inc.currentPolicy(), c);
  expect(inc.hostIds()).toEqual([...full.states.keys()]);
  for (const [hostId, state] of full.states) {
    const got = inc.state(hostId);
    expect(got?.version, `host ${hostId}`).toBe(state.version);
    expect(got?.sets).toEqual(state.sets);
    expect(got?.mode).toBe(state.mode);
  }
  expect(inc.reports()).toEqual(full.reports);
}

function equalsFullAfterEveryStep(arb: fc.Arbitrary<Scenario>, numRuns: number, onState?: (inc: IncrementalCompiler) => void): number {
    let steps = 0;
    fc.assert(
      fc.property(
        arb,
        arb,
        fc.array(stepArb, { minLength: 200, maxLength: 240 }),
        fc.nat({ max: 239 }),
        (first, second, stepList, policyAt) => {
          const pool = [...first.cluster.apps, app('/x/extra', [{ name: 'http' }], { tier: 'front' })];
          const inc = new IncrementalCompiler(first.policy, first.cluster);
          let c = first.cluster;
          check(inc, c);
          const counter = { next: 0 };
          stepList.forEach((step, i) => {
            const before = new Map([...inc.hostIds()].map((h) => [h, inc.state(h)!.version]));
            let result;
            if (i === policyAt) {
              result = inc.setPolicy(second.policy);
            } else {
              c = applyStep(c, step, pool, counter);
              result = inc.applyClusterChange(c);
            }
            check(inc, c);
            const after = new Set(inc.hostIds());
            for (const h of after) {
              if (before.get(h) !== inc.state(h)!.version) expect(result.changed.has(h), `step ${i} ${step.kind}: host ${h} changed unreported`).toBe(true);
            }
            for (const h of before.keys()) if (!after.has(h)) expect(result.removed).toContain(h);
            for (const [h, s] of result.changed) expect(s.version).toBe(inc.state(h)!.version);
            onState?.(inc);
            steps++;
          });
        },
      ),
      { numRuns, seed: 4242, endOnFailure: true },
    );
    return steps;
}

describe('IncrementalCompiler', () => {
  it('equals compile() after every step of long random change sequences, and reports every changed host', () => {
    expect(equalsFullAfterEveryStep(scenarioArb, 40)).toBeGreaterThanOrEqual(40 * 200);
  }, 120_000);

  it('with random group modes (groups.<name>.mode): equals compile() after every step, modes and audit lists included', () => {
    // App label changes move apps between groups (and so between modes); the policy switch changes group modes.
    let mixed = 0;
    const steps = equalsFullAfterEveryStep(modedScenarioArb, 15, (inc) => {
      for (const id of inc.hostIds()) if (['audit-tcp', 'audit-udp', 'egress-audit'].some((k) => inc.state(id)!.sets[k as 'audit-tcp'].length > 0)) mixed++;
    });
    expect(steps).toBeGreaterThanOrEqual(15 * 200);
    expect(mixed).toBeGreaterThan(100);
  }, 120_000);

  it('a move recomputes only the old host, the new host, and hosts whose allowed sources include the group', () => {
    const p = policy({
      groups: [group('web', ['/web']), group('api', ['/api']), group('db', ['/db'])],
      rules: [
        { action: 'allow', from: ['web'], to: ['api'] },
        { action: 'allow', from: ['api'], to: ['db'] },
      ],
    });
    const hosts = [1, 2, 3, 4, 5, 6].map((i) => host(`h${i}`, `10.0.0.${i}`));
    const apps = [app('/web'), app('/api'), app('/db')];
    const before = cluster(hosts, apps, [
      task('w1', '/web', 'h1', [31000]),
      task('w2', '/web', 'h2', [31000]),
      task('a1', '/api', 'h4', [31100]),
      task('d1', '/db', 'h5', [31200]),
    ]);
    const inc = new IncrementalCompiler(p, before);
    // w1 moves h1 → h3: web's source set changes (h1 out, h3 in), so api hosts (h4) follow; db (h5) and h6 do not.
    const moved = cluster(hosts, apps, [...before.tasks.filter((t) => t.id !== 'w1'), task('w1b', '/web', 'h3', [31001])]);
    const r = inc.applyClusterChange(moved);
    expect([...r.changed.keys()].sort()).toEqual(['h1', 'h3', 'h4']);
    expect(r.recomputed).toBe(3);
    expect(r.removed).toEqual([]);
    check(inc, moved);

    // A second web task on h2 moves to h3 (which already runs web): web's set loses h2 only.
    const again = cluster(hosts, apps, [...moved.tasks.filter((t) => t.id !== 'w2'), task('w2b', '/web', 'h3', [31002])]);
    const r2 = inc.applyClusterChange(again);
    expect([...r2.changed.keys()].sort()).toEqual(['h2', 'h3', 'h4']);
    check(inc, again);

    // A move inside the group's host set (h3 → h3, new port) changes no source set: only h3.
    const local = cluster(hosts, apps, [...again.tasks.filter((t) => t.id !== 'w2b'), task('w2c', '/web', 'h3', [31003])]);
    const r3 = inc.applyClusterChange(local);
    expect([...r3.changed.keys()]).toEqual(['h3']);
    expect(r3.recomputed).toBe(1);
    check(inc, local);

    // The same cluster again: nothing to do.
    const r4 = inc.applyClusterChange({ ...local });
    expect(r4.changed.size).toBe(0);
    expect(r4.recomputed).toBe(0);
  });
});
