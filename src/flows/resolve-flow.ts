/**
 * Resolution of one agent record (FlowEntry) into what /flows serves (ObservedFlow), against the
 * policy and cluster in force when it is ingested (issue 11, flows design section 5).
 *
 * Contract
 * - `FlowResolver` is built once per (policy, cluster) pair and indexes what a record needs:
 *   address → hosts, host → tasks and apps, (host, protocol, host port) → claim owners, and the
 *   policy's networks as parsed ranges. Resolving a record is then O(owners × rules) for the
 *   verdict, never a walk of the whole cluster.
 * - `decidedBy` is the reference evaluator's answer, the one `explain` gives (src/evaluate:
 *   `evaluateConnection` for ingress, `egressVerdict` for egress), asked on a VIEW of the
 *   cluster that holds exactly what the question reads: for ingress the hosts owning the source
 *   address with their tasks and apps, plus the destination app (a group peer contains an
 *   address only through tasks on a host with that address); for egress the source and
 *   destination hosts, the source app and the destination host's tasks. The answers are the
 *   evaluator's own, at the cost of a small cluster.
 * - A resolution is shared: one object per (direction, reporter, source, destination,
 *   protocol, port), memoised (bounded) while the resolver lives, so every window and verdict of
 *   that flow points at the same source/destination/decision objects (memory per aggregate).
 * - Decisions are shared too. The destination-side verdict of a source address reads only which
 *   networks contain it and which apps run on the hosts that own it, so one evaluation serves
 *   every address with the same networks and source apps at the same claim: the evaluator's sentence is kept as the parts around the address it names
 *   (`SharedDecision.parts`, joined with each flow's own address when served). That split is
 *   exact because it is done only for an address that appears as no address-like token in any
 *   other text the sentence can hold (policy names and files, the claim's app ids, port names,
 *   labels and host id); any other address is evaluated on its own. Egress records are
 *   evaluated per source app, source host and claim.
 * - App ids, task ids and host ids are untrusted text: they are carried as data, never parsed,
 *   interpreted or formatted into anything but JSON strings and the evaluator's sentences.
 */
import { createHash } from 'node:crypto';
import type { App, ClusterState, Host, Task } from '../inventory/cluster-state.js';
import type { Policy } from '../policy/policy-model.js';
import type { Family } from '../net/family.js';
import { canonicalAddress, tryParseAddress } from '../net/address.js';
import { cidrBlockOf, LENIENT } from '../net/cidr.js';
import { evaluateConnection } from '../evaluate/reference-evaluator.js';
import { egressVerdict } from '../evaluate/egress-evaluator.js';
import type { FlowDirection, FlowEntry, FlowVerdict } from './flow-types.js';
import type { FlowEndpointApp, ObservedFlow } from './observed-flow.js';

export type DecidedBy = ObservedFlow['decidedBy'];

/** A decision with its sentence as the parts around the source address (one part: no address in it). */
export interface SharedDecision {
  readonly tier: string;
  readonly rule?: string;
  readonly at?: string;
  readonly parts: readonly string[];
}

/** Everything of an ObservedFlow but its verdict and counts: shared by its windows and verdicts. */
export interface FlowResolution {
  readonly direction: FlowDirection;
  readonly reportedBy: string;
  /** The record's own source and destination text (the key is computed from them). */
  readonly rawSource: string;
  readonly rawDestination: string;
  readonly source: ObservedFlow['source'];
  readonly destination: ObservedFlow['destination'];
  readonly decided: SharedDecision;
  /** Key per verdict (FLOW_VERDICTS order), computed on first use. */
  readonly keys: (string | undefined)[];
}

export const VERDICT_INDEX: Readonly<Record<FlowVerdict, number>> = { allowed: 0, denied: 1, audit: 2 };

/** The stable key of an aggregate: 16 hex of sha256 of direction|verdict|reporter|source|destination|protocol|port. */
export function flowKey(r: Pick<FlowResolution, 'direction' | 'reportedBy' | 'rawSource' | 'rawDestination' | 'destination'>, verdict: FlowVerdict): string {
  const text = [r.direction, verdict, r.reportedBy, r.rawSource, r.rawDestination, r.destination.protocol, String(r.destination.port)].join('|');
  return createHash('sha256').update(text).digest('hex').slice(0, 16);
}

export function keyOf(r: FlowResolution, verdict: FlowVerdict): string {
  const i = VERDICT_INDEX[verdict];
  return (r.keys[i] ??= flowKey(r, verdict));
}

/** The ObservedFlow of one aggregate of `r`. */
export function observedFlow(r: FlowResolution, verdict: FlowVerdict, packets: number, bytes: number, firstSeenMs: number, lastSeenMs: number): ObservedFlow {
  return {
    key: keyOf(r, verdict),
    direction: r.direction,
    verdict,
    reportedBy: r.reportedBy,
    source: r.source,
    destination: r.destination,
    decidedBy: decidedByOf(r),
    packets,
    bytes,
    firstSeen: new Date(firstSeenMs).toISOString(),
    lastSeen: new Date(lastSeenMs).toISOString(),
  };
}

/** The decision of `r` as served: its sentence with the flow's source address in it. */
export function decidedByOf(r: FlowResolution): DecidedBy {
  const d = r.decided;
  const reason = d.parts.length === 1 ? d.parts[0]! : d.parts.join(r.source.address);
  return { tier: d.tier, ...(d.rule !== undefined ? { rule: d.rule } : {}), ...(d.at !== undefined ? { at: d.at } : {}), reason };
}

function shared(d: DecidedBy, parts: readonly string[] = [d.reason]): SharedDecision {
  return { tier: d.tier, ...(d.rule !== undefined ? { rule: d.rule } : {}), ...(d.at !== undefined ? { at: d.at } : {}), parts };
}

const ADDRESS_CHAR = /[0-9A-Za-z:.]/;
const ADDRESS_TOKENS = /[0-9A-Fa-f:.]*[.:][0-9A-Fa-f:.]*/g;

/** Address-like tokens of `texts` (anything of hex digits, dots and colons with a dot or colon). */
function addressTokens(texts: Iterable<string>, into: Set<string>): Set<string> {
  for (const t of texts) for (const m of t.matchAll(ADDRESS_TOKENS)) into.add(m[0]);
  return into;
}

/** `text` split around every occurrence of `address` that stands alone (not part of a longer token). */
function splitAround(text: string, address: string): string[] {
  const parts: string[] = [];
  let from = 0;
  for (let i = text.indexOf(address); i >= 0; i = text.indexOf(address, i + 1)) {
    const before = i === 0 ? '' : text[i - 1]!;
    const after = text.slice(i + address.length, i + address.length + 2);
    const joinedBefore = before !== '' && ADDRESS_CHAR.test(before);
    const joinedAfter = after !== '' && (after[0] === '.' ? after.length > 1 && ADDRESS_CHAR.test(after[1]!) : ADDRESS_CHAR.test(after[0]!));
    if (joinedBefore || joinedAfter) continue;
    parts.push(text.slice(from, i));
    from = i + address.length;
  }
  parts.push(text.slice(from));
  return parts;
}

interface Owner {
  readonly task: Task;
  readonly app: App;
  readonly portIndex: number;
}

interface Range {
  readonly family: Family;
  readonly first: bigint;
  readonly last: bigint;
}

interface NetworkRanges {
  readonly name: string;
  readonly cidrs: readonly Range[];
  readonly except: readonly Range[];
}

const NONE: readonly string[] = Object.freeze([]);
const UNCLAIMED: readonly FlowEndpointApp[] = Object.freeze([Object.freeze({ appId: '', taskIds: NONE })]);
/** Resolutions kept per resolver before the memo starts over (each is also held by its aggregates). */
const MEMO_LIMIT = 1 << 20;

function byText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function ranges(texts: readonly string[]): Range[] {
  const out: Range[] = [];
  for (const t of texts) {
    try {
      const c = cidrBlockOf(t, LENIENT);
      const bits = c.family === 4 ? 32 : 128;
      out.push({ family: c.family, first: c.base, last: c.base + (1n << BigInt(bits - c.prefix)) - 1n });
    } catch {
      // A validated policy has none; an unreadable CIDR contains nothing.
    }
  }
  return out;
}

function rangeHas(rs: readonly Range[], family: Family, value: bigint): boolean {
  return rs.some((r) => r.family === family && r.first <= value && value <= r.last);
}

function where(at: { file: string; line: number; col: number }): string {
  return `${at.file}:${at.line}:${at.col}`;
}

export class FlowResolver {
  private readonly apps = new Map<string, App>();
  private readonly hostsByAddress = new Map<string, Host[]>();
  private readonly hosts = new Map<string, Host>();
  private readonly tasksByHost = new Map<string, Task[]>();
  private readonly appsByHost = new Map<string, readonly string[]>();
  private readonly claims = new Map<string, Owner[]>();
  private readonly networks: readonly NetworkRanges[];
  private readonly memo = new Map<string, FlowResolution>();
  private readonly egressMemo = new Map<string, SharedDecision>();
  /** Decisions for non-cluster sources per (networks, claim); see the header. */
  private readonly classMemo = new Map<string, SharedDecision>();
  /** Address-like tokens of the policy's names and files, and per claim of its own texts. */
  private readonly policyTokens: ReadonlySet<string>;
  private readonly claimTokens = new Map<string, ReadonlySet<string>>();
  private readonly networkLists = new Map<string, readonly string[]>();
  private readonly destinations = new Map<string, ObservedFlow['destination']>();

  constructor(
    readonly policy: Policy,
    readonly cluster: ClusterState,
  ) {
    for (const app of cluster.apps) if (!this.apps.has(app.id)) this.apps.set(app.id, app);
    for (const host of cluster.hosts) {
      if (!this.hosts.has(host.id)) this.hosts.set(host.id, host);
      for (const a of host.addresses) {
        if (!tryParseAddress(a)) continue;
        const canonical = parseCanonical(a);
        const list = this.hostsByAddress.get(canonical) ?? [];
        if (!list.includes(host)) list.push(host);
        this.hostsByAddress.set(canonical, list);
      }
    }
    const tasks = [...cluster.tasks].sort((a, b) => byText(a.id, b.id));
    const hostApps = new Map<string, Set<string>>();
    for (const task of tasks) {
      const app = this.apps.get(task.appId);
      if (!app || !this.hosts.has(task.hostId)) continue;
      const list = this.tasksByHost.get(task.hostId) ?? [];
      list.push(task);
      this.tasksByHost.set(task.hostId, list);
      const ids = hostApps.get(task.hostId) ?? new Set<string>();
      ids.add(app.id);
      hostApps.set(task.hostId, ids);
      for (let i = 0; i < Math.min(task.hostPorts.length, app.ports.length); i++) {
        const p = task.hostPorts[i]!;
        if (!Number.isInteger(p) || p < 1 || p > 65535) continue;
        for (const protocol of new Set(app.ports[i]!.protocols)) {
          const k = claimKey(task.hostId, protocol, p);
          const owners = this.claims.get(k) ?? [];
          owners.push({ task, app, portIndex: i });
          this.claims.set(k, owners);
        }
      }
    }
    for (const [hostId, ids] of hostApps) this.appsByHost.set(hostId, Object.freeze([...ids].sort(byText)));
    this.networks = policy.networks.map((n) => ({ name: n.name, cidrs: ranges(n.cidrs), except: ranges(n.except) }));
    const names = [...policy.rules.flatMap((r) => [r.name, r.at.file]), ...policy.groups.map((g) => g.name), ...policy.networks.map((n) => n.name), policy.defaults.action];
    this.policyTokens = addressTokens(names, new Set());
  }

  /** The shared resolution of `entry` as reported by `reporter`. */
  resolve(reporter: string, entry: FlowEntry): FlowResolution {
    const id = `${entry.direction}\u0000${reporter}\u0000${entry.source}\u0000${entry.destination}\u0000${entry.protocol}\u0000${entry.port}`;
    const known = this.memo.get(id);
    if (known) return known;
    const r = entry.direction === 'ingress' ? this.ingress(reporter, entry) : this.egress(reporter, entry);
    if (this.memo.size >= MEMO_LIMIT) this.memo.clear();
    this.memo.set(id, r);
    return r;
  }

  /** Networks of the policy that contain `address`, in policy order. */
  networksOf(address: string): readonly string[] {
    const p = tryParseAddress(address);
    if (!p) return NONE;
    const out = this.networks.filter((n) => rangeHas(n.cidrs, p.family, p.value) && !rangeHas(n.except, p.family, p.value)).map((n) => n.name);
    if (out.length === 0) return NONE;
    const k = out.join('\u0000');
    const known = this.networkLists.get(k);
    if (known) return known;
    const list = Object.freeze(out);
    this.networkLists.set(k, list);
    return list;
  }

  private ingress(reporter: string, e: FlowEntry): FlowResolution {
    const hosts = this.hostsByAddress.get(e.source) ?? [];
    const networks = this.networksOf(e.source);
    const hostIds = hosts.map((h) => h.id).sort(byText);
    const apps = hostIds.length === 1 ? (this.appsByHost.get(hostIds[0]!) ?? NONE) : [...new Set(hostIds.flatMap((h) => this.appsByHost.get(h) ?? []))].sort(byText);
    const kind = hostIds.length > 0 ? 'host' : networks.length > 0 ? 'network' : 'outside';
    const source = { address: e.source, kind, ...(hostIds.length > 0 ? { hostId: hostIds[0]! } : {}), apps, networks } as const;
    const owners = this.claims.get(claimKey(reporter, e.protocol, e.port)) ?? [];
    const destination = this.destination(reporter, '', reporter, e.protocol, e.port);
    // The verdict reads only the networks holding the address and the apps of its hosts (see the header).
    const ck = claimKey(reporter, e.protocol, e.port);
    const safe = !this.policyTokens.has(e.source) && !this.tokensOf(ck, reporter, owners).has(e.source);
    const memoKey = `${networks.join('\u0000')}\u0001${apps.join('\u0000')}\u0001${ck}`;
    let decided = safe ? this.classMemo.get(memoKey) : undefined;
    if (decided === undefined) {
      const d = this.ingressDecision(e, hosts, reporter, owners);
      decided = safe ? shared(d, splitAround(d.reason, e.source)) : shared(d);
      if (safe) {
        if (this.classMemo.size >= MEMO_LIMIT) this.classMemo.clear();
        this.classMemo.set(memoKey, decided);
      }
    }
    return this.resolution(e, reporter, source, destination, decided);
  }

  /** Address-like tokens of what a sentence about claim `ck` can hold besides the policy's. */
  private tokensOf(ck: string, reporter: string, owners: readonly Owner[]): ReadonlySet<string> {
    const known = this.claimTokens.get(ck);
    if (known) return known;
    const texts = [reporter];
    for (const o of owners) {
      texts.push(o.app.id, o.task.id, ...Object.values(o.app.labels));
      const port = o.app.ports[o.portIndex]!;
      if (port.name !== undefined) texts.push(port.name);
      texts.push(...Object.values(port.labels));
    }
    const tokens = addressTokens(texts, new Set());
    this.claimTokens.set(ck, tokens);
    return tokens;
  }

  private ingressDecision(e: FlowEntry, hosts: readonly Host[], reporter: string, owners: readonly Owner[]): DecidedBy {
    const claim = `${e.protocol} ${e.port} on ${reporter}`;
    if (owners.length === 0) return { tier: 'unmanaged', reason: `no task claims ${claim} in the cluster in force: not a managed port.` };
    const tasks = hosts.flatMap((h) => this.tasksByHost.get(h.id) ?? []);
    const viewApps = [...new Set(tasks.map((t) => this.apps.get(t.appId)!))];
    const verdicts = owners.map((o) =>
      evaluateConnection(this.policy, { hosts, apps: [...viewApps, o.app], tasks }, { source: e.source, task: o.task, portIndex: o.portIndex, protocol: e.protocol }),
    );
    const v = verdicts.find((x) => x.decision === 'deny') ?? verdicts[0]!;
    const conflict = owners.length > 1 ? `${claim} is claimed by ${owners.length} task ports (port conflict): allowed only when every owner allows; ` : '';
    return { tier: v.tier, ...(v.rule !== undefined ? { rule: v.rule } : {}), ...(v.at ? { at: where(v.at) } : {}), reason: `${conflict}${v.reason}` };
  }

  private egress(reporter: string, e: FlowEntry): FlowResolution {
    const family: Family = e.destination.includes(':') ? 6 : 4;
    const sourceHost = this.hosts.get(reporter);
    const address = sourceHost?.addresses.find((a) => tryParseAddress(a)?.family === family);
    const sourceAddress = address === undefined ? '' : parseCanonical(address);
    const source = { address: sourceAddress, kind: 'app', hostId: reporter, apps: Object.freeze([e.source]), networks: sourceAddress === '' ? NONE : this.networksOf(sourceAddress) } as const;
    const destHost = (this.hostsByAddress.get(e.destination) ?? []).map((h) => h.id).sort(byText)[0];
    const destination = this.destination(`${destHost ?? ''}\u0000${e.destination}`, e.destination, destHost ?? '', e.protocol, e.port);
    return this.resolution(e, reporter, source, destination, this.egressDecision(e, reporter, destHost, family));
  }

  private egressDecision(e: FlowEntry, reporter: string, destHost: string | undefined, family: Family): SharedDecision {
    const k = `${e.source}\u0000${reporter}\u0000${destHost ?? ''}\u0000${e.protocol}\u0000${e.port}\u0000${family}`;
    const known = this.egressMemo.get(k);
    if (known) return known;
    const decided = shared(this.egressDecide(e, reporter, destHost, family));
    if (this.egressMemo.size >= MEMO_LIMIT) this.egressMemo.clear();
    this.egressMemo.set(k, decided);
    return decided;
  }

  private egressDecide(e: FlowEntry, reporter: string, destHost: string | undefined, family: Family): DecidedBy {
    const sourceApp = this.apps.get(e.source);
    const sourceHost = this.hosts.get(reporter);
    if (!sourceApp) return { tier: 'unknown', reason: `app ${JSON.stringify(e.source)} is not in the cluster in force, so no rule can be named for it.` };
    if (!sourceHost) return { tier: 'unknown', reason: `host ${JSON.stringify(reporter)} is not in the cluster in force, so no rule can be named for its tasks.` };
    if (destHost === undefined) return { tier: 'unmanaged', reason: `${e.destination} is not an address of a host of the cluster in force: not a managed destination.` };
    const tasks = this.tasksByHost.get(destHost) ?? [];
    const hosts = destHost === reporter ? [sourceHost] : [sourceHost, this.hosts.get(destHost)!];
    const apps = [sourceApp, ...new Set(tasks.map((t) => this.apps.get(t.appId)!))];
    const v = egressVerdict(this.policy, { hosts, apps, tasks }, { appId: e.source, sourceHostId: reporter, destHostId: destHost, protocol: e.protocol, hostPort: e.port, family });
    return { tier: v.tier, ...(v.rule !== undefined ? { rule: v.rule } : {}), ...(v.at ? { at: where(v.at) } : {}), reason: v.reason };
  }

  /** The destination of a claim (shared by every source reaching it). */
  private destination(memoKey: string, address: string, hostId: string, protocol: 'tcp' | 'udp', port: number): ObservedFlow['destination'] {
    const k = `${memoKey}\u0000${protocol}\u0000${port}`;
    const known = this.destinations.get(k);
    if (known) return known;
    const owners = hostId === '' ? [] : (this.claims.get(claimKey(hostId, protocol, port)) ?? []);
    const byApp = new Map<string, string[]>();
    for (const o of owners) {
      const ids = byApp.get(o.app.id) ?? [];
      if (!ids.includes(o.task.id)) ids.push(o.task.id);
      byApp.set(o.app.id, ids);
    }
    const apps = owners.length === 0 ? UNCLAIMED : [...byApp.keys()].sort(byText).map((appId) => ({ appId, taskIds: byApp.get(appId)!.sort(byText) }));
    const portName = owners.map((o) => o.app.ports[o.portIndex]!.name).find((n) => n !== undefined);
    const d = { hostId, address, protocol, port, apps, ...(portName !== undefined ? { portName } : {}) };
    this.destinations.set(k, d);
    return d;
  }

  private resolution(e: FlowEntry, reporter: string, source: ObservedFlow['source'], destination: ObservedFlow['destination'], decided: SharedDecision): FlowResolution {
    return { direction: e.direction, reportedBy: reporter, rawSource: e.source, rawDestination: e.destination, source, destination, decided, keys: [undefined, undefined, undefined] };
  }
}

function claimKey(hostId: string, protocol: string, port: number): string {
  return `${hostId}\u0000${protocol}\u0000${port}`;
}

/** The canonical text of an address (it was parsed before), as records spell it. */
function parseCanonical(address: string): string {
  try {
    return canonicalAddress(address);
  } catch {
    return address;
  }
}
