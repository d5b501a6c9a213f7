/**
 * What `npm run demo` runs: the shipped shop example (policies/shop/ + policies/inventory.yaml)
 * moved onto the demo's namespaced hosts, and the table of probes it shows.
 *
 * The derivation is small and visible: inventory hosts node-1..node-4 become the demo's agent hosts
 * h1..h4 with their real addresses (tasks follow), and the policy's `admin` network becomes the
 * demo's admin workstation (one more namespace). Everything else is the example as shipped.
 * Expected verdicts come from the reference evaluator (`explain`), never from the probes.
 */
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { parseDocument, parse, stringify } from 'yaml';
import { defaultInventoryPath, defaultPolicyPath } from '../../src/package-root.js';
import { explain } from '../../src/evaluate/reference-evaluator.js';
import type { ClusterState } from '../../src/inventory/cluster-state.js';
import { parseStaticInventory } from '../../src/inventory/static-inventory.js';
import { parsePolicy } from '../../src/policy/parse-policy.js';
import type { Policy, Protocol } from '../../src/policy/policy-model.js';

export interface DemoHost {
  readonly id: string;
  readonly v4: string;
  readonly v6: string;
}

export interface DemoProbe {
  /** Who probes, for the table ("web (h1)"). */
  readonly label: string;
  /** Index into the hosts: 0..3 agent hosts h1..h4, 'admin' or 'outsider'. */
  readonly from: number | 'admin' | 'outsider';
  readonly toApp: string;
  /** Port name of the target app, or a bare port number for an unmanaged listener. */
  readonly port: string | number;
  readonly protocol: Protocol;
  /** Agent host index (0-based) of the target task. */
  readonly toHost: number;
}

export const DEMO_PROBES: readonly DemoProbe[] = [
  { label: 'web (h1)', from: 0, toApp: '/shop/api', port: 'http', protocol: 'tcp', toHost: 3 },
  { label: 'outsider', from: 'outsider', toApp: '/shop/api', port: 'http', protocol: 'tcp', toHost: 3 },
  { label: 'api (h2)', from: 1, toApp: '/shop/db', port: 'postgres', protocol: 'tcp', toHost: 2 },
  { label: 'outsider', from: 'outsider', toApp: '/shop/db', port: 'postgres', protocol: 'tcp', toHost: 2 },
  { label: 'admin network', from: 'admin', toApp: '/shop/db', port: 'postgres', protocol: 'tcp', toHost: 2 },
  { label: 'monitoring (h3)', from: 2, toApp: '/shop/web', port: 'metrics', protocol: 'tcp', toHost: 0 },
  { label: 'web-canary (h4)', from: 3, toApp: '/shop/web', port: 'metrics', protocol: 'tcp', toHost: 0 },
  { label: 'api (h2)', from: 1, toApp: '/shop/cache', port: 'redis', protocol: 'tcp', toHost: 0 },
  { label: 'payments (h3)', from: 2, toApp: '/shop/cache', port: 'redis', protocol: 'tcp', toHost: 0 },
  { label: 'web (h2)', from: 1, toApp: '/monitoring/statsd', port: 'statsd', protocol: 'udp', toHost: 2 },
  { label: 'outsider', from: 'outsider', toApp: '/monitoring/statsd', port: 'statsd', protocol: 'udp', toHost: 2 },
  { label: 'api (h1)', from: 0, toApp: '/tools/reports', port: 'http', protocol: 'tcp', toHost: 3 },
  { label: 'api (h1)', from: 0, toApp: '/tools/reports', port: 'debug', protocol: 'tcp', toHost: 3 },
  { label: 'outsider', from: 'outsider', toApp: '(unmanaged)', port: 8080, protocol: 'tcp', toHost: 1 },
];

export interface DemoConfig {
  readonly policyText: string;
  readonly inventoryText: string;
  readonly policy: Policy;
  readonly cluster: ClusterState;
}

/** The shipped example, read once: the policy directory as one text, and the inventory text. */
export interface ShopSource {
  readonly policyText: string;
  readonly inventoryText: string;
}

export async function loadShop(): Promise<ShopSource> {
  const dir = defaultPolicyPath();
  const names = (await readdir(dir)).filter((n) => /\.ya?ml$/.test(n)).sort();
  const texts = await Promise.all(names.map((n) => readFile(path.join(dir, n), 'utf8')));
  // The files define distinct top-level keys, so their concatenation is one valid policy file
  // with the rules in the same order.
  return {
    policyText: texts.map((t) => `${t.trimEnd()}\n`).join('\n'),
    inventoryText: await readFile(defaultInventoryPath(), 'utf8'),
  };
}

/** The shop policy with `admin` = the admin workstation's addresses. */
export function demoPolicyText(shop: ShopSource, admin: DemoHost): string {
  const doc = parseDocument(shop.policyText);
  doc.setIn(['networks', 'admin'], doc.createNode({ cidrs: [admin.v4, admin.v6] }));
  return doc.toString();
}

/** The shop inventory with node-<k> replaced by agent host k. */
export function demoInventoryText(shop: ShopSource, hosts: readonly DemoHost[]): string {
  const raw = parse(shop.inventoryText) as {
    hosts: { id: string; addresses: string[] }[];
    tasks: { host: string }[];
  };
  const rename = new Map(raw.hosts.map((h, k) => [h.id, hosts[k]]));
  raw.hosts = raw.hosts.flatMap((h) => {
    const to = rename.get(h.id);
    return to ? [{ id: to.id, addresses: [to.v4, to.v6] }] : [];
  });
  for (const t of raw.tasks) t.host = rename.get(t.host)?.id ?? t.host;
  return stringify(raw);
}

export function demoConfig(shop: ShopSource, hosts: readonly DemoHost[], admin: DemoHost): DemoConfig {
  const policyText = demoPolicyText(shop, admin);
  const inventoryText = demoInventoryText(shop, hosts);
  const p = parsePolicy([{ path: 'policy.yaml', text: policyText }]);
  if (!p.ok) throw new Error(`demo policy does not parse: ${JSON.stringify(p.errors)}`);
  const inv = parseStaticInventory('inventory.yaml', inventoryText);
  if (!inv.ok) throw new Error(`demo inventory does not parse: ${JSON.stringify(inv.errors)}`);
  return { policyText, inventoryText, policy: p.policy, cluster: inv.cluster };
}

export interface Expected {
  readonly allow: boolean;
  readonly why: string;
  readonly hostPort: number;
}

/** What the policy says for `probe` from `source`, by the reference evaluator. */
export function expectedVerdict(config: DemoConfig, probe: DemoProbe, source: string, target: DemoHost): Expected {
  if (typeof probe.port === 'number') return { allow: true, why: 'unmanaged port: not filtered', hostPort: probe.port };
  const result = explain(config.policy, config.cluster, {
    from: { address: source },
    toAppId: probe.toApp,
    port: probe.port,
    protocol: probe.protocol,
  });
  if (!result.ok) throw new Error(`explain ${probe.toApp} ${probe.port}: ${result.error}`);
  const v = result.verdicts.find((x) => x.hostId === target.id);
  if (!v) throw new Error(`${probe.toApp} has no ${probe.port} task on ${target.id}`);
  const allow = v.decision === 'allow' || !v.enforced;
  const why = v.rule ? `${v.decision} (${v.tier}: ${v.rule})` : `${v.decision} (${v.tier})`;
  return { allow, why, hostPort: v.hostPort };
}
