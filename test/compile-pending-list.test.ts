/**
 * Pending member lists (src/compile/pending-list.ts): a chain of patches read at any point, or
 * never, equals the same patches applied one by one to plain sorted arrays (a Set oracle); the
 * length is known without building; a broken patch throws when the list is built; a state's
 * `sets` reads as plain arrays in SET_KINDS order, and a copy with some lists replaced
 * (replacedSets, an agent's view) leaves a pending one pending. And the incremental compiler,
 * when nothing reads its states for many moves (so patches stay pending and chains grow past
 * MAX_PENDING), still ends equal to compile().
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compile } from '../src/compile/compile.js';
import { emptySets, SET_KINDS } from '../src/compile/desired-state.js';
import { IncrementalCompiler } from '../src/compile/incremental-compiler.js';
import { MAX_PENDING, PendingList, replacedSets, stateSets, type ListOrPending } from '../src/compile/pending-list.js';
import type { ClusterState, Task } from '../src/inventory/cluster-state.js';
import { largeScenario } from './support/random-cluster.js';
import { seededRandom } from './support/seeded-random.js';

function read(list: ListOrPending): readonly string[] {
  return list instanceof PendingList ? list.list() : list;
}

describe('PendingList', () => {
  it('equals the patches applied one by one, read at any step or only at the end', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 3 * MAX_PENDING }), fc.nat(), fc.double({ min: 0, max: 1, noNaN: true }), (steps, seed, readShare) => {
        const rand = seededRandom(seed);
        const universe = Array.from({ length: 40 }, (_, i) => `m${String(i).padStart(2, '0')}`);
        let oracle = new Set(universe.filter(() => rand() < 0.5));
        let list: ListOrPending = [...oracle].sort();
        const history: { list: ListOrPending; members: string[] }[] = [];
        for (let s = 0; s < steps; s++) {
          const removes = [...oracle].filter(() => rand() < 0.15);
          const after = new Set([...oracle].filter((m) => !removes.includes(m)));
          const adds = universe.filter((m) => !after.has(m) && rand() < 0.1);
          list = PendingList.patched(list, removes, adds);
          oracle = new Set([...after, ...adds]);
          expect(list.length).toBe(oracle.size);
          history.push({ list, members: [...oracle].sort() });
          if (rand() < readShare) expect(read(list)).toEqual([...oracle].sort());
        }
        // Every earlier list still reads as it was (a patch never changes what it was made from).
        for (const h of history) expect(read(h.list)).toEqual(h.members);
      }),
      { numRuns: 300, seed: 4242 },
    );
  });

  it('builds the list once MAX_PENDING patches are pending', () => {
    let list: ListOrPending = ['a'];
    for (let i = 0; i < MAX_PENDING - 1; i++) list = PendingList.patched(list, [], [`b${String(i).padStart(3, '0')}`]);
    expect(list).toBeInstanceOf(PendingList);
    list = PendingList.patched(list, ['a'], []);
    expect(Array.isArray(list)).toBe(true);
    expect(list.length).toBe(MAX_PENDING - 1);
  });

  it('throws when a broken patch is built', () => {
    expect(() => read(PendingList.patched(['a', 'c'], ['b'], []))).toThrow(/not in the list/);
    expect(() => read(PendingList.patched(['a', 'c'], [], ['c']))).toThrow(/already in the list/);
    expect(() => read(PendingList.patched(PendingList.patched(['a', 'c'], ['a'], []), ['a'], []))).toThrow(/not in the list/);
    expect(() => read(PendingList.patched(PendingList.patched(['a', 'c'], [], ['b']), [], ['b']))).toThrow(/already in the list/);
  });

  it('gives a state whose sets read as plain arrays in SET_KINDS order', () => {
    const lists = { ...emptySets(), 'managed-tcp': ['31000'], 'allow-ip4': PendingList.patched(['10.0.0.1,tcp:31000'], [], ['10.0.0.2,tcp:31000']) };
    const sets = stateSets(lists);
    expect(Object.keys(sets)).toEqual([...SET_KINDS]);
    expect(sets['allow-ip4']).toEqual(['10.0.0.1,tcp:31000', '10.0.0.2,tcp:31000']);
    expect(sets['allow-ip4']).toBe(sets['allow-ip4']);
    expect(JSON.stringify(sets)).toBe(JSON.stringify({ ...emptySets(), 'managed-tcp': ['31000'], 'allow-ip4': ['10.0.0.1,tcp:31000', '10.0.0.2,tcp:31000'] }));
  });

  it('replacedSets keeps a pending list pending, shared with the sets it came from', () => {
    const pending = PendingList.patched(['10.0.0.1,tcp:31000'], [], ['10.0.0.2,tcp:31000']);
    const sets = stateSets({ ...emptySets(), 'managed-tcp': ['31000'], 'allow-ip4': pending, 'egress-task': ['/a|t1'] });
    const view = replacedSets(sets, { 'egress-task': [] });
    expect(Object.keys(view)).toEqual([...SET_KINDS]);
    expect(view['egress-task']).toEqual([]);
    expect(sets['egress-task']).toEqual(['/a|t1']);
    // Built once, on the first read of either: the same array.
    expect(view['allow-ip4']).toEqual(['10.0.0.1,tcp:31000', '10.0.0.2,tcp:31000']);
    expect(view['allow-ip4']).toBe(sets['allow-ip4']);
    // Not built by replacedSets: a broken patch (a compiler bug) throws only when the list is read.
    const broken = stateSets({ ...emptySets(), 'allow-ip4': PendingList.patched(['a', 'c'], ['b'], []) });
    const brokenView = replacedSets(broken, { 'egress-task': [] });
    expect(() => brokenView['allow-ip4']).toThrow(/not in the list/);
    // Plain sets (nothing pending) give plain sets.
    const plain = stateSets({ ...emptySets(), 'allow-ip4': ['10.0.0.1,tcp:31000'] });
    expect(replacedSets(plain, { 'allow-ip4': [] })).toEqual(emptySets());
  });
});

describe('IncrementalCompiler with pending lists', () => {
  it('equals compile() after many moves in which nothing read its states', () => {
    const scenario = largeScenario({ hosts: 30, apps: 25, tasks: 160, groups: 10, rules: 40 });
    const inc = new IncrementalCompiler(scenario.policy, scenario.cluster);
    const rand = seededRandom(31);
    let c: ClusterState = scenario.cluster;
    let patched = 0;
    for (let round = 0; round < 3; round++) {
      // More moves than MAX_PENDING between two reads, so chains grow and get built eagerly.
      for (let i = 0; i < 4 * MAX_PENDING; i++) {
        const k = Math.floor(rand() * c.tasks.length);
        const old = c.tasks[k]!;
        const task: Task = { ...old, id: `${old.id}~${round}-${i}`, hostId: c.hosts[Math.floor(rand() * c.hosts.length)]!.id };
        const tasks = c.tasks.slice();
        tasks[k] = task;
        c = { hosts: c.hosts, apps: c.apps, tasks };
        patched += inc.applyClusterChange(c).recomputed;
      }
      const full = compile(scenario.policy, c);
      for (const [hostId, state] of full.states) {
        const got = inc.state(hostId)!;
        expect(got.version, `host ${hostId}`).toBe(state.version);
        expect(got.sets).toEqual(state.sets);
      }
    }
    expect(patched).toBeGreaterThan(12 * MAX_PENDING);
  }, 120_000);
});
