/**
 * The small shop most end-to-end files run: three agent hosts.
 *   h1: /shop/web (HOST, tcp 31000)
 *   h2: /shop/api (HOST, tcp 31100), /monitoring/statsd (HOST, udp 31510),
 *       /ops/sshd (HOST, tcp 2222, a failsafe port), and an unmanaged listener on tcp 8088
 *   h3: /shop/cache (BRIDGE, tcp 31400 -> container 6379, Docker-style DNAT)
 * Policy: web may reach api http, cache redis and statsd (udp); everything else to a managed port
 * is denied. Listeners run for v4 and v6 on every port above (cache's in its container).
 */
import { createBridgeTask, type BridgeTask } from '../support/bridge-task.js';
import type { Cluster } from '../support/cluster-harness.js';
import type { TestHost } from '../support/netns.js';
import { startListener, type Listener } from '../support/probe.js';
import { bothFamilies, type ProbeCase } from './e2e-support.js';

export const PORTS = { web: 31000, api: 31100, cache: 31400, cacheContainer: 6379, statsd: 31510, sshd: 2222, unmanaged: 8088 } as const;

export interface ShopPolicyOptions {
  readonly webToApi?: boolean;
  readonly cacheToApi?: boolean;
}

export function shopPolicy(o: ShopPolicyOptions = {}): string {
  const rules: string[] = [];
  if (o.webToApi ?? true) rules.push('  - { name: web-to-api, from: web, to: api, ports: [http], action: allow }');
  if (o.cacheToApi ?? false) rules.push('  - { name: cache-to-api, from: cache, to: api, ports: [http], action: allow }');
  rules.push('  - { name: web-to-cache, from: web, to: cache, ports: [redis], action: allow }');
  rules.push('  - { name: web-to-statsd, from: web, to: monitoring, ports: [statsd], protocol: udp, action: allow }');
  return [
    'version: 1',
    'defaults:',
    '  mode: enforce',
    '  action: deny',
    '  failsafe: [tcp/22, tcp/2222]',
    'groups:',
    '  web: { apps: ["/shop/web"] }',
    '  api: { apps: ["/shop/api"] }',
    '  cache: { apps: ["/shop/cache"] }',
    '  monitoring: { apps: ["/monitoring/*"] }',
    '  ops: { apps: ["/ops/**"] }',
    'rules:',
    ...rules,
    '',
  ].join('\n');
}

export function shopInventory(hosts: readonly TestHost[], extraApps = ''): string {
  const [h1, h2, h3] = hosts as [TestHost, TestHost, TestHost];
  return [
    'hosts:',
    ...hosts.map((h) => `  - { id: ${h.id}, addresses: [${h.v4}, "${h.v6}"] }`),
    'apps:',
    '  - { id: /shop/web, network: host, ports: [{ name: http }] }',
    '  - { id: /shop/api, network: host, ports: [{ name: http }] }',
    `  - { id: /shop/cache, network: bridge, ports: [{ name: redis, containerPort: ${PORTS.cacheContainer} }] }`,
    '  - { id: /monitoring/statsd, ports: [{ name: statsd, protocol: udp }] }',
    '  - { id: /ops/sshd, ports: [{ name: ssh }] }',
    extraApps,
    'tasks:',
    `  - { app: /shop/web, host: ${h1.id}, ports: [${PORTS.web}] }`,
    `  - { app: /shop/api, host: ${h2.id}, ports: [${PORTS.api}] }`,
    `  - { app: /monitoring/statsd, host: ${h2.id}, ports: [${PORTS.statsd}] }`,
    `  - { app: /ops/sshd, host: ${h2.id}, ports: [${PORTS.sshd}] }`,
    `  - { app: /shop/cache, host: ${h3.id}, ports: [${PORTS.cache}] }`,
    '',
  ].filter((l) => l !== '').join('\n') + '\n';
}

export interface ShopWorkloads {
  readonly listeners: Listener[];
  readonly cache: BridgeTask;
  stop(): Promise<void>;
}

export async function startShopWorkloads(cluster: Cluster): Promise<ShopWorkloads> {
  const [, h2, h3] = cluster.hosts as [TestHost, TestHost, TestHost];
  const cache = await createBridgeTask(cluster.net, h3, {
    hostIndex: 3,
    slot: 2,
    ports: [{ protocol: 'tcp', hostPort: PORTS.cache, containerPort: PORTS.cacheContainer }],
  });
  const specs: [string, 'tcp' | 'udp', number][] = [
    [h2.ns, 'tcp', PORTS.api],
    [h2.ns, 'udp', PORTS.statsd],
    [h2.ns, 'tcp', PORTS.sshd],
    [h2.ns, 'tcp', PORTS.unmanaged],
    [cache.ns, 'tcp', PORTS.cacheContainer],
  ];
  const listeners = await Promise.all(
    specs.flatMap(([ns, protocol, port]) =>
      ([4, 6] as const).map((family) => startListener(cluster.net, ns, { protocol, port, family })),
    ),
  );
  return {
    listeners,
    cache,
    stop: async () => {
      await Promise.all(listeners.map((l) => l.stop()));
    },
  };
}

/** The verdicts the shop policy (defaults: web may reach api) must produce. */
export function shopCases(cluster: Cluster, o: ShopPolicyOptions = {}): ProbeCase[] {
  const [h1, h2, h3] = cluster.hosts as [TestHost, TestHost, TestHost];
  const webToApi = o.webToApi ?? true;
  const cacheToApi = o.cacheToApi ?? false;
  return [
    ...bothFamilies({ name: 'web(h1) -> api http', fromNs: h1.ns, protocol: 'tcp', port: PORTS.api, expect: webToApi ? 'open' : 'timeout' }, h2),
    ...bothFamilies({ name: 'cache(h3) -> api http', fromNs: h3.ns, protocol: 'tcp', port: PORTS.api, expect: cacheToApi ? 'open' : 'timeout' }, h2),
    ...bothFamilies({ name: 'web(h1) -> cache redis (bridge)', fromNs: h1.ns, protocol: 'tcp', port: PORTS.cache, expect: 'open' }, h3),
    ...bothFamilies({ name: 'api(h2) -> cache redis (bridge)', fromNs: h2.ns, protocol: 'tcp', port: PORTS.cache, expect: 'timeout' }, h3),
    ...bothFamilies({ name: 'web(h1) -> statsd udp', fromNs: h1.ns, protocol: 'udp', port: PORTS.statsd, expect: 'open' }, h2),
    ...bothFamilies({ name: 'cache(h3) -> statsd udp', fromNs: h3.ns, protocol: 'udp', port: PORTS.statsd, expect: 'timeout' }, h2),
    ...bothFamilies({ name: 'h1 -> unmanaged 8088', fromNs: h1.ns, protocol: 'tcp', port: PORTS.unmanaged, expect: 'open' }, h2),
    ...bothFamilies({ name: 'h3 -> unmanaged 8088', fromNs: h3.ns, protocol: 'tcp', port: PORTS.unmanaged, expect: 'open' }, h2),
    ...bothFamilies({ name: 'h3 -> failsafe sshd 2222', fromNs: h3.ns, protocol: 'tcp', port: PORTS.sshd, expect: 'open' }, h2),
  ];
}
