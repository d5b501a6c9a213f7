/**
 * Member lists built on first read: how a patched host's allow lists stay O(change).
 *
 * A task move that changes a group's source set patches hundreds of hosts, each by a handful of
 * members; copying each host's whole sorted list (about a thousand members) cost more than all
 * the rest of the move, and the copies, which outlive the move, made the young-generation GC
 * slow. Yet the controller's move path never reads those lists: the Sync service sends the
 * compiler's delta (IncrementalCompiler.deltaFrom), and the version is updated from the claims
 * (state-version.ts), for an agent without egress support too (its view keeps the lists pending:
 * `replacedSets`). Only a snapshot, a render, the status listing or a test reads them.
 *
 * So a patched list is a PendingList: the list it was patched from and the patch's members taken
 * out and put in. Patching it again is O(1) plus the edits, and the list is built (the chain's
 * edits composed, one patchMemberList over the last built list) the first time someone reads it,
 * or eagerly once MAX_PENDING patches are pending, so memory stays bounded: a list is copied once
 * per MAX_PENDING patches instead of once per patch. The contract of member-lists.ts
 * patchMemberList (a removed member is in the list, an added one is not) is checked as the list
 * is built (composing the chain, then by patchMemberList): a violation, a compiler bug, throws
 * there rather than giving a wrong list. The compiler's tests build every state they compare.
 *
 * `stateSets` makes a DesiredState's `sets` object from lists and PendingLists: the allow kinds
 * are enumerable getters that build a pending list (once; it is kept), so every reader sees plain
 * sorted arrays, in SET_KINDS order, and equal states serialise to equal bytes. The old state a
 * list was patched from keeps its own list (what a PendingList reads never changes; once built it
 * lets go of the chain it was built from).
 */
import { ALLOW_KINDS, type SetContents, type SetKind } from './desired-state.js';
import { patchMemberList } from './member-lists.js';

const NONE: readonly string[] = Object.freeze([]);

/** Patches pending on a list after which the next patch builds it instead of deferring it. */
export const MAX_PENDING = 24;

export class PendingList {
  private built: readonly string[] | undefined;

  private constructor(
    /** The list this one was patched from (until built). */
    private from: ListOrPending,
    private removes: readonly string[],
    private adds: readonly string[],
    /** The number of members of the list (without building it). */
    readonly length: number,
    /** Patches since the last built list. */
    private readonly depth: number,
  ) {}

  /** The list, built on the first call: the pending patches composed, then one patchMemberList. */
  list(): readonly string[] {
    if (this.built) return this.built;
    const chain: PendingList[] = [];
    let base: ListOrPending = this;
    while (base instanceof PendingList && base.built === undefined) {
      chain.push(base);
      base = base.from;
    }
    const list = base instanceof PendingList ? base.built! : base;
    const r = new Set<string>();
    const a = new Set<string>();
    for (let i = chain.length - 1; i >= 0; i--) {
      for (const m of chain[i]!.removes) {
        if (a.has(m)) a.delete(m);
        else if (r.has(m)) throw new Error(`member list patch: '${m}' is not in the list`);
        else r.add(m);
      }
      for (const m of chain[i]!.adds) {
        if (r.has(m)) r.delete(m);
        else if (a.has(m)) throw new Error(`member list patch: '${m}' is already in the list`);
        else a.add(m);
      }
    }
    this.built = patchMemberList(list, [...r], [...a]);
    [this.from, this.removes, this.adds] = [this.built, NONE, NONE];
    return this.built;
  }

  /**
   * `from` (a built list or a PendingList) with `removes` taken out and then `adds` put in, as
   * patchMemberList would make it: a PendingList, or a built list once MAX_PENDING patches are
   * pending. The contract (a removed member is in the list, an added one is not after the
   * removals) is checked when the list is built: a violation, a compiler bug, throws then.
   */
  static patched(from: ListOrPending, removes: readonly string[], adds: readonly string[]): ListOrPending {
    if (removes.length + adds.length === 0) return from;
    const depth = from instanceof PendingList && from.built === undefined ? from.depth + 1 : 1;
    const next = new PendingList(from, removes, adds, from.length - removes.length + adds.length, depth);
    return depth >= MAX_PENDING ? next.list() : next;
  }
}

/** A member list as the compiler holds it: built, or pending. */
export type ListOrPending = readonly string[] | PendingList;

/** A built list as it is, a PendingList built. */
function read(list: ListOrPending): readonly string[] {
  return list instanceof PendingList ? list.list() : list;
}

/**
 * A DesiredState's `sets` from `lists` (see the header), the allow kinds (where the compiler
 * defers lists) as getters that build a PendingList on first read. One object shape for all.
 */
export function stateSets(lists: Readonly<Record<SetKind, ListOrPending>>): SetContents {
  // Without a pending list, plain properties: an object literal with accessors costs several
  // microseconds (each accessor is defined at run time), a plain one a fraction of one.
  if (!ALLOW_KINDS.some((kind) => lists[kind] instanceof PendingList)) return plainSets(lists as Readonly<Record<SetKind, readonly string[]>>);
  const ip4 = lists['allow-ip4'];
  const net4 = lists['allow-net4'];
  const ip6 = lists['allow-ip6'];
  const net6 = lists['allow-net6'];
  const other = (kind: SetKind) => read(lists[kind]);
  const sets: SetContents = {
    'managed-tcp': other('managed-tcp'),
    'managed-udp': other('managed-udp'),
    'failsafe-tcp': other('failsafe-tcp'),
    'failsafe-udp': other('failsafe-udp'),
    get 'allow-ip4'() {
      return read(ip4);
    },
    get 'allow-net4'() {
      return read(net4);
    },
    get 'allow-ip6'() {
      return read(ip6);
    },
    get 'allow-net6'() {
      return read(net6);
    },
    'egress-task': other('egress-task'),
    'egress-managed4': other('egress-managed4'),
    'egress-managed6': other('egress-managed6'),
    'egress-ip4': other('egress-ip4'),
    'egress-ip6': other('egress-ip6'),
    'audit-tcp': other('audit-tcp'),
    'audit-udp': other('audit-udp'),
    'egress-audit': other('egress-audit'),
  };
  listsOfSets.set(sets, lists);
  return sets;
}

/** The lists a `sets` object with accessors was made of (weak; immutable, like the state). */
const listsOfSets = new WeakMap<SetContents, Readonly<Record<SetKind, ListOrPending>>>();

/**
 * `sets` (a DesiredState's) with the lists of `replace` in place of its own, every other list
 * the same: one of `sets` still pending stays pending, shared by both (built once, on the first
 * read of either). An agent's view of a state (agent-view.ts) is made this way, so a patched
 * state sent as a delta never has its allow lists built for the view.
 */
export function replacedSets(sets: SetContents, replace: Partial<Record<SetKind, readonly string[]>>): SetContents {
  const lists = listsOfSets.get(sets);
  return lists === undefined ? { ...sets, ...replace } : stateSets({ ...lists, ...replace });
}

/** `lists` (none pending) as a DesiredState's `sets`: the same shape and order as stateSets' getters object. */
function plainSets(lists: Readonly<Record<SetKind, readonly string[]>>): SetContents {
  return {
    'managed-tcp': lists['managed-tcp'],
    'managed-udp': lists['managed-udp'],
    'failsafe-tcp': lists['failsafe-tcp'],
    'failsafe-udp': lists['failsafe-udp'],
    'allow-ip4': lists['allow-ip4'],
    'allow-net4': lists['allow-net4'],
    'allow-ip6': lists['allow-ip6'],
    'allow-net6': lists['allow-net6'],
    'egress-task': lists['egress-task'],
    'egress-managed4': lists['egress-managed4'],
    'egress-managed6': lists['egress-managed6'],
    'egress-ip4': lists['egress-ip4'],
    'egress-ip6': lists['egress-ip6'],
    'audit-tcp': lists['audit-tcp'],
    'audit-udp': lists['audit-udp'],
    'egress-audit': lists['egress-audit'],
  };
}

/** `lists` with every pending list built (the lists of a state that is re-made often, see HostPatches.managedOnly). */
export function builtLists(lists: Readonly<Record<SetKind, ListOrPending>>): Record<SetKind, readonly string[]> {
  const out = { ...lists } as Record<SetKind, ListOrPending>;
  for (const kind of ALLOW_KINDS) out[kind] = read(out[kind]);
  return out as Record<SetKind, readonly string[]>;
}
