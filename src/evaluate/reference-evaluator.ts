/**
 * The reference evaluator: "can A reach B on port P, and which rule says so".
 *
 * Contract: an INDEPENDENT, deliberately naive reading of docs/architecture.md "Semantics". It
 * shares no code with the compiler's arithmetic (no address sets, no caches): every question is
 * answered by walking the policy rule by rule and the cluster task by task, with ip-num for
 * address parsing and CIDR containment (src/net only writes the addresses it shows). It is slow
 * on purpose and used (1) by tests, which check the compiled sets against it on random policies
 * and clusters, and (2) by `portcullis explain`.
 *
 * The cluster is read the way the compiler reads it: tasks on unknown hosts or of unknown apps
 * are ignored, host addresses that do not parse are ignored, host ports outside 1-65535 are not
 * task ports. Port conflicts are the compiler's business on this (destination) side; here each
 * task port is judged alone.
 *
 * Two halves (issue 10): this file is the DESTINATION side (a source address against a task
 * port, `evaluateConnection`), egress-evaluator.ts the EGRESS side (a task of an app, judged at
 * its own host); both walk the tiers of policy-walk.ts. `explain` from an app gives both per
 * source task (PairVerdict); a connection is allowed only when both halves allow. An address is
 * not a task (sshd, host daemons, anything outside the cluster): judged at the destination only.
 */
import type { ClusterState, Task } from '../inventory/cluster-state.js';
import type { PeerRef, Policy, Protocol, RuleDef } from '../policy/policy-model.js';
import type { SourceLocation } from '../diagnostic.js';
import { claimOwners, egressEnabled, egressVerdict, type EgressVerdict } from './egress-evaluator.js';
import { auditNote, claimModeReading } from './group-mode.js';
import { appInGroup, findApp, hostIps, inNetwork, ipFamily, ipText, isFailsafe, isTaskPort, parseIp, sameIp, targetText, walkTiers, type Ip } from './policy-walk.js';

export type Tier = 'failsafe' | 'policy' | 'labels' | 'default';

/** A new connection from a source address to a task port, and whether it is allowed. */
interface Decided {
  readonly source: string;
  readonly hostId: string;
  readonly hostPort: number;
  readonly protocol: Protocol;
  readonly portName?: string;
  readonly taskId: string;
  readonly decision: 'allow' | 'deny';
  /** False in audit mode for a deny: the packet is logged, not dropped. */
  readonly enforced: boolean;
  /** The group whose `mode: audit` puts the port in audit (group-mode.ts), when one does. */
  readonly auditGroup?: string;
}

export interface Verdict extends Decided {
  readonly tier: Tier;
  readonly rule?: string;
  readonly at?: SourceLocation;
  /** One sentence for a person. */
  readonly reason: string;
}

export interface ExplainQuery {
  readonly from: { readonly address: string } | { readonly appId: string };
  readonly toAppId: string;
  /** A host port number, a port name, or the app port's containerPort. */
  readonly port: number | string;
  readonly protocol?: Protocol;
}

/**
 * One connection from a TASK of the source app: the egress half (judged by the source host's
 * agent) and the destination half (the source address at the destination host, as for an
 * address). Allowed only when both allow; `deniedAt` says which half drops it first.
 */
export interface PairVerdict extends Decided {
  readonly sourceAppId: string;
  readonly sourceTaskId: string;
  /** The source host; `source` is one of its addresses. */
  readonly sourceHostId: string;
  readonly deniedAt?: 'source' | 'destination';
  readonly egress: EgressVerdict;
  readonly destination: Verdict;
}

/**
 * `verdicts`: the destination side for every source address (an address query, or every address
 * of the hosts running the source app). `pairs`: for an app query with egress on, the verdicts
 * per source task (see PairVerdict), sorted by source task, source address, destination.
 */
export type ExplainResult =
  | { readonly ok: true; readonly verdicts: Verdict[]; readonly pairs?: PairVerdict[] }
  | { readonly ok: false; readonly error: string };

/** Is `ip` an address of a host that runs a task of an app of group `name`? */
function inGroup(policy: Policy, cluster: ClusterState, ip: Ip, name: string): boolean {
  return cluster.tasks.some((task) => {
    const app = findApp(cluster, task.appId);
    if (!app || !appInGroup(policy, app, name)) return false;
    return hostIps(cluster, task.hostId).some((hostIp) => sameIp(hostIp, ip));
  });
}

function inPeer(policy: Policy, cluster: ClusterState, ip: Ip, peer: PeerRef): boolean {
  if (peer.kind === 'any') return true;
  if (peer.kind === 'group') return inGroup(policy, cluster, ip, peer.name);
  return inNetwork(policy, ip, peer.name);
}

export interface Connection {
  readonly source: string;
  readonly task: Task;
  readonly portIndex: number;
  readonly protocol: Protocol;
}

/** The verdict for one new connection from `source` to port `portIndex` of `task`. */
export function evaluateConnection(policy: Policy, cluster: ClusterState, c: Connection): Verdict {
  const ip = parseIp(c.source);
  const app = findApp(cluster, c.task.appId);
  if (!ip) throw new Error(`'${c.source}' is not an IPv4 or IPv6 address`);
  if (!app) throw new Error(`task ${c.task.id} belongs to unknown app ${c.task.appId}`);
  const port = app.ports[c.portIndex];
  const hostPort = c.task.hostPorts[c.portIndex];
  if (!port || hostPort === undefined) throw new Error(`task ${c.task.id} has no port #${c.portIndex}`);
  const target = targetText(app, c.portIndex, c.protocol, hostPort, c.task.hostId);
  const base = {
    source: c.source,
    hostId: c.task.hostId,
    hostPort,
    protocol: c.protocol,
    ...(port.name !== undefined ? { portName: port.name } : {}),
    taskId: c.task.id,
  };
  const mode = claimModeReading(policy, app, () => claimOwners(cluster, c.task.hostId, c.protocol, hostPort));
  const audit = mode.mode === 'audit';
  const verdict = (decision: 'allow' | 'deny', tier: Tier, reason: string, rule?: RuleDef): Verdict => ({
    ...base,
    decision,
    enforced: decision === 'allow' || !audit,
    ...(mode.group !== undefined ? { auditGroup: mode.group } : {}),
    tier,
    ...(rule ? { rule: rule.name, at: rule.at } : {}),
    reason: decision === 'deny' && audit ? `${reason}${auditNote(mode, 'logged, not dropped')}` : reason,
  });

  if (isFailsafe(policy, c.protocol, hostPort)) {
    return verdict('allow', 'failsafe', `${c.protocol} ${hostPort} is a failsafe port, never blocked, so ${c.source} may reach ${target}.`);
  }
  const walk = walkTiers({
    policy,
    app,
    portIndex: c.portIndex,
    hostPort,
    protocol: c.protocol,
    matches: (peer) => inPeer(policy, cluster, ip, peer),
    who: c.source,
    target,
  });
  return verdict(walk.decision, walk.tier, walk.reason, walk.rule);
}

/** Source addresses of a query: the address itself, or every address of the hosts running the app. */
function querySources(cluster: ClusterState, from: ExplainQuery['from']): string[] | string {
  if ('address' in from) {
    const ip = parseIp(from.address);
    if (!ip) return `'${from.address}' is not an IPv4 or IPv6 address`;
    return [ipText(ip)];
  }
  if (!findApp(cluster, from.appId)) return `unknown source app '${from.appId}'`;
  const hostIds = new Set(cluster.tasks.filter((t) => t.appId === from.appId).map((t) => t.hostId));
  const out = new Set<string>();
  for (const h of cluster.hosts) {
    if (!hostIds.has(h.id)) continue;
    for (const a of h.addresses) {
      const ip = parseIp(a);
      if (ip) out.add(ipText(ip));
    }
  }
  if (out.size === 0) return `source app '${from.appId}' runs no task on a host with a known address`;
  return [...out].sort();
}

export function explain(policy: Policy, cluster: ClusterState, query: ExplainQuery): ExplainResult {
  const app = findApp(cluster, query.toAppId);
  if (!app) return { ok: false, error: `unknown destination app '${query.toAppId}'` };
  const sources = querySources(cluster, query.from);
  if (typeof sources === 'string') return { ok: false, error: sources };

  const asNumber = typeof query.port === 'number' ? query.port : /^\d+$/.test(query.port) ? Number(query.port) : undefined;
  const tasks = cluster.tasks.filter(
    (t) => t.appId === app.id && cluster.hosts.some((h) => h.id === t.hostId),
  );
  const selected: { task: Task; index: number }[] = [];
  for (const task of tasks) {
    app.ports.forEach((port, index) => {
      const hostPort = task.hostPorts[index];
      if (!isTaskPort(hostPort)) return;
      const hit =
        asNumber !== undefined
          ? hostPort === asNumber || port.containerPort === asNumber
          : port.name === query.port;
      if (hit) selected.push({ task, index });
    });
  }
  if (selected.length === 0) {
    const described = app.ports.map((p, i) => `${p.name ?? `#${i}`} (${p.protocols.join('/')})`).join(', ') || 'none';
    const why = tasks.length === 0 ? 'it runs no task on a known host' : `its ports: ${described}`;
    return { ok: false, error: `app '${app.id}' has no task port matching '${query.port}' (${why})` };
  }
  const verdicts: Verdict[] = [];
  /** The port index behind each verdict (an owner of the claim, for the egress half). */
  const portIndex = new Map<Verdict, number>();
  for (const source of sources) {
    for (const { task, index } of selected) {
      for (const protocol of new Set(app.ports[index]!.protocols)) {
        if (query.protocol !== undefined && protocol !== query.protocol) continue;
        const v = evaluateConnection(policy, cluster, { source, task, portIndex: index, protocol });
        verdicts.push(v);
        portIndex.set(v, index);
      }
    }
  }
  if (verdicts.length === 0) {
    return { ok: false, error: `port '${query.port}' of app '${app.id}' does not use ${query.protocol}` };
  }
  const key = (v: Verdict) => [v.source, v.hostId, String(v.hostPort).padStart(5, '0'), v.protocol, v.taskId].join('\u0000');
  verdicts.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
  if ('address' in query.from || !egressEnabled(policy)) return { ok: true, verdicts };
  const pairs = taskPairs(policy, cluster, query.from.appId, verdicts, portIndex);
  if (pairs.length === 0) {
    return { ok: false, error: `the hosts of '${query.from.appId}' and of '${app.id}' have no address family in common: no task of one can reach the other` };
  }
  return { ok: true, verdicts, pairs };
}

/**
 * The verdicts per (source task, source address, destination verdict): both halves, for every
 * task of `appId` on a known host and every address of its host whose family the destination
 * host has too. `verdicts` are the destination-side verdicts of every source address, with the
 * port index behind each in `portIndex`.
 */
function taskPairs(
  policy: Policy,
  cluster: ClusterState,
  appId: string,
  verdicts: readonly Verdict[],
  portIndex: ReadonlyMap<Verdict, number>,
): PairVerdict[] {
  const pairs: PairVerdict[] = [];
  const sourceTasks = cluster.tasks.filter((t) => t.appId === appId && cluster.hosts.some((h) => h.id === t.hostId));
  for (const st of sourceTasks.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))) {
    for (const address of hostIps(cluster, st.hostId).map(ipText).sort()) {
      const family = ipFamily(parseIp(address)!);
      for (const destination of verdicts) {
        if (destination.source !== address) continue;
        if (!hostIps(cluster, destination.hostId).some((ip) => ipFamily(ip) === family)) continue;
        const egress = egressVerdict(policy, cluster, {
          appId,
          sourceHostId: st.hostId,
          destHostId: destination.hostId,
          protocol: destination.protocol,
          hostPort: destination.hostPort,
          family,
          prefer: { taskId: destination.taskId, portIndex: portIndex.get(destination)! },
          sourceTaskId: st.id,
        });
        const deniedAt = egress.decision === 'deny' ? 'source' : destination.decision === 'deny' ? 'destination' : undefined;
        pairs.push({
          sourceAppId: appId,
          sourceTaskId: st.id,
          sourceHostId: st.hostId,
          source: address,
          hostId: destination.hostId,
          hostPort: destination.hostPort,
          protocol: destination.protocol,
          ...(destination.portName !== undefined ? { portName: destination.portName } : {}),
          taskId: destination.taskId,
          decision: deniedAt === undefined ? 'allow' : 'deny',
          // Dropped when a half that denies enforces (an audited source lets it on to the destination).
          enforced: deniedAt === undefined || (egress.decision === 'deny' && egress.enforced) || (destination.decision === 'deny' && destination.enforced),
          ...(deniedAt !== undefined ? { deniedAt } : {}),
          egress,
          destination,
        });
      }
    }
  }
  return pairs;
}
