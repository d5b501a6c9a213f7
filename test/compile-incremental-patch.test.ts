/**
 * The incremental compiler's fast path (tasks replaced in place: same array length, hosts and
 * apps unchanged) and its member patching: after every in-place move, restart, or port change
 * its states equal compile(), and diffStates of consecutive states (which uses the patch edits
 * member-lists.ts records) equals the diff of the same lists taken as arbitrary input.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compile } from '../src/compile/compile.js';
import { SET_KINDS, type DesiredState } from '../src/compile/desired-state.js';
import { IncrementalCompiler } from '../src/compile/incremental-compiler.js';
import { memberList, memberListText, patchMemberList } from '../src/compile/member-lists.js';
import { diffStates } from '../src/compile/state-delta.js';
import type { ClusterState, Task } from '../src/inventory/cluster-state.js';
import { largeScenario, scenarioArb } from './support/random-cluster.js';

/** The same state with copied (unmarked) lists: diffStates takes its general path. */
function plain(s: DesiredState): DesiredState {
  return { ...s, sets: Object.fromEntries(SET_KINDS.map((k) => [k, [...s.sets[k]]])) as unknown as DesiredState['sets'] };
}

function check(inc: IncrementalCompiler, c: ClusterState, before: ReadonlyMap<string, DesiredState>): void {
  const full = compile(inc.currentPolicy(), c);
  expect(inc.hostIds()).toEqual([...full.states.keys()]);
  for (const [hostId, state] of full.states) {
    const got = inc.state(hostId)!;
    expect(got.version, `host ${hostId}`).toBe(state.version);
    expect(got.sets).toEqual(state.sets);
    const prev = before.get(hostId);
    if (prev) expect(diffStates(prev, got)).toEqual(diffStates(plain(prev), plain(got)));
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
});

describe('patchMemberList', () => {
  it('equals sorting the edited list, for few and many edits', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.string({ maxLength: 6 }), { maxLength: 60 }), fc.uniqueArray(fc.string({ maxLength: 6 }), { maxLength: 40 }), (all, extra) => {
        const list = [...all].sort();
        const removes = list.filter((_, i) => i % 3 === 0);
        const adds = extra.filter((m) => !list.includes(m));
        const expected = [...list.filter((m) => !removes.includes(m)), ...adds].sort();
        const got = patchMemberList(memberList(list), removes, adds);
        expect(got.members).toEqual(expected);
        expect(got.text).toBe(memberListText(expected));
      }),
      { numRuns: 300, seed: 99 },
    );
  });
});
