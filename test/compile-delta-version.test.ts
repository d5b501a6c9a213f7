/**
 * The version of a state made by applying a delta in O(change) (src/compile/delta-version.ts, as
 * applyDelta uses it) against the from-scratch definition (stateVersion), on random states and
 * chains of random deltas: exact edits (the incremental way), edits outside the contract and
 * members that are not address text (the from-scratch way), egress lists included.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { indexedStateVersion, patchedStateVersion } from '../src/compile/delta-version.js';
import { emptySets, SET_KINDS, type DesiredState, type SetContents, type SetKind } from '../src/compile/desired-state.js';
import { applyDelta, diffStates, type StateDelta } from '../src/compile/state-delta.js';
import { stateVersion } from '../src/compile/state-version.js';

const ALLOW: readonly SetKind[] = ['allow-ip4', 'allow-net4', 'allow-ip6', 'allow-net6'];

/** A member of `kind` from small integers (few suffixes, so groups have several sources). */
function member(kind: SetKind, a: number, b: number): string {
  const suffix = `,${b % 2 === 0 ? 'tcp' : 'udp'}:${31000 + (b % 5)}`;
  if (kind === 'allow-ip4') return `10.0.${a >> 8}.${a & 255}${suffix}`;
  if (kind === 'allow-net4') return `10.${a & 255}.0.0/16${suffix}`;
  if (kind === 'allow-ip6') return `fd00::${a.toString(16)}${suffix}`;
  if (kind === 'allow-net6') return `fd00:${a.toString(16)}::/64${suffix}`;
  if (kind.startsWith('egress')) return `/app-${b % 7}|10.1.0.${a & 255},tcp:${32000 + (b % 3)}`;
  return String(30000 + a);
}

const pairs = fc.array(fc.tuple(fc.nat(600), fc.nat(20)), { maxLength: 40 });
const setsArb = fc.record(Object.fromEntries(SET_KINDS.map((k) => [k, pairs])) as Record<SetKind, typeof pairs>).map((raw) => {
  const sets = emptySets() as Record<SetKind, readonly string[]>;
  for (const kind of SET_KINDS) sets[kind] = [...new Set(raw[kind].map(([a, b]) => member(kind, a, b)))].sort();
  return sets as SetContents;
});

function state(sets: SetContents, mode: 'enforce' | 'audit' = 'enforce'): DesiredState {
  return { hostId: 'h', mode, sets, version: stateVersion(mode, sets) };
}

describe('delta versions', () => {
  it('indexedStateVersion is stateVersion', () => {
    fc.assert(fc.property(setsArb, fc.boolean(), (sets, audit) => {
      const mode = audit ? 'audit' : 'enforce';
      expect(indexedStateVersion(mode, sets)).toBe(stateVersion(mode, sets));
      expect(indexedStateVersion(mode, sets)).toBe(stateVersion(mode, sets)); // the kept index again
    }), { numRuns: 100 });
  });

  it('a chain of exact deltas gets the from-scratch version at every step, from the kept index', () => {
    fc.assert(fc.property(setsArb, fc.array(setsArb, { minLength: 1, maxLength: 5 }), (first, nexts) => {
      let base = state(first);
      indexedStateVersion(base.mode, base.sets);
      for (const sets of nexts) {
        const target = state(sets);
        const delta = diffStates(base, target) as StateDelta;
        const applied = applyDelta(base, delta);
        expect(applied.version).toBe(target.version);
        expect(patchedStateVersion(base.sets, base.mode, applied.sets, delta.removes, delta.adds)).toBe(target.version);
        expect(applied.sets).toEqual(target.sets);
        base = applied;
      }
    }), { numRuns: 100 });
  });

  it('edits outside the contract, and members that are not address text, are versioned from scratch', () => {
    const sets = { ...emptySets(), 'allow-ip4': ['10.0.0.1,tcp:80', '10.0.0.2,tcp:80'] } as SetContents;
    const base = state(sets);
    indexedStateVersion(base.mode, base.sets);
    // A removal of a member the base does not have, and an add of one it has: the set-and-sort way.
    const loose = { ...emptySets(), 'allow-ip4': ['10.0.0.3,tcp:80', '10.0.0.2,tcp:80'] } as SetContents;
    const removes = { ...emptySets(), 'allow-ip4': ['10.0.0.9,tcp:80'] } as Record<SetKind, readonly string[]>;
    const adds = { ...emptySets(), 'allow-ip4': ['10.0.0.3,tcp:80', '10.0.0.1,tcp:80'] } as Record<SetKind, readonly string[]>;
    const target = state({ ...sets, 'allow-ip4': ['10.0.0.1,tcp:80', '10.0.0.2,tcp:80', '10.0.0.3,tcp:80'] });
    expect(applyDelta(base, { hostId: 'h', baseVersion: base.version, version: target.version, mode: 'enforce', removes, adds }).version).toBe(target.version);
    // A source that is not address text (it sorts below ','): its group is not patched, the version is the definition's.
    const odd = { ...emptySets(), 'allow-ip4': ['10.0.0.1,tcp:80', '10.0.0.1 ,tcp:80'].sort() } as SetContents;
    const oddDelta = diffStates(base, state(odd)) as StateDelta;
    expect(patchedStateVersion(base.sets, 'enforce', odd, oddDelta.removes, oddDelta.adds)).toBe(stateVersion('enforce', odd));
    expect(stateVersion('enforce', loose)).not.toBe(target.version); // the case above is not vacuous
  });

  it('a delta with a wrong version is still refused', () => {
    const base = state({ ...emptySets(), 'allow-ip4': ['10.0.0.1,tcp:80'] } as SetContents);
    indexedStateVersion(base.mode, base.sets);
    const target = state({ ...emptySets(), 'allow-ip4': ['10.0.0.1,tcp:80', '10.0.0.2,tcp:80'] } as SetContents);
    const delta = diffStates(base, target) as StateDelta;
    expect(() => applyDelta(base, { ...delta, version: '0123456789abcdef' })).toThrow(/produced version '[0-9a-f]{16}', expected '0123456789abcdef'/);
    expect(ALLOW.length).toBe(4);
  });
});
