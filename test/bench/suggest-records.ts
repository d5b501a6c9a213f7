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
 * This RANDOM mix (`suggestInput`) makes nearly every record its own (source, claim) pair, so the
 * answer is enormous (rules by the hundred thousand): a stress of the answer's size.
 *
 * The DEPENDENCY-GRAPH mix (`suggestGraphInput`) is traffic as a running cluster makes it: a
 * modest set of (source, destination, port) pairs repeated across the flow store's time windows
 * (DEFAULT_FLOW_WINDOW_MS, a day of them), one aggregate per pair and window, as the store keeps
 * them (src/flows/flow-store.ts; its bound is 1M aggregates):
 *  - each app calls 2-5 peer apps on one of their ports; every task of the caller reaches every
 *    task of the callee: an egress record at the caller's host and an ingress record (from the
 *    caller's host address) at the callee's;
 *  - one app in ten is exposed: a pool of 40 outside client addresses per exposed app (a tenth in
 *    the policy's `office` network) on its http port, at every task;
 *  - 20 scanners (outside addresses) probing 30 random claims each, denied;
 *  - verdicts fixed per pair (the policy decides a connection the same way each window): calls
 *    6 in 10 audit, 3 allowed, 1 denied; clients 7 in 10 audit, else allowed;
 *  - each window holds a pair with the same chance, so count records ≈ pairs × active windows.
 * The keys differ per window (a store aggregate is per key AND window; /flows merges them by
 * key, so a /flows answer of this traffic would be its pairs only).
 */
import type { ClusterState } from '../../src/inventory/cluster-state.js';
import type { FlowVerdict } from '../../src/flows/flow-types.js';
import type { ObservedFlow } from '../../src/flows/observed-flow.js';
import type { Policy } from '../../src/policy/policy-model.js';
import { parseAddress } from '../../src/net/address.js';
import { DEFAULT_FLOW_WINDOW_MS } from '../../src/flows/flow-store.js';
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
const WINDOW_MS = DEFAULT_FLOW_WINDOW_MS;
const WINDOWS = 1440;

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

/** A pair of the dependency graph: its record (verdict set; counts, times and key per window) and its most packets in a window. */
interface Pair {
  readonly template: ObservedFlow;
  readonly rate: number;
}

/** The dependency-graph mix (see the top of this file): `count` records over a day of windows. */
export function suggestGraphInput(count: number, seed = 1, size: SyntheticSize = SUGGEST_SIZE): SuggestInput {
  const cluster = syntheticCluster(size, seed);
  const policy = syntheticPolicy(size, seed + 1);
  const rand = seededRandom(seed + 3);
  const pick = <T>(list: readonly T[]) => list[Math.floor(rand() * list.length)]!;
  const tasksOf = new Map<string, typeof cluster.tasks[number][]>();
  for (const t of cluster.tasks) tasksOf.set(t.appId, [...(tasksOf.get(t.appId) ?? []), t]);
  const hostAddress = new Map(cluster.hosts.map((h) => [h.id, h.addresses[0]!]));
  const pairs: Pair[] = [];
  const verdictOf = (audit: number, allowed: number): FlowVerdict => {
    const v = rand();
    return v < audit ? 'audit' : v < audit + allowed ? 'allowed' : 'denied';
  };
  const add = (template: ObservedFlow, verdict: FlowVerdict) => pairs.push({ template: { ...template, verdict }, rate: 1 + Math.floor(rand() * 200) });
  const withTasks = cluster.apps.filter((a) => tasksOf.has(a.id));
  for (const app of withTasks) {
    const deps = 2 + Math.floor(rand() * 4);
    for (let d = 0; d < deps; d++) {
      const peer = pick(withTasks.filter((a) => a.id !== app.id));
      const portIndex = Math.floor(rand() * peer.ports.length);
      const protocol = peer.ports[portIndex]!.protocols[0]!;
      const verdict = verdictOf(0.6, 0.3);
      for (const from of tasksOf.get(app.id)!) {
        for (const to of tasksOf.get(peer.id)!) {
          const port = to.hostPorts[portIndex]!;
          add(egressFlow(cluster, app.id, from.hostId, to.hostId, protocol, port, { packets: 1 }), verdict);
          add(ingressFlow(cluster, hostAddress.get(from.hostId)!, to.hostId, protocol, port, { packets: 1 }), verdict);
        }
      }
    }
  }
  let client = 0;
  for (const app of withTasks.filter((_, i) => i % 10 === 0)) {
    const verdict = verdictOf(0.7, 0.3);
    for (let k = 0; k < 40; k++, client++) {
      const address = k % 10 === 0 ? `172.16.${100 + ((client >> 8) & 63)}.${client & 255}` : `${100 + ((client >> 16) & 63)}.${(client >> 8) & 255}.${client & 255}.7`;
      for (const to of tasksOf.get(app.id)!) add(ingressFlow(cluster, address, to.hostId, 'tcp', to.hostPorts[0]!, { packets: 1 }), verdict);
    }
  }
  const claims = cluster.tasks.flatMap((t) => t.hostPorts.map((port, i) => ({ hostId: t.hostId, port, protocol: cluster.apps.find((a) => a.id === t.appId)!.ports[i]!.protocols[0]! })));
  for (let k = 0; k < 20; k++) {
    const address = outsideAddress(rand, 200_000 + k * 977);
    for (let c = 0; c < 30; c++) {
      const claim = pick(claims);
      add(ingressFlow(cluster, address, claim.hostId, claim.protocol, claim.port, { packets: 1 }), 'denied');
    }
  }
  const chance = Math.min(1, (count * 1.02) / (pairs.length * WINDOWS));
  const flows: ObservedFlow[] = [];
  for (let w = 0; w < WINDOWS && flows.length < count; w++) {
    for (let p = 0; p < pairs.length && flows.length < count; p++) {
      if (rand() >= chance) continue;
      const { template, rate } = pairs[p]!;
      const packets = 1 + Math.floor(rand() * rate);
      const first = DAY0 + w * WINDOW_MS + Math.floor(rand() * (WINDOW_MS / 2));
      const last = first + Math.floor(rand() * (WINDOW_MS / 2));
      flows.push({ ...template, key: flows.length.toString(16).padStart(16, '0'), packets, bytes: packets * 120, firstSeen: new Date(first).toISOString(), lastSeen: new Date(last).toISOString() });
    }
  }
  return { policy, cluster, flows };
}
