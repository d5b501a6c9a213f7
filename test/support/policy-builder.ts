/**
 * Small typed builders for Policy and ClusterState values in tests (no YAML involved).
 *
 * Peers are written as strings: 'any', 'net:<name>' for a network, anything else a group name.
 * Ports: a number (host port), [from, to] (range) or a string (port name).
 */
import type { App, AppPort, ClusterState, Host, NetworkMode, Task } from '../../src/inventory/cluster-state.js';
import type {
  DefaultAction,
  GroupDef,
  GuardrailDeny,
  Guardrails,
  Mode,
  NetworkDef,
  PeerRef,
  Policy,
  PortRef,
  PortSpec,
  Protocol,
  RuleAction,
  RuleDef,
} from '../../src/policy/policy-model.js';
import type { SourceLocation } from '../../src/diagnostic.js';

function loc(line = 1): SourceLocation {
  return { file: 'test.yaml', line, col: 1 };
}

export function peer(text: string): PeerRef {
  if (text === 'any') return { kind: 'any' };
  if (text.startsWith('net:')) return { kind: 'network', name: text.slice(4) };
  return { kind: 'group', name: text };
}

export type PortInput = number | readonly [number, number] | string;

export function portSpec(p: PortInput): PortSpec {
  if (typeof p === 'number') return { kind: 'number', port: p };
  if (typeof p === 'string') return { kind: 'name', name: p };
  return { kind: 'range', from: p[0], to: p[1] };
}

export function group(name: string, apps: readonly string[], labels: Record<string, string> = {}): GroupDef {
  return { name, apps, labels, at: loc() };
}

export function network(name: string, cidrs: readonly string[], except: readonly string[] = []): NetworkDef {
  return { name, cidrs, except, at: loc() };
}

export interface RuleInput {
  readonly name?: string;
  readonly action: RuleAction;
  readonly from: readonly string[];
  readonly to: readonly string[];
  readonly ports?: readonly PortInput[];
  readonly protocols?: readonly Protocol[] | null;
}

/** `index` gives the default name (`rule-<index>`) and the line of its location. */
export function rule(r: RuleInput, index = 0): RuleDef {
  return {
    name: r.name ?? `rule-${index}`,
    action: r.action,
    from: r.from.map(peer),
    to: r.to,
    ports: (r.ports ?? []).map(portSpec),
    protocols: r.protocols ?? null,
    at: loc(index + 1),
  };
}

export interface GuardrailsInput {
  readonly sources?: readonly string[] | null;
  readonly targets?: readonly string[] | null;
  readonly deny?: readonly { from: readonly string[]; to: readonly string[] }[];
}

export function guardrails(g: GuardrailsInput = {}): Guardrails {
  const deny: GuardrailDeny[] = (g.deny ?? []).map((d) => ({ from: d.from.map(peer), to: d.to, at: loc() }));
  return { sources: g.sources === undefined || g.sources === null ? null : g.sources.map(peer), targets: g.targets ?? null, deny };
}

export interface PolicyInput {
  readonly mode?: Mode;
  readonly action?: DefaultAction;
  readonly failsafe?: readonly PortRef[];
  /** Per-app egress; default false here (the product's default is true) so that a test states it wants egress. */
  readonly egress?: boolean;
  readonly networks?: readonly NetworkDef[];
  readonly groups?: readonly GroupDef[];
  readonly rules?: readonly (RuleDef | RuleInput)[];
  readonly guardrails?: GuardrailsInput;
}

export function policy(p: PolicyInput = {}): Policy {
  return {
    defaults: { mode: p.mode ?? 'enforce', action: p.action ?? 'deny', failsafe: p.failsafe ?? [], egress: p.egress ?? false },
    networks: p.networks ?? [],
    groups: p.groups ?? [],
    rules: (p.rules ?? []).map((r, i) => ('at' in r ? r : rule(r, i))),
    guardrails: guardrails(p.guardrails),
  };
}

// ---- cluster ----

export function host(id: string, ...addresses: string[]): Host {
  return { id, addresses };
}

export interface PortInputDef {
  readonly name?: string;
  readonly protocols?: readonly Protocol[];
  readonly containerPort?: number;
  readonly labels?: Record<string, string>;
}

export function appPort(p: PortInputDef = {}): AppPort {
  return {
    ...(p.name !== undefined ? { name: p.name } : {}),
    protocols: p.protocols ?? ['tcp'],
    ...(p.containerPort !== undefined ? { containerPort: p.containerPort } : {}),
    labels: p.labels ?? {},
  };
}

export function app(
  id: string,
  ports: readonly PortInputDef[] = [{}],
  labels: Record<string, string> = {},
  networkMode: NetworkMode = 'host',
): App {
  return { id, labels, networkMode, ports: ports.map(appPort) };
}

export function task(id: string, appId: string, hostId: string, hostPorts: readonly number[]): Task {
  return { id, appId, hostId, hostPorts };
}

export function cluster(hosts: readonly Host[], apps: readonly App[], tasks: readonly Task[]): ClusterState {
  return { hosts, apps, tasks };
}
