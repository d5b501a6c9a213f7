/**
 * End to end, fail static: with the controller gone the kernel keeps the last applied state;
 * an agent restarted meanwhile enforces its state from disk before any controller answers; when
 * the controller is back every agent resyncs (applied == desired, same versions as before).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { leftoverNamespaces, startCluster, type Cluster } from '../support/cluster-harness.js';
import { ipsetStateSave, saveTable } from '../support/kernel-state.js';
import { isRoot, probesEventually, runProbes } from './e2e-support.js';
import { shopCases, shopInventory, shopPolicy, startShopWorkloads } from './shop-fixture.js';

async function kernelSnapshot(c: Cluster): Promise<string[]> {
  return Promise.all(
    c.hosts.map(async (h) => [await saveTable(c.net, h.ns, 4), await saveTable(c.net, h.ns, 6), await ipsetStateSave(c.net, h.ns)].join('\n')),
  );
}

describe.skipIf(!isRoot)('e2e: fail static', () => {
  let cluster: Cluster | undefined;
  let prefix = '';
  let versions = new Map<string, string>();
  let before: string[] = [];

  beforeAll(async () => {
    cluster = await startCluster({ hosts: 3, policy: shopPolicy(), inventory: (h) => shopInventory(h) });
    prefix = cluster.prefix;
    await startShopWorkloads(cluster);
    versions = await cluster.waitConverged(30_000);
    await probesEventually(cluster.net, shopCases(cluster), 10_000);
    before = await kernelSnapshot(cluster);
  }, 90_000);

  afterAll(async () => {
    await cluster?.destroy();
    if (prefix) expect(await leftoverNamespaces(prefix)).toEqual([]);
  }, 60_000);

  it('killing the controller changes neither the rules nor the verdicts', async () => {
    const c = cluster as Cluster;
    await c.killController();
    expect(c.controller().exited()).toBe(true);
    // Every agent notices the loss (its stream ends) and still keeps the rules.
    await Promise.all(
      c.hosts.map((_, i) =>
        c.agent(i).waitFor((l) => /stream ended|disconnect|unavailable|lost/i.test(`${String(l['msg'])} ${String(l['reason'] ?? '')}`), 20_000, 'a lost-controller line'),
      ),
    );
    expect(await runProbes(c.net, shopCases(c))).toEqual([]);
    expect(await kernelSnapshot(c)).toEqual(before);
  });

  it('an agent restarted while the controller is down applies its state from disk', async () => {
    const c = cluster as Cluster;
    const agent = await c.restartAgent(1);
    const line = await agent.waitFor((l) => l['msg'] === 'applied' && l['source'] === 'disk', 20_000, '"applied" from disk');
    expect(line['version']).toBe(versions.get('h2'));
    expect(await runProbes(c.net, shopCases(c))).toEqual([]);
    expect(await kernelSnapshot(c)).toEqual(before);
  });

  it('when the controller comes back every agent resyncs', async () => {
    const c = cluster as Cluster;
    await c.startController();
    const after = await c.waitConverged(30_000);
    expect(after).toEqual(versions);
    expect(await runProbes(c.net, shopCases(c))).toEqual([]);
  });
});
