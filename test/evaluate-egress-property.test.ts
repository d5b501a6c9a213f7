/**
 * The two halves of the reference evaluator agree where they must (random policies and clusters):
 * on a host that runs tasks of ONE app only, "the host runs a task of group G" (destination side,
 * host level) and "the app is a member of G" (egress side) are the same statement, so for every
 * claim with one owner and every address of that host, the egress verdict of the app equals the
 * destination verdict of the address (decision, tier and rule). And on every host, a claim with
 * several owners passes egress exactly when each owner alone would (each judged on a cluster
 * where it is the only claimant).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { claimOwners, egressAllowed, egressVerdict } from '../src/evaluate/egress-evaluator.js';
import { evaluateConnection } from '../src/evaluate/reference-evaluator.js';
import type { ClusterState } from '../src/inventory/cluster-state.js';
import type { Protocol } from '../src/policy/policy-model.js';
import { scenarioArb } from './support/random-cluster.js';

/** Every claim (host, protocol, host port) of the valid task ports of the cluster. */
function claims(cluster: ClusterState): { hostId: string; protocol: Protocol; hostPort: number }[] {
  const out = new Map<string, { hostId: string; protocol: Protocol; hostPort: number }>();
  for (const t of cluster.tasks) {
    const app = cluster.apps.find((a) => a.id === t.appId);
    if (!app || !cluster.hosts.some((h) => h.id === t.hostId)) continue;
    t.hostPorts.forEach((hostPort, i) => {
      for (const protocol of app.ports[i]?.protocols ?? []) out.set(`${t.hostId} ${protocol} ${hostPort}`, { hostId: t.hostId, protocol, hostPort });
    });
  }
  return [...out.values()];
}

describe('egress vs destination side (property)', () => {
  it('agree on hosts that run one app; conflicted claims need every owner', () => {
    let compared = 0;
    let conflicts = 0;
    fc.assert(
      fc.property(scenarioArb, ({ policy: scenario, cluster }) => {
        const policy = { ...scenario, defaults: { ...scenario.defaults, egress: true } };
        for (const x of cluster.hosts) {
          const localApps = [...new Set(cluster.tasks.filter((t) => t.hostId === x.id).map((t) => t.appId))];
          for (const appId of localApps) {
            for (const c of claims(cluster)) {
              const owners = claimOwners(cluster, c.hostId, c.protocol, c.hostPort);
              const check = { appId, sourceHostId: x.id, destHostId: c.hostId, protocol: c.protocol, hostPort: c.hostPort };
              if (owners.length > 1) {
                // Each owner alone: the cluster without the other owners' tasks on that host.
                const alone = owners.map((o) => {
                  const others = new Set(owners.filter((p) => p.task !== o.task).map((p) => p.task));
                  return egressAllowed(policy, { ...cluster, tasks: cluster.tasks.filter((t) => !others.has(t)) }, check);
                });
                // Owners that are ports of one task cannot be split that way: skip those claims.
                if (new Set(owners.map((o) => o.task)).size === owners.length) {
                  expect(egressAllowed(policy, cluster, check)).toBe(alone.every(Boolean));
                  conflicts++;
                }
                continue;
              }
              if (localApps.length !== 1) continue;
              const owner = owners[0]!;
              for (const family of [4, 6] as const) {
                const addresses = x.addresses.filter((a) => a.includes(':') === (family === 6));
                if (addresses.length === 0) continue;
                const egress = egressVerdict(policy, cluster, { ...check, family });
                const dests = addresses.map((source) => evaluateConnection(policy, cluster, { source, task: owner.task, portIndex: owner.portIndex, protocol: c.protocol }));
                const context = `${appId} on ${x.id} (${addresses.join(', ')}) → ${c.hostId} ${c.protocol}:${c.hostPort}: egress ${egress.reason} / destination ${dests.map((d) => d.reason).join(' | ')}`;
                if (addresses.length === 1) {
                  // One address: the same walk, so the same tier and rule.
                  const dest = dests[0]!;
                  expect({ decision: egress.decision, tier: egress.tier, rule: egress.rule }, context).toEqual({ decision: dest.decision, tier: dest.tier, rule: dest.rule });
                } else {
                  // Several: egress allows only when every address would be allowed.
                  expect(egress.decision, context).toBe(dests.every((d) => d.decision === 'allow') ? 'allow' : 'deny');
                }
                compared++;
              }
            }
          }
        }
      }),
      { numRuns: 300, interruptAfterTimeLimit: 20_000 },
    );
    expect(compared).toBeGreaterThan(200);
    expect(conflicts).toBeGreaterThan(20);
  });
});
