/**
 * The simulated agents of the fanout benchmarks: `workerCount` child processes (fanout-worker.ts)
 * hosting agents [0, n) in slices, driven over IPC (fanout-protocol.ts), and the bookkeeping of
 * which agent applied the version expected of it and when (ApplyTracker).
 *
 * A pool fails fast: `healthy()` (called by every wait) throws once a worker died or an agent was
 * rejected for anything but a replica's connection cap. `stop()` asks every worker to close its
 * clients and exit, and kills (by its own pid) one that does not.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { isAtCapacity } from '../../src/grpc/agent-cap.js';
import { agentView, type WireFeatures } from '../../src/grpc/agent-view.js';
import type { StateSource } from '../../src/grpc/state-source.js';
import type { FromWorker, ToWorker, WorkerInit, WorkerStats } from './fanout-protocol.js';
import { waitUntil } from './stats.js';
import { hostId } from './synthetic-cluster.js';

/** What the simulated agents' Hello announces: no egress support, no per-group modes. */
const SIMULATED_AGENT: WireFeatures = { egress: false, groupModes: false };

/**
 * The version a simulated agent on `hostId` must reach: the controller's state as such an agent
 * is sent it (src/grpc/agent-view.ts: the egress and audit kinds stripped, so its own version).
 */
export function agentVersion(source: StateSource, hostId: string): string | undefined {
  const state = source.current(hostId);
  return state === undefined ? undefined : agentView(state, SIMULATED_AGENT).version;
}

/** Which agents have applied the version expected of them, and when. */
export class ApplyTracker {
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

export interface PoolTotals {
  readonly cpuMs: number;
  readonly disconnects: number;
  readonly rss: number;
  readonly reasons: Record<string, number>;
}

/** `count× reason` of the most frequent stream-end reasons between two totals. */
export function topReasons(before: Readonly<Record<string, number>>, after: Readonly<Record<string, number>>, limit = 3): string {
  const rows = Object.entries(after)
    .map(([reason, count]) => [reason, count - (before[reason] ?? 0)] as const)
    .filter(([, count]) => count > 0)
    .sort((a, b) => b[1] - a[1]);
  return rows.length === 0 ? 'none' : rows.slice(0, limit).map(([reason, count]) => `${count}× ${reason}`).join('; ');
}

export class WorkerPool {
  private readonly workers: Worker[] = [];
  readonly rejections: string[] = [];
  /** Refusals by a replica at its connection cap (the agent moves on: not a failure). */
  atCapacity = 0;

  /**
   * Forks the workers; worker w hosts agents [w·⌈n/count⌉, …). `init` gives the rest of each
   * worker's init message; `onApplied` sees every batch of applies (after `tracker`).
   */
  constructor(
    n: number,
    workerCount: number,
    init: Omit<WorkerInit, 'type' | 'first' | 'count'>,
    readonly tracker: ApplyTracker,
    onApplied?: (m: Extract<FromWorker, { type: 'applied' }>) => void,
  ) {
    const perWorker = Math.ceil(n / workerCount);
    const workerScript = fileURLToPath(new URL('./fanout-worker.js', import.meta.url));
    for (let w = 0; w < workerCount; w++) {
      const first = w * perWorker;
      const count = Math.max(0, Math.min(perWorker, n - first));
      const child = fork(workerScript, [], { execArgv: ['--max-old-space-size=4096'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      const worker: Worker = { index: w, child, ready: undefined, stats: undefined, stopped: undefined, exited: false };
      this.workers.push(worker);
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
            onApplied?.(m);
            return;
          case 'rejected':
            if (isAtCapacity(m.reason)) this.atCapacity++;
            else if (this.rejections.length < 20) this.rejections.push(`${hostId(m.host)}: ${m.reason}`);
            return;
          case 'stats':
            worker.stats = m.stats;
            return;
          case 'stopped':
            worker.stopped = m.stats;
            return;
          case 'error':
            this.rejections.push(`worker ${w}: ${m.message}`);
            return;
        }
      });
      child.send({ type: 'init', ...init, first, count } satisfies ToWorker);
    }
  }

  get size(): number {
    return this.workers.length;
  }

  /** Fails fast when a worker died or an agent was rejected. */
  healthy(): void {
    const dead = this.workers.find((w) => w.exited && !w.stopped);
    if (dead) throw new Error(`worker ${dead.index} exited unexpectedly`);
    if (this.rejections.length > 0) throw new Error(`agents rejected or worker errors: ${this.rejections.slice(0, 3).join('; ')}`);
  }

  broadcast(m: ToWorker): void {
    for (const w of this.workers) if (!w.exited && w.child.connected) w.child.send(m);
  }

  /** Waits until every worker issued its certificates and built its clients. */
  async ready(timeoutMs: number): Promise<{ issueMs: number; clientsMs: number }> {
    await waitUntil('workers to issue certificates and build clients', () => (this.healthy(), this.workers.every((w) => w.ready)), timeoutMs, 10);
    return { issueMs: Math.max(...this.workers.map((w) => w.ready!.issueMs)), clientsMs: Math.max(...this.workers.map((w) => w.ready!.clientsMs)) };
  }

  /** Totals over the workers, asked for now: CPU ms, stream losses, RSS. */
  async totals(): Promise<PoolTotals> {
    for (const w of this.workers) w.stats = undefined;
    this.broadcast({ type: 'stats' });
    await waitUntil('worker stats', () => (this.healthy(), this.workers.every((w) => w.stats)), 30_000, 5);
    const all = this.workers.map((w) => w.stats!);
    const reasons: Record<string, number> = {};
    for (const x of all) for (const [reason, count] of Object.entries(x.reasons)) reasons[reason] = (reasons[reason] ?? 0) + count;
    return { cpuMs: all.reduce((a, x) => a + x.cpuMs, 0), disconnects: all.reduce((a, x) => a + x.disconnects, 0), rss: all.reduce((a, x) => a + x.rssBytes, 0), reasons };
  }

  /** Asks every worker to close its clients and exit; kills (by its own pid) one that does not. */
  async stop(): Promise<void> {
    const workers = this.workers;
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
}
