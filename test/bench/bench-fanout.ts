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
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DesiredStateStore } from '../../src/controller/desired-state-store.js';
import { readTlsFiles } from '../../src/tls/credentials.js';
import { fanoutWorld } from './fanout-cluster.js';
import { benchPki } from './fanout-certs.js';
import { checkOpenFileLimit, cpuMs, exposeGc, listenOverflows, memoryAfterGc, overflowText, SERVER_NAME, startController, stopController, type Controller } from './fanout-controller.js';
import { measureTlsFloor } from './fanout-floor.js';
import { agentVersion, ApplyTracker, topReasons, WorkerPool } from './fanout-pool.js';
import { wallNow } from './fanout-protocol.js';
import { log, report } from './figures.js';
import type { BenchOptions } from './options.js';
import { mb, percentile, waitUntil } from './stats.js';
import { hostId } from './synthetic-cluster.js';

export { exposeGc } from './fanout-controller.js';

const S = 'fanout';
const CHANGES = 10;
const CHANGES_BUDGET_MS = 120_000;
const FLOOR_SESSIONS = 1000;

export async function benchFanout(o: BenchOptions): Promise<void> {
  // At least 4 agents: each change moves Prometheus to a host it has not been on yet.
  const n = Math.max(4, Math.floor(o.agents));
  const workerCount = Math.max(1, Math.min(Math.floor(o.workers), n));
  await checkOpenFileLimit(n, 'one controller process');
  const gc = exposeGc();
  const tmp = await mkdtemp(path.join(tmpdir(), 'pcu-bench-fanout-'));
  let pool: WorkerPool | undefined;
  const store = new DesiredStateStore();
  let controller: Controller | undefined;
  try {
    // ---- controller: PKI, states, server ----
    const { pki, caKeyFile } = await benchPki(tmp);
    const credentials = await readTlsFiles(pki.files('controller'));

    const world = fanoutWorld(n, o.seed);
    const t = performance.now();
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
    const hostIds = Array.from({ length: n }, (_, i) => hostId(i));

    // ---- workers ----
    pool = new WorkerPool(n, workerCount, { target, serverName: SERVER_NAME, caCertFile: pki.caFile, caKeyFile: caKeyFile }, tracker);
    const healthy = (): void => pool!.healthy();
    const broadcast = pool.broadcast.bind(pool);
    const workerTotals = pool.totals.bind(pool);
    const ready = await pool.ready(60_000 + 20 * n);
    log(`${workerCount} workers ready: ${n} host certificates issued in ${ready.issueMs.toFixed(0)} ms (slowest worker, in parallel), clients built in ${ready.clientsMs.toFixed(0)} ms`);

    const allInSync = (): boolean => hostIds.every((id) => controller!.sync.agent(id)?.inSync === true);
    const memory = () => memoryAfterGc(gc);
    const before = memory();

    // ---- cold start ----
    tracker.expect((i) => agentVersion(store, hostIds[i]!));
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
      tracker.expect((i) => (changedSet.has(hostIds[i]!) ? agentVersion(store, hostIds[i]!) : undefined));
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
    tracker.expect((i) => (changed.has(hostIds[i]!) ? agentVersion(store, hostIds[i]!) : undefined));
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
    await pool?.stop();
    await stopController(controller);
    controller = undefined;
    const floorCount = Math.min(n, FLOOR_SESSIONS);
    const floor = await measureTlsFloor({ ...pki.files('controller'), caKeyFile: caKeyFile }, floorCount, SERVER_NAME);
    log(`bare node:http2 mTLS server, ${floor.sessions} idle sessions: RSS ${floor.rssPerConnKB.toFixed(1)} KB, heap+external ${floor.heapPerConnKB.toFixed(1)} KB per connection`);
    report({ scenario: S, name: 'floor: bare node:http2 mTLS RSS per connection', value: floor.rssPerConnKB, unit: 'KB', note: `context for the RSS figure: node:http2 server without grpc-js or Portcullis, ${floor.sessions} idle sessions` });
  } finally {
    await pool?.stop();
    await stopController(controller);
    store.close();
    await rm(tmp, { recursive: true, force: true });
  }
}
