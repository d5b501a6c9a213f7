import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compile } from '../src/compile/compile.js';
import { SET_KINDS, type DesiredState } from '../src/compile/desired-state.js';
import { applyDelta, diffStates, type StateDelta } from '../src/compile/state-delta.js';
import { stateVersion } from '../src/compile/state-version.js';
import { scenarioArb } from './support/random-cluster.js';

/** True when the delta changes no member (the mode may change). */
function isEmptyDelta(delta: StateDelta): boolean {
  return SET_KINDS.every((k) => delta.adds[k].length === 0 && delta.removes[k].length === 0);
}

function state(hostId: string, members: Partial<Record<(typeof SET_KINDS)[number], string[]>>, mode: 'enforce' | 'audit' = 'enforce'): DesiredState {
  const sets = Object.fromEntries(SET_KINDS.map((k) => [k, [...(members[k] ?? [])].sort()])) as unknown as DesiredState['sets'];
  return { hostId, mode, sets, version: stateVersion(mode, sets) };
}

describe('state deltas', () => {
  it('diffs and applies a simple change', () => {
    const a = state('h1', { 'managed-tcp': ['31000'], 'allow-ip4': ['10.0.0.1,tcp:31000'] });
    const b = state('h1', { 'managed-tcp': ['31000', '31001'], 'allow-ip4': ['10.0.0.2,tcp:31000'] });
    const d = diffStates(a, b);
    expect(d.baseVersion).toBe(a.version);
    expect(d.version).toBe(b.version);
    expect(d.adds['managed-tcp']).toEqual(['31001']);
    expect(d.adds['allow-ip4']).toEqual(['10.0.0.2,tcp:31000']);
    expect(d.removes['allow-ip4']).toEqual(['10.0.0.1,tcp:31000']);
    expect(d.removes['managed-tcp']).toEqual([]);
    expect(applyDelta(a, d)).toEqual(b);
    expect(isEmptyDelta(diffStates(a, a))).toBe(true);
  });

  it('a diff from nothing adds everything', () => {
    const b = state('h1', { 'failsafe-tcp': ['22'], 'allow-net6': ['fd00::/8,udp:53'] });
    const d = diffStates(undefined, b);
    expect(d.baseVersion).toBe('');
    expect(d.adds['failsafe-tcp']).toEqual(['22']);
    expect(applyDelta(state('h1', {}), { ...d, baseVersion: state('h1', {}).version })).toEqual(b);
  });

  it('refuses a wrong base, a wrong host, and a tampered delta', () => {
    const a = state('h1', { 'managed-tcp': ['1'] });
    const b = state('h1', { 'managed-tcp': ['2'] });
    const c = state('h1', { 'managed-tcp': ['3'] });
    const d = diffStates(a, b);
    expect(() => applyDelta(c, d)).toThrow(/applies to version/);
    expect(() => applyDelta({ ...a, hostId: 'h2' }, d)).toThrow(/cannot apply/);
    expect(() => applyDelta(a, { ...d, adds: { ...d.adds, 'managed-udp': ['9'] } })).toThrow(/produced version/);
  });

  it('mode changes travel in the delta', () => {
    const a = state('h1', { 'managed-tcp': ['1'] });
    const b = state('h1', { 'managed-tcp': ['1'] }, 'audit');
    const d = diffStates(a, b);
    expect(isEmptyDelta(d)).toBe(true);
    expect(applyDelta(a, d)).toEqual(b);
  });

  it('round-trips between compiled states of random scenarios (forwards and backwards)', () => {
    fc.assert(
      fc.property(scenarioArb, scenarioArb, (s1, s2) => {
        const r1 = compile(s1.policy, s1.cluster).states;
        const r2 = compile(s2.policy, { ...s2.cluster, hosts: s1.cluster.hosts }).states;
        for (const [hostId, from] of r1) {
          const to = r2.get(hostId)!;
          expect(applyDelta(from, diffStates(from, to))).toEqual(to);
          expect(applyDelta(to, diffStates(to, from))).toEqual(from);
          const d = diffStates(from, to);
          for (const k of SET_KINDS) {
            expect([...d.adds[k]].sort()).toEqual(d.adds[k]);
            expect(d.adds[k].filter((m) => d.removes[k].includes(m))).toEqual([]);
          }
        }
      }),
      { numRuns: 100 },
    );
  });
});

describe('applyDelta patches, it does not rebuild', () => {
  it('shares the lists a delta does not touch, and gives the same result as rebuilding for edits outside the patch contract', () => {
    const a = state('h1', { 'managed-tcp': ['31000', '31001'], 'allow-ip4': ['10.0.0.1,tcp:31000', '10.0.0.2,tcp:31000'] });
    const b = state('h1', { 'managed-tcp': ['31000', '31001'], 'allow-ip4': ['10.0.0.1,tcp:31000', '10.0.0.3,tcp:31000'] });
    const d = diffStates(a, b);
    const applied = applyDelta(a, d);
    expect(applied).toEqual(b);
    expect(applied.sets['managed-tcp']).toBe(a.sets['managed-tcp']);
    // A member both removed and added, and a removal of a member the base lacks: as a set would.
    const odd: StateDelta = {
      ...d,
      removes: { ...d.removes, 'allow-ip4': ['10.0.0.2,tcp:31000', '10.0.0.3,tcp:31000', '10.0.0.9,tcp:31000'] },
      adds: { ...d.adds, 'allow-ip4': ['10.0.0.3,tcp:31000'] },
    };
    expect(applyDelta(a, odd)).toEqual(b);
  });
});
