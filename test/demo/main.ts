/**
 * `npm run demo`: the shop example on a real kernel, in throwaway network namespaces.
 *
 * Four agent hosts (h1..h4 = the example's node-1..node-4), an admin workstation (the policy's
 * `admin` network), an outsider that belongs to no group, and the controller, each a namespace on a
 * private bridge with no route out. A temporary CA signs the controller's and every agent's
 * certificate (mTLS). Once every agent has applied its state, a table of real TCP/UDP probes (v4
 * and v6) is printed next to what the policy says (by the reference evaluator), then everything
 * is removed (also on Ctrl-C). Exit 0 when every probe agrees with the policy, 1 otherwise.
 * Needs root, iptables, ipset, iproute2 and openssl.
 */
import { createBridgeTask } from '../support/bridge-task.js';
import { startCluster, type Cluster } from '../support/cluster-harness.js';
import type { TestHost } from '../support/netns.js';
import { DEMO_PROBES, demoConfig, expectedVerdict, loadShop, type DemoConfig, type DemoProbe } from './demo-plan.js';
import { demoProbe, startDemoListener } from './demo-probe.js';

const out = (line = ''): void => void process.stdout.write(`${line}\n`);

interface Row {
  readonly probe: DemoProbe;
  readonly family: 4 | 6;
  readonly fromNs: string;
  readonly address: string;
  readonly port: number;
  readonly expectAllow: boolean;
  readonly why: string;
  readonly target: TestHost;
}

function sourceHost(c: Cluster, p: DemoProbe): TestHost {
  if (p.from === 'admin') return c.extraHosts[0] as TestHost;
  if (p.from === 'outsider') return c.extraHosts[1] as TestHost;
  return c.hosts[p.from] as TestHost;
}

/** Starts what each probe needs: a listener on the host (HOST task, unmanaged) or in a container (BRIDGE). */
async function startWorkloads(c: Cluster, config: DemoConfig): Promise<void> {
  const containers = new Map<string, string>();
  const slots = new Map<string, number>();
  const listeners = new Map<string, () => Promise<void>>();
  for (const p of DEMO_PROBES) {
    const host = c.hosts[p.toHost] as TestHost;
    const hostIndex = p.toHost + 1;
    if (typeof p.port === 'number') {
      for (const family of [4, 6] as const) listeners.set(`${host.ns}/${p.protocol}/${p.port}/${family}`, () => startDemoListener(c.net, host.ns, p.protocol, p.port as number, family));
      continue;
    }
    const app = config.cluster.apps.find((a) => a.id === p.toApp);
    const task = config.cluster.tasks.find((t) => t.appId === p.toApp && t.hostId === host.id);
    const index = app?.ports.findIndex((port) => port.name === p.port) ?? -1;
    if (!app || !task || index < 0) throw new Error(`the demo inventory has no ${p.toApp} ${p.port} task on ${host.id}`);
    let ns = host.ns;
    let port = task.hostPorts[index] as number;
    if (app.networkMode === 'bridge') {
      let containerNs = containers.get(task.id);
      if (!containerNs) {
        const slot = (slots.get(host.id) ?? 1) + 1;
        slots.set(host.id, slot);
        const ports = app.ports.flatMap((ap, i) =>
          ap.protocols.map((protocol) => ({ protocol, hostPort: task.hostPorts[i] as number, containerPort: ap.containerPort ?? (task.hostPorts[i] as number) })),
        );
        containerNs = (await createBridgeTask(c.net, host, { hostIndex, slot, ports })).ns;
        containers.set(task.id, containerNs);
      }
      ns = containerNs;
      port = app.ports[index]?.containerPort ?? port;
    }
    const at = ns;
    for (const family of [4, 6] as const) listeners.set(`${at}/${p.protocol}/${port}/${family}`, () => startDemoListener(c.net, at, p.protocol, port, family));
  }
  await Promise.all([...listeners.values()].map((start) => start()));
}

function rows(c: Cluster, config: DemoConfig): Row[] {
  return DEMO_PROBES.flatMap((probe) =>
    ([4, 6] as const).map((family) => {
      const from = sourceHost(c, probe);
      const target = c.hosts[probe.toHost] as TestHost;
      const source = family === 4 ? from.v4 : from.v6;
      const e = expectedVerdict(config, probe, source, target);
      return { probe, family, fromNs: from.ns, address: family === 4 ? target.v4 : target.v6, port: e.hostPort, expectAllow: e.allow, why: e.why, target };
    }),
  );
}

async function observe(c: Cluster, r: Row): Promise<boolean> {
  const v = await demoProbe(c.net, r.fromNs, r.probe.protocol, r.address, r.port, r.expectAllow ? 2000 : 800);
  return v === 'open';
}

async function runDemo(): Promise<{ code: number; cluster?: Cluster }> {
  if (process.getuid?.() !== 0) {
    out('The demo needs root: it creates network namespaces and runs iptables and ipset inside them.');
    return { code: 1 };
  }
  const shop = await loadShop();
  let config: DemoConfig | undefined;
  out('Portcullis demo: the shop example on 4 namespaced hosts, a real controller and real agents (mTLS).');
  out('Starting hosts, a temporary CA, the controller and the agents...');
  const cluster = await startCluster({
    hosts: 4,
    extraHosts: 2,
    tls: true,
    policy: (hosts, extra) => {
      config = demoConfig(shop, hosts, extra[0] as TestHost);
      return config.policyText;
    },
    inventory: (hosts, extra) => demoConfig(shop, hosts, extra[0] as TestHost).inventoryText,
  });
  current = cluster;
  const cfg = config as DemoConfig;
  const [admin, outsider] = cluster.extraHosts as [TestHost, TestHost];
  for (const h of cluster.hosts) out(`  ${h.id}  ${h.v4.padEnd(12)} ${h.v6.padEnd(10)}  agent`);
  out(`  ${admin.id}  ${admin.v4.padEnd(12)} ${admin.v6.padEnd(10)}  admin workstation (the policy's 'admin' network)`);
  out(`  ${outsider.id}  ${outsider.v4.padEnd(12)} ${outsider.v6.padEnd(10)}  outsider (in no group)`);
  out(`  ${cluster.controllerHost.id}  ${cluster.controllerTarget().padEnd(23)}  controller`);
  out('Starting the tasks the probes hit (HOST tasks on the host, BRIDGE tasks in containers behind Docker-style DNAT)...');
  await startWorkloads(cluster, cfg);
  const versions = await cluster.waitConverged(60_000);
  out(`Every agent applied its state: ${[...versions].map(([id, v]) => `${id}=${v}`).join(' ')}`);
  out();

  const table = rows(cluster, cfg);
  let observed = await Promise.all(table.map((r) => observe(cluster, r)));
  // A disagreement is probed again (bounded), so a packet lost once is not reported as policy.
  for (let round = 0; round < 2 && observed.some((o, i) => o !== table[i]!.expectAllow); round++) {
    observed = await Promise.all(table.map((r, i) => (observed[i] === r.expectAllow ? Promise.resolve(observed[i] as boolean) : observe(cluster, r))));
  }
  const header = ['FROM', 'TO', 'PORT', 'IP', 'POLICY SAYS', 'OBSERVED', ''];
  const lines = table.map((r, i) => {
    const got = observed[i] as boolean;
    const what = typeof r.probe.port === 'number' ? `${r.probe.protocol}/${r.port}` : `${r.probe.port} ${r.probe.protocol}/${r.port}`;
    return [r.probe.label, `${r.probe.toApp} on ${r.target.id}`, what, `v${r.family}`, r.why, got ? 'ALLOWED' : 'REFUSED', got === r.expectAllow ? 'ok' : 'MISMATCH'];
  });
  const widths = header.map((h, k) => Math.max(h.length, ...lines.map((l) => (l[k] as string).length)));
  const fmt = (cells: string[]): string => cells.map((cell, k) => cell.padEnd(widths[k] as number)).join('  ').trimEnd();
  out(fmt(header));
  for (const l of lines) out(fmt(l));
  out();
  const bad = lines.filter((l) => l[6] === 'MISMATCH').length;
  out(bad === 0
    ? `All ${lines.length} probes agree with the policy.`
    : `${bad} of ${lines.length} probes DISAGREE with the policy.`);
  return { code: bad === 0 ? 0 : 1, cluster };
}

let current: Cluster | undefined;
let stopping = false;
async function teardown(): Promise<void> {
  if (stopping) return;
  stopping = true;
  out('Removing every namespace, process and temporary file...');
  await current?.destroy();
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    void teardown().finally(() => process.exit(130));
  });
}

let code = 1;
try {
  code = (await runDemo()).code;
} catch (error) {
  process.stderr.write(`demo failed: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`);
  code = 1;
} finally {
  await teardown().catch((error: unknown) => {
    process.stderr.write(`teardown: ${String(error)}\n`);
    code = 1;
  });
}
process.exit(code);
