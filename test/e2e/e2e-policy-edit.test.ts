/**
 * End to end: the security team edits the policy file under a running cluster. A good edit reaches
 * every agent (applied == desired) and the probes follow it; a broken edit changes nothing on any
 * host, and the controller's /status names the error with file:line:col.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { leftoverNamespaces, startCluster, waitFor, type Cluster } from '../support/cluster-harness.js';
import { isRoot, probesEventually, runProbes } from './e2e-support.js';
import { ipsetMembers } from '../support/kernel-state.js';
import { shopCases, shopInventory, shopPolicy, startShopWorkloads } from './shop-fixture.js';

const BROKEN = 'version: 1\nrules:\n  - { name: oops, from: web, to: [api\n';

describe.skipIf(!isRoot)('e2e: policy edits', () => {
  let cluster: Cluster | undefined;
  let prefix = '';
  let versions = new Map<string, string>();

  beforeAll(async () => {
    cluster = await startCluster({ hosts: 3, policy: shopPolicy(), inventory: (h) => shopInventory(h) });
    prefix = cluster.prefix;
    await startShopWorkloads(cluster);
    versions = await cluster.waitConverged(30_000);
    await probesEventually(cluster.net, shopCases(cluster), 10_000);
  }, 90_000);

  afterAll(async () => {
    await cluster?.destroy();
    if (prefix) expect(await leftoverNamespaces(prefix)).toEqual([]);
  }, 60_000);

  it('denying web -> api and allowing cache -> api converges everywhere and the probes follow', async () => {
    const c = cluster as Cluster;
    const edit = { webToApi: false, cacheToApi: true };
    const h1 = c.hosts[0]!;
    const h1Sets = async () => Promise.all(['pcu4-allow-ip', 'pcu4-managed-tcp', 'pcu6-allow-ip'].map((s) => ipsetMembers(c.net, h1.ns, s)));
    const h1Before = await h1Sets();
    await c.setPolicy(shopPolicy(edit));
    const next = await c.waitConverged(30_000, versions);
    // h2 runs api: its destination sets change. With per-app egress the hosts of the sources
    // change too, in their egress lists only: h1 (web may no longer reach api) and h3 (cache
    // may now); h1's destination side is what it was.
    expect(['h1', 'h2', 'h3'].filter((h) => next.get(h) !== versions.get(h))).toEqual(['h1', 'h2', 'h3']);
    versions = next;
    expect(await h1Sets()).toEqual(h1Before);
    await probesEventually(c.net, shopCases(c, edit), 10_000);
    expect(await runProbes(c.net, shopCases(c, edit))).toEqual([]);
  });

  it('a broken edit keeps the last good policy on every host and /status shows the error', async () => {
    const c = cluster as Cluster;
    const edit = { webToApi: false, cacheToApi: true };
    await c.setPolicy(BROKEN);
    const statusText = await waitFor(async () => {
      const text = JSON.stringify(await c.status());
      return /policy\.yaml:\d+:\d+/.test(text) ? text : undefined;
    }, 20_000, '/status to report the broken policy');
    expect(statusText).toMatch(/policy\.yaml:\d+:\d+/);
    expect(c.controller().text()).toMatch(/policy\.yaml:\d+:\d+/);
    const now = await c.waitConverged(10_000);
    expect(now).toEqual(versions);
    expect(await runProbes(c.net, shopCases(c, edit))).toEqual([]);
    expect(c.controller().exited()).toBe(false);
  });

  it('fixing the file again restores the original verdicts', async () => {
    const c = cluster as Cluster;
    await c.setPolicy(shopPolicy());
    versions = await c.waitConverged(30_000, versions);
    await probesEventually(c.net, shopCases(c), 10_000);
  });
});
