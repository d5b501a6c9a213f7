/**
 * End to end with a hostile Marathon app id (shell and iptables metacharacters, a newline and an
 * iptables-restore table header) selected into a group by label: the controller and the agents
 * keep working, only that app's own entries change (its port on h3, its host as a source on h2),
 * nothing runs the text (no marker file), and no injected rule shows up in iptables-save.
 */
import { existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { leftoverNamespaces, startCluster, type Cluster } from '../support/cluster-harness.js';
import { ipsetMembers, saveAll, saveTable } from '../support/kernel-state.js';
import type { TestHost } from '../support/netns.js';
import { isRoot, probesEventually, type ProbeCase } from './e2e-support.js';
import { PORTS, shopCases, shopInventory, shopPolicy, startShopWorkloads } from './shop-fixture.js';

const marker = `/tmp/pcu-pwned-${randomBytes(4).toString('hex')}`;
/** The app id as it reaches Portcullis (after YAML unescaping). */
const HOSTILE_ID = `/shop/x;rm -rf /$(id)\`touch ${marker}\`$(touch ${marker})' -j ACCEPT\n*filter\n-A INPUT -j ACCEPT\nCOMMIT`;
const HOSTILE_PORT = 31900;
/** YAML double-quoted form. */
const yamlQuoted = (s: string): string => JSON.stringify(s);

const policy = shopPolicy().replace(
  'rules:\n',
  'rules:\n  - { name: hostile-to-api, from: hostile, to: api, ports: [http], action: allow }\n',
).replace('groups:\n', 'groups:\n  hostile: { labels: { team: hostile } }\n');

function inventory(hosts: readonly TestHost[], withHostile: boolean): string {
  const h3 = hosts[2] as TestHost;
  const app = `  - { id: ${yamlQuoted(HOSTILE_ID)}, labels: { team: hostile }, ports: [{ name: http }] }`;
  let text = shopInventory(hosts, withHostile ? app : '');
  if (withHostile) text += `  - { app: ${yamlQuoted(HOSTILE_ID)}, host: ${h3.id}, ports: [${HOSTILE_PORT}] }\n`;
  return text;
}

describe.skipIf(!isRoot)('e2e: hostile app names', () => {
  let cluster: Cluster | undefined;
  let prefix = '';

  beforeAll(async () => {
    cluster = await startCluster({ hosts: 3, policy, inventory: (h) => inventory(h, false) });
    prefix = cluster.prefix;
    await startShopWorkloads(cluster);
  }, 90_000);

  afterAll(async () => {
    await cluster?.destroy();
    if (prefix) expect(await leftoverNamespaces(prefix)).toEqual([]);
    expect(existsSync(marker)).toBe(false);
  }, 60_000);

  it('only the hostile app’s own entries change, and nothing is injected', async () => {
    const c = cluster as Cluster;
    const [h1, h2, h3] = c.hosts as [TestHost, TestHost, TestHost];
    const before = await c.waitConverged(30_000);
    await probesEventually(c.net, shopCases(c), 10_000);
    const mangleBefore = await Promise.all(c.hosts.map((h) => saveTable(c.net, h.ns, 4)));

    const h1Sets = async () => Promise.all(['pcu4-allow-ip', 'pcu4-managed-tcp', 'pcu6-allow-ip'].map((s) => ipsetMembers(c.net, h1.ns, s)));
    const h1Before = await h1Sets();
    await c.setInventory(inventory(c.hosts, true));
    const after = await c.waitConverged(30_000, before);
    // h1's destination side is untouched (its state changes only in egress-managed, which lists
    // every managed port of the cluster; the hostile app's ids never enter an egress member:
    // they are reported as egress-unsafe-id).
    expect(await h1Sets()).toEqual(h1Before);
    expect(after.get('h2')).not.toBe(before.get('h2'));
    expect(after.get('h3')).not.toBe(before.get('h3'));
    expect(await ipsetMembers(c.net, h2.ns, 'pcu4-allow-ip')).toContain(`${h3.v4},tcp:${PORTS.api}`);
    expect(await ipsetMembers(c.net, h3.ns, 'pcu4-managed-tcp')).toContain(String(HOSTILE_PORT));

    // h3 runs the hostile app now, so it may reach api; the rest is as before.
    const cases: ProbeCase[] = shopCases(c, { cacheToApi: true });
    await probesEventually(c.net, cases, 10_000);

    // Constant rules: the mangle table is byte for byte what it was; no table holds injected text.
    expect(await Promise.all(c.hosts.map((h) => saveTable(c.net, h.ns, 4)))).toEqual(mangleBefore);
    for (const h of [h1, h2, h3]) {
      for (const family of [4, 6] as const) {
        const all = await saveAll(c.net, h.ns, family);
        expect(all).not.toMatch(/rm -rf|pcu-pwned|-A INPUT -j ACCEPT/);
      }
    }
    expect(existsSync(marker)).toBe(false);
    expect(c.controller().exited()).toBe(false);
    for (let i = 0; i < c.hosts.length; i++) expect(c.agent(i).exited()).toBe(false);
  });
});
