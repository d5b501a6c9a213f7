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
 * task ports. Port conflicts are the compiler's business; here each task port is judged alone.
 */
import { ipv6Text } from '../net/address.js';
import { IPv4, IPv4CidrRange, IPv6, IPv6CidrRange } from '../net/ip-num.js';
import type { App, ClusterState, Task } from '../inventory/cluster-state.js';
import { appMatchesGroup } from '../policy/app-selector.js';
import {
  ALLOW_FROM_LABEL,
  type PeerRef,
  type Policy,
  type Protocol,
  type RuleDef,
} from '../policy/policy-model.js';
import type { SourceLocation } from '../diagnostic.js';

export type Tier = 'failsafe' | 'policy' | 'labels' | 'default';

export interface Verdict {
  readonly source: string;
  readonly hostId: string;
  readonly hostPort: number;
  readonly protocol: Protocol;
  readonly portName?: string;
  readonly taskId: string;
  readonly decision: 'allow' | 'deny';
  /** False in audit mode for a deny: the packet is logged, not dropped. */
  readonly enforced: boolean;
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

export type ExplainResult = { readonly ok: true; readonly verdicts: Verdict[] } | { readonly ok: false; readonly error: string };

type Ip = IPv4 | IPv6;

function parseIp(text: string): Ip | undefined {
  try {
    return text.includes(':') ? IPv6.fromString(text.trim()) : IPv4.fromDecimalDottedString(text.trim());
  } catch {
    return undefined;
  }
}

function sameIp(a: Ip, b: Ip): boolean {
  return a instanceof IPv4 === b instanceof IPv4 && a.value === b.value;
}

function inCidr(ip: Ip, cidr: string): boolean {
  if (cidr.includes(':')) return ip instanceof IPv6 && IPv6CidrRange.fromCidr(cidr).contains(ip);
  return ip instanceof IPv4 && IPv4CidrRange.fromCidr(cidr).contains(ip);
}

function findApp(cluster: ClusterState, id: string): App | undefined {
  return cluster.apps.find((a) => a.id === id);
}

/** Is `ip` an address of a host that runs a task of an app of group `name`? */
function inGroup(policy: Policy, cluster: ClusterState, ip: Ip, name: string): boolean {
  const group = policy.groups.find((g) => g.name === name);
  if (!group) return false;
  return cluster.tasks.some((task) => {
    const app = findApp(cluster, task.appId);
    if (!app || !appMatchesGroup(app, group)) return false;
    return cluster.hosts.some(
      (h) => h.id === task.hostId && h.addresses.some((a) => {
        const hostIp = parseIp(a);
        return hostIp !== undefined && sameIp(hostIp, ip);
      }),
    );
  });
}

function inPeer(policy: Policy, cluster: ClusterState, ip: Ip, peer: PeerRef): boolean {
  if (peer.kind === 'any') return true;
  if (peer.kind === 'group') return inGroup(policy, cluster, ip, peer.name);
  const net = policy.networks.find((n) => n.name === peer.name);
  if (!net) return false;
  return net.cidrs.some((c) => inCidr(ip, c)) && !net.except.some((c) => inCidr(ip, c));
}

function appInGroup(policy: Policy, app: App, name: string): boolean {
  const group = policy.groups.find((g) => g.name === name);
  return group !== undefined && appMatchesGroup(app, group);
}

function ruleCoversPort(rule: RuleDef, portName: string | undefined, hostPort: number, protocol: Protocol): boolean {
  if (rule.protocols !== null && !rule.protocols.includes(protocol)) return false;
  if (rule.ports.length === 0) return true;
  for (const p of rule.ports) {
    if (p.kind === 'number' && p.port === hostPort) return true;
    if (p.kind === 'range' && p.from <= hostPort && hostPort <= p.to) return true;
    if (p.kind === 'name' && portName !== undefined && p.name === portName) return true;
  }
  return false;
}

/** Why a declared name is not applied to `app`, or undefined when it is applied. */
function declarationProblem(policy: Policy, app: App, name: string): string | undefined {
  let peer: PeerRef;
  if (name === 'any') peer = { kind: 'any' };
  else if (policy.groups.some((g) => g.name === name)) peer = { kind: 'group', name };
  else if (policy.networks.some((n) => n.name === name)) peer = { kind: 'network', name };
  else return `'${name}' is not a group or network of the policy`;
  const equal = (p: PeerRef) => p.kind === peer.kind && (p.kind === 'any' || (peer.kind !== 'any' && p.name === peer.name));
  const { sources, targets, deny } = policy.guardrails;
  if (sources === null && peer.kind === 'any') return `'any' is not allowed unless guardrails.sources lists it`;
  if (sources !== null && !sources.some(equal)) return `'${name}' is not in guardrails.sources`;
  if (targets !== null && !targets.some((t) => appInGroup(policy, app, t))) return 'the app is in no guardrails.targets group';
  for (const d of deny) {
    if (d.to.some((t) => appInGroup(policy, app, t)) && d.from.some((f) => f.kind === 'any' || equal(f))) {
      return `guardrails.deny at ${d.at.file}:${d.at.line}:${d.at.col} forbids it`;
    }
  }
  return undefined;
}

function names(value: string | undefined): string[] {
  return value === undefined ? [] : value.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
}

function peerOfName(policy: Policy, name: string): PeerRef {
  if (name === 'any') return { kind: 'any' };
  return policy.groups.some((g) => g.name === name) ? { kind: 'group', name } : { kind: 'network', name };
}

function where(at: SourceLocation): string {
  return `${at.file}:${at.line}:${at.col}`;
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
  const target = `${app.id} port ${port.name ?? `#${c.portIndex}`} (${c.protocol} ${hostPort} on ${c.task.hostId})`;
  const base = {
    source: c.source,
    hostId: c.task.hostId,
    hostPort,
    protocol: c.protocol,
    ...(port.name !== undefined ? { portName: port.name } : {}),
    taskId: c.task.id,
  };
  const audit = policy.defaults.mode === 'audit';
  const verdict = (decision: 'allow' | 'deny', tier: Tier, reason: string, rule?: RuleDef): Verdict => ({
    ...base,
    decision,
    enforced: decision === 'allow' || !audit,
    tier,
    ...(rule ? { rule: rule.name, at: rule.at } : {}),
    reason: decision === 'deny' && audit ? `${reason} (audit mode: logged, not dropped)` : reason,
  });

  if (policy.defaults.failsafe.some((f) => f.protocol === c.protocol && f.port === hostPort)) {
    return verdict('allow', 'failsafe', `${c.protocol} ${hostPort} is a failsafe port, never blocked, so ${c.source} may reach ${target}.`);
  }

  let passedBy: RuleDef | undefined;
  for (const rule of policy.rules) {
    if (!rule.to.some((g) => appInGroup(policy, app, g))) continue;
    if (!ruleCoversPort(rule, port.name, hostPort, c.protocol)) continue;
    if (!rule.from.some((peer) => inPeer(policy, cluster, ip, peer))) continue;
    const named = `rule '${rule.name}' (${where(rule.at)})`;
    if (rule.action === 'allow') return verdict('allow', 'policy', `${named} is the first match and allows ${c.source} to reach ${target}.`, rule);
    if (rule.action === 'deny') return verdict('deny', 'policy', `${named} is the first match and denies ${c.source} access to ${target}.`, rule);
    passedBy = rule;
    break;
  }
  const prefix = passedBy
    ? `rule '${passedBy.name}' (${where(passedBy.at)}) passes ${c.source} to the labels tier`
    : 'no policy rule matches';

  const declared = [
    ...names(app.labels[ALLOW_FROM_LABEL]).map((n) => ({ n, on: `app ${app.id}` })),
    ...names(port.labels[ALLOW_FROM_LABEL]).map((n) => ({ n, on: `port ${port.name ?? `#${c.portIndex}`} of ${app.id}` })),
  ];
  for (const { n, on } of declared) {
    if (declarationProblem(policy, app, n) !== undefined) continue;
    if (inPeer(policy, cluster, ip, peerOfName(policy, n))) {
      const v = verdict('allow', 'labels', `${prefix}, and ${on} declares ${ALLOW_FROM_LABEL} '${n}', which contains ${c.source}.`);
      return passedBy ? { ...v, rule: passedBy.name, at: passedBy.at } : v;
    }
  }
  const action = policy.defaults.action;
  const v = verdict(
    action,
    'default',
    `${prefix} and no applied ${ALLOW_FROM_LABEL} declaration contains ${c.source}, so the default (${action}) decides for ${target}.`,
  );
  return passedBy ? { ...v, rule: passedBy.name, at: passedBy.at } : v;
}

/** Source addresses of a query: the address itself, or every address of the hosts running the app. */
function querySources(cluster: ClusterState, from: ExplainQuery['from']): string[] | string {
  if ('address' in from) {
    const ip = parseIp(from.address);
    if (!ip) return `'${from.address}' is not an IPv4 or IPv6 address`;
    return [ip instanceof IPv4 ? ip.toString() : ipv6Text(ip.value)];
  }
  if (!findApp(cluster, from.appId)) return `unknown source app '${from.appId}'`;
  const hostIds = new Set(cluster.tasks.filter((t) => t.appId === from.appId).map((t) => t.hostId));
  const out = new Set<string>();
  for (const h of cluster.hosts) {
    if (!hostIds.has(h.id)) continue;
    for (const a of h.addresses) {
      const ip = parseIp(a);
      if (ip) out.add(ip instanceof IPv4 ? ip.toString() : ipv6Text(ip.value));
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
      if (hostPort === undefined || !Number.isInteger(hostPort) || hostPort < 1 || hostPort > 65535) return;
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
  for (const source of sources) {
    for (const { task, index } of selected) {
      for (const protocol of new Set(app.ports[index]!.protocols)) {
        if (query.protocol !== undefined && protocol !== query.protocol) continue;
        verdicts.push(evaluateConnection(policy, cluster, { source, task, portIndex: index, protocol }));
      }
    }
  }
  if (verdicts.length === 0) {
    return { ok: false, error: `port '${query.port}' of app '${app.id}' does not use ${query.protocol}` };
  }
  const key = (v: Verdict) => [v.source, v.hostId, String(v.hostPort).padStart(5, '0'), v.protocol, v.taskId].join('\u0000');
  verdicts.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
  return { ok: true, verdicts };
}
