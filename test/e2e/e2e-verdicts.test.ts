/**
 * End to end: a real controller and three real agents in network namespaces; HOST and BRIDGE
 * (Docker DNAT) tasks; TCP and UDP; IPv4 and IPv6. What the policy allows is open, what it does
 * not is dropped (timeout), unmanaged and failsafe ports stay reachable.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { leftoverNamespaces, startCluster, type Cluster } from '../support/cluster-harness.js';
import { ownedIptables, ownedSets, saveTable } from '../support/kernel-state.js';
import { isRoot, probesEventually, runProbes } from './e2e-support.js';
import { shopCases, shopInventory, shopPolicy, startShopWorkloads } from './shop-fixture.js';

describe.skipIf(!isRoot)('e2e: verdicts on a real kernel', () => {
  let cluster: Cluster | undefined;
  let prefix = '';

  beforeAll(async () => {
    cluster = await startCluster({ hosts: 3, policy: shopPolicy(), inventory: (h) => shopInventory(h) });
    prefix = cluster.prefix;
    await startShopWorkloads(cluster);
    await cluster.waitConverged(30_000);
  }, 90_000);

  afterAll(async () => {
    await cluster?.destroy();
    if (prefix) expect(await leftoverNamespaces(prefix)).toEqual([]);
  }, 60_000);

  it('every host has our jump, chains and sets in both families', async () => {
    const c = cluster as Cluster;
    for (const h of c.hosts) {
      for (const family of [4, 6] as const) {
        const owned = ownedIptables(await saveTable(c.net, h.ns, family));
        expect(owned.jumps, `${h.id} v${family}`).toHaveLength(1);
        expect(owned.chains).toEqual(expect.arrayContaining(['PCU-PREROUTING', 'PCU-MANAGED']));
      }
      expect(await ownedSets(c.net, h.ns)).toEqual(expect.arrayContaining(['pcu4-allow-ip', 'pcu6-allow-ip', 'pcu4-managed-tcp']));
    }
  });

  it('allows what the policy allows and drops the rest, HOST and BRIDGE, tcp and udp, v4 and v6', async () => {
    const c = cluster as Cluster;
    const cases = shopCases(c);
    expect(cases.some((x) => x.expect === 'open')).toBe(true);
    expect(cases.some((x) => x.expect === 'timeout')).toBe(true);
    await probesEventually(c.net, cases, 10_000);
    // And once more, all at once, with nothing left to converge.
    expect(await runProbes(c.net, cases)).toEqual([]);
  });

  it('every agent reports applied == desired in the controller status', async () => {
    const reports = await (cluster as Cluster).agentReports();
    expect(reports.map((r) => r.hostId).sort()).toEqual(['h1', 'h2', 'h3']);
    for (const r of reports) {
      expect(r.connected).toBe(true);
      expect(r.appliedVersion).toMatch(/^[0-9a-f]{16}$/);
      expect(r.appliedVersion).toBe(r.desiredVersion);
    }
  });
});
