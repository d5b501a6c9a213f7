/**
 * The version of a state an agent makes by applying a delta (state-delta.ts applyDelta), from its
 * members as the definition says (state-version.ts), in O(change) rather than O(members).
 *
 * From scratch, the allow sum groups every allow member by suffix and hashes every group, and the
 * egress sum hashes every egress member: about 26 ms for a 100,000-member state, on every delta.
 * But a delta changes a few groups: the allow sum is a sum of one term per suffix group, so the
 * groups (each group's sources per allow kind, in list order) and their terms are kept per state
 * (AllowIndex, weak on the allow lists), and the version of the next state re-hashes only the
 * groups the delta's allow edits touch (their sources patched by binary search, member-lists.ts);
 * the egress sum follows from the base list's cached sum and the edits (state-version.ts
 * seedPatchedEgressSum). The short parts of the header (mode, managed and failsafe ports, the
 * audit lists) are hashed as always. Only exact edits (every removed member in the base, every
 * added one not: what a correct controller sends) take this way; anything else is versioned from
 * scratch, so a delta outside the contract still gets the definition's version.
 * test/compile-delta-version.test.ts checks both against stateVersion on random deltas.
 */
import type { Mode } from '../policy/policy-model.js';
import { ALLOW_KINDS, type SetContents, type SetKind } from './desired-state.js';
import { patchMemberList } from './member-lists.js';
import { allowGroups, groupTermOf, versionWithAllowSum } from './state-version.js';
import { addInto, LIMBS, toHex } from './version-hash.js';

/** A state's allow groups and their terms (see the header), for the four allow lists it was made of. */
interface AllowIndex {
  readonly lists: readonly (readonly string[])[];
  readonly groups: ReadonlyMap<string, readonly (readonly string[])[]>;
  readonly terms: ReadonlyMap<string, Uint32Array>;
  readonly sum: Uint32Array;
}

/** The characters of an address or CIDR (IPv4, IPv6, a prefix length): all sort above ','. */
const ADDRESS_TEXT = /^[0-9A-Fa-f.:/]+$/;

/** Keyed by a state's allow-ip4 list; valid when its four allow lists are the ones it was made of. */
const indexes = new WeakMap<readonly string[], AllowIndex>();

function indexOf(sets: SetContents): AllowIndex | undefined {
  const index = indexes.get(sets['allow-ip4']);
  return index && ALLOW_KINDS.every((kind, k) => sets[kind] === index.lists[k]) ? index : undefined;
}

function keep(sets: SetContents, groups: ReadonlyMap<string, readonly (readonly string[])[]>, terms: ReadonlyMap<string, Uint32Array>, sum: Uint32Array): string {
  indexes.set(sets['allow-ip4'], { lists: ALLOW_KINDS.map((kind) => sets[kind]), groups, terms, sum });
  return toHex(sum);
}

/** stateVersion(mode, sets), keeping the allow index a later delta's version is updated from. */
export function indexedStateVersion(mode: Mode, sets: SetContents): string {
  const known = indexOf(sets);
  if (known) return versionWithAllowSum(mode, sets, toHex(known.sum));
  const groups = allowGroups(sets);
  const terms = new Map<string, Uint32Array>();
  const sum = new Uint32Array(LIMBS);
  for (const [suffix, sources] of groups) {
    const t = groupTermOf(suffix, sources);
    terms.set(suffix, t);
    addInto(sum, t, 1);
  }
  return versionWithAllowSum(mode, sets, keep(sets, groups, terms, sum));
}

/**
 * The version of `next`: `base` with exactly `removes` taken out of and `adds` put in each list
 * (see the header). From `base`'s allow index when there is one (else from scratch); `next`
 * keeps its own.
 */
export function patchedStateVersion(base: SetContents, mode: Mode, next: SetContents, removes: Readonly<Record<SetKind, readonly string[]>>, adds: Readonly<Record<SetKind, readonly string[]>>): string {
  const index = indexOf(base);
  if (!index) return indexedStateVersion(mode, next);
  // The touched groups: per suffix, the sources removed and added per allow kind.
  const edits = new Map<string, { readonly removes: string[][]; readonly adds: string[][] }>();
  let plain = true;
  const into = (m: string, k: number, side: 'removes' | 'adds'): void => {
    const at = m.lastIndexOf(',');
    const suffix = at < 0 ? '' : m.slice(at);
    // A group's sources are in member order, which is their string order only for address text ("," sorts below it).
    if (at < 0 || !ADDRESS_TEXT.test(m.slice(0, at))) plain = false;
    let e = edits.get(suffix);
    if (!e) edits.set(suffix, (e = { removes: ALLOW_KINDS.map(() => []), adds: ALLOW_KINDS.map(() => []) }));
    e[side][k]!.push(at < 0 ? m : m.slice(0, at));
  };
  ALLOW_KINDS.forEach((kind, k) => {
    for (const m of removes[kind]) into(m, k, 'removes');
    for (const m of adds[kind]) into(m, k, 'adds');
  });
  if (!plain) return indexedStateVersion(mode, next);
  if (edits.size === 0) return versionWithAllowSum(mode, next, keep(next, index.groups, index.terms, index.sum));
  try {
    return versionWithAllowSum(mode, next, patchedSum(next, index, edits));
  } catch {
    return indexedStateVersion(mode, next); // edits outside patchMemberList's contract
  }
}

/** The allow sum of `next` from `index` (its base's) and the touched groups' edits; `next` keeps its index. */
function patchedSum(next: SetContents, index: AllowIndex, edits: ReadonlyMap<string, { readonly removes: string[][]; readonly adds: string[][] }>): string {
  const groups = new Map(index.groups);
  const terms = new Map(index.terms);
  const sum = index.sum.slice();
  for (const [suffix, e] of edits) {
    const before = groups.get(suffix);
    const sources = ALLOW_KINDS.map((_, k) => {
      const list = before?.[k] ?? [];
      return e.removes[k]!.length + e.adds[k]!.length === 0 ? list : patchMemberList(list, e.removes[k]!, e.adds[k]!);
    });
    const old = terms.get(suffix);
    if (old) addInto(sum, old, -1);
    if (sources.every((list) => list.length === 0)) {
      groups.delete(suffix);
      terms.delete(suffix);
      continue;
    }
    const t = groupTermOf(suffix, sources);
    groups.set(suffix, sources);
    terms.set(suffix, t);
    addInto(sum, t, 1);
  }
  return keep(next, groups, terms, sum);
}
