/**
 * Scenario "replicas" (issue 12): N agents over R controller replicas, each replica a process of
 * its own (fanout-replica.ts: a DesiredStateStore compiling the fanout world, a SyncService on its
 * own grpc.Server with mTLS on 127.0.0.1:0, a connection cap of ⌈1.2 N / (R − 1)⌉ so that
 * R − 1 replicas can carry every agent, as README.md sizes `--max-agents`, and the controller's
 * default handshake admission, `--max-handshakes` 32 with as many waiting as the cap), so that
 * `SIGKILL` kills one for real. The agents are the fanout scenario's (fanout-pool.ts, fanout-worker.ts):
 * the real SyncClient in `--workers` child processes, one channel per replica, one TLS
 * connection and host certificate per agent, every agent given all R targets in its own shuffled
 * order (agent/controller-targets.ts).
 *
 * This process compiles the same world too, before each change is sent, so it knows the version
 * every host must reach (versions are content hashes: an agent applying it proves the replica
 * compiled the same bytes). Times are wall clock across processes (fanout-protocol.ts wallNow).
 *
 * Measured:
 *  - cold start (context): every agent connects at once; time until each applied its first state;
 *  - change → every agent applied: every replica gets the same change (Prometheus moves, every
 *    host's state changes) at once; per agent, the time from sending the change to its apply;
 *    p50/p99 over several changes after a warm-up one;
 *  - one replica SIGKILLed, a change made on the others at the same moment (churn): the time
 *    until every agent the killed replica served applied the new state on another replica, and
 *    whether it came as a Delta or a Snapshot;
 *  - the killed replica comes back on its port; then every replica drops every stream at once
 *    (SyncService and server made again on the same port, a change meanwhile): time until every
 *    agent applied the new state;
 *  - RSS per agent of each replica after GC (with every agent in sync, minus the same before any
 *    agent connected, over the agents it serves) as a ratio to the bare node:http2 mTLS floor
 *    (fanout-floor.ts) measured at the end of the same run: idle sessions (the target's floor)
 *    and, as context, sessions with one open stream sent the bytes an agent's session was sent.
 * Context printed with each: replica CPU, the load average, agents per replica, stream-end
 * reasons, the kernel's listen-queue overflows. Everything shares this machine's cores.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DesiredStateStore } from '../../src/controller/desired-state-store.js';
import { DEFAULT_MAX_HANDSHAKES } from '../../src/tls/handshake-queue.js';
import { benchPki } from './fanout-certs.js';
import { fanoutWorld } from './fanout-cluster.js';
import { checkOpenFileLimit, listenOverflows, overflowText, SERVER_NAME } from './fanout-controller.js';
import { measureTlsFloor } from './fanout-floor.js';
import { agentVersion, ApplyTracker, topReasons, WorkerPool, type PoolTotals } from './fanout-pool.js';
import { wallNow, type FromReplica, type FromWorker, type ReplicaInit, type ReplicaStats, type ToReplica } from './fanout-protocol.js';
import { log, report } from './figures.js';
import type { BenchOptions } from './options.js';
import { percentile, waitUntil } from './stats.js';
import { hostId } from './synthetic-cluster.js';

const S = 'replicas';
const CHANGES = 5;

type Reply<T extends FromReplica['type']> = Extract<FromReplica, { type: T }>;

/** One replica process and its latest reply of each kind. */
class Replica {
  readonly child: ChildProcess;
  exited = false;
  killed = false;
  private readonly replies = new Map<FromReplica['type'], FromReplica>();

  constructor(readonly index: number, init: Omit<ReplicaInit, 'type'>) {
    const script = fileURLToPath(new URL('./fanout-replica.js', import.meta.url));
    this.child = fork(script, [], { execArgv: ['--expose-gc', '--max-old-space-size=4096'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.child.on('exit', () => {
      this.exited = true;
    });
    this.child.on('error', () => {
      this.exited = true;
    });
    this.child.on('message', (m: FromReplica) => void this.replies.set(m.type, m));
    this.send({ type: 'init', ...init });
  }

  send(m: ToReplica): void {
    if (!this.exited && this.child.connected) this.child.send(m);
  }

  healthy(): void {
    const error = this.replies.get('error') as Reply<'error'> | undefined;
    if (error) throw new Error(`replica ${this.index}: ${error.message}`);
    if (this.exited && !this.killed) throw new Error(`replica ${this.index} exited unexpectedly`);
  }

  /** Sends `m` and waits for the reply of kind `type`. */
  ask<T extends FromReplica['type']>(type: T, m: ToReplica, timeoutMs: number): Promise<Reply<T>> {
    this.replies.delete(type);
    this.send(m);
    return this.reply(type, timeoutMs);
  }

  /** Waits for a reply of kind `type` (received since it was last taken) and takes it. */
  async reply<T extends FromReplica['type']>(type: T, timeoutMs: number): Promise<Reply<T>> {
    await waitUntil(`replica ${this.index}: ${type}`, () => (this.healthy(), this.replies.has(type)), timeoutMs, 5);
    const r = this.replies.get(type) as Reply<T>;
    this.replies.delete(type);
    return r;
  }

  /** Forgets a reply of kind `type` received earlier. */
  forget(type: FromReplica['type']): void {
    this.replies.delete(type);
  }

  stats(hosts = false): Promise<ReplicaStats> {
    return this.ask('stats', { type: 'stats', hosts }, 30_000).then((r) => r.stats);
  }

  async stop(): Promise<void> {
    if (this.exited) return;
    this.send({ type: 'stop' });
    await waitUntil(`replica ${this.index} to exit`, () => this.exited, 10_000, 20).catch(() => {
      this.child.kill('SIGKILL');
    });
    await waitUntil(`replica ${this.index} to exit`, () => this.exited, 5_000, 20).catch(() => undefined);
  }
}

/** Delta and Snapshot applies of the expected version, of the hosts in `of` (all when undefined). */
class KindCounter {
  delta = 0;
  snapshot = 0;

  constructor(private readonly expected: (i: number) => string | undefined, private readonly of?: ReadonlySet<number>) {}

  onApplied(m: Extract<FromWorker, { type: 'applied' }>): void {
    for (let k = 0; k < m.hosts.length; k++) {
      const i = m.hosts[k]!;
      if ((this.of && !this.of.has(i)) || this.expected(i) !== m.versions[k]) continue;
      if (m.deltas[k] === 1) this.delta++;
      else this.snapshot++;
    }
  }

  text(): string {
    return `${this.delta} Delta / ${this.snapshot} Snapshot`;
  }
}

/** Polls an asynchronous condition until true or the deadline; bounded in count and time. */
async function waitFor(what: string, condition: () => Promise<boolean>, timeoutMs: number, pollMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 100_000; i++) {
    if (await condition()) return;
    if (Date.now() > deadline) break;
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

const seconds = (ms: number): string => (ms / 1000).toFixed(2);
const load = (): string => `load average ${loadavg()[0]!.toFixed(1)}`;
/** The least wall time `cpuMs` of work takes on this machine's cores. */
const cpuBound = (cpuMs: number): string => `${seconds(cpuMs / cpus().length)} s of it is CPU on ${cpus().length} cores`;

export async function benchReplicas(o: BenchOptions): Promise<void> {
  const n = Math.max(4, Math.floor(o.agents));
  const r = Math.max(2, Math.floor(o.replicas));
  const workerCount = Math.max(1, Math.min(Math.floor(o.workers), n));
  // As README.md sizes --max-agents: R − 1 replicas carry every agent, plus 20% headroom.
  const cap = Math.ceil((n / (r - 1)) * 1.2);
  await checkOpenFileLimit(cap, 'one replica process');
  const tmp = await mkdtemp(path.join(tmpdir(), 'pcu-bench-replicas-'));
  const replicas: Replica[] = [];
  let pool: WorkerPool | undefined;
  const store = new DesiredStateStore();
  let counter: KindCounter | undefined;
  try {
    const { pki, caKeyFile } = await benchPki(tmp);
    const files = pki.files('controller');
    const world = fanoutWorld(n, o.seed);
    store.setPolicy(world.policy);
    store.setCluster(world.cluster);
    const hostIds = Array.from({ length: n }, (_, i) => hostId(i));
    const version = (i: number): string | undefined => agentVersion(store, hostIds[i]!);
    let prometheusOn = 0;
    /** The version each agent was last waited for: a change waits for the hosts whose version moved. */
    const held = hostIds.map((_, i) => version(i));
    /** Prometheus moves on in this process's store; the tracker then waits for every agent whose version changed. */
    const nextChange = (): Set<number> => {
      prometheusOn++;
      store.setCluster(world.withPrometheusOn(prometheusOn));
      const moved = new Set<number>();
      tracker.expect((i) => {
        const v = version(i);
        if (v === held[i]) return undefined;
        held[i] = v;
        moved.add(i);
        return v;
      });
      return moved;
    };
    const replicaInit = (port: number): Omit<ReplicaInit, 'type'> => ({ hosts: n, seed: o.seed, ...files, port, prometheusOn, maxAgents: cap, maxHandshakes: DEFAULT_MAX_HANDSHAKES });

    // ---- replicas ----
    for (let i = 0; i < r; i++) replicas.push(new Replica(i, replicaInit(0)));
    const ready = await Promise.all(replicas.map((x) => x.reply('ready', 60_000 + 20 * n)));
    const targets = ready.map((x) => `127.0.0.1:${x.port}`);
    log(`${r} replicas listening on ${targets.join(', ')} (connection cap ${cap} each); first compile ${ready.map((x) => x.compileMs.toFixed(0)).join(', ')} ms`);
    const alive = (): Replica[] => replicas.filter((x) => !x.killed);
    const healthy = (): void => {
      for (const x of alive()) x.healthy();
      pool!.healthy();
    };
    const allStats = (): Promise<ReplicaStats[]> => Promise.all(alive().map((x) => x.stats()));
    const cpuOf = async (): Promise<Map<Replica, number>> => new Map((await allStats()).map((s, k) => [alive()[k]!, s.cpuMs]));
    /** CPU ms the replicas alive now used since `before` (a replica started since counts whole). */
    const cpuSince = async (before: Map<Replica, number>): Promise<number> => {
      const now = await cpuOf();
      let total = 0;
      for (const [x, ms] of now) total += ms - (before.get(x) ?? 0);
      return total;
    };
    /** Connections the replicas closed unhandshaked (busy) and that their peers closed while waiting, since `before`. */
    const admissionSince = async (before: { busy: number; abandoned: number }, except?: Replica): Promise<{ busy: number; abandoned: number; text: string }> => {
      const s = (await allStats()).filter((_, k) => alive()[k] !== except);
      const busy = s.reduce((a, x) => a + x.busy, 0) - before.busy;
      const abandoned = s.reduce((a, x) => a + x.abandoned, 0) - before.abandoned;
      return { busy, abandoned, text: `${busy} connections closed busy before their handshake, ${abandoned} left while waiting` };
    };
    const admissionNow = async (except?: Replica): Promise<{ busy: number; abandoned: number }> => admissionSince({ busy: 0, abandoned: 0 }, except);
    const spread = async (): Promise<string> => (await allStats()).map((s, k) => `r${alive()[k]!.index} ${s.open}`).join(', ');
    /**
     * Waits until `done()` like waitUntil, logging every 30 s how many agents the tracker still
     * waits for and why streams ended since `base` (totals taken before); a timeout says both too.
     * Nothing is asked of the workers before the first 30 s (they are busy dialling).
     */
    const waitForAgents = async (what: string, done: () => boolean, timeoutMs: number, base: PoolTotals | undefined): Promise<void> => {
      const state = async (): Promise<string> => `${tracker.remaining} of ${n} agents not there yet, ${load()}; stream losses ${topReasons(base?.reasons ?? {}, (await pool!.totals()).reasons)}`;
      const timer = setInterval(() => void state().then((x) => log(`  … ${what}: ${x}`), () => undefined), 30_000);
      try {
        await waitUntil(what, () => (healthy(), done()), timeoutMs, 5);
      } catch (e) {
        throw new Error(`${(e as Error).message} (${await state().catch(() => 'no worker stats')})`);
      } finally {
        clearInterval(timer);
      }
    };
    const everyAgentInSync = async (): Promise<boolean> => (healthy(), (await allStats()).reduce((a, s) => a + s.inSync, 0) === n);

    // ---- agents ----
    const tracker = new ApplyTracker(n);
    pool = new WorkerPool(n, workerCount, { target: targets[0]!, targets, serverName: SERVER_NAME, caCertFile: pki.caFile, caKeyFile }, tracker, (m) => counter?.onApplied(m));
    const built = await pool.ready(60_000 + 20 * n);
    log(`${workerCount} workers ready: ${n} host certificates issued in ${built.issueMs.toFixed(0)} ms, clients built in ${built.clientsMs.toFixed(0)} ms`);

    // Each replica's memory with no agent connected, after GC (the compile's garbage is gone by now).
    const idle = await Promise.all(replicas.map((x) => x.ask('memory', { type: 'memory' }, 30_000)));

    // ---- cold start ----
    tracker.expect(version);
    let cpu0 = await cpuOf();
    let t0 = wallNow();
    pool.broadcast({ type: 'connect' });
    await waitForAgents('every agent to apply its first state', () => tracker.remaining === 0, 120_000 + 100 * n, undefined);
    const cold = tracker.latencies(t0);
    await waitFor('every replica to see every ack', everyAgentInSync, 60_000);
    const coldAdmission = await admissionNow();
    log(`cold start: ${n} agents over ${r} replicas applied their first state in ${seconds(Math.max(...cold))} s (p50 ${seconds(percentile(cold, 50))} s); agents per replica ${await spread()}; replica CPU ${((await cpuSince(cpu0)) / n).toFixed(2)} ms per agent; ${coldAdmission.busy} connections closed busy, ${coldAdmission.abandoned} left while waiting; ${load()}`);
    report({ scenario: S, name: 'cold start: all agents synced', value: Math.max(...cold) / 1000, unit: 's', note: `${n} agents connecting at once over ${r} replicas, ${pool.atCapacity} refusals at the cap, ${coldAdmission.busy} connections closed busy (max ${DEFAULT_MAX_HANDSHAKES} handshakes per replica)` });

    // ---- memory per agent, per replica ----
    const memory = await Promise.all(replicas.map((x) => x.ask('memory', { type: 'memory' }, 30_000)));
    const perAgentKB = memory.map((m, k) => (m.rss - idle[k]!.rss) / Math.max(1, m.open) / 1024);
    const memoryNote = memory.map((m, k) => `r${k}: ${m.open} agents, ${(idle[k]!.rss / 2 ** 20).toFixed(0)} → ${(m.rss / 2 ** 20).toFixed(0)} MB`).join('; ');
    log(`replica RSS after GC: ${memoryNote}; per agent ${perAgentKB.map((v) => v.toFixed(1)).join(', ')} KB`);

    // ---- changes reaching every agent ----
    const changeLatencies: number[] = [];
    const compileMs: number[] = [];
    const sendLoopMs: number[] = [];
    let agents1 = await pool.totals();
    const changes = Math.min(CHANGES, n - 4);
    cpu0 = await cpuOf();
    let done = 0;
    for (let k = 0; k <= changes; k++) {
      const moved = nextChange();
      for (const x of replicas) x.forget('changed');
      t0 = wallNow();
      for (const x of replicas) x.send({ type: 'change', prometheusOn });
      await waitUntil(`change ${k} to reach every agent`, () => (healthy(), tracker.remaining === 0), 60_000 + 20 * n, 5);
      const lat = tracker.latencies(t0);
      const replies = await Promise.all(replicas.map((x) => x.reply('changed', 30_000)));
      const slowest = replies.reduce((a, b) => (a.compileMs + a.sendLoopMs >= b.compileMs + b.sendLoopMs ? a : b));
      log(`change ${k}${k === 0 ? ' (warm-up, not counted)' : ''}: ${moved.size} hosts; applied everywhere after ${Math.max(...lat).toFixed(0)} ms (p50 ${percentile(lat, 50).toFixed(0)} ms); slowest replica compile ${slowest.compileMs.toFixed(0)} ms + send loop ${slowest.sendLoopMs.toFixed(0)} ms`);
      if (k > 0) {
        changeLatencies.push(...lat);
        compileMs.push(slowest.compileMs);
        sendLoopMs.push(slowest.sendLoopMs);
        done++;
      }
      await waitFor('every replica to see every ack', everyAgentInSync, 30_000);
    }
    const changeCpu = (await cpuSince(cpu0)) / Math.max(1, done + 1);
    const changeAgentsCpu = ((await pool.totals()).cpuMs - agents1.cpuMs) / Math.max(1, done + 1);
    if (done > 0) {
      report({ scenario: S, name: 'change → every agent applied p50', value: percentile(changeLatencies, 50), unit: 'ms', note: `${done} changes × ${n} agents over ${r} replicas (every host's state changes), after 1 warm-up change` });
      report({ scenario: S, name: 'change → every agent applied p99', value: percentile(changeLatencies, 99), unit: 'ms', target: { op: '<=', value: 500 }, note: `from sending the change to every replica; slowest replica's median compile ${percentile(compileMs, 50).toFixed(0)} ms + send loop ${percentile(sendLoopMs, 50).toFixed(0)} ms; per change ${cpuBound(changeCpu + changeAgentsCpu)} (replicas ${changeCpu.toFixed(0)} ms, workers ${changeAgentsCpu.toFixed(0)} ms); ${load()}` });
    }

    // ---- one replica killed during a change ----
    const victim = replicas[0]!;
    const orphanIds = new Set((await victim.stats(true)).hosts ?? []);
    const movedOnKill = nextChange();
    const orphans = new Set(hostIds.flatMap((id, i) => (orphanIds.has(id) && movedOnKill.has(i) ? [i] : [])));
    counter = new KindCounter(version, orphans);
    agents1 = await pool.totals();
    let overflows0 = await listenOverflows();
    let admission0 = await admissionNow(victim);
    cpu0 = await cpuOf();
    victim.killed = true;
    t0 = wallNow();
    victim.child.kill('SIGKILL');
    for (const x of alive()) x.send({ type: 'change', prometheusOn });
    const orphansDone = (): boolean => [...orphans].every((i) => tracker.appliedAt[i]! > 0);
    await waitForAgents('the killed replica\'s agents to apply the change elsewhere', orphansDone, 60_000 + 50 * n, agents1);
    const failover = [...orphans].map((i) => tracker.appliedAt[i]! - t0);
    const killCpu = await cpuSince(cpu0);
    let agents2 = await pool.totals();
    let overflows1 = await listenOverflows();
    const kinds = counter.text();
    const killAdmission = await admissionSince(admission0);
    const killWork = `${cpuBound(killCpu + agents2.cpuMs - agents1.cpuMs)} (replicas ${killCpu.toFixed(0)} ms, workers ${(agents2.cpuMs - agents1.cpuMs).toFixed(0)} ms)`;
    await waitUntil('every agent to apply the change', () => (healthy(), tracker.remaining === 0), 60_000 + 20 * n, 5);
    await waitFor('the other replicas to see every ack', everyAgentInSync, 60_000);
    log(`replica 0 SIGKILLed with ${orphans.size} agents, a change sent to the others at once: they applied it elsewhere after ${seconds(Math.max(...failover))} s (p50 ${seconds(percentile(failover, 50))} s; ${kinds}); agents per replica now ${await spread()}; ${pool.atCapacity} refusals at the cap so far; stream losses ${topReasons(agents1.reasons, agents2.reasons)}; ${overflowText(overflows0, overflows1)}; ${killAdmission.text} (survivors; the killed replica's not counted); until then ${killWork}; ${load()}`);
    report({ scenario: S, name: 'replica killed → its agents applied elsewhere', value: Math.max(...failover) / 1000, unit: 's', target: { op: '<=', value: 10 }, note: `SIGKILL of 1 of ${r} replicas (${orphans.size} agents) during a change; p50 ${seconds(percentile(failover, 50))} s; ${kinds}; ${killWork}; agent backoff defaults` });

    // ---- the killed replica returns, then every stream drops at once ----
    const back = new Replica(0, replicaInit(ready[0]!.port));
    replicas[0] = back;
    await back.reply('ready', 60_000 + 20 * n);
    nextChange();
    counter = new KindCounter(version);
    agents1 = await pool.totals();
    const atCap0 = pool.atCapacity;
    overflows0 = await listenOverflows();
    admission0 = await admissionNow();
    cpu0 = await cpuOf();
    t0 = wallNow();
    const restarted = await Promise.all(replicas.map((x) => x.ask('restarted', { type: 'restart', prometheusOn }, 60_000 + 20 * n)));
    await waitForAgents('every agent to resync after every stream dropped', () => tracker.remaining === 0, 120_000 + 100 * n, agents1);
    const storm = tracker.latencies(t0);
    const stormCpu = await cpuSince(cpu0);
    agents2 = await pool.totals();
    overflows1 = await listenOverflows();
    const stormWork = `${cpuBound(stormCpu + agents2.cpuMs - agents1.cpuMs)} (replicas ${(stormCpu / n).toFixed(2)} ms per agent, workers ${((agents2.cpuMs - agents1.cpuMs) / n).toFixed(2)} ms)`;
    await waitFor('every replica to see every ack', everyAgentInSync, 60_000);
    const reconnects = agents2.disconnects - agents1.disconnects;
    const stormAdmission = await admissionSince(admission0);
    log(`every stream dropped (replica 0 back on :${ready[0]!.port}; every replica restarted its server, down ${restarted.map((x) => x.downMs.toFixed(0)).join(', ')} ms) with a change: every agent applied it after ${seconds(Math.max(...storm))} s (p50 ${seconds(percentile(storm, 50))} s; ${counter.text()}); agents per replica ${await spread()}; ${pool.atCapacity - atCap0} refusals at the cap; ${reconnects} stream losses (${topReasons(agents1.reasons, agents2.reasons)}); ${overflowText(overflows0, overflows1)}; ${stormAdmission.text}; ${stormWork}; ${load()}`);
    report({ scenario: S, name: 'every agent reconnecting at once: all resynced', value: Math.max(...storm) / 1000, unit: 's', target: { op: '<=', value: 20 }, note: `every replica dropped every stream, a change meanwhile; p50 ${seconds(percentile(storm, 50))} s; ${counter.text()}; ${stormAdmission.busy} closed busy; ${stormWork}; agent backoff defaults` });
    counter = undefined;

    // ---- the floor of the memory figure ----
    await pool.stop();
    await Promise.all(replicas.map((x) => x.stop()));
    // As many sessions as the busiest replica served (the per-connection cost falls with the count).
    const floor = await measureTlsFloor({ ...files, caKeyFile }, Math.max(...memory.map((m) => m.open)), SERVER_NAME);
    const ratios = perAgentKB.map((v) => v / floor.rssPerConnKB);
    const worst = Math.max(...ratios);
    log(`bare node:http2 mTLS server, ${floor.sessions} idle sessions: RSS ${floor.rssPerConnKB.toFixed(1)} KB per connection, CPU ${floor.cpuPerConnMs.toFixed(2)} ms per session (the replicas' in the storm: ${(stormCpu / n).toFixed(2)} ms per agent, ${(stormCpu / n / floor.cpuPerConnMs).toFixed(1)}x)`);
    report({ scenario: S, name: 'replica CPU per agent in the storm / node:http2 floor', value: stormCpu / n / floor.cpuPerConnMs, unit: 'x', note: `context: the replicas' CPU per agent resynced (${(stormCpu / n).toFixed(2)} ms: handshake, identity, Hello, Snapshot) over a bare node:http2 mTLS server's CPU per session it accepted (${floor.cpuPerConnMs.toFixed(2)} ms: handshake and HTTP/2 setup, ${floor.sessions} sessions, same run)` });
    report({ scenario: S, name: 'replica RSS per agent (worst replica)', value: Math.max(...perAgentKB), unit: 'KB', note: `after GC, every agent in sync; ${memoryNote}` });
    report({ scenario: S, name: 'replica RSS per agent / node:http2 floor', value: worst, unit: 'x', target: { op: '<=', value: 1.5 }, note: `worst of ${ratios.map((x) => x.toFixed(2)).join(', ')}; floor ${floor.rssPerConnKB.toFixed(1)} KB per idle mTLS session (${floor.sessions}, same run)` });
    // The same floor with what an agent's session carries: one open stream, sent as many bytes as
    // the busiest replica's sessions wrote on average (the idle session's own frames counted).
    const busiest = memory.reduce((a, b) => (b.sessions > a.sessions ? b : a));
    const agentBytes = busiest.bytesWritten / Math.max(1, busiest.sessions);
    const carried = await measureTlsFloor({ ...files, caKeyFile }, busiest.open, SERVER_NAME, Math.max(1, agentBytes - floor.bytesWrittenPerConn));
    const carriedRatios = perAgentKB.map((v) => v / carried.rssPerConnKB);
    log(`bare node:http2 mTLS server, ${carried.sessions} sessions each with one open stream (${carried.bytesWrittenPerConn.toFixed(0)} B written per session; the replicas' agent sessions ${agentBytes.toFixed(0)} B): RSS ${carried.rssPerConnKB.toFixed(1)} KB per connection`);
    report({ scenario: S, name: 'replica RSS per agent / node:http2 floor with one stream', value: Math.max(...carriedRatios), unit: 'x', note: `context, no target: worst of ${carriedRatios.map((x) => x.toFixed(2)).join(', ')}; floor ${carried.rssPerConnKB.toFixed(1)} KB per mTLS session with one open stream that was sent ${carried.bytesWrittenPerConn.toFixed(0)} B (the replicas' agent sessions had been sent ${agentBytes.toFixed(0)} B each; ${carried.sessions} sessions, same run)` });
  } finally {
    await pool?.stop();
    await Promise.all(replicas.map((x) => x.stop()));
    store.close();
    await rm(tmp, { recursive: true, force: true });
  }
}
