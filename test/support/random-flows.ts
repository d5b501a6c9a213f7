/**
 * Random recorded flows in a random cluster (test/support/random-cluster.ts) for the suggest
 * property tests: each pick (kind, claim, source) is an egress record from a task (kind 0) or an
 * ingress record from one of `addresses` (kind 1) to one of the cluster's claims.
 */
import type { ClusterState } from '../../src/inventory/cluster-state.js';
import type { ObservedFlow } from '../../src/flows/observed-flow.js';
import type { Protocol } from '../../src/policy/policy-model.js';
import { egressFlow, ingressFlow } from './flow-records.js';

export interface Claim {
  readonly hostId: string;
  readonly protocol: Protocol;
  readonly port: number;
}

/** Every (host, protocol, host port) a task port claims on a host with an address. */
export function claimsOf(cluster: ClusterState): Claim[] {
  const out = new Map<string, Claim>();
  for (const t of cluster.tasks) {
    const app = cluster.apps.find((a) => a.id === t.appId);
    const host = cluster.hosts.find((h) => h.id === t.hostId);
    if (!app || !host || host.addresses.length === 0) continue;
    t.hostPorts.forEach((port, i) => {
      for (const protocol of app.ports[i]?.protocols ?? []) out.set(`${t.hostId}/${protocol}/${port}`, { hostId: t.hostId, protocol, port });
    });
  }
  return [...out.values()];
}

/** Flows of the picks: egress from a task, ingress from an address of `addresses`. */
export function randomFlows(cluster: ClusterState, addresses: readonly string[], picks: readonly (readonly [number, number, number])[]): ObservedFlow[] {
  const claims = claimsOf(cluster);
  if (claims.length === 0) return [];
  return picks.flatMap(([kind, c, s], n) => {
    const claim = claims[c % claims.length]!;
    const input = { packets: n + 1, verdict: 'denied' as const };
    if (kind === 0) {
      const task = cluster.tasks[s % Math.max(cluster.tasks.length, 1)];
      if (!task || !cluster.hosts.some((h) => h.id === task.hostId)) return [];
      return [egressFlow(cluster, task.appId, task.hostId, claim.hostId, claim.protocol, claim.port, input)];
    }
    return [ingressFlow(cluster, addresses[s % addresses.length]!, claim.hostId, claim.protocol, claim.port, input)];
  });
}
