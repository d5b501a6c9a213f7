/**
 * Patching a host's state instead of re-emitting it: the incremental compiler's member edits.
 *
 * A host's allow members are "<source>,<proto>:<port>" texts, one claim per (proto, port), so a
 * claim whose allowed set changed from A to B changes exactly the members of A \ B (removed) and
 * B \ A (added) with its suffix (emit-members.ts sourceTextDiff formats only the intervals that
 * differ). A Patch collects those edits per allow kind for one host, and the claims whose set
 * changed; `HostPatches.patchState` applies the edits to the host's sorted lists by binary search
 * (member-lists.ts), updates the host's version from the changed claims alone (state-version.ts
 * HostVersions: O(changed claims), no re-hash of the lists) and records the StateDelta from the
 * state it patched from (what the Sync service sends, without comparing lists). A patched state equals what a full emission would give because a member
 * belongs to exactly one claim and a non-conflict claim's set is its resolution.
 *
 * With per-app egress on, a task move changes the shared egress-managed4/6 pair on every host;
 * for a host whose only change that is, `managedOnly` makes the state from its lists with the new
 * pair, its version from cached sums (state-version.ts), and gives it the one delta record pair
 * the update built for that change (SharedManaged): per host a few objects and one header hash.
 */
import type { AddressSet } from './address-set.js';
import { memberSuffix, pairMember } from '../net/member.js';
import type { Protocol } from '../policy/policy-model.js';
import type { HostMode } from './group-modes.js';
import { ALLOW_KINDS, AUDIT_KINDS, EGRESS_KINDS, SET_KINDS, type DesiredState, type EgressSets, type SetKind } from './desired-state.js';
import { sourceTextDiff, type SourceTexts } from './emit-members.js';
import { managedPorts, type HostClaim, type PortMatch } from './host-claims.js';
import type { ListEdits } from './egress.js';
import { builtLists, PendingList, stateSets, type ListOrPending } from './pending-list.js';
import { diffMemberLists, type StateDelta } from './state-delta.js';
import type { ClaimChange, HostVersions } from './state-version.js';

/** One claim of a host as last emitted: its member suffix, its owners' PortMatch keys, its set. */
export interface ClaimUse {
  readonly suffix: string;
  readonly protocol: Protocol;
  readonly port: number;
  /** Every owner's app is in audit (group-modes.ts). */
  readonly audit: boolean;
  readonly keys: readonly string[];
  /** The owners' PortMatches (whose keys are `keys`), for egress. */
  readonly matches: readonly PortMatch[];
  set: AddressSet;
}

/** Members to remove and add per allow kind, for one host. */
export interface Patch {
  readonly removes: string[][];
  readonly adds: string[][];
  /** New managed-tcp / managed-udp lists (dirty hosts only). */
  managed?: { readonly tcp: string[]; readonly udp: string[] };
  /** The claims whose set changed, in order (what the version is updated from, see state-version.ts). */
  readonly claims: ClaimChange<AddressSet>[];
}

/** A host's new egress lists, and how to find the edits between two lists (egress.ts). */
export interface EgressView {
  readonly sets: EgressSets;
  editsFrom(before: readonly string[], after: readonly string[]): ListEdits | undefined;
}

const NONE: readonly string[] = Object.freeze([]);

/** The members a delta adds to and removes from one list. */
interface Edits {
  readonly adds: readonly string[];
  readonly removes: readonly string[];
}

const UNCHANGED: Edits = Object.freeze({ adds: NONE, removes: NONE });

/** A patch's edits of one kind, sorted (a copy: the patch's arrays are also a pending list's). */
function sortedEdits(edits: readonly string[]): readonly string[] {
  return edits.length === 0 ? NONE : edits.slice().sort();
}

export function newPatch(): Patch {
  return { removes: ALLOW_KINDS.map(() => []), adds: ALLOW_KINDS.map(() => []), claims: [] };
}

/** The patch of a host whose only change is outside its claims (egress lists, mode): shared, frozen. */
export const NO_EDITS: Patch = Object.freeze({
  removes: Object.freeze(ALLOW_KINDS.map(() => Object.freeze([]) as unknown as string[])) as string[][],
  adds: Object.freeze(ALLOW_KINDS.map(() => Object.freeze([]) as unknown as string[])) as string[][],
  claims: Object.freeze([]) as unknown as ClaimChange<AddressSet>[],
});

/** Adds `texts` (per allow kind) with `suffix` to the patch's removes or adds. */
function patchTexts(into: string[][], texts: readonly (readonly string[])[], suffix: string): void {
  for (let k = 0; k < ALLOW_KINDS.length; k++) for (const t of texts[k]!) into[k]!.push(pairMember(t, suffix));
}

/** The member edits of a claim whose set went from `from` to `to` (`diff`: their source-text difference). */
export function patchClaim(patch: Patch, suffix: string, from: AddressSet, to: AddressSet, diff: ReturnType<typeof sourceTextDiff>): void {
  patchTexts(patch.removes, diff.removed, suffix);
  patchTexts(patch.adds, diff.added, suffix);
  patch.claims.push({ suffix, from, to, diff });
}

/** A claim's ClaimUse (its suffix and the keys of its owners' resolutions). */
export function claimUse(c: HostClaim): ClaimUse {
  return { suffix: memberSuffix(c.protocol, c.port), protocol: c.protocol, port: c.port, audit: c.audit, keys: c.matches.map((m) => m.key), matches: c.matches, set: c.set };
}

/** The patch from a host's old claims to its new ones (matched by member suffix). */
export function claimsPatch(sourceTexts: SourceTexts, old: readonly ClaimUse[], uses: readonly ClaimUse[], claims: readonly HostClaim[]): Patch {
  const patch = newPatch();
  patch.managed = { tcp: managedPorts(claims, 'tcp'), udp: managedPorts(claims, 'udp') };
  const before = new Map(old.map((u) => [u.suffix, u.set]));
  for (const u of uses) {
    const was = before.get(u.suffix);
    before.delete(u.suffix);
    if (was === undefined) {
      patchTexts(patch.adds, sourceTexts.of(u.set), u.suffix);
      patch.claims.push({ suffix: u.suffix, to: u.set });
    } else if (was !== u.set && !was.equals(u.set)) {
      patchClaim(patch, u.suffix, was, u.set, sourceTextDiff(was, u.set));
    }
  }
  for (const [suffix, was] of before) {
    patchTexts(patch.removes, sourceTexts.of(was), suffix);
    patch.claims.push({ suffix, from: was });
  }
  return patch;
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/** Whether `modes` (the host's mode and audit lists now; undefined = no group modes) leave the host's mode and audit lists as they are. */
function sameMode(old: DesiredState, modes: HostMode | undefined): boolean {
  return modes === undefined || (modes.mode === old.mode && AUDIT_KINDS.every((kind) => sameList(old.sets[kind], modes.sets[kind])));
}

/**
 * An egress-managed4/6 change from (b4, b6) to (a4, a6) as a delta's adds and removes: the same
 * two frozen records for every host whose only change it is (built once per update, not per host).
 */
interface SharedManaged {
  readonly b4: readonly string[];
  readonly b6: readonly string[];
  readonly a4: readonly string[];
  readonly a6: readonly string[];
  readonly adds: Readonly<Record<SetKind, readonly string[]>>;
  readonly removes: Readonly<Record<SetKind, readonly string[]>>;
}

function sharedManaged(b4: readonly string[], b6: readonly string[], egress: EgressView): SharedManaged {
  const [a4, a6] = [egress.sets['egress-managed4'], egress.sets['egress-managed6']];
  const adds = {} as Record<SetKind, readonly string[]>;
  const removes = {} as Record<SetKind, readonly string[]>;
  for (const kind of SET_KINDS) [adds[kind], removes[kind]] = [NONE, NONE];
  for (const [kind, before, after] of [['egress-managed4', b4, a4], ['egress-managed6', b6, a6]] as const) {
    const edits = before === after ? UNCHANGED : (egress.editsFrom(before, after) ?? diffMemberLists(before, after));
    [adds[kind], removes[kind]] = [edits.adds, edits.removes];
  }
  return { b4, b6, a4, a6, adds: Object.freeze(adds), removes: Object.freeze(removes) };
}

/** The patched hosts' deltas (an entry lives while the state it describes does) and every host's version sum. */
export class HostPatches {
  /** Per patched host: the delta from the state it was patched from (see IncrementalCompiler.deltaFrom). */
  private deltaOf = new Map<string, StateDelta>();
  /** Per patched host: the state and its lists, some maybe pending (pending-list.ts). */
  private listsOf = new Map<string, { readonly state: DesiredState; readonly lists: Readonly<Record<SetKind, ListOrPending>> }>();

  /** The delta records of the last egress-managed change seen (see managedOnly). */
  private shared: SharedManaged | undefined;

  /** `versions`: the sums the compiler's full emissions (hostStates) start and patches update. */
  constructor(readonly versions: HostVersions<AddressSet>) {}

  /** The host's state was replaced other than by a patch (its new emission set its version sum). */
  forget(hostId: string): void {
    this.deltaOf.delete(hostId);
    this.listsOf.delete(hostId);
  }

  /** The host left the cluster. */
  remove(hostId: string): void {
    this.forget(hostId);
    this.versions.forget(hostId);
  }

  /** The delta of the host's last patch, if its state was patched. */
  delta(hostId: string): StateDelta | undefined {
    return this.deltaOf.get(hostId);
  }

  /**
   * A patched host's new state (lists of untouched kinds are shared with the old state, patched
   * allow lists are pending: built when read, pending-list.ts); its version is updated from the
   * claims the patch changed (O(change), state-version.ts). `modes`: the host's mode and audit
   * lists now (group-modes.ts; undefined = no group modes, the mode stays).
   */
  patchState(hostId: string, old: DesiredState, patch: Patch, egress?: EgressView, modes?: HostMode): DesiredState {
    if (patch === NO_EDITS && egress && sameMode(old, modes)) {
      const state = this.managedOnly(hostId, old, egress);
      if (state) return state;
    }
    const known = this.listsOf.get(hostId);
    // The old state's lists without reading (building) its pending ones: a patched state's lists
    // are kept (listsOf), an emitted state's sets are plain arrays.
    const sets: Record<SetKind, ListOrPending> = { ...(known?.state === old ? known.lists : old.sets) };
    let touched = false;
    if (patch.managed) {
      if (!sameList(old.sets['managed-tcp'], patch.managed.tcp)) sets['managed-tcp'] = patch.managed.tcp;
      if (!sameList(old.sets['managed-udp'], patch.managed.udp)) sets['managed-udp'] = patch.managed.udp;
      touched = sets['managed-tcp'] !== old.sets['managed-tcp'] || sets['managed-udp'] !== old.sets['managed-udp'];
    }
    for (let k = 0; k < ALLOW_KINDS.length; k++) {
      const removes = patch.removes[k]!;
      const adds = patch.adds[k]!;
      if (removes.length === 0 && adds.length === 0) continue;
      const kind = ALLOW_KINDS[k]!;
      sets[kind] = PendingList.patched(sets[kind], removes, adds);
      touched = true;
    }
    if (egress) {
      for (const kind of EGRESS_KINDS) {
        if (sets[kind] === egress.sets[kind]) continue;
        sets[kind] = egress.sets[kind];
        touched = true;
      }
    }
    if (modes) {
      for (const kind of AUDIT_KINDS) {
        if (sameList(sets[kind] as readonly string[], modes.sets[kind])) continue;
        sets[kind] = modes.sets[kind];
        touched = true;
      }
    }
    const mode = modes?.mode ?? old.mode;
    // Claims whose members did not change (equal texts) change no term either.
    if (!touched && mode === old.mode) return old;
    const counts = ALLOW_KINDS.map((kind) => sets[kind].length);
    const contents = stateSets(sets);
    const version = patch.claims.length === 0 ? this.versions.reversioned(hostId, mode, contents, counts) : this.versions.patched(hostId, mode, contents, patch.claims, counts);
    const state = { hostId: old.hostId, mode, sets: contents, version };
    this.deltaOf.set(hostId, this.patchDelta(old, state, patch, egress));
    this.listsOf.set(hostId, { state, lists: sets });
    return state;
  }

  /**
   * The state of a host whose only change is the shared egress-managed4/6 pair (a task move
   * changes it on every host): its lists with the new pair, its version from its cached sums
   * (state-version.ts), and as its delta the one pair of adds/removes records every such host of
   * the update shares (SharedManaged). Undefined when another kind changed too (the general path).
   */
  private managedOnly(hostId: string, old: DesiredState, egress: EgressView): DesiredState | undefined {
    const known = this.listsOf.get(hostId);
    const lists = known?.state === old ? known.lists : old.sets;
    const now = egress.sets;
    if (lists['egress-task'] !== now['egress-task'] || lists['egress-ip4'] !== now['egress-ip4'] || lists['egress-ip6'] !== now['egress-ip6']) return undefined;
    const [b4, b6, a4, a6] = [lists['egress-managed4'], lists['egress-managed6'], now['egress-managed4'], now['egress-managed6']];
    if (b4 === a4 && b6 === a6) return old;
    let shared = this.shared;
    if (!shared || shared.b4 !== b4 || shared.b6 !== b6 || shared.a4 !== a4 || shared.a6 !== a6) this.shared = shared = sharedManaged(b4 as readonly string[], b6 as readonly string[], egress);
    // Pending allow lists are built here (once per patch of the host, pending-list.ts): this state
    // is re-made on every move, and a state without pending lists is a plain object, far cheaper
    // than the accessors of one with them.
    const next = builtLists(lists);
    next['egress-managed4'] = a4 as readonly string[];
    next['egress-managed6'] = a6 as readonly string[];
    const contents = stateSets(next);
    const counts = ALLOW_KINDS.map((kind) => next[kind].length);
    const state = { hostId: old.hostId, mode: old.mode, sets: contents, version: this.versions.reversioned(hostId, old.mode, contents, counts) };
    this.deltaOf.set(hostId, { hostId: old.hostId, baseVersion: old.version, version: state.version, mode: state.mode, adds: shared.adds, removes: shared.removes });
    this.listsOf.set(hostId, { state, lists: next });
    return state;
  }

  /** The delta a patch made: the allow kinds' edits sorted, the (short) managed lists merged. */
  private patchDelta(old: DesiredState, state: DesiredState, patch: Patch, egress: EgressView | undefined): StateDelta {
    const adds = {} as Record<SetKind, readonly string[]>;
    const removes = {} as Record<SetKind, readonly string[]>;
    for (const kind of SET_KINDS) {
      const k = (ALLOW_KINDS as readonly string[]).indexOf(kind);
      if (k >= 0) {
        // The patch's own edits (the lists, maybe pending, are not read).
        [adds[kind], removes[kind]] = [sortedEdits(patch.adds[k]!), sortedEdits(patch.removes[k]!)];
        continue;
      }
      const before = old.sets[kind];
      const after = state.sets[kind];
      const edits = before === after ? UNCHANGED : (egress?.editsFrom(before, after) ?? diffMemberLists(before, after));
      [adds[kind], removes[kind]] = [edits.adds, edits.removes];
    }
    return { hostId: old.hostId, baseVersion: old.version, version: state.version, mode: state.mode, adds, removes };
  }
}
