/**
 * The incremental compiler's fast path (tasks replaced in place: same array length, hosts and
 * apps unchanged) and its member patching: after every in-place move, restart, or port change
 * its states equal compile(), and the delta of consecutive states (the compiler's deltaFrom, made
 * from its patch edits, and diffStates, a merge) equals a set difference of the same lists.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compile } from '../src/compile/compile.js';
import { SET_KINDS, type DesiredState } from '../src/compile/desired-state.js';
import { IncrementalCompiler } from '../src/compile/incremental-compiler.js';
import { patchMemberList } from '../src/compile/member-lists.js';
import { diffStates, type StateDelta } from '../src/compile/state-delta.js';
import type { ClusterState, Task } from '../src/inventory/cluster-state.js';
import { largeScenario, scenarioArb } from './support/random-cluster.js';

/** The delta from `a` to `b` by set difference (an oracle independent of the merge and the patch edits). */
function generalDiff(a: DesiredState, b: DesiredState): StateDelta {
  const minus = (x: readonly string[], y: readonly string[]) => x.filter((m) => !new Set(y).has(m)).sort();
  const per = (f: (k: (typeof SET_KINDS)[number]) => string[]) => Object.fromEntries(SET_KINDS.map((k) => [k, f(k)])) as unknown as StateDelta['adds'];
  return { hostId: b.hostId, baseVersion: a.version, version: b.version, mode: b.mode, adds: per((k) => minus(b.sets[k], a.sets[k])), removes: per((k) => minus(a.sets[k], b.sets[k])) };
}

function check(inc: IncrementalCompiler, c: ClusterState, before: ReadonlyMap<string, DesiredState>): void {
  const full = compile(inc.currentPolicy(), c);
  expect(inc.hostIds()).toEqual([...full.states.keys()]);
  for (const [hostId, state] of full.states) {
    const got = inc.state(hostId)!;
    expect(got.version, `host ${hostId}`).toBe(state.version);
    expect(got.sets).toEqual(state.sets);
    const prev = before.get(hostId);
    if (prev) {
      const expected = generalDiff(prev, got);
      expect(diffStates(prev, got)).toEqual(expected);
      if (prev.version !== got.version) expect(inc.deltaFrom(hostId, prev.version) ?? diffStates(prev, got)).toEqual(expected);
    }
  }
  expect(inc.reports()).toEqual(full.reports);
}

const stepArb = fc.record({ pick: fc.nat({ max: 10_000 }), host: fc.nat({ max: 10_000 }), port: fc.constantFrom(22, 80, 31000, 31001, 31002, 31005), same: fc.boolean() });

function moveInPlace(c: ClusterState, s: { pick: number; host: number; port: number; same: boolean }, n: number): ClusterState {
  if (c.tasks.length === 0 || c.hosts.length === 0) return c;
  const k = s.pick % c.tasks.length;
  const old = c.tasks[k]!;
  // Same content under a new object (the fast path must see "no change"), or a real move.
  const task: Task = s.same ? { ...old } : { id: `${old.id}~${n}`, appId: old.appId, hostId: c.hosts[s.host % c.hosts.length]!.id, hostPorts: old.hostPorts.map((p, i) => (i === 0 ? s.port : p)) };
  const tasks = c.tasks.slice();
  tasks[k] = task;
  return { hosts: c.hosts, apps: c.apps, tasks };
}

describe('IncrementalCompiler in-place moves', () => {
  it('equals compile() after every in-place move, and consecutive diffs equal the general diff', () => {
    fc.assert(
      fc.property(scenarioArb, fc.array(stepArb, { minLength: 30, maxLength: 60 }), (scenario, steps) => {
        const inc = new IncrementalCompiler(scenario.policy, scenario.cluster);
        let c = scenario.cluster;
        steps.forEach((s, i) => {
          const before = new Map(inc.hostIds().map((h) => [h, inc.state(h)!]));
          c = moveInPlace(c, s, i);
          const r = inc.applyClusterChange(c);
          for (const [h, state] of r.changed) expect(state).toBe(inc.state(h));
          check(inc, c, before);
        });
      }),
      { numRuns: 60, seed: 777, endOnFailure: true },
    );
  }, 120_000);

  it('stays equal on a larger cluster (many dependants patched per move)', () => {
    const scenario = largeScenario({ hosts: 40, apps: 30, tasks: 200, groups: 12, rules: 40 });
    const inc = new IncrementalCompiler(scenario.policy, scenario.cluster);
    let c = scenario.cluster;
    for (let i = 0; i < 60; i++) {
      const before = new Map(inc.hostIds().map((h) => [h, inc.state(h)!]));
      c = moveInPlace(c, { pick: i * 7919, host: i * 104729, port: 31000 + (i % 3), same: i % 10 === 9 }, i);
      inc.applyClusterChange(c);
      check(inc, c, before);
    }
  }, 120_000);

  it('with egress on: hosts whose only change is egress-managed share one delta, equal to the general diff', () => {
    const large = largeScenario({ hosts: 30, apps: 20, tasks: 120, groups: 8, rules: 30 });
    const policy = { ...large.policy, defaults: { ...large.policy.defaults, egress: true } };
    const inc = new IncrementalCompiler(policy, large.cluster);
    let c = large.cluster;
    let sharedMoves = 0;
    for (let i = 0; i < 25; i++) {
      const before = new Map(inc.hostIds().map((h) => [h, inc.state(h)!]));
      c = moveInPlace(c, { pick: i * 7919, host: i * 104729, port: 31000 + (i % 3), same: i % 10 === 9 }, i);
      const r = inc.applyClusterChange(c);
      // Read the deltas before check() builds every list (the move path never reads them).
      const onlyManaged = [...r.changed.keys()].filter((h) => {
        const [a, b] = [before.get(h)!, r.changed.get(h)!];
        return SET_KINDS.every((k) => k === 'egress-managed4' || k === 'egress-managed6' || a.sets[k] === b.sets[k] || a.sets[k].join('\n') === b.sets[k].join('\n'));
      });
      const deltas = onlyManaged.map((h) => inc.deltaFrom(h, before.get(h)!.version));
      for (const d of deltas) expect(d).toBeDefined();
      if (deltas.length > 1) {
        sharedMoves++;
        for (const d of deltas) expect([d!.adds, d!.removes]).toEqual([deltas[0]!.adds, deltas[0]!.removes]);
        // One record for (nearly) all of them: a host patched for another reason whose members
        // did not change (an equal claim set) takes the general path and has its own.
        const uses = new Map<object, number>();
        for (const d of deltas) uses.set(d!.adds, (uses.get(d!.adds) ?? 0) + 1);
        expect(Math.max(...uses.values())).toBeGreaterThan(deltas.length / 2);
      }
      check(inc, c, before);
    }
    expect(sharedMoves).toBeGreaterThan(5);
  }, 120_000);
});

describe('patchMemberList', () => {
  it('equals sorting the edited list, for few and many edits', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.string({ maxLength: 6 }), { maxLength: 60 }), fc.uniqueArray(fc.string({ maxLength: 6 }), { maxLength: 40 }), (all, extra) => {
        const list = [...all].sort();
        const removes = list.filter((_, i) => i % 3 === 0);
        const adds = extra.filter((m) => !list.includes(m));
        const expected = [...list.filter((m) => !removes.includes(m)), ...adds].sort();
        expect(patchMemberList(list, removes, adds)).toEqual(expected);
      }),
      { numRuns: 300, seed: 99 },
    );
  });

  it('equals sorting the edited list for few edits (the in-place path), and refuses a broken patch', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.string({ maxLength: 4 }), { maxLength: 40 }), fc.uniqueArray(fc.string({ maxLength: 4 }), { maxLength: 6 }), fc.nat(), (all, extra, seed) => {
        const list = [...all].sort();
        const removes = list.filter((_, i) => (i + seed) % 7 === 0).slice(0, 6);
        const adds = extra.filter((m) => !list.includes(m));
        const expected = [...list.filter((m) => !removes.includes(m)), ...adds].sort();
        expect(patchMemberList(list, removes, adds)).toEqual(expected);
      }),
      { numRuns: 500, seed: 98 },
    );
    expect(() => patchMemberList(['a', 'c'], ['b'], [])).toThrow(/not in the list/);
    expect(() => patchMemberList(['a', 'c'], [], ['c'])).toThrow(/already in the list/);
    expect(() => patchMemberList(['a', 'c'], ['a', 'a'], [])).toThrow(/removed twice/);
    expect(() => patchMemberList(['a', 'c'], [], ['b', 'b'])).toThrow(/added twice/);
  });
});
