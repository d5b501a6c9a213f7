/**
 * The second half of suggest's aggregation (suggest-aggregate.ts collects; this tallies): from
 * the evidence records, bucketed per (source, port and protocol) in the order they came, to the
 * rules and their tallies.
 *
 * Design. Per bucket, the destination apps seen become groups (one cover per distinct set of
 * apps, suggest-names `coverApps`), each giving a LIST per (destination group, port and
 * protocol); per list, the source apps become groups and the addresses networks (the smallest
 * of the policy holding each, else one proposed network of the addresses left), each giving a
 * rule. Tallies are added list by list, bucket by bucket, record by record (or a bucket's sums at
 * once, suggest-evidence.ts, which adds up to the same), which is the order
 * of the per-record walk (test/support/suggest-oracle.ts): which first- or last-seen text is kept
 * on a tie, which of two records of one key counts, and the order in which proposed groups and
 * networks are named (by suggest-select.ts, after the cap) come out the same. Text and Sets are built per bucket, list or rule, not per record.
 */
import type { ClusterState } from '../inventory/cluster-state.js';
import type { Policy } from '../policy/policy-model.js';
import type { EvidenceStore, RuleTally } from './suggest-evidence.js';

export type { RuleTally } from './suggest-evidence.js';
import type { Judging } from './suggest-judging.js';
import { NameBook, coverApps, groupMembers, type CoverPart, type GroupMembers } from './suggest-names.js';

/**
 * A proposed group (`apps`) or network (`cidrs`), not named yet: its name is `book.peer(words)`
 * given in the order of the list (the order in which the per-record walk named them), for all
 * of them or the families of some (suggest-select.ts). A rule's `from` or `to` names it by
 * proposedRef(index).
 */
export type ProposedPeer = { readonly words: string; readonly apps: readonly string[] } | { readonly words: string; readonly cidrs: readonly string[] };

/** The `from` / `to` of a RuleTally naming proposed peer `index` (no policy name starts with NUL). */
export const proposedRef = (index: number) => `\u0000${index}`;

/** The proposed peer a rule's `from` / `to` names, or undefined (a name of the policy). */
export const proposedIndex = (ref: string): number | undefined => (ref.charCodeAt(0) === 0 ? Number(ref.slice(1)) : undefined);

export interface Aggregate {
  /** Their `from` and `to`: names of the policy, or proposedRef of a proposed peer. */
  readonly rules: readonly RuleTally[];
  /** The host ids of RuleTally.hosts. */
  readonly hostIds: readonly string[];
  readonly groups: readonly GroupMembers[];
  readonly book: NameBook;
  readonly proposed: readonly ProposedPeer[];
  readonly skips: ReadonlyMap<string, { flows: number; connections: number }>;
  readonly allowedNow: number;
  readonly coveredByEgress: number;
}

export interface Skip {
  flows: number;
  connections: number;
}

/** What suggest-aggregate.ts collected of the records (items: the evidence records, in order). */
export interface Collected {
  readonly policy: Policy;
  readonly cluster: ClusterState;
  readonly judging: Judging;
  readonly addressNetworks: readonly (readonly string[] | undefined)[];
  /** The evidence records, per bucket. */
  readonly evidence: EvidenceStore;
  /** `count` buckets: source key (apps: 2 * set id, address: 2 * key + 1), port key, destination set, other destination sets. */
  readonly buckets: { readonly count: number; readonly source: readonly number[]; readonly portKey: readonly number[]; readonly dest: readonly number[]; readonly more: readonly (number[] | undefined)[] };
  readonly setApps: readonly (readonly string[])[];
  readonly portOf: readonly (string | number)[];
  readonly addressTexts: readonly string[];
  /** Host ids by number (the evidence's hosts). */
  readonly hostTexts: readonly string[];
  readonly skips: ReadonlyMap<string, Skip>;
  readonly allowedNow: number;
  readonly coveredByEgress: number;
}

/** A part of a cover with its name once given (in the order of the per-record walk). */
interface Part {
  readonly part: CoverPart;
  name?: string;
}

/** A list: the buckets going to one destination group on one port and protocol. */
interface List {
  readonly to: string;
  readonly port: string | number;
  readonly appBuckets: number[];
  readonly addressBuckets: number[];
  readonly rules: Map<string, RuleTally>;
}

export function tallyRules(c: Collected): Aggregate {
  const { judging, buckets, setApps, evidence } = c;
  const groups = groupMembers(c.policy, c.cluster);
  const book = new NameBook(c.policy);
  const proposed: ProposedPeer[] = [];
  const proposedGroups = new Map<string, string>();
  const proposedNetworks = new Map<string, string>();
  const nameOf = (p: Part): string => {
    if (p.name !== undefined) return p.name;
    const part = p.part;
    if ('group' in part) return (p.name = part.group);
    const key = part.proposed.join('\u0000');
    let ref = proposedGroups.get(key);
    if (ref === undefined) {
      proposedGroups.set(key, (ref = proposedRef(proposed.length)));
      proposed.push({ words: part.proposed.map((a) => a.slice(1)).join('-'), apps: part.proposed });
    }
    return (p.name = ref);
  };
  const covers = new Map<string, Part[]>();
  const coverOf = (apps: readonly string[]): Part[] => {
    const key = JSON.stringify(apps);
    let parts = covers.get(key);
    if (!parts) covers.set(key, (parts = coverApps(new Set(apps), groups).map((part) => ({ part }))));
    return parts;
  };
  const coverBySet: Part[][] = [];
  const coverOfSet = (id: number): Part[] => (coverBySet[id] ??= coverOf(setApps[id]!));
  const meets = (p: Part, apps: readonly string[]) => apps.some((a) => p.part.apps.has(a));
  const union = (ids: Iterable<number>) => [...new Set([...ids].flatMap((id) => setApps[id]!))].sort();

  // Phase 2: per bucket (source, port), the destination apps as groups: its lists.
  const lists: List[] = [];
  const listIndex = new Map<string, Map<number, number>>();
  /** For a bucket of several destination sets: the lists of each. */
  const listsOfDest = new Map<number, Map<number, Set<number>>>();
  for (let b = 0; b < buckets.count; b++) {
    const more = buckets.more[b];
    const dests = more ? [buckets.dest[b]!, ...more] : [buckets.dest[b]!];
    const cover = more ? coverOf(union(dests)) : coverOfSet(dests[0]!);
    const portKey = buckets.portKey[b]!;
    const perDest = more ? new Map<number, Set<number>>() : undefined;
    if (perDest) listsOfDest.set(b, perDest);
    for (const d of dests) {
      for (const p of cover) {
        if (more && !meets(p, setApps[d]!)) continue;
        const to = nameOf(p);
        let byPort = listIndex.get(to);
        if (!byPort) listIndex.set(to, (byPort = new Map()));
        let l = byPort.get(portKey);
        if (l === undefined) {
          byPort.set(portKey, (l = lists.length));
          lists.push({ to, port: c.portOf[portKey]!, appBuckets: [], addressBuckets: [], rules: new Map() });
        }
        const list = lists[l]!;
        const into = buckets.source[b]! % 2 === 0 ? list.appBuckets : list.addressBuckets;
        if (into[into.length - 1] !== b) into.push(b);
        if (perDest) {
          let s = perDest.get(d);
          if (!s) perDest.set(d, (s = new Set()));
          s.add(l);
        }
      }
    }
  }

  // Phase 3: per list, the sources as groups and networks: its rules, and the tallies in order.
  const rules = new Map<string, RuleTally>();
  const ruleOf = (list: List, from: string): RuleTally => {
    let r = list.rules.get(from);
    if (r) return r;
    const key = `${from}\u0001${list.to}\u0001${String(list.port)}`;
    r = rules.get(key);
    if (!r) rules.set(key, (r = { from, to: list.to, port: list.port, connections: 0, bytes: 0, flows: 0, first: '', firstMs: 0, last: '', lastMs: 0, hosts: new Set(), verdicts: 0, protocols: 0 }));
    list.rules.set(from, r);
    return r;
  };
  const smallest: (string | null)[] = [];
  const smallestOf = (k: number): string | undefined => {
    let net = smallest[k];
    if (net === undefined) {
      const networks = c.addressNetworks[k];
      smallest[k] = net = (networks ? judging.nets.smallestOf(networks) : judging.smallest(c.addressTexts[k]!)) ?? null;
    }
    return net ?? undefined;
  };
  const tally = (l: number, b: number, into: readonly RuleTally[] | RuleTally) => {
    const perDest = listsOfDest.get(b);
    evidence.tally(b, perDest ? (d) => perDest.get(d)?.has(l) === true : undefined, into);
  };
  for (let l = 0; l < lists.length; l++) {
    const list = lists[l]!;
    if (list.appBuckets.length > 0) {
      const sourceSets = list.appBuckets.map((b) => buckets.source[b]! / 2);
      const cover = sourceSets.length === 1 ? coverOfSet(sourceSets[0]!) : coverOf(union(sourceSets));
      list.appBuckets.forEach((b, i) => {
        const apps = setApps[sourceSets[i]!]!;
        const into = cover.length === 1 && apps.length > 0 ? ruleOf(list, nameOf(cover[0]!)) : [...new Set(cover.filter((p) => meets(p, apps)).map((p) => ruleOf(list, nameOf(p))))];
        tally(l, b, into);
      });
    }
    const outside: number[] = [];
    for (const b of list.addressBuckets) {
      const net = smallestOf((buckets.source[b]! - 1) / 2);
      if (net !== undefined) tally(l, b, ruleOf(list, net));
      else outside.push(b);
    }
    if (outside.length > 0) {
      const addresses = outside.map((b) => c.addressTexts[(buckets.source[b]! - 1) / 2]!).sort();
      const key = addresses.join('\u0000');
      let net = proposedNetworks.get(key);
      if (net === undefined) {
        const more = addresses.length > 1 ? `-and-${addresses.length - 1}-more` : '';
        proposedNetworks.set(key, (net = proposedRef(proposed.length)));
        proposed.push({ words: `seen-${addresses[0]}${more}`, cidrs: addresses.map((a) => `${a}/${a.includes(':') ? 128 : 32}`) });
      }
      const rule = ruleOf(list, net);
      for (const b of outside) tally(l, b, rule);
    }
  }
  return { rules: [...rules.values()], hostIds: c.hostTexts, groups, book, proposed, skips: c.skips, allowedNow: c.allowedNow, coveredByEgress: c.coveredByEgress };
}
