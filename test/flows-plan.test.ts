/**
 * `plan` (src/flows/plan.ts, plan-judge.ts): recorded flows re-judged by the reference evaluator
 * under OLD and NEW in one cluster. A rule removed breaks what flows today (allowed → denied),
 * audit → enforce turns would-be drops into drops, a moved task is judged as recorded (its app
 * and port), and a flow whose app left the cluster is counted, not guessed.
 */
import { describe, expect, it } from 'vitest';
import { planFlows } from '../src/flows/plan.js';
import { judgeFlow } from '../src/flows/plan-judge.js';
import type { ClusterState } from '../src/inventory/cluster-state.js';
import type { Policy } from '../src/policy/policy-model.js';
import { egressFlow, ingressFlow } from './support/flow-records.js';
import { app, cluster as clusterOf, group, host, policy as policyOf, rule, task } from './support/policy-builder.js';

const cluster: ClusterState = clusterOf(
  [host('n1', '10.0.0.1'), host('n2', '10.0.0.2')],
  [app('/shop/web', [{ name: 'http' }]), app('/shop/api', [{ name: 'http' }]), app('/shop/gone', [{ name: 'http' }])],
  [task('web.1', '/shop/web', 'n1', [31000]), task('api.1', '/shop/api', 'n2', [31100]), task('gone.1', '/shop/gone', 'n1', [31200])],
);
const groups = [group('web', ['/shop/web']), group('api', ['/shop/api'])];
const webToApi = rule({ name: 'web-to-api', from: ['web'], to: ['api'], ports: ['http'], action: 'allow' });
const egress = true;
const old: Policy = policyOf({ groups, rules: [webToApi], mode: 'audit', egress });

describe('planFlows', () => {
  const toApi = egressFlow(cluster, '/shop/web', 'n1', 'n2', 'tcp', 31100, { packets: 50, verdict: 'allowed' });
  const outsider = ingressFlow(cluster, '203.0.113.9', 'n2', 'tcp', 31100, { packets: 7, verdict: 'audit' });
  const gone = egressFlow(cluster, '/shop/gone', 'n1', 'n2', 'tcp', 31100, { packets: 2 });
  const without = { ...cluster, apps: cluster.apps.filter((a) => a.id !== '/shop/gone'), tasks: cluster.tasks.filter((t) => t.appId !== '/shop/gone') };

  it('lists what changes verdict, most connections first, and counts what cannot be judged', () => {
    const next = policyOf({ groups, rules: [], mode: 'enforce', egress });
    const plan = planFlows(old, next, without, [outsider, gone, toApi]);
    expect(plan.changes.map((c) => [c.flow.key, c.before.verdict, c.after.verdict, c.before.rule ?? c.before.tier, c.after.rule ?? c.after.tier])).toEqual([
      [toApi.key, 'allowed', 'denied', 'web-to-api', 'default'],
      [outsider.key, 'audit', 'denied', 'default', 'default'],
    ]);
    expect(plan.summary).toEqual({ judged: 2, unchanged: 0, moves: { 'allowed → denied': 1, 'audit → denied': 1 } });
    expect(plan.notJudged).toEqual([{ reason: 'source app /shop/gone is not in the cluster now', flows: 1, connections: 2 }]);
  });

  it('an unchanged policy changes nothing', () => {
    expect(planFlows(old, old, cluster, [toApi, outsider, gone]).summary).toEqual({ judged: 3, unchanged: 3, moves: {} });
  });

  it('a task that moved since is judged as it was recorded: its app and port name at the recorded host port', () => {
    const moved = { ...cluster, tasks: cluster.tasks.map((t) => (t.id === 'api.1' ? { ...t, id: 'api.2', hostPorts: [31999] } : t)) };
    for (const f of [toApi, outsider]) {
      const j = judgeFlow(old, moved, f);
      expect(j.ok && j.judgement.verdict).toBe(f === toApi ? 'allowed' : 'audit');
    }
    const next = policyOf({ groups, rules: [], mode: 'audit', egress });
    expect(planFlows(old, next, moved, [toApi]).changes.map((c) => `${c.before.verdict} → ${c.after.verdict}`)).toEqual(['allowed → audit']);
  });
});
