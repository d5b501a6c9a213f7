/**
 * End to end, the adoption path of issue 11, on the real kernel (namespaced hosts, real agents
 * recording flows every second, the real controller and CLI):
 *
 *  1. The cluster runs in audit (defaults.mode: audit, default deny, no rule for api or
 *     monitoring): web's calls to api (http) and statsd (udp) go through and are recorded.
 *  2. `portcullis flows` shows exactly those (source app, destination app, port name, verdict
 *     audit), with one connection per probe and address family.
 *  3. `portcullis suggest` turns them into rules; saved as a policy file they pass `check`.
 *  4. With them in the policy and the groups api and monitoring switched to `mode: enforce`
 *     (the rest, cache, still audits): web still reaches api and statsd, an outsider is refused
 *     by api and statsd, and is let through (audited) by cache: one group enforced and one in
 *     audit at once, and the flows say so (outsider → api denied, outsider → cache audit).
 *  5. A controller restart keeps what was recorded.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { leftoverNamespaces, startCluster, waitFor, type Cluster } from '../support/cluster-harness.js';
import type { TestHost } from '../support/netns.js';
import { packageRoot } from '../../src/package-root.js';
import { bothFamilies, isRoot, probesEventually, runProbes, type ProbeCase } from './e2e-support.js';
import { PORTS, shopInventory, startShopWorkloads, type ShopWorkloads } from './shop-fixture.js';

function adoptionPolicy(enforced: readonly string[] = []): string {
  const mode = (g: string): string => (enforced.includes(g) ? ', mode: enforce' : '');
  return [
    'version: 1',
    'defaults:',
    '  mode: audit',
    '  action: deny',
    '  failsafe: [tcp/22, tcp/2222]',
    'groups:',
    `  web: { apps: ["/shop/web"]${mode('web')} }`,
    `  api: { apps: ["/shop/api"]${mode('api')} }`,
    `  cache: { apps: ["/shop/cache"]${mode('cache')} }`,
    `  monitoring: { apps: ["/monitoring/*"]${mode('monitoring')} }`,
    '  ops: { apps: ["/ops/**"] }',
    'rules: []',
    '',
  ].join('\n');
}

interface FlowRow {
  readonly direction: string;
  readonly verdict: string;
  readonly source: { readonly kind: string; readonly apps: readonly string[]; readonly address: string };
  readonly destination: { readonly apps: readonly { readonly appId: string }[]; readonly portName?: string; readonly port: number };
  readonly packets: number;
}

describe.skipIf(!isRoot)('e2e: audit → flows → suggest → enforce', () => {
  let cluster: Cluster | undefined;
  let workloads: ShopWorkloads | undefined;
  let prefix = '';
  const bin = path.join(packageRoot(), 'bin', 'portcullis.js');

  beforeAll(async () => {
    cluster = await startCluster({ hosts: 3, extraHosts: 1, policy: adoptionPolicy(), inventory: (h) => shopInventory(h), agentArgs: ['--flow-interval', '1'] });
    prefix = cluster.prefix;
    workloads = await startShopWorkloads(cluster);
    await cluster.waitConverged(30_000);
  }, 90_000);

  afterAll(async () => {
    await workloads?.stop();
    await cluster?.destroy();
    if (prefix) expect(await leftoverNamespaces(prefix)).toEqual([]);
  }, 60_000);

  const hosts = (): [TestHost, TestHost, TestHost, TestHost] => {
    const c = cluster as Cluster;
    return [...c.hosts, ...c.extraHosts] as [TestHost, TestHost, TestHost, TestHost];
  };

  /** `portcullis <args>` in the controller's namespace (where its status listener is). */
  async function cli(args: readonly string[]): Promise<{ code: number; out: string; err: string }> {
    const c = cluster as Cluster;
    const r = await c.net.exec(c.controllerHost.ns, ['node', bin, ...args], { timeoutMs: 30_000 });
    return { code: r.code, out: r.stdout, err: r.stderr };
  }

  async function flows(verdict?: string): Promise<FlowRow[]> {
    const r = await cli(['flows', '--controller', `http://${(cluster as Cluster).statusAddress()}`, '--format', 'json', ...(verdict ? ['--verdict', verdict] : [])]);
    if (r.code !== 0) throw new Error(`portcullis flows failed (${r.code}): ${r.err}`);
    const parsed = JSON.parse(r.out) as { flows: FlowRow[] };
    return parsed.flows.filter((f) => f.direction === 'ingress');
  }

  const summary = (rows: readonly FlowRow[]): string[] =>
    [...new Set(rows.map((f) => `${f.source.kind === 'outside' ? 'outside' : f.source.apps.join('+')} -> ${f.destination.apps.map((a) => a.appId).join('+')}:${f.destination.portName ?? f.destination.port} ${f.verdict}`))].sort();

  it('in audit, the probes go through and flows shows exactly them, by app and port name', async () => {
    const [h1, h2] = hosts();
    const cases: ProbeCase[] = [
      ...bothFamilies({ name: 'web(h1) -> api http', fromNs: h1.ns, protocol: 'tcp', port: PORTS.api, expect: 'open' }, h2),
      ...bothFamilies({ name: 'web(h1) -> statsd udp', fromNs: h1.ns, protocol: 'udp', port: PORTS.statsd, expect: 'open' }, h2),
    ];
    expect(await runProbes((cluster as Cluster).net, cases)).toEqual([]);
    const rows = await waitFor(async () => {
      const got = await flows();
      return summary(got).length === 2 && got.length === 4 ? got : undefined;
    }, 30_000, 'the four recorded flows (two apps x two families)');
    expect(summary(rows)).toEqual(['/shop/web -> /monitoring/statsd:statsd audit', '/shop/web -> /shop/api:http audit']);
    for (const r of rows.filter((f) => f.destination.port === PORTS.api)) expect(r.packets).toBe(1); // one TCP connection each
    for (const r of rows) expect(r.source.kind).toBe('host');
  }, 60_000);

  it('suggest gives the rules; with them and api, monitoring enforced, web still gets through and an outsider does not (cache still audits)', async () => {
    const c = cluster as Cluster;
    const [h1, h2, h3, outsider] = hosts();
    const policyDir = path.join(c.dir, 'policy');
    const suggested = await cli(['suggest', '--controller', `http://${c.statusAddress()}`, '--policy', policyDir]);
    expect(suggested.code, suggested.err).toBe(0);
    expect(suggested.out).toMatch(/from: \[?web\]?/);
    expect(suggested.out).toMatch(/to: \[?api\]?/);
    expect(suggested.out).toMatch(/http/);
    expect(suggested.out).toMatch(/statsd/);
    await c.writePolicyFile('99-suggested.yaml', suggested.out);
    const inventory = path.join(c.dir, 'inventory.yaml');
    const checked = await cli(['check', '--policy', policyDir, '--inventory', inventory]);
    expect(checked.code, `${checked.out}${checked.err}`).toBe(0);

    const before = await c.waitConverged(10_000);
    await c.setPolicy(adoptionPolicy(['api', 'monitoring']));
    await c.waitConverged(30_000, before);
    const cases: ProbeCase[] = [
      ...bothFamilies({ name: 'web(h1) -> api http', fromNs: h1.ns, protocol: 'tcp', port: PORTS.api, expect: 'open' }, h2),
      ...bothFamilies({ name: 'web(h1) -> statsd udp', fromNs: h1.ns, protocol: 'udp', port: PORTS.statsd, expect: 'open' }, h2),
      ...bothFamilies({ name: 'outsider -> api http (enforced)', fromNs: outsider.ns, protocol: 'tcp', port: PORTS.api, expect: 'timeout' }, h2),
      ...bothFamilies({ name: 'outsider -> statsd udp (enforced)', fromNs: outsider.ns, protocol: 'udp', port: PORTS.statsd, expect: 'timeout' }, h2),
      ...bothFamilies({ name: 'outsider -> cache redis (still audit)', fromNs: outsider.ns, protocol: 'tcp', port: PORTS.cache, expect: 'open' }, h3),
    ];
    await probesEventually(c.net, cases, 15_000);
    expect(await runProbes(c.net, cases)).toEqual([]);
    const rows = await waitFor(async () => {
      const got = summary(await flows('denied,audit'));
      return got.includes('outside -> /shop/api:http denied') && got.includes('outside -> /shop/cache:redis audit') ? got : undefined;
    }, 30_000, 'the outsider recorded as denied by api and audited by cache');
    expect(rows).toContain('outside -> /shop/api:http denied');
    expect(rows).toContain('outside -> /shop/cache:redis audit');
    expect(rows).not.toContain('/shop/web -> /shop/api:http denied');
    expect(readFileSync(path.join(policyDir, '99-suggested.yaml'), 'utf8')).toBe(suggested.out);
  }, 120_000);

  it('the recorded flows survive a controller restart (saved under its --state-dir on a clean stop)', async () => {
    const c = cluster as Cluster;
    const before = summary(await flows());
    expect(before).toContain('outside -> /shop/api:http denied');
    await c.controller().stop('SIGTERM');
    await c.startController();
    const after = await waitFor(async () => {
      try {
        return summary(await flows());
      } catch {
        return undefined; // not listening yet
      }
    }, 30_000, 'the restarted controller to serve /flows');
    for (const row of before) expect(after).toContain(row);
  }, 90_000);
});
