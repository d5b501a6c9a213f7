/**
 * The version of a DesiredState: a content hash of {mode, sets}, so two controller replicas that
 * compile the same input name the same state with the same version, and an agent can tell
 * whether what it applied is what the controller wants. It is built so that the compiler can
 * update it in O(change) when a host's allow sets change (a task move re-versions hundreds of
 * hosts), while anyone else computes it from the members alone.
 *
 * Definition (v2): the first 16 lowercase hex characters of sha256 over the header text
 *
 *   "portcullis-state-v2\n" <mode> "\n"
 *   for managed-tcp, managed-udp, failsafe-tcp, failsafe-udp:   "#<kind> <count>\n" <members>
 *   for allow-ip4, allow-net4, allow-ip6, allow-net6:           "#<kind> <count>\n" <sum> "\n"
 *
 * (the SET_KINDS order), where <members> is every member of the (short) list followed by '\n', and
 * <sum> is 64 lowercase hex of a 256-bit multiset hash of the (long) allow list:
 *
 *   sum(kind)   = SUM over the suffix groups g of the list of G(kind, g)   (mod 2^256)
 *   G(kind, g)  = sha256(<kind> "\n" <suffix> "\n" S(g)) read as a big-endian 256-bit integer
 *   S(g)        = 64 hex of sha256 over the group's sources in list order, each followed by '\n'
 *
 * An allow member is "<source>,<proto>:<port>"; it is split at its LAST ',' into source and
 * suffix (",<proto>:<port>", the ',' included; '' when there is none, so the split is one-to-one
 * even for a malformed member), and a suffix group is all members of the list with one suffix.
 * The groups of a list are summed, so their order does not matter; inside a group the sources
 * are hashed in list order. In a compiler's list (sorted, duplicate-free) that is string order,
 * because ',' sorts below every character of an address or a CIDR: members with one suffix sort
 * as their sources do. Members never contain a newline (desired-state.ts), and the counts frame
 * every kind.
 *
 * Why additive and never XOR: an XOR multiset hash cancels equal terms and falls to linear
 * algebra over GF(2) (from a few hundred candidate groups, Gaussian elimination finds a set of
 * them with any wanted hash); a sum mod 2^256 of random-oracle outputs does not (Bellare and
 * Micciancio's AdHash). Versions are 64 bits anyway: they identify states, they do not
 * authenticate them (mTLS does).
 *
 * Why this is O(change) in the compiler: a suffix group is exactly one claim of the host (claims
 * of a host have distinct (proto, port)), and its sources are the claim's AddressSet formatted.
 * So a set's sorted sources and S, and G per (set, suffix), are cached per set object
 * (HostVersions, one per compile or per incremental compiler, entries weak), shared by every host
 * using the set; a set the compiler made by patching another (a re-resolution after a group
 * changed) gets its sorted sources from the other's and the text diff the patch already has,
 * without being formatted whole. A host keeps its four sums, and a claim that goes from set A to
 * set B changes them by -G(A) + G(B): re-versioning a patched host is O(changed claims) plus one
 * hash of its short header; nothing re-joins or re-hashes its members. `stateVersion` is the from-scratch definition (from members only: the
 * agent, applyDelta, desired-state-check, tests); test/compile-version.test.ts checks that both
 * agree on random states.
 */
import { hash } from 'node:crypto';
import type { Mode } from '../policy/policy-model.js';
import { SET_KINDS, type SetContents, type SetKind } from './desired-state.js';
import { ALLOW_KINDS, type AllowKind } from './emit-members.js';
import { patchMemberList } from './member-lists.js';

const MASK = (1n << 256n) - 1n;
/** The short kinds, whose members the header lists (SET_KINDS order; they precede the allow kinds). */
const LISTED_KINDS: readonly SetKind[] = SET_KINDS.filter((k) => !(ALLOW_KINDS as readonly SetKind[]).includes(k));

function sha256Hex(text: string): string {
  return hash('sha256', text, 'hex');
}

/** S of a group: its sources (in the order they appear, see the header), each followed by '\n'. */
function sourcesDigest(sources: readonly string[]): string {
  return sha256Hex(sources.length === 0 ? '' : `${sources.join('\n')}\n`);
}

/** G of a group. */
function groupTerm(kind: AllowKind, suffix: string, digest: string): bigint {
  return BigInt(`0x${sha256Hex(`${kind}\n${suffix}\n${digest}`)}`);
}

function hex64(sum: bigint): string {
  return sum.toString(16).padStart(64, '0');
}

/** sum(kind) of one allow list from its members (see the header). */
function allowSum(kind: AllowKind, members: readonly string[]): bigint {
  const groups = new Map<string, string[]>();
  for (const m of members) {
    const at = m.lastIndexOf(',');
    const suffix = at < 0 ? '' : m.slice(at);
    let sources = groups.get(suffix);
    if (!sources) groups.set(suffix, (sources = []));
    sources.push(at < 0 ? m : m.slice(0, at));
  }
  let sum = 0n;
  for (const [suffix, sources] of groups) sum += groupTerm(kind, suffix, sourcesDigest(sources));
  return sum & MASK;
}

/** The header's part for the listed kinds. */
function listedText(mode: Mode, sets: SetContents): string {
  let text = `portcullis-state-v2\n${mode}\n`;
  for (const kind of LISTED_KINDS) {
    const members = sets[kind];
    text += `#${kind} ${members.length}\n`;
    if (members.length > 0) text += `${members.join('\n')}\n`;
  }
  return text;
}

/** The version from the listed part of the header and the allow kinds' sums (as 64 hex). */
function versionOf(listed: string, sets: SetContents, sumHex: readonly string[]): string {
  let text = listed;
  ALLOW_KINDS.forEach((kind, k) => {
    text += `#${kind} ${sets[kind].length}\n${sumHex[k]!}\n`;
  });
  return sha256Hex(text).slice(0, 16);
}

/** The version of {mode, sets}, from the members alone (the definition; see the header). */
export function stateVersion(mode: Mode, sets: SetContents): string {
  return versionOf(listedText(mode, sets), sets, ALLOW_KINDS.map((kind) => hex64(allowSum(kind, sets[kind]))));
}

/** One claim as the version sees it: its member suffix (",<proto>:<port>") and its source set. */
export interface VersionClaim<S extends object> {
  readonly suffix: string;
  readonly set: S;
}

/** Source texts per allow kind (index = ALLOW_KINDS index). */
export type KindTexts = readonly (readonly string[])[];

/**
 * A claim of a host whose set changed: `from` undefined = a new claim, `to` undefined = gone.
 * `diff`, when given, is the exact difference of the two sets' source texts (what `from` has and
 * `to` has not, and the reverse), so `to`'s sorted sources follow from `from`'s without
 * formatting `to` whole.
 */
export interface ClaimChange<S extends object> {
  readonly suffix: string;
  readonly from?: S;
  readonly to?: S;
  readonly diff?: { readonly removed: KindTexts; readonly added: KindTexts };
}

interface SetTerms {
  /** The set's sources per allow kind in string order (what S hashes). */
  readonly sorted: KindTexts;
  /** S per allow kind; undefined for a kind the set has no source of. */
  readonly digests: readonly (string | undefined)[];
  /** G per allow kind (0 where no source) per suffix. */
  readonly terms: Map<string, readonly bigint[]>;
}

/** What a host was last versioned with. */
interface HostSums {
  readonly sums: readonly bigint[];
  readonly hex: readonly string[];
  /** The listed kinds' lists and mode the header text `listed` was made of (reused while they are the same objects). */
  readonly lists: readonly (readonly string[])[];
  readonly mode: Mode;
  readonly listed: string;
}

function isSorted(list: readonly string[]): boolean {
  for (let i = 1; i < list.length; i++) if (list[i - 1]! > list[i]!) return false;
  return true;
}

/**
 * The compiler's fast path (see the header): the per-set cache of sorted sources, S and G, and
 * the sums of every host it versioned. `textsOf(set)` gives a set's source texts per allow kind
 * (index = ALLOW_KINDS index), in any order, duplicate-free. One instance per compile or per
 * incremental compiler (whose `textsOf` must not change meaning); entries per set are weak.
 */
export class HostVersions<S extends object> {
  private readonly bySet = new WeakMap<S, SetTerms>();
  private readonly hosts = new Map<string, HostSums>();

  constructor(private readonly textsOf: (set: S) => KindTexts) {}

  /** The version of a host's new state whose allow lists are exactly the members of `claims`; its sums are kept. */
  fresh(hostId: string, mode: Mode, sets: SetContents, claims: Iterable<VersionClaim<S>>): string {
    const sums = ALLOW_KINDS.map(() => 0n);
    for (const c of claims) {
      const terms = this.terms(c.set, c.suffix);
      for (let k = 0; k < sums.length; k++) sums[k] = sums[k]! + terms[k]!;
    }
    return this.record(hostId, mode, sets, sums.map((sum) => sum & MASK), undefined);
  }

  /**
   * The version of a host's state after `changes` (in the order made) to the claims it was last
   * versioned with (fresh or patched); `sets` is the new state's lists. O(changes) plus the header.
   */
  patched(hostId: string, mode: Mode, sets: SetContents, changes: readonly ClaimChange<S>[]): string {
    const old = this.hosts.get(hostId);
    if (!old) throw new Error(`state version: host ${hostId} has no version sums to patch`);
    const sums = old.sums.slice();
    for (const c of changes) {
      const minus = c.from === undefined ? undefined : this.terms(c.from, c.suffix);
      const plus = c.to === undefined ? undefined : this.terms(c.to, c.suffix, c.from, c.diff);
      for (let k = 0; k < sums.length; k++) {
        const d = (plus?.[k] ?? 0n) - (minus?.[k] ?? 0n);
        if (d !== 0n) sums[k] = (sums[k]! + d) & MASK;
      }
    }
    return this.record(hostId, mode, sets, sums, old);
  }

  /** The host left: its sums are dropped. */
  forget(hostId: string): void {
    this.hosts.delete(hostId);
  }

  private record(hostId: string, mode: Mode, sets: SetContents, sums: readonly bigint[], old: HostSums | undefined): string {
    const lists = LISTED_KINDS.map((kind) => sets[kind]);
    const listed = old && old.mode === mode && lists.every((l, i) => l === old.lists[i]) ? old.listed : listedText(mode, sets);
    const hex = sums.map((sum, k) => (old && old.sums[k] === sum ? old.hex[k]! : hex64(sum)));
    this.hosts.set(hostId, { sums, hex, lists, mode, listed });
    return versionOf(listed, sets, hex);
  }

  /** G per allow kind of a claim with `set` and `suffix` (0 for a kind without sources). */
  private terms(set: S, suffix: string, from?: S, diff?: ClaimChange<S>['diff']): readonly bigint[] {
    const entry = this.setTerms(set, from, diff);
    let terms = entry.terms.get(suffix);
    if (!terms) {
      const digests = entry.digests;
      terms = ALLOW_KINDS.map((kind, k) => (digests[k] === undefined ? 0n : groupTerm(kind, suffix, digests[k]!)));
      entry.terms.set(suffix, terms);
    }
    return terms;
  }

  /** A set's sorted sources and S: derived from `from`'s by `diff` when both are known, else from textsOf. */
  private setTerms(set: S, from?: S, diff?: ClaimChange<S>['diff']): SetTerms {
    let entry = this.bySet.get(set);
    if (entry) return entry;
    const base = from === undefined || diff === undefined ? undefined : this.bySet.get(from);
    const sorted = base
      ? base.sorted.map((list, k) => (diff!.removed[k]!.length + diff!.added[k]!.length === 0 ? list : patchMemberList(list, diff!.removed[k]!, diff!.added[k]!)))
      : this.textsOf(set).map((texts) => (isSorted(texts) ? texts : texts.slice().sort()));
    const digests = sorted.map((list, k) => (list.length === 0 ? undefined : base?.sorted[k] === list ? base.digests[k] : sourcesDigest(list)));
    this.bySet.set(set, (entry = { sorted, digests, terms: new Map() }));
    return entry;
  }
}
