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
 * Records are read in one pass: egress records are taken, the others' indexes kept and taken
 * after (an ingress record whose connection an egress record of the evidence names is then
 * counted from its (host, protocol, port) alone, before its claim and source are interned).
 * Evidence records then go into BUCKETS per (source, port and protocol) in the order they come,
 * summed per bucket and destination set as they come (suggest-evidence.ts; nothing per record is
 * kept but its key); a record the sums cannot take exactly (a repeated key, an unreadable time,
 * a count that is no safe integer) starts the aggregation again with every record's numbers
 * kept. suggest-lists.ts makes the rules of the buckets and adds the tallies in the order of the
 * per-record walk.
 */
import type { ClusterState } from '../inventory/cluster-state.js';
import type { Policy } from '../policy/policy-model.js';
import type { FlowEndpointApp, ObservedFlow } from './observed-flow.js';
import { parseAddress } from '../net/address.js';
import { isoMs } from './iso-time.js';
import { Judging, claimPart, claimText, sourcePart, unnameable } from './suggest-judging.js';
import type { SuggestOptions } from './suggest-types.js';
import { tallyRules, type Aggregate, type Skip } from './suggest-lists.js';
import { ItemEvidence, SummedEvidence, type EvidenceStore } from './suggest-evidence.js';

export type { Aggregate, RuleTally } from './suggest-lists.js';

const NONE: readonly string[] = [];

const verdictBit = (v: string) => (v === 'allowed' ? 1 : v === 'denied' ? 2 : v === 'audit' ? 4 : 0);


/** What the records of one (claim, source class) give: allowed now, a skip, or evidence. */
type Outcome = { readonly kind: 'allowed' } | { readonly kind: 'skip'; readonly skip: Skip } | { readonly kind: 'item'; readonly portKey: number; readonly destSet: number; readonly sourceApps: number };

/** The claims recorded on one (host, protocol, port): the reporters of its egress evidence, and the claims by value. */
interface Slot {
  readonly protocol: string;
  /** Shared by the slots of one (host, protocol, port) text. */
  readonly egressFrom: Set<number>;
  readonly claims: Claim[];
}

interface Claim {
  readonly d: ObservedFlow['destination'];
  readonly host: number;
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

export function aggregate(policy: Policy, cluster: ClusterState, flows: readonly ObservedFlow[], options: SuggestOptions): Aggregate {
  return collect(policy, cluster, flows, options, new SummedEvidence(flows.length)) ?? collect(policy, cluster, flows, options, new ItemEvidence(flows.length))!;
}

/** The aggregate of `flows`, the evidence kept in `evidence`; undefined when that cannot take a record. */
function collect(policy: Policy, cluster: ClusterState, flows: readonly ObservedFlow[], options: SuggestOptions, evidence: EvidenceStore): Aggregate | undefined {
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
  const slots = new Map<string, Map<number, Slot[]>>();
  /** Per (host, protocol, port) text: the reporters of its egress evidence. */
  const egressFrom: Set<number>[] = [];
  const slotOf = (d: ObservedFlow['destination']): Slot => {
    let byPort = slots.get(d.hostId);
    if (!byPort) slots.set(d.hostId, (byPort = new Map()));
    let list = byPort.get(d.port);
    if (!list) byPort.set(d.port, (list = []));
    for (const s of list) if (s.protocol === d.protocol) return s;
    const s: Slot = { protocol: d.protocol, egressFrom: (egressFrom[claimPorts.id(`${d.hostId}\u0000${d.protocol}\u0000${d.port}`)] ??= new Set()), claims: [] };
    list.push(s);
    return s;
  };
  const claimOf = (f: ObservedFlow, slot: Slot): Claim => {
    const d = f.destination;
    for (const c of slot.claims) if (c.d.address === d.address && c.d.portName === d.portName && sameOwners(c.d.apps, d.apps)) return c;
    let skipReason: string | undefined;
    if (d.apps.every((a) => a.appId === '')) skipReason = 'no task claims the port now (unmanaged): nothing to allow';
    else {
      const owners = d.apps.reduce((n, a) => n + Math.max(a.taskIds.length, 1), 0);
      const n = Math.max(owners, judging.owners(f).length);
      if (n > 1) skipReason = `${d.protocol} ${d.port} on ${d.hostId} is claimed by ${n} task ports (a port conflict, see the compile reports): resolve it first`;
    }
    const c: Claim = { d, host: hostNum(d.hostId), protocolBit: d.protocol === 'tcp' ? 1 : d.protocol === 'udp' ? 2 : 0, ...(skipReason !== undefined ? { skipReason } : {}), outcomes: new Map() };
    slot.claims.push(c);
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
      if (networks.length === 0) networks = NONE;
      sig = networks === NONE ? (classed ? (parsed.family === 4 ? 'n4' : 'n6') : parsed.family === 4 ? 'm4' : 'm6') : `n\u0000${classed ? 1 : 0}\u0000${parsed.family}\u0000${networks.join('\u0000')}`;
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
  const buckets = { count: 0, source: [] as number[], portKey: [] as number[], dest: [] as number[], more: [] as (number[] | undefined)[] };
  const bucketIndex: Map<number, number>[] = [];
  let allowedNow = 0;
  let coveredByEgress = 0;
  /** Takes one asked record; false: `evidence` cannot take it. */
  const take = (f: ObservedFlow, vbit: number, lastMs: number): boolean => {
    const slot = slotOf(f.destination);
    const src = f.source;
    if (f.direction === 'ingress' && src.kind === 'host' && src.hostId !== undefined) {
      if (slot.egressFrom.size > 0 && slot.egressFrom.has(src.hostId === '' ? -1 : (hosts.get(src.hostId) ?? -2))) {
        coveredByEgress++;
        return true;
      }
    }
    const c = claimOf(f, slot);
    if (c.skipReason !== undefined) {
      const skip = (c.skip ??= skipOf(c.skipReason));
      skip.flows++;
      skip.connections += f.packets;
      return true;
    }
    const s = sourceOf(f);
    let o = c.outcomes.get(s.cls);
    if (!o) c.outcomes.set(s.cls, (o = outcomeOf(f, c, s)));
    if (o.kind === 'allowed') allowedNow++;
    else if (o.kind === 'skip') {
      o.skip.flows++;
      o.skip.connections += f.packets;
    } else {
      const source = o.sourceApps >= 0 ? o.sourceApps : s.addressKey;
      const index = (bucketIndex[o.portKey] ??= new Map());
      let b = index.get(source);
      if (b === undefined) {
        index.set(source, (b = buckets.count++));
        buckets.source.push(source);
        buckets.portKey.push(o.portKey);
        buckets.dest.push(o.destSet);
        buckets.more.push(undefined);
      } else if (buckets.dest[b] !== o.destSet) {
        const more = (buckets.more[b] ??= []);
        if (!more.includes(o.destSet)) more.push(o.destSet);
      }
      const rep = hostNum(f.reportedBy);
      if (!evidence.add(f, b, o.destSet, isoMs(f.firstSeen), Number.isNaN(lastMs) ? isoMs(f.lastSeen) : lastMs, rep, s.host, c.host, vbit | (c.protocolBit << 3))) return false;
      if (f.direction === 'egress') slot.egressFrom.add(rep);
    }
    return true;
  };
  // One pass over the records: egress taken, the others' indexes kept for a second pass over them only.
  const later = new Int32Array(flows.length);
  let laterCount = 0;
  for (let i = 0; i < flows.length; i++) {
    const f = flows[i]!;
    const vbit = verdictBit(f.verdict);
    if ((vbit & mask) === 0) continue;
    const lastMs = since !== undefined ? isoMs(f.lastSeen) : NaN;
    if (since !== undefined && !(lastMs >= since)) continue;
    if (f.direction !== 'egress') later[laterCount++] = i;
    else if (!take(f, vbit, lastMs)) return undefined;
  }
  for (let k = 0; k < laterCount; k++) {
    const f = flows[later[k]!]!;
    if (!take(f, verdictBit(f.verdict), since !== undefined ? isoMs(f.lastSeen) : NaN)) return undefined;
  }
  return tallyRules({ policy, cluster, judging, addressTexts, addressNetworks, evidence, buckets, setApps, portOf, hostTexts: hosts.texts, skips, allowedNow, coveredByEgress });
}
