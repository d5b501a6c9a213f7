/**
 * The fanout benchmark's cluster and its change: one host per simulated agent, a modest
 * synthetic workload (synthetic-cluster.ts, about two tasks per host), plus the monitoring
 * topology almost every cluster has: a node exporter on every host and one Prometheus task that
 * may scrape them (`prometheus → node-exporter` on `metrics`).
 *
 * The change measured is "Prometheus moved to another host": every host's allow set swaps the
 * old Prometheus address for the new one, so ONE cluster change reaches EVERY agent (as a
 * two-member delta), through the controller's normal path (DesiredStateStore.setCluster →
 * incremental compile of the dirty hosts → SyncService fanout).
 */
import type { App, ClusterState, Task } from '../../src/inventory/cluster-state.js';
import type { Policy } from '../../src/policy/policy-model.js';
import { syntheticCluster, syntheticPolicy, type SyntheticSize } from './synthetic-cluster.js';

const at = { file: 'fanout.yaml', line: 1, col: 1 };
const EXPORTER_PORT = 9100;
const PROMETHEUS_PORT = 9090;

export function fanoutSize(hosts: number): SyntheticSize {
  return { hosts, apps: Math.max(50, Math.min(2000, Math.round(hosts / 10))), tasks: 2 * hosts, groups: 30, rules: 100 };
}

export interface FanoutWorld {
  readonly size: SyntheticSize;
  readonly policy: Policy;
  readonly cluster: ClusterState;
  /** The cluster with the Prometheus task on the host with index `hostIndex` (mod hosts). */
  withPrometheusOn(hostIndex: number): ClusterState;
}

export function fanoutWorld(hosts: number, seed: number): FanoutWorld {
  const size = fanoutSize(hosts);
  const base = syntheticCluster(size, seed);
  const exporter: App = { id: '/ops/node-exporter', labels: {}, networkMode: 'host', ports: [{ name: 'metrics', protocols: ['tcp'], labels: {} }] };
  const prometheus: App = { id: '/ops/prometheus', labels: {}, networkMode: 'host', ports: [{ name: 'web', protocols: ['tcp'], labels: {} }] };
  const exporterTasks: Task[] = base.hosts.map((h, i) => ({ id: `/ops/node-exporter.${i}`, appId: exporter.id, hostId: h.id, hostPorts: [EXPORTER_PORT] }));
  const apps = [...base.apps, exporter, prometheus];
  const fixed = [...base.tasks, ...exporterTasks];
  const withPrometheusOn = (hostIndex: number): ClusterState => {
    const host = base.hosts[((hostIndex % base.hosts.length) + base.hosts.length) % base.hosts.length]!;
    return { hosts: base.hosts, apps, tasks: [...fixed, { id: '/ops/prometheus.1', appId: prometheus.id, hostId: host.id, hostPorts: [PROMETHEUS_PORT] }] };
  };
  const synthetic = syntheticPolicy(size, seed + 1);
  const policy: Policy = {
    ...synthetic,
    groups: [
      ...synthetic.groups,
      { name: 'node-exporter', apps: [exporter.id], labels: {}, at },
      { name: 'prometheus', apps: [prometheus.id], labels: {}, at },
    ],
    rules: [
      { name: 'scrape', from: [{ kind: 'group', name: 'prometheus' }], to: ['node-exporter'], ports: [{ kind: 'name', name: 'metrics' }], protocols: ['tcp'], action: 'allow', at },
      ...synthetic.rules,
    ],
  };
  return { size, policy, cluster: withPrometheusOn(0), withPrometheusOn };
}
