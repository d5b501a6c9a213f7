/**
 * The aggregation of `portcullis suggest` (suggest.ts): from the recorded flows to one tally per
 * suggested rule, in time linear in the records with small constant work per record.
 *
 * Design. What suggest makes of a record depends on a few things only, each worked out once:
 *  - its CLAIM (the destination as recorded: host, address, protocol, port, port name, owners),
 *    interned by value (hash by host and port, then compared field by field; no string built per
 *    record): whether it is managed, a port conflict, the destination apps and the port a rule
 *    names (suggest-judging claimPart);
 *  - its SOURCE (ingress: the address, whether a cluster host with its apps; egress: the
 *    reporter and the app), interned the same way: the source apps or the canonical address
 *    (sourcePart) and a judging signature;
 *  - the pair (claim, source class): the judgement (Judging, memoized as it is per record) and
 *    the item it gives. An outside address's class is what the judging reads of it (whether its
 *    spelling is classed, its family, the networks holding it), so the many outside addresses
 *    of a claim share one judgement; any address of a cluster host, or one that does not parse,
 *    is its own class. Every record of a pair has the judging key of the pair's first record,
 *    and pairs are judged in the order of their first records, so each judging key is judged
 *    on the same record as by a walk over every record (test/flows-suggest-fast.test.ts
 *    compares with that walk, test/support/suggest-oracle.ts).
 * Evidence records then go, as numbers in arrays (no object per record), into BUCKETS per
 * (source, port and protocol) in the order they come, which give the destination groups (one
 * cover per distinct set of apps), LISTS per (destination group, port and protocol), which give
 * the source groups and networks, and RULES. Tallies are added list by list, bucket by bucket,
 * record by record: the order of the per-record walk, so ties (which first- or last-seen text is
 * kept) and duplicate keys come out the same. Names of proposed groups and networks are given
 * in that order too. What is built as text or as a Set is per bucket, list or rule, never per
 * record.
 */
import type { ClusterState } from '../inventory/cluster-state.js';
import type { Policy } from '../policy/policy-model.js';
import type { FlowEndpointApp, ObservedFlow } from './observed-flow.js';
import { parseAddress } from '../net/address.js';
import { isoMs } from './iso-time.js';
import { Judging, claimPart, claimText, sourcePart, unnameable } from './suggest-judging.js';
import { NameBook, coverApps, groupMembers, type CoverPart, type GroupMembers } from './suggest-names.js';
import type { SuggestOptions, SuggestedGroup, SuggestedNetwork } from './suggest.js';

/** The tally of one rule (Evidence once finished). */
export interface RuleTally {
  readonly from: string;
  readonly to: string;
  readonly port: string | number;
  connections: number;
  bytes: number;
  flows: number;
  first: string;
  firstMs: number;
  last: string;
  lastMs: number;
  /** Host ids (interned). */
  readonly hosts: Set<number>;
  /** Bits: 1 allowed, 2 denied, 4 audit. */
  verdicts: number;
  /** Bits: 1 tcp, 2 udp. */
  protocols: number;
  seen?: Set<string>;
}

export interface Aggregate {
  readonly rules: readonly RuleTally[];
  /** The host ids of RuleTally.hosts. */
  readonly hostIds: readonly string[];
  readonly groups: readonly GroupMembers[];
  readonly book: NameBook;
  readonly proposedGroups: ReadonlyMap<string, SuggestedGroup>;
  readonly proposedNetworks: ReadonlyMap<string, SuggestedNetwork>;
  readonly skips: ReadonlyMap<string, { flows: number; connections: number }>;
  readonly allowedNow: number;
  readonly coveredByEgress: number;
}

const verdictBit = (v: string) => (v === 'allowed' ? 1 : v === 'denied' ? 2 : v === 'audit' ? 4 : 0);

interface Skip {
  flows: number;
  connections: number;
}

/** What the records of one (claim, source class) give: allowed now, a skip, or evidence. */
type Outcome = { readonly kind: 'allowed' } | { readonly kind: 'skip'; readonly skip: Skip } | { readonly kind: 'item'; readonly portKey: number; readonly destSet: number; readonly sourceApps: number };

interface Claim {
  readonly d: ObservedFlow['destination'];
  readonly host: number;
  /** (host, protocol, port) interned: the claim of egressClaims. */
  readonly claimPort: number;
  readonly protocolBit: number;
  /** Unmanaged, or a port conflict: the skip reason of every record. */
  readonly skipReason?: string;
  skip?: Skip;
  readonly outcomes: Map<number, Outcome>;
  part?: ReturnType<typeof claimPart>;
  /** The destination apps' set and the port key, once worked out. */
  destSet?: number;
  portKey?: number;
  /** The claim's text and recorded owners, for judging (once per claim). */
  judged?: { readonly text: string; readonly recorded: ReturnType<Judging['recordedOf']> };
}

interface Source {
  readonly address: string;
  readonly hostId: string | undefined;
  readonly host: number;
  readonly kindHost: boolean;
  readonly apps: readonly string[];
  readonly reportedBy: string;
  /** The source class: what judging and the item read of the source. */
  readonly cls: number;
  /** The canonical address's key (addresses: 2 * id + 1), or -1; the canonical address. */
  readonly addressKey: number;
  readonly canonical: string | undefined;
  part?: ReturnType<typeof sourcePart>;
  /** The source apps' set (2 * id; -1: an address), once worked out (-2: not yet). */
  appsSet: number;
}

/** An address text seen as an ingress source: its judging signature, address key, and the sources from it. */
interface AddressInfo {
  readonly sig: number;
  readonly addressKey: number;
  readonly canonical: string | undefined;
  readonly sources: Source[];
}

function sameStrings(a: readonly string[], b: readonly string[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function sameOwners(a: readonly FlowEndpointApp[], b: readonly FlowEndpointApp[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i]!.appId !== b[i]!.appId || !sameStrings(a[i]!.taskIds, b[i]!.taskIds)) return false;
  return true;
}

/** Strings to dense ids. */
class Interner {
  private readonly ids = new Map<string, number>();
  readonly texts: string[] = [];
  id(text: string): number {
    let id = this.ids.get(text);
    if (id === undefined) {
      this.ids.set(text, (id = this.texts.length));
      this.texts.push(text);
    }
    return id;
  }
  get(text: string): number | undefined {
    return this.ids.get(text);
  }
}

/** Which keys occur more than once among `records` (open addressing on a string hash; exact). */
function duplicatedKeys(records: readonly ObservedFlow[]): Uint8Array | undefined {
  let size = 16;
  while (size < records.length * 2) size *= 2;
  const mask = size - 1;
  const table = new Int32Array(size).fill(-1);
  let dup: Uint8Array | undefined;
  for (let j = 0; j < records.length; j++) {
    const key = records[j]!.key;
    let h = 0x811c9dc5;
    for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 16777619);
    h &= mask;
    for (;;) {
      const at = table[h]!;
      if (at === -1) {
        table[h] = j;
        break;
      }
      if (records[at]!.key === key) {
        dup ??= new Uint8Array(records.length);
        dup[at] = 1;
        dup[j] = 1;
        break;
      }
      h = (h + 1) & mask;
    }
  }
  return dup;
}

export function aggregate(policy: Policy, cluster: ClusterState, flows: readonly ObservedFlow[], options: SuggestOptions): Aggregate {
  let mask = 0;
  for (const v of options.verdicts ?? ['denied', 'audit']) mask |= verdictBit(v);
  const since = options.sinceMs;
  const judging = new Judging(policy, cluster);
  const skips = new Map<string, Skip>();
  const skipOf = (reason: string): Skip => {
    let s = skips.get(reason);
    if (!s) skips.set(reason, (s = { flows: 0, connections: 0 }));
    return s;
  };
  const hosts = new Interner();
  const hostNum = (h: string | undefined) => (h === undefined || h === '' ? -1 : hosts.id(h));
  const claimPorts = new Interner();
  const claims = new Map<string, Map<number, Claim[]>>();
  const claimOf = (f: ObservedFlow): Claim => {
    const d = f.destination;
    let byPort = claims.get(d.hostId);
    if (!byPort) claims.set(d.hostId, (byPort = new Map()));
    const pp = d.port * 2 + (d.protocol === 'udp' ? 1 : 0);
    let list = byPort.get(pp);
    if (!list) byPort.set(pp, (list = []));
    for (const c of list) if (c.d.protocol === d.protocol && c.d.address === d.address && c.d.portName === d.portName && sameOwners(c.d.apps, d.apps)) return c;
    let skipReason: string | undefined;
    if (d.apps.every((a) => a.appId === '')) skipReason = 'no task claims the port now (unmanaged): nothing to allow';
    else {
      const owners = d.apps.reduce((n, a) => n + Math.max(a.taskIds.length, 1), 0);
      const n = Math.max(owners, judging.owners(f).length);
      if (n > 1) skipReason = `${d.protocol} ${d.port} on ${d.hostId} is claimed by ${n} task ports (a port conflict, see the compile reports): resolve it first`;
    }
    const claimPort = claimPorts.id(`${d.hostId}\u0000${d.protocol}\u0000${d.port}`);
    const c: Claim = { d, host: hostNum(d.hostId), claimPort, protocolBit: d.protocol === 'tcp' ? 1 : d.protocol === 'udp' ? 2 : 0, ...(skipReason !== undefined ? { skipReason } : {}), outcomes: new Map() };
    list.push(c);
    return c;
  };

  // Sources. Classes: ingress by (judging signature, host kind and its apps), egress by source.
  const classes = new Interner();
  /** The canonical addresses, by address key ((key - 1) / 2), and the networks holding each where worked out. */
  const addressTexts: string[] = [];
  const addressNetworks: (readonly string[] | undefined)[] = [];
  const plainClass: number[] = [];
  const addresses = new Map<string, AddressInfo>();
  const addressOf = (text: string): AddressInfo => {
    let info = addresses.get(text);
    if (info) return info;
    const parsed = parseAddress(text, { mapped: 'accept' });
    const ip = parsed.ok ? parsed.canonical : undefined;
    const hostish = !parsed.ok || judging.hostAddresses.has(parsed.canonical) || judging.classes.isHostAddress(parsed.canonical) || judging.classes.isHostAddress(text);
    let sig: string;
    let networks: readonly string[] | undefined;
    if (!parsed.ok || hostish) sig = `u\u0000${text}`;
    else {
      const classed = parsed.canonical === text && !(text.includes(':') && text.includes('.'));
      networks = judging.nets.networksOfParsed(parsed);
      sig = `n\u0000${classed ? 1 : 0}\u0000${parsed.family}\u0000${networks.join('\u0000')}`;
    }
    let addressKey = -1;
    if (ip !== undefined && ip !== text) addressKey = addressOf(ip).addressKey;
    else if (ip !== undefined) {
      addressKey = 2 * addressTexts.length + 1;
      addressTexts.push(ip);
      addressNetworks.push(networks);
    }
    info = { sig: classes.id(sig), addressKey, canonical: ip, sources: [] };
    addresses.set(text, info);
    return info;
  };
  const appLists = new Interner();
  const egressSources = new Map<string, Source[]>();
  const newSource = (f: ObservedFlow, cls: number, addressKey: number, canonical: string | undefined): Source => {
    const s = f.source;
    return { address: s.address, hostId: s.hostId, host: hostNum(s.hostId), kindHost: s.kind === 'host', apps: s.apps, reportedBy: f.reportedBy, cls, addressKey, canonical, appsSet: -2 };
  };
  const sourceOf = (f: ObservedFlow): Source => {
    const s = f.source;
    if (f.direction !== 'egress') {
      const info = addressOf(s.address);
      const kindHost = s.kind === 'host';
      for (const e of info.sources) if (e.hostId === s.hostId && e.kindHost === kindHost && (!kindHost || sameStrings(e.apps, s.apps))) return e;
      const cls = kindHost ? classes.id(`i\u0000${info.sig}\u0000${appLists.id(s.apps.join('\u0000'))}`) : (plainClass[info.sig] ??= classes.id(`i\u0000${info.sig}`));
      const e = newSource(f, cls, info.addressKey, info.canonical);
      info.sources.push(e);
      return e;
    }
    const at = s.apps[0] ?? '';
    let list = egressSources.get(at);
    if (!list) egressSources.set(at, (list = []));
    for (const e of list) if (e.address === s.address && e.hostId === s.hostId && e.reportedBy === f.reportedBy && sameStrings(e.apps, s.apps)) return e;
    const info = addressOf(s.address);
    const e = newSource(f, classes.id(`e\u0000${classes.texts.length}`), info.addressKey, info.canonical);
    list.push(e);
    return e;
  };

  const sets = new Interner();
  const setApps: string[][] = [];
  const setOf = (apps: readonly string[]): number => {
    const sorted = [...new Set(apps)].sort();
    const id = sets.id(JSON.stringify(sorted));
    if (id === setApps.length) setApps.push(sorted);
    return id;
  };
  const portKeys = new Interner();
  const portOf: (string | number)[] = [];
  const outcomeOf = (f: ObservedFlow, c: Claim, s: Source): Outcome => {
    if (!c.judged) {
      const text = claimText(f);
      c.judged = { text, recorded: judging.recordedOf(text, f) };
    }
    const why = judging.unusableAt(f, c.judged.text, c.judged.recorded);
    if (why === 'allowed') return { kind: 'allowed' };
    if (why !== undefined) return { kind: 'skip', skip: skipOf(why) };
    const cp = (c.part ??= claimPart(judging, f));
    const sp = (s.part ??= sourcePart(f, s.canonical));
    const bad = cp.bad ?? ('bad' in sp ? sp.bad : undefined);
    if (bad !== undefined) return { kind: 'skip', skip: skipOf(unnameable(bad)) };
    if ('why' in sp) return { kind: 'skip', skip: skipOf(sp.why) };
    if (c.portKey === undefined) {
      c.portKey = portKeys.id(`${typeof cp.port === 'number' ? `#${cp.port}` : cp.port}/${f.destination.protocol}`);
      portOf[c.portKey] = cp.port;
      c.destSet = setOf(cp.destApps);
    }
    if (s.appsSet === -2) s.appsSet = 'apps' in sp ? 2 * setOf(sp.apps) : -1;
    return { kind: 'item', portKey: c.portKey, destSet: c.destSet!, sourceApps: s.appsSet };
  };

  // Phase 1: every asked record, egress first (an ingress record is left to an egress one only when that one is evidence).
  const egressClaims = new Map<number, Set<number>>();
  const items: ObservedFlow[] = [];
  const itemDest: number[] = [];
  const itemBucket: number[] = [];
  const itemNext: number[] = [];
  const itemFirst: number[] = [];
  const itemLast: number[] = [];
  const itemHosts: number[] = [];
  const itemBits: number[] = [];
  const buckets = { source: [] as number[], portKey: [] as number[], head: [] as number[], tail: [] as number[], dest: [] as number[], more: [] as (number[] | undefined)[] };
  const bucketIndex: Map<number, number>[] = [];
  let allowedNow = 0;
  let coveredByEgress = 0;
  for (const egressPass of [true, false]) {
    for (const f of flows) {
      if ((f.direction === 'egress') !== egressPass) continue;
      const vbit = verdictBit(f.verdict);
      if ((vbit & mask) === 0 || (since !== undefined && !(isoMs(f.lastSeen) >= since))) continue;
      const c = claimOf(f);
      const s = sourceOf(f);
      if (f.direction === 'ingress' && s.kindHost && s.hostId !== undefined && egressClaims.get(c.claimPort)?.has(s.host) === true) {
        coveredByEgress++;
        continue;
      }
      if (c.skipReason !== undefined) {
        const skip = (c.skip ??= skipOf(c.skipReason));
        skip.flows++;
        skip.connections += f.packets;
        continue;
      }
      let o = c.outcomes.get(s.cls);
      if (!o) c.outcomes.set(s.cls, (o = outcomeOf(f, c, s)));
      if (o.kind === 'allowed') allowedNow++;
      else if (o.kind === 'skip') {
        o.skip.flows++;
        o.skip.connections += f.packets;
      } else {
        const j = items.length;
        items.push(f);
        const source = o.sourceApps >= 0 ? o.sourceApps : s.addressKey;
        const index = (bucketIndex[o.portKey] ??= new Map());
        let b = index.get(source);
        if (b === undefined) {
          index.set(source, (b = buckets.source.length));
          buckets.source.push(source);
          buckets.portKey.push(o.portKey);
          buckets.head.push(j);
          buckets.tail.push(j);
          buckets.dest.push(o.destSet);
          buckets.more.push(undefined);
        } else {
          itemNext[buckets.tail[b]!] = j;
          buckets.tail[b] = j;
          if (buckets.dest[b] !== o.destSet) {
            const more = (buckets.more[b] ??= []);
            if (!more.includes(o.destSet)) more.push(o.destSet);
          }
        }
        itemNext.push(-1);
        itemBucket.push(b);
        itemDest.push(o.destSet);
        itemFirst.push(isoMs(f.firstSeen));
        itemLast.push(isoMs(f.lastSeen));
        const rep = hostNum(f.reportedBy);
        itemHosts.push(rep, s.host, c.host);
        itemBits.push(vbit | (c.protocolBit << 3));
        if (f.direction === 'egress') {
          let set = egressClaims.get(c.claimPort);
          if (!set) egressClaims.set(c.claimPort, (set = new Set()));
          set.add(rep);
        }
      }
    }
  }
  return finish({ policy, cluster, judging, addressTexts, addressNetworks, items, itemDest, itemBucket, itemNext, itemFirst, itemLast, itemHosts, itemBits, buckets, setApps, portOf, hosts, skips, allowedNow, coveredByEgress });
}

interface Collected {
  readonly policy: Policy;
  readonly cluster: ClusterState;
  readonly judging: Judging;
  readonly addressNetworks: readonly (readonly string[] | undefined)[];
  readonly items: readonly ObservedFlow[];
  readonly itemDest: readonly number[];
  readonly itemBucket: readonly number[];
  readonly itemNext: readonly number[];
  readonly itemFirst: readonly number[];
  readonly itemLast: readonly number[];
  readonly itemHosts: readonly number[];
  readonly itemBits: readonly number[];
  readonly buckets: { readonly source: readonly number[]; readonly portKey: readonly number[]; readonly head: readonly number[]; readonly dest: readonly number[]; readonly more: readonly (number[] | undefined)[] };
  readonly setApps: readonly (readonly string[])[];
  readonly portOf: readonly (string | number)[];
  readonly addressTexts: readonly string[];
  readonly hosts: Interner;
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

function finish(c: Collected): Aggregate {
  const { judging, items, buckets, setApps, itemNext, itemDest } = c;
  const groups = groupMembers(c.policy, c.cluster);
  const book = new NameBook(c.policy);
  const proposedGroups = new Map<string, SuggestedGroup>();
  const proposedNetworks = new Map<string, SuggestedNetwork>();
  const nameOf = (p: Part): string => {
    if (p.name !== undefined) return p.name;
    const part = p.part;
    if ('group' in part) return (p.name = part.group);
    const key = part.proposed.join('\u0000');
    let g = proposedGroups.get(key);
    if (!g) proposedGroups.set(key, (g = { name: book.peer(part.proposed.map((a) => a.slice(1)).join('-')), apps: part.proposed }));
    return (p.name = g.name);
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
  for (let b = 0; b < buckets.source.length; b++) {
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
  const dup = duplicatedKeys(items);
  const add = (r: RuleTally, j: number) => {
    const f = items[j]!;
    if (dup?.[j] === 1) {
      r.seen ??= new Set();
      if (r.seen.has(f.key)) return;
      r.seen.add(f.key);
    }
    r.connections += f.packets;
    r.bytes += f.bytes;
    r.flows++;
    const first = c.itemFirst[j]!;
    const last = c.itemLast[j]!;
    if (r.first === '' || first < r.firstMs) {
      r.first = f.firstSeen;
      r.firstMs = first;
    }
    if (r.last === '' || last > r.lastMs) {
      r.last = f.lastSeen;
      r.lastMs = last;
    }
    for (let k = 3 * j; k < 3 * j + 3; k++) {
      const h = c.itemHosts[k]!;
      if (h >= 0) r.hosts.add(h);
    }
    const bits = c.itemBits[j]!;
    r.verdicts |= bits & 7;
    r.protocols |= bits >> 3;
  };
  const tally = (l: number, b: number, into: readonly RuleTally[]) => {
    const perDest = listsOfDest.get(b);
    for (let j = buckets.head[b]!; j !== -1 && j !== undefined; j = itemNext[j]!) {
      if (perDest && perDest.get(itemDest[j]!)?.has(l) !== true) continue;
      for (const r of into) add(r, j);
    }
  };
  for (let l = 0; l < lists.length; l++) {
    const list = lists[l]!;
    if (list.appBuckets.length > 0) {
      const sourceSets = list.appBuckets.map((b) => buckets.source[b]! / 2);
      const cover = sourceSets.length === 1 ? coverOfSet(sourceSets[0]!) : coverOf(union(sourceSets));
      list.appBuckets.forEach((b, i) => {
        const apps = setApps[sourceSets[i]!]!;
        const into = [...new Set(cover.filter((p) => meets(p, apps)).map((p) => ruleOf(list, nameOf(p))))];
        tally(l, b, into);
      });
    }
    const outside: number[] = [];
    for (const b of list.addressBuckets) {
      const net = smallestOf((buckets.source[b]! - 1) / 2);
      if (net !== undefined) tally(l, b, [ruleOf(list, net)]);
      else outside.push(b);
    }
    if (outside.length > 0) {
      const addresses = outside.map((b) => c.addressTexts[(buckets.source[b]! - 1) / 2]!).sort();
      const key = addresses.join('\u0000');
      let net = proposedNetworks.get(key);
      if (!net) {
        const more = addresses.length > 1 ? `-and-${addresses.length - 1}-more` : '';
        net = { name: book.peer(`seen-${addresses[0]}${more}`), cidrs: addresses.map((a) => `${a}/${a.includes(':') ? 128 : 32}`) };
        proposedNetworks.set(key, net);
      }
      const rule = ruleOf(list, net.name);
      for (const b of outside) tally(l, b, [rule]);
    }
  }
  return { rules: [...rules.values()], hostIds: c.hosts.texts, groups, book, proposedGroups, proposedNetworks, skips: c.skips, allowedNow: c.allowedNow, coveredByEgress: c.coveredByEgress };
}
