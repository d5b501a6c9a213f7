/**
 * DesiredStateStore.loadPolicy (the controller's reload): the compile runs in slices, other
 * callbacks run in between, cluster changes that arrive meanwhile are in the states it publishes,
 * and of two overlapping loads only the newer is applied.
 */
import { describe, expect, it } from 'vitest';
import { compile } from '../src/compile/compile.js';
import { DesiredStateStore } from '../src/controller/desired-state-store.js';
import type { ClusterState } from '../src/inventory/cluster-state.js';
import { parsePolicy } from '../src/policy/parse-policy.js';
import type { Policy } from '../src/policy/policy-model.js';
import { largePolicyFiles } from './bench/large-policy.js';
import { syntheticCluster } from './bench/synthetic-cluster.js';

const SIZE = { hosts: 60, apps: 120, tasks: 600, groups: 40, rules: 300, networks: 300 };
const cluster = syntheticCluster(SIZE, 1);

function policyOf(rules: number, seed = 3): Policy {
  const r = parsePolicy(largePolicyFiles({ ...SIZE, rules, networks: rules }, seed));
  if (!r.ok) throw new Error(r.errors[0]!.message);
  return r.policy;
}

function versions(store: DesiredStateStore): string[] {
  return store.hostIds().map((id) => `${id} ${store.current(id)!.version}`);
}

function expected(policy: Policy, c: ClusterState): string[] {
  return [...compile(policy, c).states.values()].map((s) => `${s.hostId} ${s.version}`);
}

describe('DesiredStateStore.loadPolicy', () => {
  it('yields between slices and publishes exactly the full compile', async () => {
    const store = new DesiredStateStore({ sliceMs: 0 });
    store.setCluster(cluster);
    store.setPolicy(policyOf(10));
    const next = policyOf(300);
    let turns = 0;
    let loading = true;
    const tick = (): void => {
      turns++;
      if (loading) setImmediate(tick);
    };
    setImmediate(tick);
    const changed = await store.loadPolicy(next);
    loading = false;
    expect(turns).toBeGreaterThan(SIZE.hosts); // at least one turn per host compiled
    expect(changed?.length).toBeGreaterThan(0);
    expect(versions(store)).toEqual(expected(next, cluster));
  });

  it('a cluster change during the load is in the states it publishes; the old states serve until then', async () => {
    const store = new DesiredStateStore({ sliceMs: 0 });
    store.setCluster(cluster);
    const first = policyOf(10);
    store.setPolicy(first);
    const next = policyOf(300);
    const moved: ClusterState = { ...cluster, tasks: cluster.tasks.slice(5) };
    const load = store.loadPolicy(next);
    await new Promise((r) => setImmediate(r));
    store.setCluster(moved);
    expect(versions(store)).toEqual(expected(first, moved)); // the live compiler took the change
    await load;
    expect(versions(store)).toEqual(expected(next, moved));
  });

  it('of two overlapping loads only the newer is applied', async () => {
    const store = new DesiredStateStore({ sliceMs: 0 });
    store.setCluster(cluster);
    store.setPolicy(policyOf(10));
    const older = store.loadPolicy(policyOf(300));
    const newerPolicy = policyOf(200, 5);
    const newer = store.loadPolicy(newerPolicy);
    expect(await older).toBeUndefined();
    expect(await newer).toBeDefined();
    expect(versions(store)).toEqual(expected(newerPolicy, cluster));
  });
});
