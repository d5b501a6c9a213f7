/**
 * ObservedFlow records for the flows CLI tests (suggest, plan, flows), shaped as the controller's
 * /flows serves them (flows-spec section 5): `egressFlow` as the source host's agent records a
 * connection of a local app, `ingressFlow` as the destination host's agent records a source
 * address, both resolved against a cluster the way the controller resolves them.
 */
import { createHash } from 'node:crypto';
import type { ClusterState } from '../../src/inventory/cluster-state.js';
import type { FlowVerdict } from '../../src/flows/flow-types.js';
import type { ObservedFlow } from '../../src/flows/observed-flow.js';

export interface FlowInput {
  readonly verdict?: FlowVerdict;
  readonly packets: number;
  readonly bytes?: number;
  readonly firstSeen?: string;
  readonly lastSeen?: string;
}

const T0 = '2026-12-01T10:00:00.000Z';
const T1 = '2026-12-01T11:00:00.000Z';

/** The owners of (host, protocol, port) in `cluster`, with the port's name. */
function claim(cluster: ClusterState, hostId: string, protocol: 'tcp' | 'udp', port: number): { apps: { appId: string; taskIds: string[] }[]; portName?: string } {
  const apps = new Map<string, string[]>();
  let portName: string | undefined;
  for (const t of cluster.tasks) {
    if (t.hostId !== hostId) continue;
    const app = cluster.apps.find((a) => a.id === t.appId);
    t.hostPorts.forEach((p, i) => {
      const def = app?.ports[i];
      if (p !== port || !def?.protocols.includes(protocol)) return;
      apps.set(t.appId, [...(apps.get(t.appId) ?? []), t.id]);
      portName ??= def.name;
    });
  }
  return { apps: [...apps].sort(([a], [b]) => (a < b ? -1 : 1)).map(([appId, taskIds]) => ({ appId, taskIds })), ...(portName !== undefined ? { portName } : {}) };
}

function key(parts: readonly (string | number)[]): string {
  return createHash('sha256').update(parts.join('|')).digest('hex').slice(0, 16);
}

const hostOf = (cluster: ClusterState, address: string) => cluster.hosts.find((h) => h.addresses.includes(address));
const appsOn = (cluster: ClusterState, hostId: string) => [...new Set(cluster.tasks.filter((t) => t.hostId === hostId).map((t) => t.appId))].sort();

function counts(i: FlowInput) {
  return { packets: i.packets, bytes: i.bytes ?? i.packets * 60, firstSeen: i.firstSeen ?? T0, lastSeen: i.lastSeen ?? T1 };
}

const DECIDED = { tier: 'default', reason: 'recorded' };

/** A connection of `appId` (a task on `fromHost`) to (toHost, protocol, port), recorded at the source. */
export function egressFlow(cluster: ClusterState, appId: string, fromHost: string, toHost: string, protocol: 'tcp' | 'udp', port: number, input: FlowInput): ObservedFlow {
  const verdict = input.verdict ?? 'audit';
  const destination = cluster.hosts.find((h) => h.id === toHost)!.addresses[0]!;
  const family = destination.includes(':');
  const source = cluster.hosts.find((h) => h.id === fromHost)!.addresses.find((a) => a.includes(':') === family) ?? '';
  return {
    key: key(['egress', verdict, fromHost, appId, destination, protocol, port]),
    direction: 'egress',
    verdict,
    reportedBy: fromHost,
    source: { address: source, kind: 'app', hostId: fromHost, apps: [appId], networks: [] },
    destination: { hostId: toHost, address: destination, protocol, port, ...claim(cluster, toHost, protocol, port) },
    decidedBy: DECIDED,
    ...counts(input),
  };
}

/** A connection from `address` to (toHost, protocol, port), recorded at the destination. */
export function ingressFlow(cluster: ClusterState, address: string, toHost: string, protocol: 'tcp' | 'udp', port: number, input: FlowInput & { networks?: string[] }): ObservedFlow {
  const verdict = input.verdict ?? 'audit';
  const host = hostOf(cluster, address);
  const networks = input.networks ?? [];
  const source = host
    ? { address, kind: 'host' as const, hostId: host.id, apps: appsOn(cluster, host.id), networks }
    : { address, kind: networks.length > 0 ? ('network' as const) : ('outside' as const), apps: [], networks };
  return {
    key: key(['ingress', verdict, toHost, address, '', protocol, port]),
    direction: 'ingress',
    verdict,
    reportedBy: toHost,
    source,
    destination: { hostId: toHost, address: '', protocol, port, ...claim(cluster, toHost, protocol, port) },
    decidedBy: DECIDED,
    ...counts(input),
  };
}

/** A /flows answer holding `flows`. */
export function flowsAnswer(flows: readonly ObservedFlow[], now = '2026-12-01T12:00:00.000Z') {
  return { flows, lost: [], now };
}
