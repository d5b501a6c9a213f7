/**
 * End to end, three controller replicas (issue 12): three real `portcullis controller`
 * processes (built CLI, real mTLS, ports bound to 0 the first time and kept on restart) in the
 * controller's namespace, sharing the Consul API double (a child process there: the policy is
 * pushed to its KV and followed by every replica, each replica registers as service
 * `portcullis`) and the inventory file; real agents in network namespaces, each given the three
 * replicas (`--controller` ×3, `--connect-timeout 2`). Rebalancing every 0.5 s with slack 1, the
 * count from Consul's passing instances (the double runs no checks: the test sets them as
 * Consul's HTTP check on /readyz would).
 *
 * Why the inventory file and not the Marathon double: with Marathon a replica learns a host's
 * addresses only from that host's agent Hello, so replicas serving different agents compile
 * different bytes (see the report); the inventory names every address.
 *
 * While probes run in a loop (bounded): `kill -9` the replica with most agents → its agents are
 * on another within seconds; churn (tasks started on other hosts, a policy pushed) → every host converges
 * to the full compile of the inputs; the replica returns → every replica serves an agent again;
 * Consul stopped (outage) → nothing applied changes. No probe is ever wrong, and no agent ever
 * applies a version again after it left it (the inputs only move forward). Everything is removed
 * in afterAll, also on failure.
 *
 * Layout: agent hosts h1..h3, outside host x, the controllers. web on h1, api h2:31100, db
 * h3:31200; `churn` (a source of db) scales up onto h1, h2, h3 on new ports. Probed (v4 and
 * v6), never changing: h1 → api open, x → api dropped, h2 → db open, x → db dropped.
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compile } from '../../src/compile/compile.js';
import { parseStaticInventory } from '../../src/inventory/static-inventory.js';
import { loadPolicy } from '../../src/sources/policy-files.js';
import { agentsOf, leftoverNamespaces, startCluster, waitFor, type AgentReport, type Cluster } from '../support/cluster-harness.js';
import { ipsetStateSave, saveTable } from '../support/kernel-state.js';
import type { TestHost } from '../support/netns.js';
import { startListener, type Listener } from '../support/probe.js';
import { bothFamilies, isRoot, probesEventually, runProbes, type ProbeCase } from './e2e-support.js';

const REPLICAS = 3;
const PORT = { api: 31100, db: 31200 } as const;
/** An agent of a killed replica must be served by another within this long. */
const FAILOVER_MS = 15_000;

const APPS = { web: '/shop/web', api: '/shop/api', db: '/shop/db', churn: '/tools/churn' } as const;
/** Each app's one port name. */
const PORT_NAME: Record<keyof typeof APPS, string> = { web: 'http', api: 'http', db: 'sql', churn: 'work' };
type Allow = readonly [name: string, from: keyof typeof APPS, to: keyof typeof APPS];
const RULES: readonly Allow[] = [['web-to-api', 'web', 'api'], ['api-to-db', 'api', 'db'], ['churn-to-db', 'churn', 'db']];
/** The rule the pushed policy adds. */
const PUSHED_RULE: Allow = ['churn-to-api', 'churn', 'api'];

function policy(extra: readonly Allow[] = []): string {
  return [
    'version: 1',
    // egress off: every host's egress-managed list would change with any managed port.
    'defaults: { mode: enforce, action: deny, failsafe: [tcp/22], egress: off }',
    'groups:',
    ...Object.entries(APPS).map(([group, app]) => `  ${group}: { apps: ["${app}"] }`),
    'rules:',
    ...[...RULES, ...extra].map(([name, from, to]) => `  - { name: ${name}, from: ${from}, to: ${to}, ports: [${PORT_NAME[to]}], action: allow }`),
    '',
  ].join('\n');
}

/**
 * Step k runs churn tasks 0..k, task j on host j % 3 with port 31700 + j (Marathon scaling the app
 * up onto other hosts). The inputs only grow, so no host's state can come back to an earlier
 * content (versions are content hashes: a task moving away would give a host its earlier
 * version again, legitimately).
 */
function inventory(hosts: readonly TestHost[], churnStep: number): string {
  const [h1, h2, h3] = hosts as [TestHost, TestHost, TestHost];
  return [
    'hosts:',
    ...hosts.map((h) => `  - { id: ${h.id}, addresses: [${h.v4}, "${h.v6}"] }`),
    'apps:',
    ...Object.entries(APPS).map(([group, app]) => `  - { id: ${app}, ports: [{ name: ${PORT_NAME[group as keyof typeof APPS]} }] }`),
    'tasks:',
    ...([[APPS.web, h1, 31000], [APPS.api, h2, PORT.api], [APPS.db, h3, PORT.db]] as const).map(([app, h, port]) => `  - { app: ${app}, host: ${h.id}, ports: [${port}] }`),
    ...Array.from({ length: churnStep + 1 }, (_, j) => `  - { app: ${APPS.churn}, host: ${hosts[j % hosts.length]!.id}, id: tools_churn.${j}, ports: [${31700 + j}] }`),
    '',
  ].join('\n');
}

function stableCases(c: Cluster): ProbeCase[] {
  const [h1, h2, h3] = c.hosts as [TestHost, TestHost, TestHost];
  const x = c.extraHosts[0] as TestHost;
  return [
    ...bothFamilies({ name: 'h1 -> api', fromNs: h1.ns, protocol: 'tcp', port: PORT.api, expect: 'open' }, h2),
    ...bothFamilies({ name: 'x -> api', fromNs: x.ns, protocol: 'tcp', port: PORT.api, expect: 'timeout' }, h2),
    ...bothFamilies({ name: 'h2 -> db', fromNs: h2.ns, protocol: 'tcp', port: PORT.db, expect: 'open' }, h3),
    ...bothFamilies({ name: 'x -> db', fromNs: x.ns, protocol: 'tcp', port: PORT.db, expect: 'timeout' }, h3),
  ];
}

/** Every replica's agent records (a replica that is down answers nothing). */
async function reportsByReplica(c: Cluster, live: ReadonlySet<number>): Promise<Map<number, AgentReport[]>> {
  const out = new Map<number, AgentReport[]>();
  for (const i of live) out.set(i, agentsOf(await c.status(i)));
  return out;
}

/** hostId → the live replica that has its stream now. */
async function servingMap(c: Cluster, live: ReadonlySet<number>): Promise<Map<string, { replica: number; report: AgentReport }>> {
  const out = new Map<string, { replica: number; report: AgentReport }>();
  for (const [i, reports] of await reportsByReplica(c, live)) for (const r of reports) if (r.connected) out.set(r.hostId, { replica: i, report: r });
  return out;
}

/** The full compile of the policy directory and the inventory file: hostId → version. */
async function fullCompile(c: Cluster, inventoryText: string): Promise<Map<string, string>> {
  const loaded = await loadPolicy(path.join(c.dir, 'policy'));
  if (!loaded.ok) throw new Error(`policy: ${loaded.errors.map((e) => e.message).join('; ')}`);
  const inv = parseStaticInventory('inventory.yaml', inventoryText);
  if (!inv.ok) throw new Error(`inventory: ${inv.errors.map((e) => e.message).join('; ')}`);
  return new Map([...compile(loaded.policy, inv.cluster).states].map(([h, s]) => [h, s.version]));
}

/** Waits until every host is served by a live replica with desired == applied == the full compile's version. */
async function convergedTo(c: Cluster, live: ReadonlySet<number>, expected: ReadonlyMap<string, string>, deadlineMs: number): Promise<void> {
  let last = '';
  try {
    await waitFor(async () => {
      const serving = await servingMap(c, live);
      last = JSON.stringify([...serving]);
      return c.hosts.every((h) => {
        const s = serving.get(h.id)?.report;
        return s !== undefined && s.desiredVersion === expected.get(h.id) && s.appliedVersion === expected.get(h.id);
      });
    }, deadlineMs, 'every host to apply the full compile');
  } catch (error) {
    throw new Error(`${String(error)}\nexpected: ${JSON.stringify([...expected])}\nlast: ${last}`);
  }
}

async function kernelSnapshot(c: Cluster): Promise<string[]> {
  return Promise.all(c.hosts.map(async (h) => [await saveTable(c.net, h.ns, 4), await saveTable(c.net, h.ns, 6), await ipsetStateSave(c.net, h.ns)].join('\n')));
}

/** Marks every registered replica's check passing, except those on `down` ports (critical), as Consul's check would. */
async function setChecks(c: Cluster, downPorts: readonly number[]): Promise<void> {
  const consul = c.consul!;
  for (const s of await consul.localServices()) await consul.setCheck(s.id, downPorts.includes(s.port) ? 'critical' : 'passing');
}

const portOf = (target: string): number => Number(target.slice(target.lastIndexOf(':') + 1));

describe.skipIf(!isRoot)('e2e: three controller replicas', () => {
  let cluster: Cluster | undefined;
  let prefix = '';
  const listeners: Listener[] = [];

  beforeAll(async () => {
    cluster = await startCluster({
      hosts: 3,
      extraHosts: 1,
      replicas: REPLICAS,
      consul: true,
      tls: true,
      policy: policy(),
      inventory: (h) => inventory(h, 0),
      controllerArgs: ['--rebalance-interval', '0.5', '--rebalance-slack', '1'],
      agentArgs: ['--connect-timeout', '2', '--log-level', 'debug'],
    });
    prefix = cluster.prefix;
    const [, h2, h3] = cluster.hosts as [TestHost, TestHost, TestHost];
    for (const [h, port] of [[h2, PORT.api], [h3, PORT.db]] as const) {
      for (const family of [4, 6] as const) listeners.push(await startListener(cluster.net, h.ns, { protocol: 'tcp', port, family }));
    }
  }, 120_000);

  afterAll(async () => {
    for (const l of listeners) await l.stop().catch(() => undefined);
    await cluster?.destroy();
    if (prefix) expect(await leftoverNamespaces(prefix)).toEqual([]);
  }, 60_000);

  it('kill -9 during churn, the replica back, a Consul outage: no rule lost or wrong, full compile everywhere, load spread, never backwards', async () => {
    const c = cluster as Cluster;
    const targets = c.replicaTargets();
    const live = new Set(Array.from({ length: REPLICAS }, (_, i) => i));
    await setChecks(c, []);
    let churnStep = 0;
    const first = await fullCompile(c, inventory(c.hosts, churnStep));
    await convergedTo(c, live, first, 30_000);
    await probesEventually(c.net, stableCases(c), 10_000);

    // Probes in a loop while everything happens (bounded in rounds and time).
    const wrong: string[] = [];
    let rounds = 0;
    let probing = true;
    let final = new Map<string, string>();
    const loopEnd = Date.now() + 240_000;
    const loop = (async () => {
      while (probing && rounds < 2_000 && Date.now() < loopEnd) {
        const miss = await runProbes(c.net, stableCases(c));
        rounds += 1;
        wrong.push(...miss.map((m) => `round ${rounds}: ${m}`));
      }
    })();

    try {
      // kill -9 the replica serving most agents.
      const before = await servingMap(c, live);
      const load = [...live].map((i) => [...before.values()].filter((s) => s.replica === i).length);
      const victim = load.indexOf(Math.max(...load));
      const moved = c.hosts.filter((h) => before.get(h.id)?.replica === victim).map((h) => h.id);
      expect(moved.length).toBeGreaterThanOrEqual(1);
      const killedAt = Date.now();
      await c.killController(victim);
      live.delete(victim);
      await setChecks(c, [portOf(targets[victim]!)]);
      await waitFor(async () => {
        const now = await servingMap(c, live);
        return moved.every((h) => now.has(h));
      }, FAILOVER_MS, 'the killed replica\'s agents to be on another');
      expect(Date.now() - killedAt).toBeLessThan(FAILOVER_MS);

      // Churn: a task starts on h2, a policy is pushed, another task starts on h3.
      churnStep = 1;
      await c.setInventory(inventory(c.hosts, churnStep));
      await c.setPolicy(policy([PUSHED_RULE]));
      const pushed = await c.pushPolicy();
      expect(pushed.code, pushed.stderr).toBe(0);
      churnStep = 2;
      await c.setInventory(inventory(c.hosts, churnStep));
      await convergedTo(c, live, await fullCompile(c, inventory(c.hosts, churnStep)), 30_000);

      // The replica returns on its port: load spreads again (slack 1: one agent each).
      await c.startController(victim);
      live.add(victim);
      await setChecks(c, []);
      await waitFor(async () => {
        const now = await servingMap(c, live);
        return now.size === c.hosts.length && [...live].every((i) => [...now.values()].some((s) => s.replica === i));
      }, 40_000, 'every replica to serve an agent again');
      await convergedTo(c, live, await fullCompile(c, inventory(c.hosts, churnStep)), 30_000);

      // Consul outage: nothing applied changes.
      const kernelBefore = await kernelSnapshot(c);
      await c.consul!.setOutage('refuse');
      await Promise.all([...live].map((i) => c.controller(i).waitFor((l) => l['event'] === 'policy.consul_unreachable' && l['level'] === 'warn', 20_000, '"cannot read the policy from Consul"')));
      const until = Date.now() + 3_000;
      await waitFor(() => Date.now() >= until, 10_000, 'three seconds of outage');
      expect(await kernelSnapshot(c)).toEqual(kernelBefore);
      await convergedTo(c, live, await fullCompile(c, inventory(c.hosts, churnStep)), 10_000);
      await c.consul!.setOutage(null);
      final = await fullCompile(c, inventory(c.hosts, churnStep));
    } finally {
      probing = false;
      await loop;
    }
    expect(wrong).toEqual([]);
    expect(rounds).toBeGreaterThanOrEqual(5);
    // The churn changed what some hosts enforce (h2: churn-to-api; h3: churn sources of db).
    expect(c.hosts.filter((h) => first.get(h.id) !== final.get(h.id)).map((h) => h.id)).toEqual([c.hosts[1]!.id, c.hosts[2]!.id]);

    // Never backwards: no agent applied a version again after it had moved on from it.
    for (const [i, h] of c.hosts.entries()) {
      const lines = c.agent(i).lines();
      const applied = lines.filter((l) => l['msg'] === 'applied').map((l) => String(l['version']));
      const runs = applied.filter((v, k) => k === 0 || applied[k - 1] !== v);
      // On failure: the agent's applies and moves between replicas, in order.
      const timeline = lines
        .filter((l) => l['msg'] === 'applied' || (typeof l['msg'] === 'string' && /^sync: (stream ended|replica|cannot connect)/.test(l['msg'] as string)))
        .map((l) => `${String(l['time'])} ${String(l['msg'])} ${String(l['version'] ?? l['controller'] ?? '')} ${String(l['next'] ?? '')}`);
      expect(new Set(runs).size, `${h.id} applied ${runs.join(' -> ')}\n  ${timeline.join('\n  ')}`).toBe(runs.length);
      expect([runs[0], runs.at(-1)]).toEqual([first.get(h.id), final.get(h.id)]);
    }
  }, 300_000);
});
