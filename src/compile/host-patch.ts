/**
 * Patching a host's state instead of re-emitting it: the incremental compiler's member edits.
 *
 * A host's allow members are "<source>,<proto>:<port>" texts, one claim per (proto, port), so a
 * claim whose allowed set changed from A to B changes exactly the members of A \ B (removed) and
 * B \ A (added) with its suffix (emit-members.ts sourceTextDiff formats only the intervals that
 * differ). A Patch collects those edits per allow kind for one host; `HostPatches.patchState`
 * applies them to the host's sorted lists by binary search (member-lists.ts), keeps the joined
 * texts of the lists it patched (so the next patch and the re-hash do not re-join them) and
 * records the StateDelta from the state it patched from (what the Sync service sends, without
 * comparing lists). A patched state equals what a full emission would give because a member
 * belongs to exactly one claim and a non-conflict claim's set is its resolution.
 */
import type { AddressSet } from './address-set.js';
import { memberSuffix } from '../net/member.js';
import { ALLOW_KINDS, SET_KINDS, type DesiredState, type SetKind } from './desired-state.js';
import { sourceTextDiff, type SourceTexts } from './emit-members.js';
import { managedPorts, type HostClaim } from './host-claims.js';
import { memberListText, patchMemberList } from './member-lists.js';
import { diffMemberLists, type StateDelta } from './state-delta.js';
import { stateVersion } from './state-version.js';

/** One claim of a host as last emitted: its member suffix, its owners' PortMatch keys, its set. */
export interface ClaimUse {
  readonly suffix: string;
  readonly keys: readonly string[];
  set: AddressSet;
}

/** Members to remove and add per allow kind, for one host. */
export interface Patch {
  readonly removes: string[][];
  readonly adds: string[][];
  /** New managed-tcp / managed-udp lists (dirty hosts only). */
  managed?: { readonly tcp: string[]; readonly udp: string[] };
}

export function newPatch(): Patch {
  return { removes: ALLOW_KINDS.map(() => []), adds: ALLOW_KINDS.map(() => []) };
}

/** Adds `texts` (per allow kind) with `suffix` to the patch's removes or adds. */
function patchTexts(into: string[][], texts: readonly (readonly string[])[], suffix: string): void {
  for (let k = 0; k < ALLOW_KINDS.length; k++) for (const t of texts[k]!) into[k]!.push(t + suffix);
}

/** The member edits of a claim whose set went from `was` to `set`. */
export function patchClaim(patch: Patch, diff: ReturnType<typeof sourceTextDiff>, suffix: string): void {
  patchTexts(patch.removes, diff.removed, suffix);
  patchTexts(patch.adds, diff.added, suffix);
}

/** A claim's ClaimUse (its suffix and the keys of its owners' resolutions). */
export function claimUse(c: HostClaim): ClaimUse {
  return { suffix: memberSuffix(c.protocol, c.port), keys: c.matches.map((m) => m.key), set: c.set };
}

/** The patch from a host's old claims to its new ones (matched by member suffix). */
export function claimsPatch(sourceTexts: SourceTexts, old: readonly ClaimUse[], uses: readonly ClaimUse[], claims: readonly HostClaim[]): Patch {
  const patch = newPatch();
  patch.managed = { tcp: managedPorts(claims, 'tcp'), udp: managedPorts(claims, 'udp') };
  const before = new Map(old.map((u) => [u.suffix, u.set]));
  for (const u of uses) {
    const was = before.get(u.suffix);
    before.delete(u.suffix);
    if (was === undefined) patchTexts(patch.adds, sourceTexts.of(u.set), u.suffix);
    else if (was !== u.set && !was.equals(u.set)) patchClaim(patch, sourceTextDiff(was, u.set), u.suffix);
  }
  for (const [suffix, was] of before) patchTexts(patch.removes, sourceTexts.of(was), suffix);
  return patch;
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/** The patched hosts' list texts and deltas (an entry lives while the state it describes does). */
export class HostPatches {
  /** Texts (memberListText) of the lists of a host's state that were patched, so the next patch and re-hash do not re-join them. */
  private textOf = new Map<string, Partial<Record<SetKind, string>>>();
  /** Per patched host: the delta from the state it was patched from (see IncrementalCompiler.deltaFrom). */
  private deltaOf = new Map<string, StateDelta>();

  /** The host's state was replaced other than by a patch (or the host left). */
  forget(hostId: string): void {
    this.textOf.delete(hostId);
    this.deltaOf.delete(hostId);
  }

  /** The delta of the host's last patch, if its state was patched. */
  delta(hostId: string): StateDelta | undefined {
    return this.deltaOf.get(hostId);
  }

  /** A patched host's new state (lists of untouched kinds are shared with the old state). */
  patchState(hostId: string, old: DesiredState, patch: Patch): DesiredState {
    const sets = { ...old.sets } as Record<SetKind, readonly string[]>;
    const texts = { ...this.textOf.get(hostId) };
    let touched = false;
    if (patch.managed) {
      if (!sameList(old.sets['managed-tcp'], patch.managed.tcp)) sets['managed-tcp'] = patch.managed.tcp;
      if (!sameList(old.sets['managed-udp'], patch.managed.udp)) sets['managed-udp'] = patch.managed.udp;
      touched = sets['managed-tcp'] !== old.sets['managed-tcp'] || sets['managed-udp'] !== old.sets['managed-udp'];
    }
    ALLOW_KINDS.forEach((kind, k) => {
      const removes = patch.removes[k]!;
      const adds = patch.adds[k]!;
      if (removes.length === 0 && adds.length === 0) return;
      const list = patchMemberList({ members: old.sets[kind], text: texts[kind] ?? memberListText(old.sets[kind]) }, removes, adds);
      sets[kind] = list.members;
      texts[kind] = list.text;
      touched = true;
    });
    if (!touched) return old;
    this.textOf.set(hostId, texts);
    const state = { hostId: old.hostId, mode: old.mode, sets, version: stateVersion(old.mode, sets, texts) };
    this.deltaOf.set(hostId, this.patchDelta(old, state, patch));
    return state;
  }

  /** The delta a patch made: the allow kinds' edits sorted, the (short) managed lists merged. */
  private patchDelta(old: DesiredState, state: DesiredState, patch: Patch): StateDelta {
    const adds = {} as Record<SetKind, readonly string[]>;
    const removes = {} as Record<SetKind, readonly string[]>;
    for (const kind of SET_KINDS) {
      const k = (ALLOW_KINDS as readonly string[]).indexOf(kind);
      if (k < 0) ({ adds: adds[kind], removes: removes[kind] } = diffMemberLists(old.sets[kind], state.sets[kind]));
      else [adds[kind], removes[kind]] = [[...patch.adds[k]!].sort(), [...patch.removes[k]!].sort()];
    }
    return { hostId: old.hostId, baseVersion: old.version, version: state.version, mode: state.mode, adds, removes };
  }
}
