/**
 * End to end with mutual TLS: agents with certificates of the cluster's CA converge, dialing the
 * controller by IP (its certificate's IP subjectAltName is checked, no DEP0123 warning); an agent
 * with a certificate of another CA, or with no certificate at all, gets nothing; an agent whose
 * certificate names host A but that claims host B never receives B's state. Every refusal is a
 * warn line on the controller (peer, reason) and in /status `tls`, and one warn line per
 * distinct reason on the rogue agent, not one per retry.
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

interface TlsStatus {
  readonly tls: { readonly refusals: number; readonly byReason: Record<string, number>; readonly lastRefusal: { peer: string; reason: string } | null };
}

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

  it('agents with certificates of the cluster CA converge and enforce, dialing the controller by IP without DEP0123', async () => {
    const c = cluster as Cluster;
    await c.waitConverged(30_000);
    await probesEventually(c.net, shopCases(c), 10_000);
    expect(c.controllerTarget()).toMatch(/^\d+\.\d+\.\d+\.\d+:\d+$/);
    for (let i = 0; i < c.hosts.length; i++) expect(c.agentLog(i)).not.toMatch(/DEP0123|TLS ServerName/);
    expect(((await c.status()) as TlsStatus).tls).toMatchObject({ refusals: 0, lastRefusal: null });
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
    await expectRefused(c, rogue, h4, 'unknown_ca', /certificate signed by an unknown authority/);
  });

  it('an agent without a client certificate gets nothing', async () => {
    const c = cluster as Cluster;
    const h4 = c.extraHosts[0] as TestHost;
    const rogue = c.spawnAgent(h4.ns, [
      '--controller', c.controllerTarget(), '--host-id', h4.id, '--address', h4.v4, '--state-dir', path.join(c.dir, 'rogue-plain'),
      '--refresh-interval', '1', '--insecure',
    ], 'rogue agent (no certificate)');
    await expectRefused(c, rogue, h4, 'handshake_failed', /./);
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
    await expectRefused(c, rogue, h5, 'host_mismatch', /rejected by the controller: certificate is for/);
    // The real h1 agent is unaffected.
    await c.waitConverged(10_000);
  });

  async function expectRefused(c: Cluster, rogue: LoggedProcess, host: TestHost, reason: string, agentReason: RegExp): Promise<void> {
    try {
      const count = async (): Promise<number> => ((await c.status()) as TlsStatus).tls.byReason[reason] ?? 0;
      const before = await count();
      // Two refused attempts: it tried, was refused, and tried again (still refused).
      await waitFor(async () => (await count()) >= before + 2, 20_000, `two refused attempts of ${host.id} (${reason})`);
      expect(rogue.exited()).toBe(false);
      expect(rogue.lines().some((l) => l['msg'] === 'applied')).toBe(false);
      await expectNothingIn(c, host.ns);
      await expectNotConnected(c, host.id);
      // The controller: a warn line naming the peer and the reason.
      const refused = c.controller().lines().filter((l) => l['level'] === 'warn' && (l['reason'] === reason || l['refusal'] === reason) && String(l['peer']).includes(host.v4));
      expect(refused.length, `controller warn line for ${reason} from ${host.v4}`).toBeGreaterThanOrEqual(1);
      // The agent: warn with the reason, once per distinct reason, not once per retry.
      const warns = rogue.lines().filter((l) => l['msg'] === 'sync: cannot connect to the controller');
      expect(warns.length).toBeGreaterThanOrEqual(1);
      expect(warns.every((l) => l['level'] === 'warn')).toBe(true);
      expect(warns.some((l) => agentReason.test(String(l['reason'])))).toBe(true);
      expect(new Set(warns.map((l) => l['reason'])).size).toBe(warns.length);
    } finally {
      await rogue.stop('SIGKILL');
    }
  }
});
