/**
 * The delta path's arithmetic (see kernel-dataplane.ts): which members changed between the state
 * the kernel holds and the next one, and the `ipset restore` lines that make that change in place.
 *
 * - `memberChanges` diffs two states kind by kind by merging their lists, which DesiredState keeps
 *   sorted and duplicate-free. The old list must be strictly ascending (the dataplane checks it
 *   once, `isStrictlyAscending`, before it keeps a state as the base of later deltas); the new
 *   list is checked on the way (every place it does not follow the old list is compared), and an
 *   unsorted list gives `unsorted`, never a wrong diff. It stops at `limit` changed members.
 * - `renderDeltaRestore` writes `add <set> <member> -exist` / `del <set> <member> -exist` lines for
 *   one family, members as validated (the `/0` of a net as its two `/1` halves, like the full path:
 *   src/net/member.ts netEntries). Two different members can be one kernel entry: validation
 *   accepts any spelling (`10.0.0.1/24` and `10.0.0.0/24`, IPv6 in upper case or uncompressed, an
 *   IPv4-mapped address in dotted form), and a `/0` half is an explicit `/1`. So a removed
 *   member's entry is deleted only when no member of the new state is that entry (compared as
 *   `ipset save` prints them, src/net/member.ts normalizeMember), and a kept spelling never loses
 *   its entry. Allow-ip4 and port members are canonical once validated, so there a member is its
 *   entry.
 * - Order: first the lines that only let more through (adds to allow-* and failsafe-*, removals
 *   from managed-*), then the ones that let less through (adds to managed-*, removals from allow-*
 *   and failsafe-*). Every line is atomic in the kernel; in between, a packet sees the old sets
 *   joined with the new ones, so a connection both states allow is never dropped and one both
 *   states refuse is never let through.
 * - Per-app egress (when the dataplane renders it, `egress`): egress-managed4/6 changes go to
 *   pcu?-eg-managed (an add lets less through), egress-ip4/6 changes to the app's pcu?-eg-<h> with
 *   the `<app>|` prefix removed (an add lets more through), ordered by the same rule. An
 *   egress-task change is a new set of local apps, so new chains: never a delta (kernel-difference.ts).
 * - Group modes: audit-tcp / audit-udp changes go to pcu?-audit-tcp / -udp (an add lets more
 *   through) while both states have audit ports of that protocol; whether a protocol has any, and
 *   egress-audit, shape the rules: a change there is a full write (kernel-difference.ts).
 */
import { SET_KINDS, type DesiredState, type SetKind } from '../../src/compile/desired-state.js';
import { ipsetName, setKindsOf } from '../../src/render/owned-names.js';
import type { Family } from '../../src/net/family.js';
import { expandMember } from '../../src/render/render-ipsets.js';
import { normalizeMember } from '../../src/net/member.js';
import { egressEntry } from '../../src/render/render-egress.js';
import { auditPortSets } from '../../src/render/render-flows.js';

const EGRESS_MEMBER_KINDS = ['egress-managed4', 'egress-managed6', 'egress-ip4', 'egress-ip6'] as const satisfies readonly SetKind[];

export interface KindChange {
  /** Members of the new state that the old one lacks, ascending. */
  readonly adds: readonly string[];
  /** Members of the old state that the new one lacks, ascending. */
  readonly removes: readonly string[];
}

export type MemberChanges =
  | { readonly ok: true; readonly kinds: ReadonlyMap<SetKind, KindChange>; readonly total: number }
  | { readonly ok: false; readonly reason: 'too-many' | 'unsorted' };

/** True when every element is a string greater than the one before it. */
export function isStrictlyAscending(list: readonly string[]): boolean {
  for (let i = 0; i < list.length; i++) {
    if (typeof list[i] !== 'string') return false;
    if (i > 0 && !((list[i - 1] as string) < (list[i] as string))) return false;
  }
  return true;
}

/** True when every list of the state is strictly ascending (the old side of `memberChanges`). */
export function isSortedState(state: DesiredState): boolean {
  return SET_KINDS.every((kind) => isStrictlyAscending(state.sets[kind] ?? []));
}

const TOO_MANY = { ok: false, reason: 'too-many' } as const;
const UNSORTED = { ok: false, reason: 'unsorted' } as const;

/**
 * Members added and removed per kind from `from` to `to` (kinds without change are left out).
 * `from`'s lists must be strictly ascending; more than `limit` changes in all gives `too-many`.
 */
export function memberChanges(from: DesiredState, to: DesiredState, limit: number): MemberChanges {
  const kinds = new Map<SetKind, KindChange>();
  let total = 0;
  for (const kind of SET_KINDS) {
    const prev = from.sets[kind] ?? [];
    const next = to.sets[kind] ?? [];
    if (prev === next) continue;
    const adds: string[] = [];
    const removes: string[] = [];
    let i = 0;
    let j = 0;
    let last: string | undefined;
    let lastMatched = false;
    while (j < next.length) {
      const y = next[j] as string;
      if (i < prev.length) {
        const x = prev[i] as string;
        if (x === y) {
          // Two matched members in a row are in order because `prev` is; otherwise compare.
          if (last !== undefined && !lastMatched && !(last < y)) return UNSORTED;
          last = y;
          lastMatched = true;
          i++;
          j++;
          continue;
        }
        if (x < y) {
          removes.push(x);
          i++;
          if (total + adds.length + removes.length > limit) return TOO_MANY;
          continue;
        }
      }
      if (typeof y !== 'string' || (last !== undefined && !(last < y))) return UNSORTED;
      adds.push(y);
      last = y;
      lastMatched = false;
      j++;
      if (total + adds.length + removes.length > limit) return TOO_MANY;
    }
    if (total + adds.length + removes.length + (prev.length - i) > limit) return TOO_MANY;
    for (; i < prev.length; i++) removes.push(prev[i] as string);
    if (adds.length === 0 && removes.length === 0) continue;
    total += adds.length + removes.length;
    kinds.set(kind, { adds, removes });
  }
  return { ok: true, kinds, total };
}

/** Kinds whose different members can be one kernel entry (see the header). */
function mayAlias(kind: SetKind): boolean {
  return kind === 'allow-net4' || kind === 'allow-ip6' || kind === 'allow-net6';
}

/** Whether adding to a set of this kind lets more traffic through (allow-*, failsafe-*) or less (managed-*). */
function addLoosens(kind: SetKind): boolean {
  return !kind.startsWith('managed-');
}

/** Kernel entries to delete from the set of `kind`: the removed members no member of `to` still is. */
function entriesToDelete(kind: SetKind, family: Family, change: KindChange, to: DesiredState): string[] {
  if (!mayAlias(kind)) return [...change.removes];
  const pending = new Map<string, string>();
  for (const member of change.removes) {
    for (const entry of expandMember(kind, family, member)) pending.set(normalizeMember(entry), entry);
  }
  // Only members with the same ",proto:port" can be the same entry: normalise just those.
  const suffixes = new Set([...pending.values()].map((entry) => entry.slice(entry.lastIndexOf(','))));
  for (const member of to.sets[kind] ?? []) {
    if (pending.size === 0) break;
    if (!suffixes.has(member.slice(member.lastIndexOf(',')))) continue;
    for (const entry of expandMember(kind, family, member)) pending.delete(normalizeMember(entry));
  }
  return [...pending.values()];
}

/** The egress lines of one family (see the header), into `loosen` and `tighten`. */
function egressDeltaLines(family: Family, changes: ReadonlyMap<SetKind, KindChange>, loosen: string[], tighten: string[]): void {
  for (const kind of EGRESS_MEMBER_KINDS) {
    const change = changes.get(kind);
    if (change === undefined) continue;
    const addLoosensHere = kind.startsWith('egress-ip');
    for (const [members, verb, into] of [
      [change.adds, 'add', addLoosensHere ? loosen : tighten],
      [change.removes, 'del', addLoosensHere ? tighten : loosen],
    ] as const) {
      for (const member of members) {
        const at = egressEntry(kind, family, member);
        if (at !== undefined) into.push(`${verb} ${at.set} ${at.entry} -exist`);
      }
    }
  }
}

/** Audit port changes (group modes) into pcu?-audit-tcp/-udp, while `to` renders them (an add lets more through). */
function auditDeltaLines(family: Family, changes: ReadonlyMap<SetKind, KindChange>, to: DesiredState, loosen: string[], tighten: string[]): void {
  for (const set of auditPortSets(to, family)) {
    const change = changes.get(set.name.endsWith('tcp') ? 'audit-tcp' : 'audit-udp');
    for (const member of change?.adds ?? []) loosen.push(`add ${set.name} ${member} -exist`);
    for (const member of change?.removes ?? []) tighten.push(`del ${set.name} ${member} -exist`);
  }
}

/**
 * One family's `ipset restore` input for `changes`; '' when nothing of this family changed.
 * `egress`: the kernel holds the per-app egress sets of this state (their changes are written too).
 */
export function renderDeltaRestore(family: Family, changes: ReadonlyMap<SetKind, KindChange>, to: DesiredState, egress = false): string {
  const loosen: string[] = [];
  const tighten: string[] = [];
  for (const kind of setKindsOf(family)) {
    const change = changes.get(kind);
    if (change === undefined) continue;
    const name = ipsetName(kind, family) as string;
    const addTo = addLoosens(kind) ? loosen : tighten;
    const delTo = addLoosens(kind) ? tighten : loosen;
    for (const member of change.adds) {
      for (const entry of expandMember(kind, family, member)) addTo.push(`add ${name} ${entry} -exist`);
    }
    for (const entry of entriesToDelete(kind, family, change, to)) delTo.push(`del ${name} ${entry} -exist`);
  }
  if (egress) egressDeltaLines(family, changes, loosen, tighten);
  auditDeltaLines(family, changes, to, loosen, tighten);
  const lines = [...loosen, ...tighten];
  return lines.length === 0 ? '' : `${lines.join('\n')}\n`;
}
