/**
 * End to end with mutual TLS: agents with certificates of the cluster's CA converge; an agent with
 * a certificate of another CA, or with no certificate at all, gets nothing; an agent whose
 * certificate names host A but that claims host B never receives B's state.
 * Rogue agents run in extra namespaces (h4, h5) that the inventory lists as hosts with tasks, so
 * the controller does have a state for them that must not leak.
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTestPki } from '../../src/tls/pki.js';
import { leftoverNamespaces, startCluster, waitFor, type Cluster } from '../support/cluster-harness.js';
import { ownedIptables, ownedSets, saveTable } from '../support/kernel-state.js';
import type { TestHost } from '../support/netns.js';
import type { LoggedProcess } from '../support/process-log.js';
import { isRoot, probesEventually } from './e2e-support.js';
import { shopCases, shopInventory, shopPolicy, startShopWorkloads } from './shop-fixture.js';

function inventory(hosts: readonly TestHost[], extra: readonly TestHost[]): string {
  const rogueApp = '  - { id: /shop/rogue-target, network: host, ports: [{ name: http }] }';
  const base = shopInventory([...hosts, ...extra], rogueApp);
  return base + extra.map((h) => `  - { app: /shop/rogue-target, host: ${h.id}, ports: [31777] }\n`).join('');
}

const failureLine = (l: Record<string, unknown>): boolean =>
  /stream ended|rejected|disconnect|unavailable|handshake|certificate|error/i.test(`${String(l['msg'])} ${String(l['reason'] ?? '')} ${String(l['err'] ?? '')}`);

describe.skipIf(!isRoot)('e2e: mutual TLS', () => {
  let cluster: Cluster | undefined;
  let prefix = '';

  beforeAll(async () => {
    cluster = await startCluster({ hosts: 3, extraHosts: 2, tls: true, policy: shopPolicy(), inventory });
    prefix = cluster.prefix;
    await startShopWorkloads(cluster);
  }, 90_000);

  afterAll(async () => {
    await cluster?.destroy();
    if (prefix) expect(await leftoverNamespaces(prefix)).toEqual([]);
  }, 60_000);

  async function expectNothingIn(c: Cluster, ns: string): Promise<void> {
    expect(await ownedSets(c.net, ns)).toEqual([]);
    expect(ownedIptables(await saveTable(c.net, ns, 4)).chains).toEqual([]);
    expect(ownedIptables(await saveTable(c.net, ns, 6)).chains).toEqual([]);
  }

  async function expectNotConnected(c: Cluster, hostId: string): Promise<void> {
    const report = (await c.agentReports()).find((r) => r.hostId === hostId);
    expect(report?.connected ?? false).toBe(false);
    expect(report?.appliedVersion).toBeUndefined();
  }

  it('agents with certificates of the cluster CA converge and enforce', async () => {
    const c = cluster as Cluster;
    await c.waitConverged(30_000);
    await probesEventually(c.net, shopCases(c), 10_000);
  });

  it('an agent with a certificate of another CA gets nothing', async () => {
    const c = cluster as Cluster;
    const h4 = c.extraHosts[0] as TestHost;
    const other = await makeTestPki(path.join(c.dir, 'other-pki'), { hosts: [h4.id], controllerNames: [] });
    const real = c.pki!.files(c.hosts[0]!.id);
    const rogue = c.spawnAgent(h4.ns, [
      '--controller', c.controllerTarget(), '--host-id', h4.id, '--address', h4.v4, '--state-dir', path.join(c.dir, 'rogue-ca'),
      '--refresh-interval', '1', '--ca', real.caFile, '--cert', other.files(h4.id).certFile, '--key', other.files(h4.id).keyFile,
    ], 'rogue agent (other CA)');
    await expectRefused(c, rogue, h4);
  });

  it('an agent without a client certificate gets nothing', async () => {
    const c = cluster as Cluster;
    const h4 = c.extraHosts[0] as TestHost;
    const rogue = c.spawnAgent(h4.ns, [
      '--controller', c.controllerTarget(), '--host-id', h4.id, '--address', h4.v4, '--state-dir', path.join(c.dir, 'rogue-plain'),
      '--refresh-interval', '1', '--insecure',
    ], 'rogue agent (no certificate)');
    await expectRefused(c, rogue, h4);
  });

  it("an agent with host A's certificate claiming host B never gets B's state", async () => {
    const c = cluster as Cluster;
    const h5 = c.extraHosts[1] as TestHost;
    const a = c.pki!.files(c.hosts[0]!.id);
    const rogue = c.spawnAgent(h5.ns, [
      '--controller', c.controllerTarget(), '--host-id', h5.id, '--address', h5.v4, '--state-dir', path.join(c.dir, 'rogue-id'),
      '--refresh-interval', '1', '--ca', a.caFile, '--cert', a.certFile, '--key', a.keyFile,
    ], 'rogue agent (wrong host id)');
    await c.controller().waitFor((l) => String(l['reason'] ?? '').includes(`not host '${h5.id}'`), 20_000, 'the rejection of the wrong host id');
    await expectRefused(c, rogue, h5);
    // The real h1 agent is unaffected.
    await c.waitConverged(10_000);
  });

  async function expectRefused(c: Cluster, rogue: LoggedProcess, host: TestHost): Promise<void> {
    try {
      // Two failed attempts: it tried, was refused, and tried again (still refused).
      await waitFor(() => rogue.lines().filter(failureLine).length >= 2, 20_000, `two refused attempts of ${host.id}`);
      expect(rogue.exited()).toBe(false);
      expect(rogue.lines().some((l) => l['msg'] === 'applied')).toBe(false);
      await expectNothingIn(c, host.ns);
      await expectNotConnected(c, host.id);
    } finally {
      await rogue.stop('SIGKILL');
    }
  }
});
