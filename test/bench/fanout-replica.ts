/**
 * One controller replica of the replicas benchmark (bench-replicas.ts), a child process of its
 * own so that `SIGKILL` kills it for real: a DesiredStateStore compiling the fanout world
 * (fanout-cluster.ts; the same hosts and seed in every replica, so the same bytes and versions)
 * and a SyncService on its own grpc.Server behind the controller's mTLS listener on 127.0.0.1
 * (fanout-controller.ts), with the connection cap it is given.
 *
 * Protocol (fanout-protocol.ts, ToReplica/FromReplica): init → ready (port, memory after GC
 * before any agent); change → changed (compile and send-loop times); restart → every stream
 * dropped, a change made, a new SyncService on the same port → restarted; stats; memory (after
 * GC); stop → exit. Exits on its own when the benchmark goes away (IPC disconnect).
 */
import { DesiredStateStore } from '../../src/controller/desired-state-store.js';
import { readTlsFiles, type TlsMaterial } from '../../src/tls/credentials.js';
import { fanoutWorld, type FanoutWorld } from './fanout-cluster.js';
import { cpuMs, exposeGc, memoryAfterGc, startController, stopController, type Controller } from './fanout-controller.js';
import type { FromReplica, ReplicaInit, ReplicaStats, ToReplica } from './fanout-protocol.js';

const gc = exposeGc();
const store = new DesiredStateStore();
let world: FanoutWorld | undefined;
let controller: Controller | undefined;
let material: TlsMaterial | undefined;
let maxAgents = 0;
let maxHandshakes = 0;
/** Busy / abandoned connections of the listeners stopped by restarts, so the stats count since start. */
let pastAdmission = { busy: 0, abandoned: 0 };
/** When the last change was published: subscribed before any SyncService, so it runs first. */
let publishedAt = 0;
store.subscribe(() => {
  publishedAt = performance.now();
});

function send(message: FromReplica): void {
  if (process.connected) process.send?.(message);
}

async function init(m: ReplicaInit): Promise<void> {
  material = await readTlsFiles({ certFile: m.certFile, keyFile: m.keyFile, caFile: m.caFile });
  maxAgents = m.maxAgents;
  maxHandshakes = m.maxHandshakes;
  world = fanoutWorld(m.hosts, m.seed);
  const t = performance.now();
  store.setPolicy(world.policy);
  store.setCluster(world.withPrometheusOn(m.prometheusOn));
  const compileMs = performance.now() - t;
  controller = await startController(store, m.port, material, maxAgents, maxHandshakes);
  const mem = memoryAfterGc(gc);
  send({ type: 'ready', port: controller.port, compileMs, ...mem });
}

function change(prometheusOn: number): { changed: number; compileMs: number; sendLoopMs: number } {
  // The send loop is what setCluster takes after the compile published.
  publishedAt = 0;
  const t0 = performance.now();
  const changed = store.setCluster(world!.withPrometheusOn(prometheusOn)).length;
  const returned = performance.now();
  return { changed, compileMs: (publishedAt || returned) - t0, sendLoopMs: publishedAt ? returned - publishedAt : 0 };
}

async function restart(prometheusOn: number): Promise<void> {
  const t0 = performance.now();
  const port = controller!.port;
  pastAdmission = admissionCounts();
  await stopController(controller);
  controller = undefined;
  change(prometheusOn);
  controller = await startController(store, port, material!, maxAgents, maxHandshakes);
  send({ type: 'restarted', downMs: performance.now() - t0 });
}

function admissionCounts(): { busy: number; abandoned: number } {
  const s = controller?.admission?.status();
  return { busy: pastAdmission.busy + (s ? s.busy.queue_full + s.busy.waited_too_long : 0), abandoned: pastAdmission.abandoned + (s?.abandoned ?? 0) };
}

function stats(withHosts: boolean): ReplicaStats {
  const agents = controller?.sync.agents().filter((a) => a.connected) ?? [];
  return {
    open: controller?.sync.openStreams() ?? 0,
    inSync: agents.filter((a) => a.inSync).length,
    ...(withHosts ? { hosts: agents.map((a) => a.hostId) } : {}),
    refusedAtCapacity: controller?.sync.agentsRefusedAtCapacity() ?? 0,
    ...admissionCounts(),
    cpuMs: cpuMs(process.cpuUsage()),
    rssBytes: process.memoryUsage().rss,
  };
}

async function stop(): Promise<void> {
  await stopController(controller);
  store.close();
  process.disconnect?.();
  setTimeout(() => process.exit(0), 200).unref();
}

async function handle(m: ToReplica): Promise<void> {
  switch (m.type) {
    case 'init':
      return init(m);
    case 'change':
      send({ type: 'changed', ...change(m.prometheusOn) });
      return;
    case 'restart':
      return restart(m.prometheusOn);
    case 'stats':
      send({ type: 'stats', stats: stats(m.hosts) });
      return;
    case 'memory':
      send({ type: 'memory', ...memoryAfterGc(gc), open: controller?.sync.openStreams() ?? 0, ...(controller?.listener.traffic() ?? { sessions: 0, bytesWritten: 0 }) });
      return;
    case 'stop':
      return stop();
  }
}

process.on('message', (m: ToReplica) => {
  handle(m).catch((e: unknown) => send({ type: 'error', message: (e as Error).stack ?? String(e) }));
});

// The benchmark process is gone (crash, kill): nothing else would ever end this process.
process.on('disconnect', () => process.exit(0));
