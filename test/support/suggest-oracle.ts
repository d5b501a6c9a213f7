/**
 * The oracle of test/flows-suggest-fast.test.ts: `suggest` as it was before the aggregation of
 * src/flows/suggest-aggregate.ts, walking every record with string keys and a Set per item
 * (bucketing by source and port, then by destination group and port, a tally per rule). The
 * judging and what a rule names of a record (src/flows/suggest-judging.ts) and the last step (protocol narrowing, order, names:
 * src/flows/suggest.ts `suggestion`) are shared; what is compared is the aggregation.
 */
import type { ClusterState } from '../../src/inventory/cluster-state.js';
import type { Policy } from '../../src/policy/policy-model.js';
import type { FlowVerdict } from '../../src/flows/flow-types.js';
import type { ObservedFlow } from '../../src/flows/observed-flow.js';
import { Judging, claimPart, sourcePart, unnameable } from '../../src/flows/suggest-judging.js';
import { suggestion, type Evidence, type SuggestOptions, type Suggestion, type SuggestedGroup, type SuggestedNetwork } from '../../src/flows/suggest.js';
import { NameBook, coverApps, groupMembers, type CoverPart } from '../../src/flows/suggest-names.js';

/** One piece of evidence: where from, to which apps, on which port. */
interface Item {
  readonly flow: ObservedFlow;
  /** Source apps (egress: the app; ingress from a cluster host: its apps), or an address. */
  readonly sourceApps?: ReadonlySet<string>;
  readonly address?: string;
  readonly destApps: ReadonlySet<string>;
  readonly port: string | number;
}

const claimKey = (sourceHost: string, f: ObservedFlow) => `${sourceHost}\u0000${f.destination.hostId}\u0000${f.destination.protocol}\u0000${f.destination.port}`;

/** What a rule names of `flow` (the halves of suggest-judging.ts, per record), or why it gives no item. */
function itemOf(judging: Judging, flow: ObservedFlow): Item | string {
  const c = claimPart(judging, flow);
  const s = sourcePart(flow, judging.canonical(flow.source.address));
  const bad = c.bad ?? ('bad' in s ? s.bad : undefined);
  if (bad !== undefined) return unnameable(bad);
  if ('why' in s) return s.why;
  const base = { flow, destApps: new Set(c.destApps), port: c.port };
  return 'apps' in s ? { ...base, sourceApps: new Set(s.apps) } : { ...base, address: s.address };
}

class Tally {
  connections = 0;
  bytes = 0;
  flows = 0;
  first = '';
  last = '';
  private firstMs = 0;
  private lastMs = 0;
  readonly hosts = new Set<string>();
  readonly verdicts = new Set<FlowVerdict>();
  readonly protocols = new Set<'tcp' | 'udp'>();
  private readonly seen = new Set<string>();

  add(f: ObservedFlow): void {
    if (this.seen.has(f.key)) return;
    this.seen.add(f.key);
    this.connections += f.packets;
    this.bytes += f.bytes;
    this.flows++;
    const first = Date.parse(f.firstSeen);
    const last = Date.parse(f.lastSeen);
    if (this.first === '' || first < this.firstMs) [this.first, this.firstMs] = [f.firstSeen, first];
    if (this.last === '' || last > this.lastMs) [this.last, this.lastMs] = [f.lastSeen, last];
    for (const h of [f.reportedBy, f.source.hostId, f.destination.hostId]) if (h !== undefined && h !== '') this.hosts.add(h);
    this.verdicts.add(f.verdict);
    this.protocols.add(f.destination.protocol);
  }

  evidence(): Evidence {
    const order: FlowVerdict[] = ['allowed', 'denied', 'audit'];
    return { connections: this.connections, bytes: this.bytes, flows: this.flows, firstSeen: this.first, lastSeen: this.last, hosts: [...this.hosts].sort(), verdicts: order.filter((v) => this.verdicts.has(v)) };
  }
}

function bump(skips: Map<string, { flows: number; connections: number }>, reason: string, f: ObservedFlow): void {
  const s = skips.get(reason) ?? { flows: 0, connections: 0 };
  s.flows++;
  s.connections += f.packets;
  skips.set(reason, s);
}

const setKey = (s: Iterable<string>) => [...s].sort().join('\u0000');

/** The rules that would allow the evidence in `flows` (see the contract above). */
export function suggestRulesPerRecord(policy: Policy, cluster: ClusterState, flows: readonly ObservedFlow[], options: SuggestOptions = {}): Suggestion {
  const verdicts = new Set(options.verdicts ?? ['denied', 'audit']);
  const taken = flows.filter((f) => verdicts.has(f.verdict) && (options.sinceMs === undefined || Date.parse(f.lastSeen) >= options.sinceMs));
  // Egress records first (each in its order): an ingress record is left to one only when that one is evidence.
  const asked = [...taken.filter((f) => f.direction === 'egress'), ...taken.filter((f) => f.direction !== 'egress')];
  const egressClaims = new Set<string>();
  const judging = new Judging(policy, cluster);
  const skips = new Map<string, { flows: number; connections: number }>();
  const items: Item[] = [];
  let allowedNow = 0;
  let coveredByEgress = 0;
  for (const f of asked) {
    if (f.direction === 'ingress' && f.source.kind === 'host' && f.source.hostId !== undefined && egressClaims.has(claimKey(f.source.hostId, f))) {
      coveredByEgress++;
      continue;
    }
    if (f.destination.apps.every((a) => a.appId === '')) {
      bump(skips, 'no task claims the port now (unmanaged): nothing to allow', f);
      continue;
    }
    const owners = f.destination.apps.reduce((n, a) => n + Math.max(a.taskIds.length, 1), 0);
    const now = judging.owners(f).length;
    if (Math.max(owners, now) > 1) {
      bump(skips, `${f.destination.protocol} ${f.destination.port} on ${f.destination.hostId} is claimed by ${Math.max(owners, now)} task ports (a port conflict, see the compile reports): resolve it first`, f);
      continue;
    }
    const why = judging.unusable(f);
    if (why === 'allowed') allowedNow++;
    else if (why !== undefined) bump(skips, why, f);
    else {
      const item = itemOf(judging, f);
      if (typeof item === 'string') bump(skips, item, f);
      else {
        items.push(item);
        if (f.direction === 'egress') egressClaims.add(claimKey(f.reportedBy, f));
      }
    }
  }

  const groups = groupMembers(policy, cluster);
  const book = new NameBook(policy);
  const proposedGroups = new Map<string, SuggestedGroup>();
  const proposedNetworks = new Map<string, SuggestedNetwork>();
  const groupName = (part: CoverPart): string => {
    if ('group' in part) return part.group;
    const key = setKey(part.proposed);
    let g = proposedGroups.get(key);
    if (!g) {
      g = { name: book.peer(part.proposed.map((a) => a.slice(1)).join('-')), apps: part.proposed };
      proposedGroups.set(key, g);
    }
    return g.name;
  };
  // Per protocol: a rule for both (tcp and udp of one port) is made only where both were seen.
  const portKey = (i: Item) => `${typeof i.port === 'number' ? `#${i.port}` : i.port}/${i.flow.destination.protocol}`;
  const sourceKey = (i: Item) => (i.sourceApps ? `apps:${setKey(i.sourceApps)}` : `addr:${i.address!}`);

  // Destinations: per (source, port), the destination apps seen, as groups.
  const byDest = new Map<string, { item: Item; to: string }[]>();
  const destBuckets = bucket(items, (i) => `${sourceKey(i)}\u0001${portKey(i)}`);
  for (const list of destBuckets) {
    const parts = coverApps(new Set(list.flatMap((i) => [...i.destApps])), groups);
    for (const item of list) {
      for (const part of parts) {
        if (![...item.destApps].some((a) => part.apps.has(a))) continue;
        const to = groupName(part);
        const key = `${to}\u0001${portKey(item)}`;
        const entry = byDest.get(key) ?? [];
        entry.push({ item, to });
        byDest.set(key, entry);
      }
    }
  }

  // Sources: per (destination group, port), the source apps as groups, addresses as networks.
  const rules = new Map<string, { from: string; to: string; port: string | number; tally: Tally }>();
  const addRule = (from: string, to: string, port: string | number, f: ObservedFlow) => {
    const key = `${from}\u0001${to}\u0001${String(port)}`;
    let r = rules.get(key);
    if (!r) rules.set(key, (r = { from, to, port, tally: new Tally() }));
    r.tally.add(f);
  };
  for (const list of byDest.values()) {
    const { to } = list[0]!;
    const port = list[0]!.item.port;
    const apps = list.filter((e) => e.item.sourceApps);
    const parts = coverApps(new Set(apps.flatMap((e) => [...e.item.sourceApps!])), groups);
    for (const { item } of apps) {
      for (const part of parts) if ([...item.sourceApps!].some((a) => part.apps.has(a))) addRule(groupName(part), to, port, item.flow);
    }
    const outside: Item[] = [];
    for (const { item } of list) {
      if (item.address === undefined) continue;
      const net = judging.smallest(item.address);
      if (net !== undefined) addRule(net, to, port, item.flow);
      else outside.push(item);
    }
    if (outside.length > 0) {
      const addresses = [...new Set(outside.map((i) => i.address!))].sort();
      const key = setKey(addresses);
      let net = proposedNetworks.get(key);
      if (!net) {
        const more = addresses.length > 1 ? `-and-${addresses.length - 1}-more` : '';
        net = { name: book.peer(`seen-${addresses[0]}${more}`), cidrs: addresses.map((a) => `${a}/${a.includes(':') ? 128 : 32}`) };
        proposedNetworks.set(key, net);
      }
      for (const item of outside) addRule(net.name, to, port, item.flow);
    }
  }

  const tallied = [...rules.values()].map((r) => ({ from: r.from, to: r.to, port: r.port, evidence: r.tally.evidence(), protocols: r.tally.protocols }));
  return suggestion(cluster, { rules: tallied, groups, book, proposedGroups, proposedNetworks, skips, allowedNow, coveredByEgress });
}

function bucket<T>(list: readonly T[], key: (t: T) => string): T[][] {
  const out = new Map<string, T[]>();
  for (const t of list) {
    const k = key(t);
    const l = out.get(k);
    if (l) l.push(t);
    else out.set(k, [t]);
  }
  return [...out.values()];
}
