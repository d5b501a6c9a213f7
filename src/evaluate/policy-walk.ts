/**
 * The tier walk of the reference evaluator, shared by its two halves: the destination side
 * (reference-evaluator.ts: a source ADDRESS against a task port) and the egress side
 * (egress-evaluator.ts: a source TASK of an app against a task port). Both walk the same tiers
 * (policy rules in order, first match wins; then the label declarations of the destination app
 * within the pass/remaining scope; then the default); they differ only in what "a peer contains
 * the source" means, which the caller passes as `matches`.
 *
 * Like the rest of src/evaluate this is a naive, independent reading of the semantics: no code
 * of src/compile, addresses parsed and compared with ip-num.
 */
import { ipv6Text } from '../net/address.js';
import { IPv4, IPv4CidrRange, IPv6, IPv6CidrRange } from '../net/ip-num.js';
import type { App, ClusterState } from '../inventory/cluster-state.js';
import { appMatchesGroup } from '../policy/app-selector.js';
import { ALLOW_FROM_LABEL, type PeerRef, type Policy, type Protocol, type RuleDef } from '../policy/policy-model.js';
import type { SourceLocation } from '../diagnostic.js';

export type Ip = IPv4 | IPv6;

export function parseIp(text: string): Ip | undefined {
  try {
    return text.includes(':') ? IPv6.fromString(text.trim()) : IPv4.fromDecimalDottedString(text.trim());
  } catch {
    return undefined;
  }
}

/** The canonical text of an address (src/net's spelling). */
export function ipText(ip: Ip): string {
  return ip instanceof IPv4 ? ip.toString() : ipv6Text(ip.value);
}

export function ipFamily(ip: Ip): 4 | 6 {
  return ip instanceof IPv4 ? 4 : 6;
}

export function sameIp(a: Ip, b: Ip): boolean {
  return a instanceof IPv4 === b instanceof IPv4 && a.value === b.value;
}

function inCidr(ip: Ip, cidr: string): boolean {
  if (cidr.includes(':')) return ip instanceof IPv6 && IPv6CidrRange.fromCidr(cidr).contains(ip);
  return ip instanceof IPv4 && IPv4CidrRange.fromCidr(cidr).contains(ip);
}

/** Is `ip` in network `name` (its CIDRs minus its excepts)? */
export function inNetwork(policy: Policy, ip: Ip, name: string): boolean {
  const net = policy.networks.find((n) => n.name === name);
  if (!net) return false;
  return net.cidrs.some((c) => inCidr(ip, c)) && !net.except.some((c) => inCidr(ip, c));
}

/**
 * Addresses that stand for EVERY address of `family` as the policy sees them: both ends of the
 * address space and, for every CIDR and except of every network, its first and last address and
 * the ones just outside. Which networks hold an address changes only at those edges, so a
 * verdict that is ALLOW for all of these is ALLOW for every address of the family.
 */
export function everyAddressOf(policy: Policy, family: 4 | 6): Ip[] {
  const max = family === 4 ? (1n << 32n) - 1n : (1n << 128n) - 1n;
  const values = new Set<bigint>([0n, max]);
  for (const net of policy.networks) {
    for (const cidr of [...net.cidrs, ...net.except]) {
      if (cidr.includes(':') !== (family === 6)) continue;
      const range = family === 6 ? IPv6CidrRange.fromCidr(cidr) : IPv4CidrRange.fromCidr(cidr);
      const first = range.getFirst().value;
      const last = range.getLast().value;
      for (const v of [first, last, first - 1n, last + 1n]) if (v >= 0n && v <= max) values.add(v);
    }
  }
  return [...values].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)).map((v) => (family === 6 ? IPv6.fromBigInt(v) : IPv4.fromNumber(v)));
}

/** The parsed addresses of host `hostId` (unparsable ones ignored, duplicates dropped). */
export function hostIps(cluster: ClusterState, hostId: string): Ip[] {
  const out: Ip[] = [];
  for (const h of cluster.hosts) {
    if (h.id !== hostId) continue;
    for (const a of h.addresses) {
      const ip = parseIp(a);
      if (ip && !out.some((o) => sameIp(o, ip))) out.push(ip);
    }
  }
  return out;
}

export function findApp(cluster: ClusterState, id: string): App | undefined {
  return cluster.apps.find((a) => a.id === id);
}

export function appInGroup(policy: Policy, app: App, name: string): boolean {
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

export function where(at: SourceLocation): string {
  return `${at.file}:${at.line}:${at.col}`;
}

export function isTaskPort(p: number | undefined): p is number {
  return p !== undefined && Number.isInteger(p) && p >= 1 && p <= 65535;
}

export function isFailsafe(policy: Policy, protocol: Protocol, hostPort: number): boolean {
  return policy.defaults.failsafe.some((f) => f.protocol === protocol && f.port === hostPort);
}

/** "<app> port <name or #index> (<proto> <host port> on <host>)": a task port in words. */
export function targetText(app: App, portIndex: number, protocol: Protocol, hostPort: number, hostId: string): string {
  return `${app.id} port ${app.ports[portIndex]?.name ?? `#${portIndex}`} (${protocol} ${hostPort} on ${hostId})`;
}

export interface WalkInput {
  readonly policy: Policy;
  /** The destination app and the index of its port. */
  readonly app: App;
  readonly portIndex: number;
  readonly hostPort: number;
  readonly protocol: Protocol;
  /** Whether `peer` contains the source (the one thing the two halves read differently). */
  readonly matches: (peer: PeerRef) => boolean;
  /** The source in words ("10.0.1.11", "app /shop/web on node-1 (10.0.1.11)"). */
  readonly who: string;
  /** The destination in words (targetText). */
  readonly target: string;
}

export interface WalkResult {
  readonly decision: 'allow' | 'deny';
  readonly tier: 'policy' | 'labels' | 'default';
  /** The rule that decided, or that passed to the labels tier. */
  readonly rule?: RuleDef;
  /** One sentence for a person (without an audit note). */
  readonly reason: string;
}

/** The policy, labels and default tiers for one source and one task port (failsafe is the caller's). */
export function walkTiers(w: WalkInput): WalkResult {
  const { policy, app, who, target } = w;
  const port = app.ports[w.portIndex]!;
  let passedBy: RuleDef | undefined;
  for (const rule of policy.rules) {
    if (!rule.to.some((g) => appInGroup(policy, app, g))) continue;
    if (!ruleCoversPort(rule, port.name, w.hostPort, w.protocol)) continue;
    if (!rule.from.some(w.matches)) continue;
    const named = `rule '${rule.name}' (${where(rule.at)})`;
    if (rule.action === 'allow') return { decision: 'allow', tier: 'policy', rule, reason: `${named} is the first match and allows ${who} to reach ${target}.` };
    if (rule.action === 'deny') return { decision: 'deny', tier: 'policy', rule, reason: `${named} is the first match and denies ${who} access to ${target}.` };
    passedBy = rule;
    break;
  }
  const prefix = passedBy ? `rule '${passedBy.name}' (${where(passedBy.at)}) passes ${who} to the labels tier` : 'no policy rule matches';
  const passed = passedBy ? { rule: passedBy } : {};

  const declared = [
    ...names(app.labels[ALLOW_FROM_LABEL]).map((n) => ({ n, on: `app ${app.id}` })),
    ...names(port.labels[ALLOW_FROM_LABEL]).map((n) => ({ n, on: `port ${port.name ?? `#${w.portIndex}`} of ${app.id}` })),
  ];
  for (const { n, on } of declared) {
    if (declarationProblem(policy, app, n) !== undefined) continue;
    if (w.matches(peerOfName(policy, n))) {
      return { decision: 'allow', tier: 'labels', ...passed, reason: `${prefix}, and ${on} declares ${ALLOW_FROM_LABEL} '${n}', which contains ${who}.` };
    }
  }
  const action = policy.defaults.action;
  return {
    decision: action,
    tier: 'default',
    ...passed,
    reason: `${prefix} and no applied ${ALLOW_FROM_LABEL} declaration contains ${who}, so the default (${action}) decides for ${target}.`,
  };
}
