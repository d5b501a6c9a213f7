/**
 * The egress verdict: may app A, running on host X, open a connection to a managed claim C?
 * (docs/architecture.md "Semantics", egress). The same tier walk as the destination side, with
 * the source being the task, not the host address:
 *  - a `group: G` peer matches when A itself is a member of G;
 *  - a `network: N` peer matches when X's address of the destination's family is in N, and when
 *    X has several such addresses the verdict must be ALLOW for every one of them (the kernel may
 *    pick any as the source); a host with no address of the family (its source address is not
 *    known) is allowed only where every address of the family would be;
 *  - `any` always matches.
 * A claim with several owners (a port conflict) is allowed when every owner's match allows.
 *
 * How (one source of truth with the destination side): for app A, rule r's `from` set is ALL when
 * one of its peers is `any` or a group of A, else the union of its network sets; label sets
 * likewise; then SourceResolver (resolve-sources.ts) gives, per PortMatch, the set R of source
 * addresses A may come from, and "A on X allowed" ⇔ X's addresses of the family ⊆ R. Apps with the
 * same group list share all of that (cache by the sorted list).
 *
 * Source classes: R is a Boolean combination of ALL and the policy's network sets, so it is a
 * union of "segments" of the address space cut at every network interval boundary. Two hosts
 * whose addresses of a family lie in the same segments get the same verdict for every app and
 * claim, so verdicts and the lists made from them are per (group list, source class, claim), not
 * per host: with no network peers every host is in one class per family. A class is tested by one
 * representative address per segment. Pure; memoised per instance (one per compile / per policy
 * of an incremental compiler: nothing here depends on where tasks run).
 */
import type { ParsedAddress } from '../net/address.js';
import type { Family } from '../net/family.js';
import type { PeerRef, Policy } from '../policy/policy-model.js';
import { AddressSet, MAX4, MAX6 } from './address-set.js';
import type { PortMatch } from './host-claims.js';
import { SourceResolver } from './resolve-sources.js';

/** Which addresses a host sends from, for one family, as the verdict sees them. */
export interface SourceClass {
  readonly family: Family;
  /** Names the class: equal keys, equal verdicts. */
  readonly key: string;
  /** One address per segment; empty when the host has no address of the family. */
  readonly reps: readonly ParsedAddress[];
}

/** Resolution for the apps of one group list. */
interface GroupVerdicts {
  readonly resolver: SourceResolver;
  readonly labelSets: Map<string, AddressSet>;
  readonly groups: ReadonlySet<string>;
  /** Verdict per "<class key>\0<claim key>". */
  readonly allowed: Map<string, boolean>;
}

const NO_GROUPS: readonly string[] = [];

function coversFamily(set: AddressSet, family: Family): boolean {
  const r = family === 4 ? set.v4 : set.v6;
  return r.length === 2 && r[0] === 0n && r[1] === (family === 4 ? MAX4 : MAX6);
}

/** Index of the first element of sorted `cuts` greater than v (how many cuts are ≤ v). */
function segmentOf(cuts: readonly bigint[], v: bigint): number {
  let lo = 0;
  let hi = cuts.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (cuts[mid]! <= v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export class EgressVerdicts {
  private readonly byGroups = new Map<string, GroupVerdicts>();
  /** Per claim key: the groups its owners' resolutions read. */
  private readonly groupsRead = new Map<string, ReadonlySet<string>>();
  /** Per rule: its `from` set for an app in no group (ALL with an `any` peer, else its networks' union). */
  private readonly baseFrom: AddressSet[] = [];
  /** Group → the rules with that group among their `from` peers. */
  private readonly rulesNaming = new Map<string, number[]>();
  /** Segment boundaries per family (see the header): every network interval's start and end + 1. */
  private cuts: Record<Family, bigint[]> = { 4: [], 6: [] };

  /** Use `create` (the per-rule sets are built in steps). */
  private constructor(
    private readonly policy: Policy,
    private readonly networkSet: (name: string) => AddressSet,
  ) {}

  /** A new instance, built in steps (yields between batches of rules and networks). */
  static *create(policy: Policy, networkSet: (name: string) => AddressSet): Generator<void, EgressVerdicts> {
    const v = new EgressVerdicts(policy, networkSet);
    for (const [i, r] of policy.rules.entries()) {
      v.baseFrom.push(r.from.some((p) => p.kind === 'any') ? AddressSet.ALL : AddressSet.unionAll(r.from.filter((p) => p.kind === 'network').map((p) => networkSet(p.name))));
      for (const p of r.from) {
        if (p.kind !== 'group') continue;
        let list = v.rulesNaming.get(p.name);
        if (!list) v.rulesNaming.set(p.name, (list = []));
        list.push(i);
      }
      if (i % 512 === 511) yield;
    }
    const cuts: Record<Family, Set<bigint>> = { 4: new Set(), 6: new Set() };
    for (const [k, net] of policy.networks.entries()) {
      const set = networkSet(net.name);
      for (const [family, ranges] of [[4, set.v4], [6, set.v6]] as const) {
        for (let i = 0; i < ranges.length; i += 2) cuts[family].add(ranges[i]!).add(ranges[i + 1]! + 1n);
      }
      if (k % 512 === 511) yield;
    }
    const sorted = (s: Set<bigint>) => [...s].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    v.cuts = { 4: sorted(cuts[4]), 6: sorted(cuts[6]) };
    return v;
  }

  /** The source class of a host's addresses of `family` (others are ignored). */
  sourceClass(addresses: readonly ParsedAddress[], family: Family): SourceClass {
    const bySegment = new Map<number, ParsedAddress>();
    for (const a of addresses) {
      if (a.family !== family) continue;
      const s = segmentOf(this.cuts[family], a.value);
      if (!bySegment.has(s)) bySegment.set(s, a);
    }
    const segments = [...bySegment.keys()].sort((a, b) => a - b);
    return { family, key: `${family}:${segments.length === 0 ? 'none' : segments.join(',')}`, reps: segments.map((s) => bySegment.get(s)!) };
  }

  /**
   * Whether an app with `groups` (sorted), on a host of `cls`, may reach a claim whose owners'
   * PortMatches are `matches` (named together by `claimKey`). Only the app's groups that the
   * claim's resolution reads (`PortMatch.groups`) can change it, so the verdict is computed and
   * memoised for those alone: most apps share the verdict of an app in no group.
   */
  allowed(groups: readonly string[], cls: SourceClass, claimKey: string, matches: readonly PortMatch[]): boolean {
    let read = this.groupsRead.get(claimKey);
    if (!read) this.groupsRead.set(claimKey, (read = new Set(matches.flatMap((m) => m.groups))));
    const effective = groups.length === 0 || read.size === 0 ? NO_GROUPS : groups.filter((name) => read.has(name));
    const g = this.forGroups(effective);
    const key = `${cls.key}\0${claimKey}`;
    let ok = g.allowed.get(key);
    if (ok === undefined) {
      ok = matches.every((m) => {
        const set = g.resolver.resolve(m.matching, m.labelKey, this.labelSet(g, m.labelKey));
        return cls.reps.length === 0 ? coversFamily(set, cls.family) : cls.reps.every((a) => set.contains(a));
      });
      g.allowed.set(key, ok);
    }
    return ok;
  }

  private forGroups(groups: readonly string[]): GroupVerdicts {
    const key = groups.join('\n');
    let g = this.byGroups.get(key);
    if (!g) {
      const mine = new Set(groups);
      // The sets of an app in no group, with ALL for the rules naming one of `groups` (O(those rules)).
      let ruleFrom = this.baseFrom;
      if (groups.length > 0) {
        ruleFrom = ruleFrom.slice();
        for (const name of groups) for (const r of this.rulesNaming.get(name) ?? []) ruleFrom[r] = AddressSet.ALL;
      }
      const resolver = new SourceResolver(this.policy.rules.map((r) => r.action), ruleFrom, this.policy.defaults.action === 'allow');
      this.byGroups.set(key, (g = { resolver, labelSets: new Map(), groups: mine, allowed: new Map() }));
    }
    return g;
  }

  /** A label key's set for the apps of `g`: ALL when it names `any` or one of their groups, else its networks. */
  private labelSet(g: GroupVerdicts, labelKey: string): AddressSet {
    let set = g.labelSets.get(labelKey);
    if (!set) {
      const peers: PeerRef[] = labelKey === '' ? [] : labelKey.split('\n').map(peerOfLabelKey);
      const all = peers.some((p) => p.kind === 'any' || (p.kind === 'group' && g.groups.has(p.name)));
      set = all ? AddressSet.ALL : AddressSet.unionAll(peers.filter((p) => p.kind === 'network').map((p) => this.networkSet(p.name)));
      g.labelSets.set(labelKey, set);
    }
    return set;
  }
}

/** One peer of a label key ("any", "group:<name>", "network:<name>"; cluster-index.ts labelKey). */
function peerOfLabelKey(text: string): PeerRef {
  if (text === 'any') return { kind: 'any' };
  if (text.startsWith('group:')) return { kind: 'group', name: text.slice('group:'.length) };
  return { kind: 'network', name: text.slice('network:'.length) };
}
