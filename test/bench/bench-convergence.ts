/**
 * Scenario "convergence": a Marathon event → every affected agent has applied (and acked) the
 * new state, on a real kernel. Root only.
 *
 * Set-up (test/support/cluster-harness.ts with `marathon`): `convHosts` host namespaces on a
 * bridge inside a namespace of their own (nothing routes out), each with a real
 * `portcullis agent`; the real `portcullis controller --marathon` in one more namespace, following
 * the Marathon API double, which runs as a child process next to it (marathon-double-main.ts).
 * Agents run with a 30 s drift check (the production default) so it does not fall into the timing.
 * Policy: five apps in five groups with rules between them (web → api, api → db, web and api →
 * cache, worker → api) and a network (office-net → web); a seeded initial layout of two tasks
 * per app spread over the hosts.
 *
 * Each change is one Marathon action, in turn: scale up (start a task), kill a task, move a task
 * (kill + start elsewhere, two events). Changes run one at a time; per change:
 *  - `at`: wall-clock time at which the double wrote the event to its stream (it stamps the
 *    command just before emitting; marathon-double-process.ts `call`);
 *  - the expected states: a full compile (src/compile/compile.ts) of what the double's app list
 *    now says, with the hosts' Hello addresses — the same bytes the controller's incremental
 *    compiler must produce, so the hosts whose version changes are exactly the affected ones;
 *  - done: for every affected agent, its first `applied` log line with the new version after
 *    the change (agents log it right after sending the ack; JSON lines with an ISO `time`, ms);
 *    latency = the latest of those times − `at`. Same machine, same clock; no polling error.
 * Every 10 changes and at the end, the controller's /status must show every agent connected with
 * applied == desired == the full compile's version (a wrong prediction fails the scenario).
 * A few warm-up changes are not counted.
 */
import { loadavg } from 'node:os';
import path from 'node:path';
import { canonicalAddress } from '../../src/net/address.js';
import { compile } from '../../src/compile/compile.js';
import type { ClusterState } from '../../src/inventory/cluster-state.js';
import { parseApps } from '../../src/marathon/parse-apps.js';
import type { Policy } from '../../src/policy/policy-model.js';
import { loadPolicy } from '../../src/sources/policy-files.js';
import { agentsOf, startCluster, type Cluster } from '../support/cluster-harness.js';
import type { MarathonDoubleProcess } from '../support/marathon-double-process.js';
import type { TestHost } from '../support/netns.js';
import type { LogLine } from '../support/process-log.js';
import { log, report } from './figures.js';
import { kernelBenchReady } from './kernel-bench.js';
import type { BenchOptions } from './options.js';
import { mean, percentile } from './stats.js';
import { seededRandom } from '../support/seeded-random.js';

const S = 'convergence';
const TARGET_P99_MS = 250;
const WARMUP = 3;
/** Deadline for one change to reach every affected agent (a miss is a failure, not a sample). */
const CHANGE_DEADLINE_MS = 20_000;

const APPS = ['web', 'api', 'db', 'cache', 'worker'] as const;
const PORT_NAME: Readonly<Record<(typeof APPS)[number], string>> = { web: 'http', api: 'http', db: 'sql', cache: 'redis', worker: 'metrics' };

const POLICY = [
  'version: 1',
  'defaults:',
  '  mode: enforce',
  '  action: deny',
  '  failsafe: [tcp/22]',
  'networks:',
  '  office-net: { cidrs: [10.99.0.0/16, "fd99::/48"] }',
  'groups:',
  ...APPS.map((a) => `  ${a}: { apps: ["/bench/${a}"] }`),
  'rules:',
  '  - { name: web-to-api, from: web, to: api, ports: [http], action: allow }',
  '  - { name: api-to-db, from: api, to: db, ports: [sql], action: allow }',
  '  - { name: to-cache, from: [web, api], to: cache, ports: [redis], action: allow }',
  '  - { name: worker-to-api, from: worker, to: api, action: allow }',
  '  - { name: office-to-web, from: office-net, to: web, ports: [http], action: allow }',
  '',
].join('\n');

interface RunningTask {
  id: string;
  readonly app: string;
  host: string;
}

export async function benchConvergence(o: BenchOptions): Promise<void> {
  if (!(await kernelBenchReady())) return;
  const rand = seededRandom(o.seed + 11);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T;
  const running: RunningTask[] = [];
  let nextPort = 31000;

  const t0 = Date.now();
  let cluster: Cluster | undefined;
  try {
    cluster = await startCluster({
      hosts: o.convHosts,
      policy: POLICY,
      refreshIntervalS: 30,
      marathon: {
        setup: async (double, hosts) => {
          for (const a of APPS) await double.addApp({ id: `/bench/${a}`, network: 'host', ports: [{ name: PORT_NAME[a] }] });
          for (const a of APPS) {
            for (let k = 0; k < 2; k++) {
              const host = pick(hosts).id;
              running.push({ id: await double.startTask(`/bench/${a}`, host, [nextPort++]), app: `/bench/${a}`, host });
            }
          }
        },
      },
    });
    const c = cluster;
    const double = c.marathon as MarathonDoubleProcess;
    const policy = await loadPolicyOf(c);
    const expectedStates = async (): Promise<Map<string, string>> => fullCompileVersions(c, double, policy);
    let current = await expectedStates();
    await waitStatusEquals(c, current, 60_000);
    log(`${o.convHosts} hosts with real agents + controller + Marathon double up in ${((Date.now() - t0) / 1000).toFixed(1)} s; ${running.length} tasks of ${APPS.length} apps`);
    log('latency = agent `applied` log time (ISO, ms; logged right after the ack is sent) − the double\'s event emit time; the max over the affected agents of a change');

    const hostIds = c.hosts.map((h) => h.id);
    const indexOf = new Map(c.hosts.map((h, i) => [h.id, i]));
    const samples: number[] = [];
    const affectedCounts: number[] = [];
    // Where the time goes (per change, the slowest affected host): event → controller sends the
    // state (SSE read, coalescing window, compile, encode), and the agent's kernel apply.
    const toSend: number[] = [];
    const applyMs: number[] = [];
    const saveMs: number[] = [];
    const applyPaths = new Map<string, number>();
    const kinds = ['scale up', 'kill', 'move'] as const;
    const perKind = new Map<string, number[]>(kinds.map((k) => [k, []]));
    const total = WARMUP + o.changes;
    for (let n = 0; n < total; n++) {
      let kind: (typeof kinds)[number] = kinds[n % kinds.length] as (typeof kinds)[number];
      if (kind !== 'scale up' && running.length <= APPS.length) kind = 'scale up';
      const starts = c.hosts.map((_, i) => c.agent(i).lines().length);
      const controllerStart = c.controller().lines().length;
      let at: number;
      if (kind === 'scale up') {
        const app = pick(APPS);
        const host = pick(hostIds);
        const r = await double.call('startTask', `/bench/${app}`, host, [nextPort++]);
        running.push({ id: r.result, app: `/bench/${app}`, host });
        at = r.at;
      } else if (kind === 'kill') {
        const [t] = running.splice(Math.floor(rand() * running.length), 1);
        at = (await double.call('killTask', (t as RunningTask).id)).at;
      } else {
        const t = pick(running);
        const host = pick(hostIds.filter((h) => h !== t.host));
        const r = await double.call('moveTask', t.id, host, [nextPort++]);
        t.id = r.result;
        t.host = host;
        at = r.at;
      }
      const next = await expectedStates();
      const affected = hostIds.filter((h) => next.get(h) !== current.get(h));
      if (affected.length === 0) throw new Error(`change ${n} (${kind}) affected no host: the scenario is wrong`);
      const parts = { send: 0, apply: 0, save: 0 };
      const times = await Promise.all(
        affected.map(async (h) => {
          const i = indexOf.get(h) as number;
          const agent = c.agent(i);
          const from = starts[i] as number;
          const version = next.get(h);
          const line = await agent.waitFor(
            (l: LogLine) => l['msg'] === 'applied' && l['version'] === version && agent.lines().indexOf(l) >= from,
            CHANGE_DEADLINE_MS,
            `"applied" of ${version} after change ${n} (${kind})`,
          );
          const after = (lines: readonly LogLine[], start: number, match: (l: LogLine) => boolean) => lines.slice(start).find(match);
          const sent = after(c.controller().lines(), controllerStart, (l) => l['msg'] === 'sync: sending state' && l['hostId'] === h && l['version'] === version);
          const applied = after(agent.lines(), from, (l) => l['event'] === 'dataplane.applied' && l['version'] === version);
          if (sent) parts.send = Math.max(parts.send, Date.parse(String(sent['time'])) - at);
          if (applied) {
            const how = String(applied['path'] ?? 'full');
            applyPaths.set(how, (applyPaths.get(how) ?? 0) + 1);
            parts.apply = Math.max(parts.apply, Number(applied['durationMs']));
            parts.save = Math.max(parts.save, Date.parse(String(line['time'])) - Date.parse(String(applied['time'])));
          }
          return Date.parse(String(line['time']));
        }),
      );
      current = next;
      const latency = Math.max(...times) - at;
      if (n >= WARMUP) {
        samples.push(latency);
        affectedCounts.push(affected.length);
        perKind.get(kind)?.push(latency);
        toSend.push(parts.send);
        applyMs.push(parts.apply);
        saveMs.push(parts.save);
      }
      if ((n + 1) % 10 === 0 || n === total - 1) await waitStatusEquals(c, current, 10_000);
    }

    const p50 = percentile(samples, 50);
    const p99 = percentile(samples, 99);
    const max = Math.max(...samples);
    log(`${samples.length} changes (+${WARMUP} warm-up): p50 ${p50.toFixed(0)} ms, p99 ${p99.toFixed(0)} ms, max ${max.toFixed(0)} ms; ${mean(affectedCounts).toFixed(1)} affected agents per change on average (of ${o.convHosts})`);
    log(`by kind (p50 / max): ${[...perKind].map(([k, xs]) => `${k} ${percentile(xs, 50).toFixed(0)} / ${Math.max(...xs).toFixed(0)} ms (${xs.length})`).join(', ')}`);
    log(`where it goes (p50 / p99): event → controller sends the state ${percentile(toSend, 50).toFixed(0)} / ${percentile(toSend, 99).toFixed(0)} ms (includes the controller's 20 ms coalescing window); agent kernel apply ${percentile(applyMs, 50).toFixed(0)} / ${percentile(applyMs, 99).toFixed(0)} ms (the agent's \`dataplane.applied\` durationMs; applies by path: ${[...applyPaths].map(([k, v]) => `${k} ${v}`).join(', ') || 'none seen'}); kernel applied → \`applied\` (inputs kept, state saved, ack) ${percentile(saveMs, 50).toFixed(0)} / ${percentile(saveMs, 99).toFixed(0)} ms`);
    log(`load average at end: ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
    const note = `${samples.length} changes, ${o.convHosts} hosts, ${mean(affectedCounts).toFixed(1)} affected/change; agent applied-log time − double emit time`;
    report({ scenario: S, name: 'Marathon event → affected agents applied (p50)', value: p50, unit: 'ms', note });
    report({ scenario: S, name: 'Marathon event → affected agents applied (p99)', value: p99, unit: 'ms', target: { op: '<=', value: TARGET_P99_MS }, note: `max ${max.toFixed(0)} ms` });
  } finally {
    await cluster?.destroy();
  }
}

async function loadPolicyOf(c: Cluster): Promise<Policy> {
  const r = await loadPolicy(path.join(c.dir, 'policy'));
  if (!r.ok) throw new Error(`bench policy: ${r.errors.map((e) => e.message).join('; ')}`);
  return r.policy;
}

/** hostId → version of a full compile of the double's current app list (as a re-list reads it). */
async function fullCompileVersions(c: Cluster, double: MarathonDoubleProcess, policy: Policy): Promise<Map<string, string>> {
  const parsed = parseApps(await double.appsJson());
  if (!parsed.wellFormed || parsed.problems.length > 0) throw new Error(`double's app list: ${parsed.problems.join('; ')}`);
  const cluster: ClusterState = {
    hosts: c.hosts.map((h: TestHost) => ({ id: h.id, addresses: [canonicalAddress(h.v4), canonicalAddress(h.v6)].sort() })),
    apps: parsed.apps,
    tasks: parsed.tasks,
  };
  return new Map([...compile(policy, cluster).states].map(([h, s]) => [h, s.version]));
}

/** Waits (bounded) until /status shows every host connected with applied == desired == expected. */
async function waitStatusEquals(c: Cluster, expected: ReadonlyMap<string, string>, deadlineMs: number): Promise<void> {
  const end = Date.now() + deadlineMs;
  let last = '';
  for (;;) {
    const reports = agentsOf(await c.status());
    last = JSON.stringify(reports);
    const ok = c.hosts.every((h) => {
      const r = reports.find((a) => a.hostId === h.id);
      return r !== undefined && r.connected && r.desiredVersion === expected.get(h.id) && r.appliedVersion === r.desiredVersion;
    });
    if (ok) return;
    if (Date.now() > end) throw new Error(`/status never matched the full compile within ${deadlineMs} ms\nexpected ${JSON.stringify(Object.fromEntries(expected))}\nlast ${last}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
