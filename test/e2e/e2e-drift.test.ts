/**
 * End to end, drift: someone flushes our chain, deletes our jump, or removes an allowed member
 * from a set behind the agent's back. Within the refresh interval (1 s here) the agent finds the
 * difference, logs `drift repaired`, and the kernel and the verdicts are as before.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../../src/package-root.js';
import { leftoverNamespaces, startCluster, waitFor, type Cluster } from '../support/cluster-harness.js';
import { ipsetMembers, ipsetNames, ownedIptables, ownedSets, saveTable } from '../support/kernel-state.js';
import type { TestHost } from '../support/netns.js';
import { isRoot, probesEventually, runProbes } from './e2e-support.js';
import { PORTS, shopCases, shopInventory, shopPolicy, startShopWorkloads } from './shop-fixture.js';

const driftLines = (c: Cluster, i: number): number => c.agent(i).lines().filter((l) => l['msg'] === 'drift repaired').length;

async function execOk(c: Cluster, ns: string, argv: string[]): Promise<void> {
  const r = await c.net.exec(ns, argv);
  if (r.code !== 0) throw new Error(`${argv.join(' ')}: ${r.stderr}`);
}

describe.skipIf(!isRoot)('e2e: drift repair', () => {
  let cluster: Cluster | undefined;
  let prefix = '';
  let h1: TestHost;
  let h2: TestHost;
  let mangle4 = '';
  let mangle6 = '';

  beforeAll(async () => {
    cluster = await startCluster({ hosts: 3, policy: shopPolicy(), inventory: (h) => shopInventory(h), refreshIntervalS: 1 });
    prefix = cluster.prefix;
    [h1, h2] = cluster.hosts as [TestHost, TestHost];
    await startShopWorkloads(cluster);
    await cluster.waitConverged(30_000);
    await probesEventually(cluster.net, shopCases(cluster), 10_000);
    mangle4 = await saveTable(cluster.net, h2.ns, 4);
    mangle6 = await saveTable(cluster.net, h2.ns, 6);
  }, 90_000);

  afterAll(async () => {
    await cluster?.destroy();
    if (prefix) expect(await leftoverNamespaces(prefix)).toEqual([]);
  }, 60_000);

  /** Runs `damage` on h2 and waits for a new `drift repaired` line and the original mangle table. */
  async function damageAndRepair(damage: () => Promise<void>, check: () => Promise<boolean>): Promise<void> {
    const c = cluster as Cluster;
    const seen = driftLines(c, 1);
    await damage();
    await waitFor(() => driftLines(c, 1) > seen, 10_000, 'a new "drift repaired" line on h2');
    await waitFor(async () => (await saveTable(c.net, h2.ns, 4)) === mangle4 && (await saveTable(c.net, h2.ns, 6)) === mangle6 && (await check()), 10_000, 'the kernel of h2 to be repaired');
    expect(await saveTable(c.net, h2.ns, 4)).toBe(mangle4);
    expect(await runProbes(c.net, shopCases(c))).toEqual([]);
  }

  it('a flushed PCU-MANAGED chain (v4 and v6) is restored', async () => {
    const c = cluster as Cluster;
    await damageAndRepair(async () => {
      await execOk(c, h2.ns, ['iptables', '-w', '-t', 'mangle', '-F', 'PCU-MANAGED']);
      await execOk(c, h2.ns, ['ip6tables', '-w', '-t', 'mangle', '-F', 'PCU-MANAGED']);
    }, async () => true);
  });

  it('a deleted jump from mangle PREROUTING is put back', async () => {
    const c = cluster as Cluster;
    await damageAndRepair(async () => {
      const jumps = ownedIptables(await saveTable(c.net, h2.ns, 4)).jumps;
      expect(jumps).toHaveLength(1);
      await execOk(c, h2.ns, ['iptables', '-w', '-t', 'mangle', '-D', 'PREROUTING', ...(jumps[0] as string[])]);
      expect(ownedIptables(await saveTable(c.net, h2.ns, 4)).jumps).toHaveLength(0);
    }, async () => ownedIptables(await saveTable(c.net, h2.ns, 4)).jumps.length === 1);
  });

  it('an allowed member removed with ipset del comes back', async () => {
    const c = cluster as Cluster;
    const member = `${h1.v4},tcp:${PORTS.api}`;
    expect(await ipsetMembers(c.net, h2.ns, 'pcu4-allow-ip')).toContain(member);
    await damageAndRepair(async () => {
      await execOk(c, h2.ns, ['ipset', 'del', 'pcu4-allow-ip', member]);
      expect(await ipsetMembers(c.net, h2.ns, 'pcu4-allow-ip')).not.toContain(member);
    }, async () => (await ipsetMembers(c.net, h2.ns, 'pcu4-allow-ip')).includes(member));
  });

  it('agent --uninstall removes exactly what it owns: our chains, jump, sets and saved state; foreign objects stay', async () => {
    const c = cluster as Cluster;
    await c.stopAgent(2);
    const h3 = c.hosts[2] as TestHost;
    // Foreign objects an operator or another tool owns, named close to ours.
    await execOk(c, h3.ns, ['iptables', '-w', '-t', 'mangle', '-N', 'PCUX-OTHER']);
    await execOk(c, h3.ns, ['iptables', '-w', '-t', 'mangle', '-A', 'PREROUTING', '-p', 'tcp', '--dport', '9', '-j', 'PCUX-OTHER']);
    await execOk(c, h3.ns, ['ipset', 'create', 'pcu-other', 'hash:ip']);
    const stateFile = path.join(c.dir, 'state', h3.id, 'desired-state.json');
    expect(existsSync(stateFile)).toBe(true);
    expect(ownedIptables(await saveTable(c.net, h3.ns, 4)).chains.length).toBeGreaterThan(0);
    const r = await c.net.exec(h3.ns, [process.execPath, path.join(packageRoot(), 'bin', 'portcullis.js'), 'agent', '--uninstall', '--state-dir', path.dirname(stateFile)], { timeoutMs: 30_000 });
    expect(r.code, r.stderr).toBe(0);
    for (const family of [4, 6] as const) {
      const saved = await saveTable(c.net, h3.ns, family);
      expect(ownedIptables(saved)).toEqual({ chains: [], jumps: [] });
      if (family === 4) expect(saved).toMatch(/-A PREROUTING -p tcp -m tcp --dport 9 -j PCUX-OTHER/);
    }
    expect(await ownedSets(c.net, h3.ns)).toEqual([]);
    expect(await ipsetNames(c.net, h3.ns)).toContain('pcu-other');
    expect(existsSync(stateFile)).toBe(false);
  });
});
