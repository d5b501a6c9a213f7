/**
 * `portcullis suggest`, the pure core: from recorded flows, the rules in the policy's own terms
 * that would allow what was observed but is not allowed now (issue 11, flows-spec section 6).
 *
 * Contract:
 *  - Evidence: the flows of the asked verdicts (default denied and audit) that the policy in
 *    force still denies, re-judged by the reference evaluator (plan-judge.ts), and denied by the
 *    default tier only (no rule matched; egress from a host without an address of the family,
 *    tier no-address, is reported: which rule decides it is not known). A flow an explicit `deny` rule decides, or a `pass`
 *    rule hands to the labels tier, cannot be fixed by a rule appended to the policy (first
 *    match wins): it is reported as skipped with that rule, never worked around. So is a flow
 *    the evaluator cannot judge (its app left the cluster), an unmanaged port, a port conflict
 *    (a claim of several task ports: each owner would need its own rule), an app id a group
 *    cannot name exactly. An ingress record whose connection an egress record of the evidence
 *    also names (same source host, destination claim) is left to the egress record, which names
 *    the exact source app.
 *  - Peers: source apps become existing groups whose apps (now) all lie among the apps seen,
 *    largest first, and one proposed group (`apps:` listing exactly the ids) for the rest; the
 *    same for destination apps (suggest-names.ts `coverApps`). A source address that is not a
 *    cluster host's becomes the smallest named network holding it, else a proposed network with
 *    `cidrs:` of exactly the /32 or /128 addresses seen (per destination and port). Ports by
 *    name when the app port has one, else the host port number; `protocol` only when the
 *    destination port takes a protocol that was not seen.
 *  - Never broader than the evidence: every app a rule's `from` group selects now was seen as a
 *    source of traffic to every app its `to` group selects on that port (test/flows-suggest*).
 *  - One rule per (source peer, destination peer, port), ordered by connections descending,
 *    each with its evidence (connections, bytes, first and last seen, hosts).
 * Pasting the groups and networks under `groups:` / `networks:` and the rules at the end of
 * `rules:` (or saving the YAML of suggest-yaml.ts as a policy file sorted after the others)
 * gives a policy `portcullis check` accepts.
 */
import type { App, ClusterState } from '../inventory/cluster-state.js';
import type { Policy } from '../policy/policy-model.js';
import { PORT_NAME_RE } from '../policy/names.js';
import { parseAddress } from '../net/address.js';
import { claimOwners } from '../evaluate/egress-evaluator.js';
import type { FlowVerdict } from './flow-types.js';
import type { ObservedFlow } from './observed-flow.js';
import { judgeFlow, recordedOwners } from './plan-judge.js';
import { VerdictClasses } from './suggest-classes.js';
import { NameBook, NetworkIndex, coverApps, groupMembers, nameableAppId, slug, type CoverPart } from './suggest-names.js';

export interface SuggestOptions {
  /** The recorded verdicts taken as evidence (default denied and audit). */
  readonly verdicts?: readonly FlowVerdict[];
  /** Only flows last seen at or after this time (ms since the epoch). */
  readonly sinceMs?: number;
}

export interface SuggestedGroup {
  readonly name: string;
  readonly apps: readonly string[];
}

export interface SuggestedNetwork {
  readonly name: string;
  readonly cidrs: readonly string[];
}

export interface Evidence {
  /** New connections seen (the flows' packets). */
  readonly connections: number;
  readonly bytes: number;
  readonly flows: number;
  readonly firstSeen: string;
  readonly lastSeen: string;
  /** The hosts involved (reporters, source and destination hosts), sorted. */
  readonly hosts: readonly string[];
  readonly verdicts: readonly FlowVerdict[];
}

export interface SuggestedRule {
  readonly name: string;
  readonly from: string;
  readonly to: string;
  /** A port name, or a host port number. */
  readonly port: string | number;
  readonly protocol?: 'tcp' | 'udp';
  readonly evidence: Evidence;
}

export interface SkippedFlows {
  readonly reason: string;
  readonly flows: number;
  readonly connections: number;
}

export interface Suggestion {
  readonly groups: readonly SuggestedGroup[];
  readonly networks: readonly SuggestedNetwork[];
  readonly rules: readonly SuggestedRule[];
  /** Evidence flows no rule is suggested for, by reason (most connections first). */
  readonly skipped: readonly SkippedFlows[];
  /** Flows of the asked verdicts that the policy allows now (nothing to suggest). */
  readonly allowedNow: number;
  /** Ingress flows left to the egress flow of the same connection. */
  readonly coveredByEgress: number;
}

/** One piece of evidence: where from, to which apps, on which port. */
interface Item {
  readonly flow: ObservedFlow;
  /** Source apps (egress: the app; ingress from a cluster host: its apps), or an address. */
  readonly sourceApps?: ReadonlySet<string>;
  readonly address?: string;
  readonly destApps: ReadonlySet<string>;
  readonly port: string | number;
}

/** The canonical text (RFC 5952) of an address, or undefined. */
function canonical(text: string): string | undefined {
  const a = parseAddress(text, { mapped: 'accept' });
  return a.ok ? a.canonical : undefined;
}

const claimKey = (sourceHost: string, f: ObservedFlow) => `${sourceHost}\u0000${f.destination.hostId}\u0000${f.destination.protocol}\u0000${f.destination.port}`;

/**
 * The judging of suggest, memoized: a verdict depends on the flow's class, not on its key
 * (suggest-classes.ts: the first rule of the destination's that contains the source). The
 * recorded owners of each claim are resolved once; the reference evaluator judges the first flow
 * of each class. A flow without a class is judged by its full key as before: an outside address
 * by which networks hold it (it is no host's, so in no group), a host address, an egress
 * record's app and host, by themselves; with the claim and its recorded owners.
 */
class Judging {
  readonly nets: NetworkIndex;
  private readonly hostAddresses: ReadonlySet<string>;
  private readonly verdicts = new Map<string, string | 'allowed' | undefined>();
  private readonly claims = new Map<string, ReturnType<typeof claimOwners>>();
  private readonly recorded = new Map<string, ReturnType<typeof recordedOwners>>();
  private readonly classes: VerdictClasses;
  readonly apps: ReadonlyMap<string, App>;

  constructor(
    private readonly policy: Policy,
    private readonly cluster: ClusterState,
  ) {
    this.nets = new NetworkIndex(policy);
    this.hostAddresses = new Set(cluster.hosts.flatMap((h) => h.addresses.flatMap((a) => canonical(a) ?? [])));
    this.apps = new Map(cluster.apps.map((a) => [a.id, a]));
    this.classes = new VerdictClasses(policy, cluster, this.nets);
  }

  private readonly smallestOf = new Map<string, string | undefined>();
  private readonly canonicalOf = new Map<string, string | undefined>();

  /** The smallest network of the policy holding `address`, once per address. */
  smallest(address: string): string | undefined {
    if (!this.smallestOf.has(address)) this.smallestOf.set(address, this.nets.smallest(address));
    return this.smallestOf.get(address);
  }

  /** canonical(), once per text. */
  canonical(text: string): string | undefined {
    if (!this.canonicalOf.has(text)) this.canonicalOf.set(text, canonical(text));
    return this.canonicalOf.get(text);
  }

  owners(f: ObservedFlow): ReturnType<typeof claimOwners> {
    const key = `${f.destination.hostId}\u0000${f.destination.protocol}\u0000${f.destination.port}`;
    let owners = this.claims.get(key);
    if (!owners) this.claims.set(key, (owners = claimOwners(this.cluster, f.destination.hostId, f.destination.protocol, f.destination.port)));
    return owners;
  }

  /** Why `flow` gives no evidence (undefined: it does), after judging it by the policy now. */
  unusable(f: ObservedFlow): string | 'allowed' | undefined {
    const d = f.destination;
    const claim = `${d.hostId}\u0000${d.address}\u0000${d.protocol}\u0000${d.port}\u0000${d.portName ?? ''}\u0000${d.apps.map((a) => `${a.appId}\u0001${a.taskIds.join('\u0001')}`).join('\u0000')}`;
    let recorded = this.recorded.get(claim);
    if (!recorded) this.recorded.set(claim, (recorded = recordedOwners(this.cluster, f)));
    const cls = typeof recorded === 'string' ? undefined : this.classes.classOf(f, recorded, this.owners(f));
    let key: string;
    if (cls !== undefined) key = `c\u0002${cls}`;
    else {
      const ip = this.canonical(f.source.address);
      const address = ip ?? f.source.address;
      const source =
        f.direction === 'egress'
          ? `e\u0000${f.reportedBy}\u0000${f.source.apps[0] ?? ''}`
          : ip && !this.hostAddresses.has(address)
            ? `n\u0000${address.includes(':') ? 6 : 4}\u0000${this.nets.networksOf(address).join('\u0000')}`
            : `a\u0000${address}`;
      key = `${source}\u0002${claim}`;
    }
    if (this.verdicts.has(key)) return this.verdicts.get(key);
    const why = judged(this.policy, this.cluster, f);
    this.verdicts.set(key, why);
    return why;
  }
}

/** What suggest takes from the judgement of `flow` now: allowed, why it is no evidence, or undefined (evidence). */
export function judged(policy: Policy, cluster: ClusterState, flow: ObservedFlow): string | 'allowed' | undefined {
  const judged = judgeFlow(policy, cluster, flow);
  if (!judged.ok) return `cannot be judged now: ${judged.why}`;
  const j = judged.judgement;
  if (j.verdict === 'allowed') return 'allowed';
  if (j.rule !== undefined) {
    return j.tier === 'policy'
      ? `denied by rule '${j.rule}' (${j.at ?? '?'}), an explicit deny: a rule appended after it cannot allow this`
      : `rule '${j.rule}' (${j.at ?? '?'}) passes it to developer labels: allow it with a portcullis.allow-from label, not a rule`;
  }
  // Only egress has other deny tiers (no-address: names the host and app, which are in the key).
  if (j.tier !== 'default') return `denied by tier ${j.tier}, not by the default: ${j.reason}`;
  return undefined;
}

function itemOf(judging: Judging, flow: ObservedFlow): Item | string {
  const dest = flow.destination.apps.map((a) => a.appId).filter((id) => id !== '');
  const bad = [...dest, ...(flow.direction === 'egress' || flow.source.kind === 'host' ? flow.source.apps : [])].find((id) => !nameableAppId(id));
  if (bad !== undefined) return `app id ${JSON.stringify(bad)} cannot be named exactly in a group (apps: takes '/'-absolute ids, '*' is a glob)`;
  const name = flow.destination.portName;
  // The port name must still be the app's (the rule names it), and a valid policy port name.
  // Every owner of the claim must have that name (else a rule by name leaves an owner closed).
  const owners = judging.owners(flow);
  const named =
    name !== undefined &&
    PORT_NAME_RE.test(name) &&
    dest.every((id) => judging.apps.get(id)?.ports.some((p) => p.name === name)) &&
    owners.every((o) => o.app.ports[o.portIndex]?.name === name);
  const base = { flow, destApps: new Set(dest), port: named ? name! : flow.destination.port };
  if (flow.direction === 'egress') return { ...base, sourceApps: new Set(flow.source.apps.slice(0, 1)) };
  if (flow.source.kind === 'host' && flow.source.apps.length > 0) return { ...base, sourceApps: new Set(flow.source.apps) };
  const ip = judging.canonical(flow.source.address);
  if (!ip) return `source address ${JSON.stringify(flow.source.address)} is not an address`;
  return { ...base, address: ip };
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
export function suggestRules(policy: Policy, cluster: ClusterState, flows: readonly ObservedFlow[], options: SuggestOptions = {}): Suggestion {
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

  // The protocol narrowing of a rule depends on its destination group and port only: once each.
  const membersOf = new Map<string, ReadonlySet<string>>();
  for (const g of groups) if (!membersOf.has(g.name)) membersOf.set(g.name, g.members);
  for (const g of proposedGroups.values()) membersOf.set(g.name, new Set(g.apps));
  const narrowed = new Map<string, 'tcp' | 'udp' | undefined>();
  const made: SuggestedRule[] = [...rules.values()].map((r) => {
    const key = `${r.to}\u0001${typeof r.port}\u0001${String(r.port)}\u0001${[...r.tally.protocols].sort().join()}`;
    if (!narrowed.has(key)) narrowed.set(key, narrowProtocol(cluster, membersOf.get(r.to) ?? new Set(), r.port, r.tally.protocols));
    const protocol = narrowed.get(key);
    return { name: '', from: r.from, to: r.to, port: r.port, ...(protocol ? { protocol } : {}), evidence: r.tally.evidence() };
  });
  made.sort((a, b) => b.evidence.connections - a.evidence.connections || cmp(a.from, b.from) || cmp(a.to, b.to) || cmp(String(a.port), String(b.port)));
  const named = made.map((r) => ({ ...r, name: book.rule(`allow-${r.from}-to-${r.to}-${slug(String(r.port))}`) }));
  const skipped = [...skips].map(([reason, s]) => ({ reason, ...s })).sort((a, b) => b.connections - a.connections || cmp(a.reason, b.reason));
  const used = new Set(named.flatMap((r) => [r.from, r.to]));
  return {
    groups: [...proposedGroups.values()].filter((g) => used.has(g.name)).sort((a, b) => cmp(a.name, b.name)),
    networks: [...proposedNetworks.values()].sort((a, b) => cmp(a.name, b.name)),
    rules: named,
    skipped,
    allowedNow,
    coveredByEgress,
  };
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
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

/**
 * The one protocol seen, when some app of the destination group takes that port with a
 * protocol that was not seen (so the rule does not open it); undefined when the port takes
 * nothing else (or both were seen).
 */
function narrowProtocol(cluster: ClusterState, members: ReadonlySet<string>, port: string | number, seen: ReadonlySet<'tcp' | 'udp'>): 'tcp' | 'udp' | undefined {
  if (seen.size !== 1) return undefined;
  const only = [...seen][0]!;
  const ports = cluster.apps.filter((a) => members.has(a.id)).flatMap((a) => {
    if (typeof port === 'string') return a.ports.filter((p) => p.name === port);
    const indexes = new Set(cluster.tasks.filter((t) => t.appId === a.id).flatMap((t) => t.hostPorts.flatMap((hp, i) => (hp === port ? [i] : []))));
    return a.ports.filter((_, i) => indexes.has(i));
  });
  return ports.some((p) => p.protocols.some((x) => x !== only)) ? only : undefined;
}
