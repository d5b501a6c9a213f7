/**
 * Deltas between two DesiredStates of one host: what goes on the wire after the first snapshot,
 * and what `portcullis diff` prints.
 *
 * Contract: `applyDelta(from, diffStates(from, to))` equals `to` (same sets, same version).
 * `applyDelta` refuses a base whose version is not the delta's `baseVersion` and checks that the
 * result hashes to the delta's `version`, so a lost or reordered delta is detected, never applied
 * silently. Adds and removes are sorted and disjoint; a diff from `undefined` adds everything.
 *
 * Input: DesiredStates as the compiler makes them (every list sorted and duplicate-free, see
 * desired-state.ts). A list that breaks that yields a delta that `applyDelta` refuses (its result
 * does not hash to the delta's version), never a silent wrong state.
 *
 * Cost: a kind whose list object is shared costs nothing; other lists are diffed by one merge
 * that compares by identity first (a list the incremental compiler patched shares its untouched
 * member strings with the one it was patched from). `applyDelta` (the agent, on every Delta)
 * patches each edited list of a sorted base in one pass (member-lists.ts) and shares the others,
 * instead of rebuilding and re-sorting every list.
 */
import type { Mode } from '../policy/policy-model.js';
import { indexedStateVersion, patchedStateVersion } from './delta-version.js';
import { EGRESS_KINDS, SET_KINDS, type DesiredState, type SetKind } from './desired-state.js';
import { patchMemberList } from './member-lists.js';
import { seedPatchedEgressSum } from './state-version.js';

export interface StateDelta {
  readonly hostId: string;
  /** Version of the state the delta applies to; '' when there was none. */
  readonly baseVersion: string;
  readonly version: string;
  readonly mode: Mode;
  readonly adds: Readonly<Record<SetKind, readonly string[]>>;
  readonly removes: Readonly<Record<SetKind, readonly string[]>>;
}

export class DeltaError extends Error {}

/**
 * adds/removes of two duplicate-free sorted lists: a merge that compares by identity first, so the
 * long runs a patch leaves untouched cost a pointer comparison per member.
 */
export function diffMemberLists(before: readonly string[], after: readonly string[]): { adds: string[]; removes: string[] } {
  const adds: string[] = [];
  const removes: string[] = [];
  if (before === after) return { adds, removes };
  let i = 0;
  let j = 0;
  while (i < before.length && j < after.length) {
    const x = before[i]!;
    const y = after[j]!;
    if (x === y) {
      i++;
      j++;
    } else if (x < y) {
      removes.push(x);
      i++;
    } else {
      adds.push(y);
      j++;
    }
  }
  while (i < before.length) removes.push(before[i++]!);
  while (j < after.length) adds.push(after[j++]!);
  return { adds, removes };
}

export function diffStates(from: DesiredState | undefined, to: DesiredState): StateDelta {
  const adds = {} as Record<SetKind, string[]>;
  const removes = {} as Record<SetKind, string[]>;
  for (const kind of SET_KINDS) {
    const d = diffMemberLists(from?.sets[kind] ?? [], to.sets[kind]);
    adds[kind] = d.adds;
    removes[kind] = d.removes;
  }
  return { hostId: to.hostId, baseVersion: from?.version ?? '', version: to.version, mode: to.mode, adds, removes };
}

function isStrictlySorted(list: readonly string[]): boolean {
  for (let i = 1; i < list.length; i++) if (list[i - 1]! >= list[i]!) return false;
  return true;
}

/**
 * `list` with `removes` taken out, then `adds` put in, sorted and duplicate-free, and whether the
 * edits were exact (each removed member in the list, each added one not). A kind without edits
 * keeps its list object. The usual case (a sorted base, exact edits) is one patch
 * (member-lists.ts, O(list + edits)); anything else (an unsorted base, a member both removed and
 * added, an edit that is a no-op) takes the set-and-sort way.
 */
function patchedList(list: readonly string[], removes: readonly string[], adds: readonly string[]): { readonly list: readonly string[]; readonly exact: boolean } {
  if (removes.length === 0 && adds.length === 0) return { list, exact: true };
  if (isStrictlySorted(list)) {
    try {
      return { list: patchMemberList(list, removes, adds), exact: true };
    } catch {
      // outside patchMemberList's contract: below
    }
  }
  const members = new Set(list);
  for (const m of removes) members.delete(m);
  for (const m of adds) members.add(m);
  return { list: [...members].sort(), exact: false };
}

export function applyDelta(base: DesiredState, delta: StateDelta): DesiredState {
  if (base.version !== delta.baseVersion) {
    throw new DeltaError(
      `delta for host ${delta.hostId} applies to version '${delta.baseVersion}', but the base is version '${base.version}'`,
    );
  }
  if (base.hostId !== delta.hostId) {
    throw new DeltaError(`delta for host ${delta.hostId} cannot apply to the state of host ${base.hostId}`);
  }
  const sets = {} as Record<SetKind, readonly string[]>;
  let exact = true;
  for (const kind of SET_KINDS) {
    const p = patchedList(base.sets[kind], delta.removes[kind], delta.adds[kind]);
    sets[kind] = p.list;
    exact &&= p.exact;
  }
  // The version from the members, in O(change) for exact edits (delta-version.ts).
  if (exact) for (const kind of EGRESS_KINDS) seedPatchedEgressSum(kind, base.sets[kind], sets[kind], delta.removes[kind], delta.adds[kind]);
  const version = exact ? patchedStateVersion(base.sets, delta.mode, sets, delta.removes, delta.adds) : indexedStateVersion(delta.mode, sets);
  if (version !== delta.version) {
    throw new DeltaError(
      `delta for host ${delta.hostId} produced version '${version}', expected '${delta.version}'`,
    );
  }
  return { hostId: base.hostId, mode: delta.mode, sets, version };
}
