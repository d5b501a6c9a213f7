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
 *   for allow-ip4, allow-net4, allow-ip6, allow-net6:           "#<kind> <count>\n"
 *   "#allow " <sum> "\n"
 *   "#egress " <egress sum> "\n"          only when some egress kind has a member
 *   "#audit " <count> "\n", then for audit-tcp, audit-udp, egress-audit: "#<kind> <count>\n" <members>
 *                                        only when some of these has a member (per-group mode;
 *                                        <count> is the three counts' sum)
 *
 * (the kinds in SET_KINDS order), where <members> is every member of the (short) list followed
 * by '\n', and <sum> is 64 lowercase hex of a 256-bit multiset hash of the (long) allow lists:
 *
 *   sum     = SUM over the suffix groups g of G(g)   (mod 2^256)
 *   G(g)    = sha256(<suffix> "\n" S(g, allow-ip4) "\n" S(g, allow-net4) "\n" S(g, allow-ip6)
 *             "\n" S(g, allow-net6)) read as a big-endian 256-bit integer
 *   S(g, k) = 64 hex of sha256 over the sources of g in list k, in list order, each followed by
 *             '\n' (sha256 of '' when g has none there)
 *
 * An allow member is "<source>,<proto>:<port>"; it is split at its LAST ',' into source and
 * suffix (",<proto>:<port>", the ',' included; '' when there is none, so the split is one-to-one
 * even for a malformed member), and a suffix group is all members of the four allow lists with
 * one suffix. The groups are summed, so their order does not matter; inside a group the sources
 * of a list are hashed in list order. In a compiler's list (sorted, duplicate-free) that is
 * string order, because ',' sorts below every character of an address or a CIDR: members with
 * one suffix sort as their sources do. Members never contain a newline (desired-state.ts), and
 * the counts frame every kind.
 *
 * <egress sum> is 64 lowercase hex of SUM over every member m of every egress kind k of
 * sha256(<k> "\n" <m>) read as a big-endian 256-bit integer (mod 2^256): one term per member, so
 * a list shared by many hosts (egress-managed*, a local app's egress-ip*) is summed once and a
 * change costs its changed members (`egressListSum` caches the sum per list object). A state
 * without egress members has the version it had before egress existed, which is also the version
 * an agent without egress support is sent (the controller strips the egress kinds for it).
 *
 * Why additive and never XOR: an XOR multiset hash cancels equal terms and falls to linear
 * algebra over GF(2) (from a few hundred candidate groups, Gaussian elimination finds a set of
 * them with any wanted hash); a sum mod 2^256 of random-oracle outputs does not (Bellare and
 * Micciancio's AdHash). Versions are 64 bits anyway: they identify states, they do not
 * authenticate them (mTLS does).
 *
 * Why this is O(change) in the compiler: a suffix group is exactly one claim of the host (claims
 * of a host have distinct (proto, port)), and its sources are the claim's AddressSet formatted:
 * one term per claim, whatever kinds its sources fall in. So a set's sorted sources and S, and G
 * per (set, suffix), are cached per set object (HostVersions, one per compile or per incremental
 * compiler, entries weak), shared by every host using the set; a set the compiler made by
 * patching another (a re-resolution after a group changed) gets its sorted sources from the
 * other's and the text diff the patch already has, without being formatted whole. A host keeps
 * its sum, and a claim that goes from set A to set B changes it by -G(A) + G(B): re-versioning a
 * patched host is O(changed claims) plus one hash of its short header; nothing re-joins or
 * re-hashes its members. A host also keeps the sum of its own egress lists and the "#audit" part
 * while those lists are the same objects, and the shared egress-managed pair is summed once per
 * pair (a task move with egress on re-versions every host: each pays its header hash and one
 * addition). The parts a state was versioned with are kept per `sets` object (weak), so the
 * version of an agent's view of it (`viewVersion`: egress or audit kinds emptied) costs one hash
 * of its header. `stateVersion` is the from-scratch definition (from members only: the agent,
 * desired-state-check, a view of a state the compiler did not make, tests);
 * test/compile-version.test.ts checks that both agree on random states. An agent applying a delta
 * versions the result in O(change) too, from the groups it kept (delta-version.ts).
 */
import { hash } from 'node:crypto';
import type { Mode } from '../policy/policy-model.js';
import { ALLOW_KINDS, AUDIT_KINDS, EGRESS_KINDS, INGRESS_KINDS, hasAuditMembers, hasEgressMembers, type DesiredState, type SetContents, type SetKind } from './desired-state.js';
import { patchMemberList } from './member-lists.js';
import { addInto, EMPTY_DIGEST, groupTerm, LIMBS, sha256Hex, sha256Number, sourcesDigest, toHex } from './version-hash.js';

/** The short kinds, whose members the header lists (SET_KINDS order; they precede the allow kinds). */
const LISTED_KINDS: readonly SetKind[] = INGRESS_KINDS.filter((k) => !(ALLOW_KINDS as readonly SetKind[]).includes(k));

/** The allow members of `sets` by suffix group (see the header): per suffix, its sources per allow kind, in list order. */
export function allowGroups(sets: SetContents): Map<string, string[][]> {
  const groups = new Map<string, string[][]>();
  ALLOW_KINDS.forEach((kind, k) => {
    for (const m of sets[kind]) {
      const at = m.lastIndexOf(',');
      const suffix = at < 0 ? '' : m.slice(at);
      let sources = groups.get(suffix);
      if (!sources) groups.set(suffix, (sources = ALLOW_KINDS.map(() => [])));
      sources[k]!.push(at < 0 ? m : m.slice(0, at));
    }
  });
  return groups;
}

/** G of the suffix group with `sources` (per allow kind). */
export function groupTermOf(suffix: string, sources: readonly (readonly string[])[]): Uint32Array {
  return groupTerm(suffix, sources.map(sourcesDigest));
}

/** The allow sum of a state from its members (see the header), as 64 hex. */
function allowSum(sets: SetContents): string {
  const sum = new Uint32Array(LIMBS);
  for (const [suffix, sources] of allowGroups(sets)) addInto(sum, groupTermOf(suffix, sources), 1);
  return toHex(sum);
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

/**
 * sum += sign * the term of the egress member `prefix + m` of a kind whose "<kind>\n" is
 * `kindLine`: sha256(<kind> "\n" <prefix> <m>).
 */
function addEgressTerm(sum: Uint32Array, kindLine: string, prefix: string, m: string, sign: 1 | -1): void {
  addInto(sum, sha256Number(kindLine + prefix + m), sign);
}

const egressSums = new WeakMap<readonly string[], Uint32Array>();

/** The egress sum of one list of `kind` (see the header); cached per list object (lists are immutable). */
export function egressListSum(kind: SetKind, list: readonly string[]): Uint32Array {
  let sum = egressSums.get(list);
  if (sum) return sum;
  sum = new Uint32Array(LIMBS);
  const kindLine = `${kind}\n`;
  for (const m of list) addEgressTerm(sum, kindLine, '', m, 1);
  egressSums.set(list, sum);
  return sum;
}

/**
 * A list of `kind`: `prefix` before each of `texts` (a local app's egress-ip list from its
 * allowed destinations, egress.ts), with its sum cached, hashed from the prefix and each text.
 */
export function prefixedEgressList(kind: SetKind, prefix: string, texts: readonly string[]): string[] {
  const list = texts.map((t) => prefix + t);
  const sum = new Uint32Array(LIMBS);
  const kindLine = `${kind}\n`;
  for (const t of texts) addEgressTerm(sum, kindLine, prefix, t, 1);
  egressSums.set(list, sum);
  return list;
}

/**
 * A list built by concatenating `parts` (each a list of `kind` whose members are all in `list`,
 * every member of `list` in exactly one part): its sum is the sum of the parts' sums, cached for
 * `list` without hashing a member (a host's egress-ip list is its local apps' shared lists).
 */
export function seedEgressListSum(kind: SetKind, list: readonly string[], parts: readonly (readonly string[])[]): void {
  if (egressSums.has(list)) return;
  const sum = new Uint32Array(LIMBS);
  for (const part of parts) addInto(sum, egressListSum(kind, part), 1);
  egressSums.set(list, sum);
}

/** `list` of `kind` patched (member-lists.ts patchMemberList), its sum updated from the edits alone. */
export function patchEgressList(kind: SetKind, list: readonly string[], removes: readonly string[], adds: readonly string[]): string[] {
  const next = patchMemberList(list, removes, adds);
  egressListSum(kind, list); // cached, so the next one follows from it
  seedPatchedEgressSum(kind, list, next, removes, adds);
  return next;
}

/**
 * Caches the egress sum of `next`, which is `base` of `kind` with exactly `removes` taken out and
 * `adds` put in (each removed member was in `base`, each added one not), from `base`'s cached
 * sum and the edits: an agent applying a delta pays its edits, not the list. Nothing when
 * `base`'s sum is not cached (the next version of `next` hashes its members).
 */
export function seedPatchedEgressSum(kind: SetKind, base: readonly string[], next: readonly string[], removes: readonly string[], adds: readonly string[]): void {
  const known = egressSums.get(base);
  if (!known || egressSums.has(next)) return;
  const sum = known.slice();
  const kindLine = `${kind}\n`;
  for (const m of removes) addEgressTerm(sum, kindLine, '', m, -1);
  for (const m of adds) addEgressTerm(sum, kindLine, '', m, 1);
  egressSums.set(next, sum);
}

/** The sum of the egress sums of `lists` (one of each of `kinds`, in order). */
function egressSum(kinds: readonly SetKind[], lists: readonly (readonly string[])[]): Uint32Array {
  const sum = new Uint32Array(LIMBS);
  lists.forEach((list, i) => {
    if (list.length > 0) addInto(sum, egressListSum(kinds[i]!, list), 1);
  });
  return sum;
}

/** The "#egress" header line, '' when every egress kind is empty. */
function egressLine(sets: SetContents): string {
  if (!hasEgressMembers(sets)) return '';
  return `#egress ${toHex(egressSum(EGRESS_KINDS, EGRESS_KINDS.map((kind) => sets[kind])))}\n`;
}

/** The "#audit" part of the header (per-group mode), '' when every audit kind is empty. */
function auditLines(sets: SetContents): string {
  if (!hasAuditMembers(sets)) return '';
  let text = `#audit ${AUDIT_KINDS.reduce((n, kind) => n + sets[kind].length, 0)}\n`;
  for (const kind of AUDIT_KINDS) {
    const members = sets[kind];
    text += `#${kind} ${members.length}\n`;
    if (members.length > 0) text += `${members.join('\n')}\n`;
  }
  return text;
}

/** The member counts of the allow kinds (ALLOW_KINDS order). */
function allowCounts(sets: SetContents): number[] {
  return ALLOW_KINDS.map((kind) => sets[kind].length);
}

/** The header up to and including the "#allow" line: the listed part, the allow kinds' counts and the allow sum (64 hex). */
function allowHeader(listed: string, counts: readonly number[], sumHex: string): string {
  let text = listed;
  for (let k = 0; k < ALLOW_KINDS.length; k++) text += `#${ALLOW_KINDS[k]!} ${counts[k]!}\n`;
  return `${text}#allow ${sumHex}\n`;
}

/** The version from the header up to the "#allow" line, the "#egress" line and the "#audit" part (the allow lists are not read). */
function versionOf(prefix: string, egress: string, audit: string): string {
  return sha256Hex(`${prefix}${egress}${audit}`).slice(0, 16);
}

/** The version of {mode, sets}, from the members alone (the definition; see the header). */
export function stateVersion(mode: Mode, sets: SetContents): string {
  return versionWithAllowSum(mode, sets, allowSum(sets));
}

/** The version of {mode, sets} whose allow sum (64 hex) is known (delta-version.ts keeps it per state). */
export function versionWithAllowSum(mode: Mode, sets: SetContents, allowHex: string): string {
  return versionOf(allowHeader(listedText(mode, sets), allowCounts(sets), allowHex), egressLine(sets), auditLines(sets));
}

/**
 * The parts of the header HostVersions versioned a state's `sets` object with (weak: they die with
 * the state), so that the version of a view of that state (agent-view.ts: the egress or audit
 * kinds emptied, maybe another mode) follows from them without reading its allow lists.
 */
interface VersionParts {
  readonly version: string;
  readonly mode: Mode;
  readonly counts: readonly number[];
  readonly hex: string;
  /** The header up to the "#allow" line, the "#egress" line ('' without egress members) and the "#audit" part ('' without audit members). */
  readonly prefix: string;
  readonly egress: string;
  readonly audit: string;
}

const partsOfSets = new WeakMap<SetContents, VersionParts>();

/**
 * The version stateVersion gives {`mode`, `state`'s sets with every egress kind emptied when
 * `without.egress`, every audit kind when `without.audit`}, from the parts the compiler versioned
 * `state` with (its allow lists are not read: the allow part and the listed kinds are the
 * state's). Undefined when HostVersions did not version `state.sets` as `state` (a state decoded,
 * loaded or made by hand): then stateVersion of the view is the way.
 */
export function viewVersion(state: Pick<DesiredState, 'mode' | 'sets' | 'version'>, mode: Mode, without: { readonly egress: boolean; readonly audit: boolean }): string | undefined {
  const parts = partsOfSets.get(state.sets);
  if (parts === undefined || parts.version !== state.version || parts.mode !== state.mode) return undefined;
  const prefix = mode === parts.mode ? parts.prefix : allowHeader(listedText(mode, state.sets), parts.counts, parts.hex);
  return versionOf(prefix, without.egress ? '' : parts.egress, without.audit ? '' : parts.audit);
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
  /** S per allow kind; undefined when the set has no source at all (its claims have no member). */
  readonly digests: readonly string[] | undefined;
  /** G per suffix. */
  readonly terms: Map<string, Uint32Array>;
}

/** What a host was last versioned with. */
interface HostSum {
  readonly sum: Uint32Array;
  readonly hex: string;
  /** The listed kinds' lists and mode the header text `listed` was made of (reused while they are the same objects). */
  readonly lists: readonly (readonly string[])[];
  readonly mode: Mode;
  readonly listed: string;
  /** The allow kinds' counts and the header up to the "#allow" line made of `listed`, them and `hex`. */
  readonly counts: readonly number[];
  readonly prefix: string;
  /** The sum of its own egress lists (egress-task, egress-ip4/6) and the audit part of the header, kept while the lists are the same objects. */
  readonly own: OwnEgress;
  readonly audit: AuditPart;
}

/** The egress sum of a host's own egress kinds (OWN_EGRESS_KINDS: every egress kind but the shared egress-managed4/6). */
interface OwnEgress {
  readonly lists: readonly (readonly string[])[];
  readonly sum: Uint32Array;
}

/** The audit kinds' lists and the "#audit" part of the header they make. */
interface AuditPart {
  readonly lists: readonly (readonly string[])[];
  readonly text: string;
}

/** The egress kinds a host has for itself; egress-managed4/6 are one pair of lists shared by every host (egress.ts). */
const OWN_EGRESS_KINDS = EGRESS_KINDS.filter((k) => k !== 'egress-managed4' && k !== 'egress-managed6');

function sameLists(a: readonly (readonly string[])[], b: readonly (readonly string[])[]): boolean {
  return a.length === b.length && a.every((l, i) => l === b[i]);
}

function isSorted(list: readonly string[]): boolean {
  for (let i = 1; i < list.length; i++) if (list[i - 1]! > list[i]!) return false;
  return true;
}

/**
 * The compiler's fast path (see the header): the per-set cache of sorted sources, S and G, and
 * the sum of every host it versioned. `textsOf(set)` gives a set's source texts per allow kind
 * (index = ALLOW_KINDS index), in any order, duplicate-free. One instance per compile or per
 * incremental compiler (whose `textsOf` must not change meaning); entries per set are weak.
 */
export class HostVersions<S extends object> {
  private readonly bySet = new WeakMap<S, SetTerms>();
  private readonly hosts = new Map<string, HostSum>();
  /** The last pair of egress-managed lists seen and their summed sum (every host of an update has the same pair). */
  private managed: { readonly m4: readonly string[]; readonly m6: readonly string[]; readonly sum: Uint32Array } | undefined;

  constructor(private readonly textsOf: (set: S) => KindTexts) {}

  /** The version of a host's new state whose allow lists are exactly the members of `claims`; its sum is kept. */
  fresh(hostId: string, mode: Mode, sets: SetContents, claims: Iterable<VersionClaim<S>>): string {
    const sum = new Uint32Array(LIMBS);
    for (const c of claims) {
      const term = this.term(c.set, c.suffix);
      if (term) addInto(sum, term, 1);
    }
    return this.record(hostId, mode, sets, sum, undefined, allowCounts(sets));
  }

  /**
   * The version of a host's state after `changes` (in the order made) to the claims it was last
   * versioned with (fresh or patched); `sets` is the new state's lists, `counts` its allow kinds'
   * member counts (ALLOW_KINDS order; by default read from `sets`: a patching caller passes them,
   * its allow lists may be pending,
   * pending-list.ts). O(changes) plus the header.
   */
  patched(hostId: string, mode: Mode, sets: SetContents, changes: readonly ClaimChange<S>[], counts: readonly number[] = allowCounts(sets)): string {
    const old = this.hosts.get(hostId);
    if (!old) throw new Error(`state version: host ${hostId} has no version sum to patch`);
    const sum = old.sum.slice();
    for (const c of changes) {
      const minus = c.from === undefined ? undefined : this.term(c.from, c.suffix);
      const plus = c.to === undefined ? undefined : this.term(c.to, c.suffix, c.from, c.diff);
      if (minus === plus) continue; // the same term (or none) out and in
      if (minus) addInto(sum, minus, -1);
      if (plus) addInto(sum, plus, 1);
    }
    return this.record(hostId, mode, sets, sum, old, counts);
  }

  /** The version of a host's state whose allow lists did not change since it was last versioned (only egress lists did); `counts` as `patched`. */
  reversioned(hostId: string, mode: Mode, sets: SetContents, counts: readonly number[] = allowCounts(sets)): string {
    const old = this.hosts.get(hostId);
    if (!old) throw new Error(`state version: host ${hostId} has no version sum to reuse`);
    return this.record(hostId, mode, sets, old.sum, old, counts);
  }

  /** The host left: its sum is dropped. */
  forget(hostId: string): void {
    this.hosts.delete(hostId);
  }

  private record(hostId: string, mode: Mode, sets: SetContents, sum: Uint32Array, old: HostSum | undefined, counts: readonly number[]): string {
    const lists = LISTED_KINDS.map((kind) => sets[kind]);
    const listed = old && old.mode === mode && sameLists(lists, old.lists) ? old.listed : listedText(mode, sets);
    const hex = old && old.sum === sum ? old.hex : toHex(sum);
    // A host whose allow lists did not change (only its egress lists did) reuses its header prefix.
    const same = old !== undefined && old.listed === listed && old.hex === hex && counts.every((n, k) => n === old.counts[k]);
    const prefix = same ? old.prefix : allowHeader(listed, counts, hex);
    // The egress and audit parts from what is cached (a task move changes only the shared
    // egress-managed lists on most hosts: their sum is added once per pair, not per host).
    const ownLists = OWN_EGRESS_KINDS.map((kind) => sets[kind]);
    const own = old && sameLists(ownLists, old.own.lists) ? old.own : { lists: ownLists, sum: egressSum(OWN_EGRESS_KINDS, ownLists) };
    const auditLists = AUDIT_KINDS.map((kind) => sets[kind]);
    const audit = old && sameLists(auditLists, old.audit.lists) ? old.audit : { lists: auditLists, text: auditLines(sets) };
    this.hosts.set(hostId, { sum, hex, lists, mode, listed, counts, prefix, own, audit });
    const egress = this.egressPart(sets, own);
    const version = versionOf(prefix, egress, audit.text);
    partsOfSets.set(sets, { version, mode, counts, hex, prefix, egress, audit: audit.text });
    return version;
  }

  /** The "#egress" line of a host with `own` (egressLine's value, with the managed pair's sum summed once per pair). */
  private egressPart(sets: SetContents, own: OwnEgress): string {
    const m4 = sets['egress-managed4'];
    const m6 = sets['egress-managed6'];
    if (!hasEgressMembers(sets)) return '';
    let managed = this.managed;
    if (!managed || managed.m4 !== m4 || managed.m6 !== m6) {
      this.managed = managed = { m4, m6, sum: egressSum(['egress-managed4', 'egress-managed6'], [m4, m6]) };
    }
    const sum = own.sum.slice();
    addInto(sum, managed.sum, 1);
    return `#egress ${toHex(sum)}\n`;
  }

  /** G of a claim with `set` and `suffix`; undefined when the set has no source (the claim has no member). */
  private term(set: S, suffix: string, from?: S, diff?: ClaimChange<S>['diff']): Uint32Array | undefined {
    const entry = this.setTerms(set, from, diff);
    if (entry.digests === undefined) return undefined;
    let term = entry.terms.get(suffix);
    if (!term) entry.terms.set(suffix, (term = groupTerm(suffix, entry.digests)));
    return term;
  }

  /** A set's sorted sources and S: derived from `from`'s by `diff` when both are known, else from textsOf. */
  private setTerms(set: S, from?: S, diff?: ClaimChange<S>['diff']): SetTerms {
    let entry = this.bySet.get(set);
    if (entry) return entry;
    const base = from === undefined || diff === undefined ? undefined : this.bySet.get(from);
    const sorted = base
      ? base.sorted.map((list, k) => (diff!.removed[k]!.length + diff!.added[k]!.length === 0 ? list : patchMemberList(list, diff!.removed[k]!, diff!.added[k]!)))
      : this.textsOf(set).map((texts) => (isSorted(texts) ? texts : texts.slice().sort()));
    const digests = sorted.every((list) => list.length === 0)
      ? undefined
      : sorted.map((list, k) => (list.length === 0 ? EMPTY_DIGEST : base?.sorted[k] === list && base.digests ? base.digests[k]! : sourcesDigest(list)));
    this.bySet.set(set, (entry = { sorted, digests, terms: new Map() }));
    return entry;
  }
}

/**
 * The version of releases before v2: the first 16 hex of sha256 over `portcullis-state-v1\n`,
 * the mode and '\n', then per kind in SET_KINDS order `#<kind> <count>\n` and every member
 * followed by '\n' (the kinds before egress existed; a v1 state has no egress member). Nothing is versioned with it any more; it is kept only so that an upgraded
 * agent still trusts the state an older release saved on its disk (agent/state-store.ts: the
 * state is re-versioned as it is read, so fail-static survives the upgrade).
 */
export function stateVersionV1(mode: Mode, sets: SetContents): string {
  const parts = [`portcullis-state-v1\n${mode}\n`];
  for (const kind of INGRESS_KINDS) {
    const members = sets[kind];
    parts.push(`#${kind} ${members.length}\n`);
    if (members.length > 0) parts.push(`${members.join('\n')}\n`);
  }
  return hash('sha256', parts.join('')).slice(0, 16);
}
