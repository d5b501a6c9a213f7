/**
 * Scenario "fanout": one controller process holding N agent streams over real gRPC with mTLS.
 *
 * This process is the controller: a DesiredStateStore compiled from the fanout cluster
 * (fanout-cluster.ts: one host per agent, Prometheus scraping a node exporter on every host)
 * and a SyncService on a grpc.Server bound to 127.0.0.1:0 with the controller's mTLS server
 * credentials (src/tls, CA and controller certificate made by pki.ts with openssl). The agents
 * are the real SyncClient, `--workers` child processes (fanout-worker.ts) hosting N/workers each,
 * every agent with its own channel, TLS connection and host certificate (CN = SAN = host id,
 * issued by fanout-certs.ts), so the controller's identity check (Hello.host_id ∈ certificate
 * names) runs for every one of them. Their dataplane only records (version, wall time) and acks.
 *
 * Measured (times are wall clock, `performance.timeOrigin + performance.now()`, valid across
 * the processes of one machine):
 *  - cold start: all agents connect at once; time until every one applied its first state;
 *  - controller memory per connected agent: RSS (and V8 heap + external) after a forced GC with
 *    every agent connected and in sync, minus the same before any agent connected, over N;
 *  - change → applied: Prometheus moves (one setCluster that changes EVERY host's state); per
 *    agent, the time from the setCluster call to that agent's apply; p50/p99 over all agents of
 *    several changes (the next change starts once the controller has every ack);
 *  - reconnect storm: the gRPC server is restarted on the same port (every stream dropped, a new
 *    SyncService that knows no agent, like a controller restart or failover) with one more change
 *    made meanwhile; time from the drop until every agent applied the new state;
 *  - context, measured in the same run: controller CPU per agent and per change, the simulated
 *    agents' CPU (they share this machine's cores with the controller), why agent streams ended,
 *    the kernel's listen-queue overflows, and the floor of the memory figure (fanout-floor.ts: a
 *    bare node:http2 mTLS server's RSS per idle connection).
 * Defaults take about a minute for 1,000 agents; `--agents 5000` takes several minutes.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import * as grpc from '@grpc/grpc-js';
import { DesiredStateStore } from '../../src/controller/desired-state-store.js';
import { SyncService } from '../../src/grpc/sync-service.js';
import { readTlsFiles, type TlsMaterial } from '../../src/tls/credentials.js';
import { listenMtls, type MtlsListener } from '../../src/tls/mtls-listener.js';
import { TlsRefusals } from '../../src/tls/tls-refusals.js';
import { caFiles, makeTestPki, verifyCert } from '../../src/tls/pki.js';
import { AgentCertIssuer } from './fanout-certs.js';
import { fanoutWorld } from './fanout-cluster.js';
import { measureTlsFloor } from './fanout-floor.js';
import { wallNow, type FromWorker, type ToWorker, type WorkerStats } from './fanout-protocol.js';
import { log, report } from './figures.js';
import type { BenchOptions } from './options.js';
import { mb, percentile, waitUntil } from './stats.js';
import { hostId } from './synthetic-cluster.js';

const S = 'fanout';
const CHANGES = 10;
const CHANGES_BUDGET_MS = 120_000;
const SERVER_NAME = 'localhost';
const PING_INTERVAL_MS = 10_000;
const FLOOR_SESSIONS = 1000;

/** Which agents have applied the version expected of them, and when. */
class ApplyTracker {
  private expected: (string | undefined)[];
  readonly appliedAt: Float64Array;
  remaining = 0;

  constructor(readonly size: number) {
    this.expected = new Array<string | undefined>(size).fill(undefined);
    this.appliedAt = new Float64Array(size);
  }

  /** From now on, host i is done once it applies `version(i)` (undefined: not waited for). */
  expect(version: (i: number) => string | undefined): void {
    this.remaining = 0;
    this.appliedAt.fill(0);
    for (let i = 0; i < this.size; i++) {
      this.expected[i] = version(i);
      if (this.expected[i] !== undefined) this.remaining++;
    }
  }

  onApplied(hosts: readonly number[], versions: readonly string[], at: readonly number[]): void {
    for (let k = 0; k < hosts.length; k++) {
      const i = hosts[k]!;
      if (this.expected[i] !== undefined && this.expected[i] === versions[k] && this.appliedAt[i] === 0) {
        this.appliedAt[i] = at[k]!;
        this.remaining--;
      }
    }
  }

  /** Apply times minus `t0`, of the hosts that were waited for. */
  latencies(t0: number): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.size; i++) if (this.expected[i] !== undefined) out.push(this.appliedAt[i]! - t0);
    return out;
  }
}

interface Worker {
  readonly index: number;
  readonly child: ChildProcess;
  ready: { issueMs: number; clientsMs: number } | undefined;
  stats: WorkerStats | undefined;
  stopped: WorkerStats | undefined;
  exited: boolean;
}

interface Controller {
  readonly server: grpc.Server;
  readonly sync: SyncService;
  readonly listener: MtlsListener;
  readonly port: number;
}

export function exposeGc(): () => void {
  const existing = (globalThis as { gc?: () => void }).gc;
  if (existing) return existing;
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as (() => void) | undefined;
  return gc ?? (() => undefined);
}

/** Soft RLIMIT_NOFILE of this process (Node cannot change it), undefined when unknown. */
async function openFileLimit(): Promise<number | undefined> {
  const text = await readFile('/proc/self/limits', 'utf8').catch(() => '');
  const soft = text.split('\n').find((l) => l.startsWith('Max open files'))?.split(/\s{2,}/)[1];
  return soft === undefined || soft === 'unlimited' ? undefined : Number(soft);
}

async function startController(store: DesiredStateStore, port: number, material: TlsMaterial): Promise<Controller> {
  // As src/controller/controller-main.ts wires it: the SyncService on a grpc.Server behind the
  // controller's mTLS listener.
  const deadline = Date.now() + 15_000;
  for (let attempt = 0; attempt < 1000; attempt++) {
    const server = new grpc.Server();
    const sync = new SyncService(store, { pingIntervalMs: PING_INTERVAL_MS });
    sync.addToServer(server);
    try {
      const listener = await listenMtls(server, '127.0.0.1', port, { material, refusals: new TlsRefusals() });
      return { server, sync, listener, port: listener.port };
    } catch (e) {
      sync.close();
      server.forceShutdown();
      // The old listener of a restart may still hold the port for a moment: retry, bounded.
      if (port === 0 || Date.now() > deadline) throw e;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
  throw new Error(`could not bind 127.0.0.1:${port}`);
}

/**
 * The kernel's count of connections dropped because a listen queue was full (TcpExt
 * ListenOverflows, system-wide; undefined off Linux). The mTLS listener uses Node's default backlog
 * (511), so a connection storm larger than that overflows it and the kernel drops SYNs, which
 * clients retransmit after 1 s, 3 s, 7 s...
 */
async function listenOverflows(): Promise<number | undefined> {
  const text = await readFile('/proc/net/netstat', 'utf8').catch(() => '');
  const lines = text.split('\n').filter((l) => l.startsWith('TcpExt:'));
  if (lines.length < 2) return undefined;
  const names = lines[0]!.split(/\s+/);
  const values = lines[1]!.split(/\s+/);
  const i = names.indexOf('ListenOverflows');
  return i < 0 ? undefined : Number(values[i]);
}

function overflowText(before: number | undefined, after: number | undefined): string {
  return before === undefined || after === undefined ? 'listen-queue overflows unknown' : `${after - before} listen-queue overflows (system-wide)`;
}

/** The most frequent stream-end reasons over the workers, `count× reason`. */
function topReasons(before: Readonly<Record<string, number>>, after: Readonly<Record<string, number>>, limit = 3): string {
  const rows = Object.entries(after)
    .map(([reason, count]) => [reason, count - (before[reason] ?? 0)] as const)
    .filter(([, count]) => count > 0)
    .sort((a, b) => b[1] - a[1]);
  return rows.length === 0 ? 'none' : rows.slice(0, limit).map(([reason, count]) => `${count}× ${reason}`).join('; ');
}

const cpuMs = (u: NodeJS.CpuUsage): number => (u.user + u.system) / 1000;

async function stopController(c: Controller | undefined): Promise<void> {
  if (!c) return;
  c.sync.close();
  c.server.forceShutdown();
  await c.listener.close();
}

export async function benchFanout(o: BenchOptions): Promise<void> {
  // At least 4 agents: each change moves Prometheus to a host it has not been on yet.
  const n = Math.max(4, Math.floor(o.agents));
  const workerCount = Math.max(1, Math.min(Math.floor(o.workers), n));
  const perWorker = Math.ceil(n / workerCount);
  const fdLimit = await openFileLimit();
  if (fdLimit !== undefined && fdLimit < n + 256) {
    throw new Error(`the open-file limit (ulimit -n ${fdLimit}) is too low for ${n} agent connections in one controller process: raise it to at least ${n + 256} (e.g. ulimit -n 65536)`);
  }
  const gc = exposeGc();
  const tmp = await mkdtemp(path.join(tmpdir(), 'pcu-bench-fanout-'));
  const workers: Worker[] = [];
  const store = new DesiredStateStore();
  let controller: Controller | undefined;
  try {
    // ---- controller: PKI, states, server ----
    let t = performance.now();
    const pki = await makeTestPki(path.join(tmp, 'pki'), { hosts: [], controllerNames: ['controller'] });
    const credentials = await readTlsFiles(pki.files('controller'));
    log(`CA and controller certificate (openssl): ${(performance.now() - t).toFixed(0)} ms`);
    // The agents' certificates come from fanout-certs.ts (node:crypto): check that openssl agrees
    // one of them is a client certificate of this CA, as pki.ts's own are.
    const sample = new AgentCertIssuer(await readFile(pki.caFile), await readFile(caFiles(pki.dir).keyFile)).issue('sample-host');
    const sampleFile = path.join(tmp, 'sample-host.crt');
    await writeFile(sampleFile, sample.certPem);
    await verifyCert(pki.dir, sampleFile, 'client');

    const world = fanoutWorld(n, o.seed);
    t = performance.now();
    store.setPolicy(world.policy);
    store.setCluster(world.cluster);
    log(`fanout cluster: ${n} hosts, ${world.cluster.tasks.length} tasks, ${world.policy.rules.length} rules; first compile ${(performance.now() - t).toFixed(0)} ms`);

    // Subscribed before the SyncService, so it runs first: the moment a change is published.
    let publishedAt = 0;
    const unsubscribe = store.subscribe(() => {
      publishedAt = wallNow();
    });
    controller = await startController(store, 0, credentials);
    const target = `127.0.0.1:${controller.port}`;
    const tracker = new ApplyTracker(n);
    const rejections: string[] = [];
    const hostIds = Array.from({ length: n }, (_, i) => hostId(i));

    // ---- workers ----
    const workerScript = fileURLToPath(new URL('./fanout-worker.js', import.meta.url));
    for (let w = 0; w < workerCount; w++) {
      const first = w * perWorker;
      const count = Math.max(0, Math.min(perWorker, n - first));
      const child = fork(workerScript, [], { execArgv: ['--max-old-space-size=4096'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      const worker: Worker = { index: w, child, ready: undefined, stats: undefined, stopped: undefined, exited: false };
      workers.push(worker);
      child.on('exit', () => {
        worker.exited = true;
      });
      child.on('error', () => {
        worker.exited = true;
      });
      child.on('message', (m: FromWorker) => {
        switch (m.type) {
          case 'ready':
            worker.ready = { issueMs: m.issueMs, clientsMs: m.clientsMs };
            return;
          case 'applied':
            tracker.onApplied(m.hosts, m.versions, m.at);
            return;
          case 'rejected':
            if (rejections.length < 20) rejections.push(`${hostId(m.host)}: ${m.reason}`);
            return;
          case 'stats':
            worker.stats = m.stats;
            return;
          case 'stopped':
            worker.stopped = m.stats;
            return;
          case 'error':
            rejections.push(`worker ${w}: ${m.message}`);
            return;
        }
      });
      const init: ToWorker = { type: 'init', target, serverName: SERVER_NAME, caCertFile: pki.caFile, caKeyFile: caFiles(pki.dir).keyFile, first, count };
      child.send(init);
    }
    /** Fails fast when a worker died or the controller rejected an agent. */
    const healthy = (): void => {
      const dead = workers.find((w) => w.exited && !w.stopped);
      if (dead) throw new Error(`worker ${dead.index} exited unexpectedly`);
      if (rejections.length > 0) throw new Error(`agents rejected or worker errors: ${rejections.slice(0, 3).join('; ')}`);
    };
    const broadcast = (m: ToWorker): void => {
      for (const w of workers) if (!w.exited && w.child.connected) w.child.send(m);
    };
    await waitUntil('workers to issue certificates and build clients', () => (healthy(), workers.every((w) => w.ready)), 60_000 + 20 * n, 10);
    const issueMs = Math.max(...workers.map((w) => w.ready!.issueMs));
    log(`${workerCount} workers ready: ${n} host certificates issued in ${issueMs.toFixed(0)} ms (slowest worker, in parallel), clients built in ${Math.max(...workers.map((w) => w.ready!.clientsMs)).toFixed(0)} ms`);

    /** Totals over the workers, asked for now: CPU ms, stream losses, RSS. */
    const workerTotals = async (): Promise<{ cpuMs: number; disconnects: number; rss: number; reasons: Record<string, number> }> => {
      for (const w of workers) w.stats = undefined;
      broadcast({ type: 'stats' });
      await waitUntil('worker stats', () => (healthy(), workers.every((w) => w.stats)), 30_000, 5);
      const all = workers.map((w) => w.stats!);
      const reasons: Record<string, number> = {};
      for (const x of all) for (const [reason, count] of Object.entries(x.reasons)) reasons[reason] = (reasons[reason] ?? 0) + count;
      return { cpuMs: all.reduce((a, x) => a + x.cpuMs, 0), disconnects: all.reduce((a, x) => a + x.disconnects, 0), rss: all.reduce((a, x) => a + x.rssBytes, 0), reasons };
    };
    const allInSync = (): boolean => hostIds.every((id) => controller!.sync.agent(id)?.inSync === true);
    const memory = () => {
      gc();
      gc();
      const m = process.memoryUsage();
      return { rss: m.rss, heap: m.heapUsed + m.external };
    };
    const before = memory();

    // ---- cold start ----
    tracker.expect((i) => store.current(hostIds[i]!)?.version);
    let agents0 = await workerTotals();
    let overflows0 = await listenOverflows();
    let cpu0 = process.cpuUsage();
    let t0 = wallNow();
    broadcast({ type: 'connect' });
    await waitUntil('every agent to apply its first state', () => (healthy(), tracker.remaining === 0), 120_000 + 50 * n, 5);
    const cold = tracker.latencies(t0);
    const coldCpu = cpuMs(process.cpuUsage(cpu0));
    await waitUntil('the controller to see every ack', () => (healthy(), allInSync()), 30_000, 20);
    let agents1 = await workerTotals();
    let overflows1 = await listenOverflows();
    log(`cold start: ${n} agents connected and applied their first state in ${(Math.max(...cold) / 1000).toFixed(2)} s (p50 ${(percentile(cold, 50) / 1000).toFixed(2)} s); CPU per agent: controller ${(coldCpu / n).toFixed(2)} ms, simulated agent ${((agents1.cpuMs - agents0.cpuMs) / n).toFixed(2)} ms; workers' RSS ${mb(agents1.rss).toFixed(0)} MB; ${overflowText(overflows0, overflows1)}; stream losses: ${topReasons(agents0.reasons, agents1.reasons)}`);
    report({ scenario: S, name: 'cold start: all agents synced', value: Math.max(...cold) / 1000, unit: 's', note: `${n} agents connecting at once, mTLS, ${workerCount} worker processes; controller CPU ${(coldCpu / n).toFixed(2)} ms per agent` });

    // ---- memory per connected agent ----
    const after = memory();
    const connected = controller.sync.agents().filter((a) => a.connected).length;
    const rssPerAgent = (after.rss - before.rss) / n / 1024;
    const heapPerAgent = (after.heap - before.heap) / n / 1024;
    log(`controller memory: rss ${mb(before.rss).toFixed(0)} → ${mb(after.rss).toFixed(0)} MB, heap+external ${mb(before.heap).toFixed(0)} → ${mb(after.heap).toFixed(0)} MB, ${connected} agents connected`);
    report({ scenario: S, name: 'controller RSS per connected agent', value: rssPerAgent, unit: 'KB', target: { op: '<=', value: 50 }, note: `${mb(before.rss).toFixed(0)} → ${mb(after.rss).toFixed(0)} MB RSS for ${connected} agents (after GC)` });
    report({ scenario: S, name: 'controller heap per connected agent', value: heapPerAgent, unit: 'KB', note: `V8 heap + external, ${mb(before.heap).toFixed(0)} → ${mb(after.heap).toFixed(0)} MB` });

    // ---- changes reaching every agent ----
    // Change 0 warms the delta path up (the cold start sent only snapshots); it is logged, not counted.
    const changeLatencies: number[] = [];
    const fanoutLatencies: number[] = [];
    const compileMs: number[] = [];
    const sendLoopMs: number[] = [];
    const controllerCpuMs: number[] = [];
    const changes = Math.min(CHANGES, n - 3);
    const changesStarted = Date.now();
    agents0 = await workerTotals();
    let done = 0;
    for (let k = 0; k <= changes; k++) {
      if (Date.now() - changesStarted > CHANGES_BUDGET_MS) break;
      const next = world.withPrometheusOn(k + 1);
      cpu0 = process.cpuUsage();
      t0 = wallNow();
      const changed = store.setCluster(next);
      const returned = wallNow();
      const changedSet = new Set(changed);
      tracker.expect((i) => (changedSet.has(hostIds[i]!) ? store.current(hostIds[i]!)?.version : undefined));
      await waitUntil(`change ${k} to reach every agent`, () => (healthy(), tracker.remaining === 0), 60_000 + 20 * n, 5);
      const cpu = cpuMs(process.cpuUsage(cpu0));
      const lat = tracker.latencies(t0);
      log(`change ${k}${k === 0 ? ' (warm-up, not counted)' : ''}: ${changed.length} hosts changed; compile ${(publishedAt - t0).toFixed(0)} ms, send loop ${(returned - publishedAt).toFixed(0)} ms; applied everywhere after ${Math.max(...lat).toFixed(0)} ms (p50 ${percentile(lat, 50).toFixed(0)} ms); controller CPU ${cpu.toFixed(0)} ms`);
      if (k > 0) {
        changeLatencies.push(...lat);
        for (const l of lat) fanoutLatencies.push(l - (publishedAt - t0));
        compileMs.push(publishedAt - t0);
        sendLoopMs.push(returned - publishedAt);
        controllerCpuMs.push(cpu);
        done++;
      }
      await waitUntil('the controller to see every ack', () => (healthy(), allInSync()), 30_000, 20);
    }
    agents1 = await workerTotals();
    const agentCpuPerApply = (agents1.cpuMs - agents0.cpuMs) / Math.max(1, (done + 1) * n);
    if (done > 0) {
      const note = `${done} changes × ${changeLatencies.length / done} agents (Prometheus moves: every host's state changes), after 1 warm-up change`;
      report({ scenario: S, name: 'change → every agent applied p50', value: percentile(changeLatencies, 50), unit: 'ms', note });
      report({ scenario: S, name: 'change → every agent applied p99', value: percentile(changeLatencies, 99), unit: 'ms', target: { op: '<=', value: 500 }, note: `from the setCluster call; median compile ${percentile(compileMs, 50).toFixed(0)} ms + SyncService send loop ${percentile(sendLoopMs, 50).toFixed(0)} ms; max ${Math.max(...changeLatencies).toFixed(0)} ms` });
      report({ scenario: S, name: 'published → every agent applied p99', value: percentile(fanoutLatencies, 99), unit: 'ms', note: `after the compile; p50 ${percentile(fanoutLatencies, 50).toFixed(0)} ms; controller CPU per change ${percentile(controllerCpuMs, 50).toFixed(0)} ms (median); simulated agent CPU per apply ${agentCpuPerApply.toFixed(2)} ms` });
    }

    // ---- reconnect storm ----
    const port = controller.port;
    overflows0 = await listenOverflows();
    cpu0 = process.cpuUsage();
    t0 = wallNow();
    await stopController(controller);
    controller = undefined;
    const stopped = wallNow();
    // A change while the controller is down: every agent needs a state it has not got yet.
    const changed = new Set(store.setCluster(world.withPrometheusOn(changes + 2)));
    tracker.expect((i) => (changed.has(hostIds[i]!) ? store.current(hostIds[i]!)?.version : undefined));
    const compiled = wallNow();
    controller = await startController(store, port, credentials);
    const rebound = wallNow() - t0;
    const gap = `down ${rebound.toFixed(0)} ms: stop ${(stopped - t0).toFixed(0)}, compile ${(compiled - stopped).toFixed(0)}, bind ${(t0 + rebound - compiled).toFixed(0)}`;
    await waitUntil('every agent to resync after the restart', () => (healthy(), tracker.remaining === 0), 120_000 + 20 * n, 5);
    const storm = tracker.latencies(t0);
    const stormCpu = cpuMs(process.cpuUsage(cpu0));
    await waitUntil('the controller to see every ack', () => (healthy(), allInSync()), 30_000, 20);
    const agents2 = await workerTotals();
    overflows1 = await listenOverflows();
    const reconnects = agents2.disconnects - agents1.disconnects;
    log(`reconnect storm: server restarted on :${port} (${gap} ms); ${changed.size} agents resynced after ${(Math.max(...storm) / 1000).toFixed(2)} s (p50 ${(percentile(storm, 50) / 1000).toFixed(2)} s); ${reconnects} stream losses (${topReasons(agents1.reasons, agents2.reasons)}); ${overflowText(overflows0, overflows1)}; CPU per agent: controller ${(stormCpu / n).toFixed(2)} ms, simulated agent ${((agents2.cpuMs - agents1.cpuMs) / n).toFixed(2)} ms`);
    report({ scenario: S, name: 'reconnect storm: all agents resynced', value: Math.max(...storm) / 1000, unit: 's', target: { op: '<=', value: 60 }, note: `every stream dropped (server restart, ${gap} ms); p50 ${(percentile(storm, 50) / 1000).toFixed(2)} s; agent backoff defaults; controller CPU ${(stormCpu / n).toFixed(2)} ms per agent` });
    unsubscribe();

    // ---- the platform's floor for the memory figure ----
    await stopWorkers(workers);
    await stopController(controller);
    controller = undefined;
    const floorCount = Math.min(n, FLOOR_SESSIONS);
    const floor = await measureTlsFloor({ ...pki.files('controller'), caKeyFile: caFiles(pki.dir).keyFile }, floorCount, SERVER_NAME);
    log(`bare node:http2 mTLS server, ${floor.sessions} idle sessions: RSS ${floor.rssPerConnKB.toFixed(1)} KB, heap+external ${floor.heapPerConnKB.toFixed(1)} KB per connection`);
    report({ scenario: S, name: 'floor: bare node:http2 mTLS RSS per connection', value: floor.rssPerConnKB, unit: 'KB', note: `context for the RSS figure: node:http2 server without grpc-js or Portcullis, ${floor.sessions} idle sessions` });
  } finally {
    await stopWorkers(workers);
    await stopController(controller);
    store.close();
    await rm(tmp, { recursive: true, force: true });
  }
}

/** Asks every worker to close its clients and exit; kills (by its own pid) one that does not. */
async function stopWorkers(workers: readonly Worker[]): Promise<void> {
  for (const w of workers) {
    if (!w.exited && w.child.connected) w.child.send({ type: 'stop' } satisfies ToWorker);
  }
  try {
    await waitUntil('workers to exit', () => workers.every((w) => w.exited), 15_000, 20);
  } catch {
    for (const w of workers) if (!w.exited) w.child.kill('SIGKILL');
    await waitUntil('killed workers to exit', () => workers.every((w) => w.exited), 5_000, 20).catch(() => undefined);
  }
}
