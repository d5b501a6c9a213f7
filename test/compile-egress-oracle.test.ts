/**
 * Egress against the reference evaluator (a test-local oracle until src/evaluate learns egress):
 * the egress verdict of app A on host X is the destination-side verdict for a source address of X
 * in a cluster where X's addresses belong to a host that runs only A. There a `group` peer
 * matches X's address exactly when A is in the group, and a `network` peer still sees X's real
 * address: what the egress semantics say (docs/architecture.md "Semantics"). X's own tasks (the
 * destinations on X) stay on a host with X's id and no address. For random policies and clusters
 * with egress on: every valid, non-failsafe, non-conflict task port of the cluster is in
 * egress-managed*, and "<A>|<dest>" is in X's egress-ip* exactly when the evaluator allows every
 * address of X of the destination's family (hosts without one are not judged here).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compile } from '../src/compile/compile.js';
import { evaluateConnection } from '../src/evaluate/reference-evaluator.js';
import type { ClusterState, Task } from '../src/inventory/cluster-state.js';
import { scenarioArb } from './support/random-cluster.js';

/** The cluster in which X's addresses are a host running only app A (see the header). */
function sourceView(c: ClusterState, hostId: string, appId: string): ClusterState {
  const x = c.hosts.find((h) => h.id === hostId)!;
  return {
    hosts: [...c.hosts.map((h) => (h.id === hostId ? { id: h.id, addresses: [] } : h)), { id: '__source', addresses: x.addresses }],
    apps: c.apps,
    tasks: [...c.tasks, { id: '__source.1', appId, hostId: '__source', hostPorts: [] }],
  };
}

describe('egress vs the reference evaluator (property)', () => {
  it('egress-ip membership equals the evaluator decision from a host running only the app', () => {
    let checked = 0;
    fc.assert(
      fc.property(scenarioArb, (scenario) => {
        const policy = { ...scenario.policy, defaults: { ...scenario.policy.defaults, egress: true } };
        const cluster = scenario.cluster;
        const result = compile(policy, cluster);
        const conflicts = result.reports.filter((r) => r.kind === 'port-conflict').map((r) => r.message);
        const hostIds = new Set(cluster.hosts.map((h) => h.id));
        const appIds = new Set(cluster.apps.map((a) => a.id));
        const valid = cluster.tasks.filter((t) => hostIds.has(t.hostId) && appIds.has(t.appId));
        const ports: { task: Task; portIndex: number; protocol: 'tcp' | 'udp'; hostPort: number }[] = [];
        for (const task of valid) {
          const app = cluster.apps.find((a) => a.id === task.appId)!;
          app.ports.forEach((port, portIndex) => {
            const hostPort = task.hostPorts[portIndex];
            if (hostPort === undefined) return;
            for (const protocol of new Set(port.protocols)) {
              if (policy.defaults.failsafe.some((f) => f.protocol === protocol && f.port === hostPort)) continue;
              if (conflicts.some((m) => m.startsWith(`host ${task.hostId}: ${protocol}:${hostPort} `))) continue;
              ports.push({ task, portIndex, protocol, hostPort });
            }
          });
        }
        for (const x of new Set(cluster.hosts.map((h) => h.id))) {
          const state = result.states.get(x)!;
          const sources = cluster.hosts.find((h) => h.id === x)!.addresses;
          const local = [...new Set(state.sets['egress-task'].map((m) => m.slice(0, m.indexOf('|'))))];
          for (const appId of local) {
            const view = sourceView(cluster, x, appId);
            for (const { task, portIndex, protocol, hostPort } of ports) {
              for (const dest of cluster.hosts.find((h) => h.id === task.hostId)!.addresses) {
                const six = dest.includes(':');
                const member = `${dest},${protocol}:${hostPort}`;
                expect(state.sets[six ? 'egress-managed6' : 'egress-managed4'], member).toContain(member);
                const from = sources.filter((a) => a.includes(':') === six);
                if (from.length === 0) continue;
                const expected = from.every((source) => evaluateConnection(policy, view, { source, task, portIndex, protocol }).decision === 'allow');
                const got = state.sets[six ? 'egress-ip6' : 'egress-ip4'].includes(`${appId}|${member}`);
                if (got !== expected) throw new Error(`${appId} on ${x} → ${member} (${task.appId}): compiled ${got ? 'allow' : 'deny'}, evaluator ${expected ? 'allow' : 'deny'}`);
                checked++;
              }
            }
          }
        }
      }),
      { numRuns: 200, interruptAfterTimeLimit: 40_000, seed: 4711 },
    );
    console.log(`compile-egress-oracle: ${checked} (app, host, destination) triples checked`);
    expect(checked).toBeGreaterThan(500);
  }, 90_000);
});
