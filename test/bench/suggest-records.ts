/**
 * Recorded flows for the `suggest` benchmark (bench-suggest.ts), deterministic for a seed: a
 * cluster of ~100 hosts and 300 apps (synthetic-cluster.ts, its policy with team and service
 * groups and the `office` / `monitoring` networks), and `count` ObservedFlow records of a
 * realistic mix, as the controller's /flows serves them:
 *  - 70 % ingress from outside addresses: a pool of count/4 distinct addresses (IPv4 and IPv6),
 *    a tenth of them inside the policy's networks (one inside the network's `except`);
 *  - 15 % ingress from cluster hosts' addresses (the source host's apps listed);
 *  - 15 % egress records (a task's app on its host towards a claim);
 *  - verdicts: 8 in 10 denied, 1 audit, 1 allowed; packets 1-1000; times within a day.
 * Each record is its own aggregate (a distinct key); the claims' owners are resolved once.
 */
import type { ClusterState } from '../../src/inventory/cluster-state.js';
import type { FlowVerdict } from '../../src/flows/flow-types.js';
import type { ObservedFlow } from '../../src/flows/observed-flow.js';
import type { Policy } from '../../src/policy/policy-model.js';
import { parseAddress } from '../../src/net/address.js';
import { egressFlow, ingressFlow } from '../support/flow-records.js';
import { seededRandom } from '../support/seeded-random.js';
import { syntheticCluster, syntheticPolicy, type SyntheticSize } from './synthetic-cluster.js';

export const SUGGEST_SIZE: SyntheticSize = { hosts: 100, apps: 300, tasks: 1000, groups: 60, rules: 200 };

export interface SuggestInput {
  readonly policy: Policy;
  readonly cluster: ClusterState;
  readonly flows: ObservedFlow[];
}

const DAY0 = Date.parse('2026-12-01T00:00:00.000Z');

/** Addresses as the controller writes them: canonical (RFC 5952). */
function outsideAddress(rand: () => number, i: number): string {
  const a = parseAddress(spelled(rand, i));
  if (!a.ok) throw new Error(a.message);
  return a.canonical;
}

function spelled(rand: () => number, i: number): string {
  const r = rand();
  if (r < 0.05) return `172.16.${(i >> 8) & 255}.${i & 255}`; // office (172.16.13.0/24: except)
  if (r < 0.08) return `192.168.50.${i & 15}`; // monitoring
  if (r < 0.1) return `fd10::${(i & 0xffff).toString(16)}`; // office, v6
  if (r < 0.9) return `${100 + ((i >> 16) & 63)}.${(i >> 8) & 255}.${i & 255}.${1 + (i % 250)}`;
  return `2001:db8:${(i >> 16).toString(16)}::${(i & 0xffff).toString(16)}`;
}

export function suggestInput(count: number, seed = 1, size: SyntheticSize = SUGGEST_SIZE): SuggestInput {
  const cluster = syntheticCluster(size, seed);
  const policy = syntheticPolicy(size, seed + 1);
  const rand = seededRandom(seed + 2);
  const pick = <T>(list: readonly T[]) => list[Math.floor(rand() * list.length)]!;
  const appPorts = new Map(cluster.apps.map((a) => [a.id, a.ports]));
  const claims = cluster.tasks.flatMap((t) => t.hostPorts.flatMap((port, i) => (appPorts.get(t.appId)![i]!.protocols.map((protocol) => ({ hostId: t.hostId, protocol, port })))));
  // One template per (source kind, claim): the destination side resolved once.
  const ingress = claims.map((c) => ingressFlow(cluster, '198.51.100.1', c.hostId, c.protocol, c.port, { packets: 1 }));
  const hostAddresses = cluster.hosts.flatMap((h) => h.addresses);
  const hostSources = new Map<string, ObservedFlow['source']>();
  const hostSource = (address: string, toHost: string) => {
    let source = hostSources.get(address);
    if (!source) hostSources.set(address, (source = ingressFlow(cluster, address, toHost, 'tcp', 1, { packets: 1 }).source));
    return source;
  };
  const egressFlows = new Map<string, ObservedFlow>();
  const egressOf = (appId: string, hostId: string) => {
    let template = egressFlows.get(`${appId}\u0000${hostId}`);
    if (!template) egressFlows.set(`${appId}\u0000${hostId}`, (template = egressFlow(cluster, appId, hostId, hostId, 'tcp', 1, { packets: 1 })));
    return template;
  };
  const hostAddress = new Map(cluster.hosts.map((h) => [h.id, h.addresses[0]!]));
  const pool = Array.from({ length: Math.max(1, Math.floor(count / 4)) }, (_, i) => outsideAddress(rand, i));
  const flows: ObservedFlow[] = [];
  for (let n = 0; n < count; n++) {
    const v = rand();
    const verdict: FlowVerdict = v < 0.8 ? 'denied' : v < 0.9 ? 'audit' : 'allowed';
    const packets = 1 + Math.floor(rand() * 1000);
    const first = DAY0 + Math.floor(rand() * 80_000_000);
    const times = { packets, bytes: packets * 80, firstSeen: new Date(first).toISOString(), lastSeen: new Date(first + Math.floor(rand() * 6_000_000)).toISOString() };
    const key = n.toString(16).padStart(16, '0');
    const kind = rand();
    const c = Math.floor(rand() * claims.length);
    if (kind < 0.85) {
      const template = ingress[c]!;
      const address = kind < 0.7 ? pick(pool) : pick(hostAddresses);
      const source = kind < 0.7 ? { address, kind: 'outside' as const, apps: [], networks: [] } : hostSource(address, template.destination.hostId);
      flows.push({ ...template, key, verdict, source, ...times });
    } else {
      const task = pick(cluster.tasks);
      // The source side of the task's app on its host, the destination side of the claim.
      const destination = { ...ingress[c]!.destination, address: hostAddress.get(claims[c]!.hostId)! };
      flows.push({ ...egressOf(task.appId, task.hostId), key, verdict, destination, ...times });
    }
  }
  return { policy, cluster, flows };
}
