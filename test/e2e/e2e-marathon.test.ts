/**
 * End to end with a live inventory: the real controller follows a Marathon API double (a child
 * process in the controller's namespace, cluster-harness `marathon`), four real agents apply what
 * it compiles, and real TCP probes (v4 and v6) follow the tasks as Marathon starts, kills and
 * moves them. Marathon's event stream dropped again and again during churn: the kernel ends up
 * exactly as a full compile of Marathon's final task list says. Marathon failing or gone: rules
 * and verdicts stay, /status says the inventory is stale.
 *
 * Layout: agent hosts h1..h4, one outside host x (no agent, no task), the controller (+ double).
 * Policy: web may reach api's `http`, api may reach db's `sql`; every other connection to a
 * managed port is dropped; ports no task owns are left alone.
 *   start:   web h1:31000, api h2:31100, db h4:31200
 *   step 1:  web scaled up onto h3:31001
 *   step 2:  web on h1 killed
 *   step 3:  api moved h2 → h1 (host port 31100)
 * Listeners (v4 and v6) on h1:31000, h1:31100, h2:31100, h3:31001, h4:31200 stay up throughout,
 * so a port that is not managed answers, and a managed port answers only allowed sources.
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canonicalAddress } from '../../src/net/address.js';
import { compile } from '../../src/compile/compile.js';
import type { DesiredState } from '../../src/compile/desired-state.js';
import type { ClusterState } from '../../src/inventory/cluster-state.js';
import { parseApps } from '../../src/marathon/parse-apps.js';
import { ipsetName, setKindsOf } from '../../src/render/owned-names.js';
import type { Family } from '../../src/net/family.js';
import { setMembers } from '../../src/render/render-ipsets.js';
import { loadPolicy } from '../../src/sources/policy-files.js';
import { agentsOf, leftoverNamespaces, startCluster, waitFor, type Cluster } from '../support/cluster-harness.js';
import { ipsetMembers, ipsetStateSave, saveTable } from '../support/kernel-state.js';
import type { MarathonDoubleProcess } from '../support/marathon-double-process.js';
import type { TestHost } from '../support/netns.js';
import { startListener, type ProbeVerdict } from '../support/probe.js';
import { bothFamilies, isRoot, probesEventually, runProbes, type ProbeCase } from './e2e-support.js';
import { seededRandom } from '../support/seeded-random.js';

const APPS = { web: '/shop/web', api: '/shop/api', db: '/shop/db' } as const;
const PORT = { web1: 31000, web3: 31001, api: 31100, db: 31200 } as const;
/** Probes must follow a Marathon change within this long. */
const FOLLOW_MS = 15_000;

const POLICY = [
  'version: 1',
  'defaults:',
  '  mode: enforce',
  '  action: deny',
  '  failsafe: [tcp/22]',
  // What these steps check is the destination side following Marathon (which hosts' sets change).
  // With per-app egress every host's egress-managed list changes with any managed port, so every
  // version changes; egress is covered by test/e2e/egress-agent.test.ts and the compile tests.
  '  egress: off',
  'groups:',
  `  web: { apps: ["${APPS.web}"] }`,
  `  api: { apps: ["${APPS.api}"] }`,
  `  db: { apps: ["${APPS.db}"] }`,
  'rules:',
  '  - { name: web-to-api, from: web, to: api, ports: [http], action: allow }',
  '  - { name: api-to-db, from: api, to: db, ports: [sql], action: allow }',
  '',
].join('\n');

type Step = 0 | 1 | 2 | 3;

/** The verdicts the policy gives after each step (see the header). */
function casesAt(c: Cluster, step: Step): ProbeCase[] {
  const [h1, h2, h3, h4] = c.hosts as [TestHost, TestHost, TestHost, TestHost];
  const x = c.extraHosts[0] as TestHost;
  const open = (yes: boolean): ProbeVerdict => (yes ? 'open' : 'timeout');
  const table: [string, TestHost, TestHost, number, boolean][] = [
    // name, from, to, port, allowed
    ['h1 -> h2 api', h1, h2, PORT.api, step <= 1 || step === 3 /* web on h1 until step 2; unmanaged after the move */],
    ['h3 -> h2 api', h3, h2, PORT.api, step >= 1 /* h3 runs web from step 1 */],
    ['x -> h2 api', x, h2, PORT.api, step === 3 /* the old host no longer manages the port */],
    ['h2 -> h4 db', h2, h4, PORT.db, step <= 2 /* h2 runs api until the move */],
    ['h1 -> h4 db', h1, h4, PORT.db, step === 3 /* h1 runs api after the move */],
    ['x -> h3 web', x, h3, PORT.web3, step === 0 /* managed once web runs there */],
    ['x -> h1 web', x, h1, PORT.web1, step >= 2 /* released when web on h1 is killed */],
    ['x -> h1 31100', x, h1, PORT.api, step <= 2 /* managed once api moves there */],
    ['h3 -> h1 api', h3, h1, PORT.api, true /* unmanaged, then web -> api */],
    ['h2 -> h1 api', h2, h1, PORT.api, step <= 2 /* h2 runs nothing after the move */],
  ];
  return table.flatMap(([name, from, to, port, allowed]) =>
    bothFamilies({ name: `step ${step}: ${name}:${port}`, fromNs: from.ns, protocol: 'tcp', port, expect: open(allowed) }, to),
  );
}

async function kernelSnapshot(c: Cluster): Promise<string[]> {
  return Promise.all(
    c.hosts.map(async (h) =>
      [await saveTable(c.net, h.ns, 4), await saveTable(c.net, h.ns, 6), await ipsetStateSave(c.net, h.ns)].join('\n'),
    ),
  );
}

/** What a full compile of Marathon's current app list (as a re-list reads it) gives per host. */
async function fullCompile(c: Cluster, double: MarathonDoubleProcess): Promise<Map<string, DesiredState>> {
  const parsed = parseApps(await double.appsJson());
  if (!parsed.wellFormed || parsed.problems.length > 0) throw new Error(`double's app list: ${parsed.problems.join('; ')}`);
  // Every agent said Hello with its v4 and v6 address (cluster-harness), so every agent host is in
  // the cluster with those, whether or not it runs a task (host-addresses.ts `fill`).
  const cluster: ClusterState = {
    hosts: c.hosts.map((h) => ({ id: h.id, addresses: [canonicalAddress(h.v4), canonicalAddress(h.v6)].sort() })),
    apps: parsed.apps,
    tasks: parsed.tasks,
  };
  const policy = await loadPolicy(path.join(c.dir, 'policy'));
  if (!policy.ok) throw new Error(`policy: ${policy.errors.map((e) => e.message).join('; ')}`);
  return new Map(compile(policy.policy, cluster).states);
}

/**
 * Waits until the controller's desired version of every agent host equals the full compile's and
 * every agent has applied it. Returns hostId → version.
 */
async function convergedTo(c: Cluster, expected: ReadonlyMap<string, DesiredState>, deadlineMs: number): Promise<Map<string, string>> {
  let last = '';
  try {
    return await waitFor(async () => {
      const reports = agentsOf(await c.status());
      last = JSON.stringify(reports);
      const versions = new Map<string, string>();
      for (const h of c.hosts) {
        const want = expected.get(h.id)?.version;
        const r = reports.find((a) => a.hostId === h.id);
        if (!want || !r || !r.connected || r.desiredVersion !== want || r.appliedVersion !== want) return undefined;
        versions.set(h.id, want);
      }
      return versions;
    }, deadlineMs, 'every agent to apply the full compile of Marathon\'s tasks');
  } catch (error) {
    const want = JSON.stringify(Object.fromEntries([...expected].map(([h, s]) => [h, s.version])));
    throw new Error(`${String(error)}\nexpected: ${want}\nlast reports: ${last}`);
  }
}

/** Every pcu4-/pcu6- set of every host holds exactly the members of the expected state. */
async function kernelMismatches(c: Cluster, expected: ReadonlyMap<string, DesiredState>): Promise<string[]> {
  const out: string[] = [];
  for (const h of c.hosts) {
    const state = expected.get(h.id);
    if (!state) {
      out.push(`${h.id}: no expected state`);
      continue;
    }
    for (const family of [4, 6] as Family[]) {
      for (const kind of setKindsOf(family)) {
        const name = ipsetName(kind, family) as string;
        const want = setMembers(kind, family, state.sets[kind]).sort();
        const got = await ipsetMembers(c.net, h.ns, name);
        if (JSON.stringify(got) !== JSON.stringify(want)) out.push(`${h.id} ${name}: kernel ${JSON.stringify(got)}, full compile ${JSON.stringify(want)}`);
      }
    }
  }
  return out;
}

interface InventoryStatus {
  readonly source?: string;
  readonly ready?: boolean;
  readonly stale?: boolean;
  readonly reason?: string;
  readonly since?: string;
  readonly streamConnected?: boolean;
  readonly tasks?: number;
}

async function inventoryStatus(c: Cluster): Promise<InventoryStatus> {
  const s = (await c.status()) as { inventory?: InventoryStatus };
  return s.inventory ?? {};
}

/** Controller log lines whose message matches. */
const logCount = (c: Cluster, msg: RegExp): number => c.controller().lines().filter((l) => msg.test(String(l['msg']))).length;

const changedHosts = (before: ReadonlyMap<string, string>, after: ReadonlyMap<string, string>): string[] =>
  [...after].filter(([h, v]) => before.get(h) !== v).map(([h]) => h).sort();


describe.skipIf(!isRoot)('e2e: live inventory from a Marathon double', () => {
  let cluster: Cluster | undefined;
  let prefix = '';
  let double: MarathonDoubleProcess;
  let versions = new Map<string, string>();
  const tasks = new Map<string, string>();

  const expectFollow = async (c: Cluster, step: Step): Promise<{ before: Map<string, string>; after: Map<string, string> }> => {
    const before = versions;
    versions = await convergedTo(c, await fullCompile(c, double), FOLLOW_MS);
    await probesEventually(c.net, casesAt(c, step), FOLLOW_MS);
    return { before, after: versions };
  };

  beforeAll(async () => {
    cluster = await startCluster({
      hosts: 4,
      extraHosts: 1,
      policy: POLICY,
      marathon: {
        setup: async (d, hosts) => {
          const [h1, h2, , h4] = hosts as [TestHost, TestHost, TestHost, TestHost];
          await d.addApp({ id: APPS.web, network: 'host', ports: [{ name: 'http' }] });
          await d.addApp({ id: APPS.api, network: 'host', ports: [{ name: 'http' }] });
          await d.addApp({ id: APPS.db, network: 'host', ports: [{ name: 'sql' }] });
          tasks.set('web1', await d.startTask(APPS.web, h1.id, [PORT.web1]));
          tasks.set('api', await d.startTask(APPS.api, h2.id, [PORT.api]));
          tasks.set('db', await d.startTask(APPS.db, h4.id, [PORT.db]));
        },
      },
    });
    prefix = cluster.prefix;
    double = cluster.marathon as MarathonDoubleProcess;
    const c = cluster;
    const [h1, h2, h3, h4] = c.hosts as [TestHost, TestHost, TestHost, TestHost];
    const where: [TestHost, number][] = [[h1, PORT.web1], [h1, PORT.api], [h2, PORT.api], [h3, PORT.web3], [h4, PORT.db]];
    await Promise.all(where.flatMap(([h, port]) => ([4, 6] as const).map((family) => startListener(c.net, h.ns, { protocol: 'tcp', port, family }))));
    versions = await convergedTo(c, await fullCompile(c, double), 30_000);
    await probesEventually(c.net, casesAt(c, 0), FOLLOW_MS);
  }, 120_000);

  afterAll(async () => {
    await cluster?.destroy();
    if (prefix) expect(await leftoverNamespaces(prefix)).toEqual([]);
  }, 60_000);

  it('the controller follows Marathon: inventory fresh, one state per agent host', async () => {
    const c = cluster as Cluster;
    expect(await inventoryStatus(c)).toMatchObject({ source: 'marathon', ready: true, stale: false, streamConnected: true, tasks: 3 });
    expect([...versions.keys()].sort()).toEqual(['h1', 'h2', 'h3', 'h4']);
    expect((await double.requests()).some((r) => r.url.startsWith('/v2/events'))).toBe(true);
  });

  it('scale up: web started on h3 → h3 may call api, and its new port is managed', async () => {
    const c = cluster as Cluster;
    tasks.set('web3', await double.startTask(APPS.web, 'h3', [PORT.web3]));
    const { before, after } = await expectFollow(c, 1);
    // api's host (its allowed sources) and h3 (a new managed port) change; nothing else does.
    expect(changedHosts(before, after)).toEqual(['h2', 'h3']);
    expect(await runProbes(c.net, casesAt(c, 1))).toEqual([]);
  });

  it('kill: web on h1 killed → h1 loses api access, its port is released', async () => {
    const c = cluster as Cluster;
    await double.killTask(tasks.get('web1') as string);
    const { before, after } = await expectFollow(c, 2);
    expect(changedHosts(before, after)).toEqual(['h1', 'h2']);
    expect(await runProbes(c.net, casesAt(c, 2))).toEqual([]);
  });

  it('move: api moved h2 → h1 → web reaches it on h1, h2 no longer manages the port, db follows', async () => {
    const c = cluster as Cluster;
    tasks.set('api', await double.moveTask(tasks.get('api') as string, 'h1', [PORT.api]));
    const { before, after } = await expectFollow(c, 3);
    // h1 gains the port, h2 loses it, db (h4) swaps h2 for h1 as a source; web on h3 is untouched.
    expect(changedHosts(before, after)).toEqual(['h1', 'h2', 'h4']);
    expect(await ipsetMembers(c.net, c.hosts[1]!.ns, 'pcu4-managed-tcp')).not.toContain(String(PORT.api));
    expect(await ipsetMembers(c.net, c.hosts[0]!.ns, 'pcu4-managed-tcp')).toContain(String(PORT.api));
    expect(await runProbes(c.net, casesAt(c, 3))).toEqual([]);
  });

  it('Marathon answering HTTP 500 with its streams dropped: rules and verdicts unchanged, /status stale', async () => {
    const c = cluster as Cluster;
    const kernelBefore = await kernelSnapshot(c);
    const requests = (await double.info()).requests;
    const staleLines = logCount(c, /inventory is stale/);
    const freshLines = logCount(c, /inventory is fresh again/);
    await double.setFailing('http500');
    expect(await double.dropStreams()).toBeGreaterThan(0);
    const stale = await waitFor(async () => {
      const inv = await inventoryStatus(c);
      return inv.stale === true && /HTTP 500/.test(inv.reason ?? '') ? inv : undefined;
    }, 20_000, '/status to show the inventory stale (HTTP 500)');
    expect(stale).toMatchObject({ ready: true, source: 'marathon' });
    expect(Date.parse(stale.since ?? '')).toBeGreaterThan(0);
    // The controller keeps trying (lists with backoff) and nothing moves meanwhile.
    await waitFor(async () => (await double.info()).requests >= requests + 4, 20_000, 'the controller to retry Marathon');
    // The feed logs what /status shows on its next check (every 500 ms), and the line crosses a pipe: wait for it.
    await waitFor(() => logCount(c, /inventory is stale/) >= staleLines + 1, 5000, 'the stale log line');
    expect(logCount(c, /inventory is stale/)).toBe(staleLines + 1);
    expect(await c.waitConverged(10_000)).toEqual(versions);
    expect(await kernelSnapshot(c)).toEqual(kernelBefore);
    expect(await runProbes(c.net, casesAt(c, 3))).toEqual([]);

    // Marathon is back (restarted: its streams drop once more, and the reattached stream makes
    // the controller re-list at once instead of after its grown list backoff): fresh again, and
    // nothing to change.
    await double.setFailing('none');
    await double.dropStreams();
    await waitFor(async () => (await inventoryStatus(c)).stale === false, 20_000, '/status to show the inventory fresh again');
    await waitFor(() => logCount(c, /inventory is fresh again/) === freshLines + 1, 5000, 'the fresh-again log line');
    expect(await c.waitConverged(10_000)).toEqual(versions);
    expect(await kernelSnapshot(c)).toEqual(kernelBefore);
  });

  it('churn with the event stream dropped again and again: the kernel equals a full compile of the final tasks', async () => {
    const c = cluster as Cluster;
    const baseline = versions;
    const rand = seededRandom(20_26);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T;
    const hostIds = c.hosts.map((h) => h.id);
    const appIds = Object.values(APPS);
    const churn: { id: string; host: string }[] = [];
    let nextPort = 32000;
    let ops = 0;
    let drops = 0;
    const step = async (): Promise<void> => {
      ops++;
      const r = rand();
      if (churn.length < 2 || r < 0.45) {
        const host = pick(hostIds);
        churn.push({ id: await double.startTask(pick(appIds), host, [nextPort++]), host });
      } else if (r < 0.75) {
        const [t] = churn.splice(Math.floor(rand() * churn.length), 1);
        await double.killTask(t!.id);
      } else {
        const k = Math.floor(rand() * churn.length);
        const t = churn[k]!;
        const host = pick(hostIds.filter((h) => h !== t.host));
        churn[k] = { id: await double.moveTask(t.id, host, [nextPort++]), host };
      }
    };
    for (let round = 0; round < 6; round++) {
      for (let i = 0; i < 4; i++) await step(); // delivered live
      if ((await double.dropStreams()) > 0) drops++;
      for (let i = 0; i < 3; i++) await step(); // emitted while no stream is open: lost, re-listed
      if (round % 2 === 1) await double.dropStreams(); // and once more, maybe mid-reconnect
      // Let the controller reconnect before the next round (its re-list catches up).
      await waitFor(async () => (await double.info()).streams > 0, 20_000, 'the controller to reattach the event stream');
    }
    expect(drops).toBeGreaterThanOrEqual(6);
    expect(churn.length).toBeGreaterThan(0);

    const expected = await fullCompile(c, double);
    versions = await convergedTo(c, expected, 30_000);
    expect(await kernelMismatches(c, expected)).toEqual([]);
    expect(await inventoryStatus(c)).toMatchObject({ stale: false, tasks: 3 + churn.length });
    expect(changedHosts(baseline, versions).length).toBeGreaterThan(0);

    // Churn removed (with one more drop in the middle): back to exactly the states of before.
    const half = Math.ceil(churn.length / 2);
    for (const [i, t] of churn.entries()) {
      if (i === half) await double.dropStreams();
      await double.killTask(t.id);
    }
    const back = await fullCompile(c, double);
    versions = await convergedTo(c, back, 30_000);
    expect(versions).toEqual(baseline);
    expect(await kernelMismatches(c, back)).toEqual([]);
    await probesEventually(c.net, casesAt(c, 3), FOLLOW_MS);
    expect(ops).toBeGreaterThanOrEqual(40);
  });

  it('Marathon gone (the double process stopped): rules and verdicts unchanged, /status stale', async () => {
    const c = cluster as Cluster;
    const kernelBefore = await kernelSnapshot(c);
    const lostBefore = logCount(c, /event stream lost/);
    await double.stop();
    expect(double.exited()).toBe(true);
    const stale = await waitFor(async () => {
      const inv = await inventoryStatus(c);
      return inv.stale === true && inv.streamConnected === false ? inv : undefined;
    }, 20_000, '/status to show the inventory stale');
    expect(stale).toMatchObject({ ready: true, source: 'marathon' });
    // Reconnects keep failing (connection refused) while the states stay.
    await waitFor(
      () => logCount(c, /event stream lost/) >= lostBefore + 3,
      30_000,
      'the controller to retry the event stream',
    );
    expect(c.controller().exited()).toBe(false);
    const s = (await c.status()) as { ready?: boolean };
    expect(s.ready).toBe(true);
    expect(await c.waitConverged(10_000)).toEqual(versions);
    expect(await kernelSnapshot(c)).toEqual(kernelBefore);
    expect(await runProbes(c.net, casesAt(c, 3))).toEqual([]);
  });
});
