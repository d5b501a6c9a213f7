/**
 * The controller's one source of truth for what every host must enforce.
 *
 * Contract: it holds the last good Policy and the current ClusterState; whenever either changes
 * it recompiles and tells subscribers which hosts' versions changed (or which hosts left). Readers
 * get immutable DesiredStates. It never sees a broken policy: callers hand it only parsed, valid
 * ones (a failed reload keeps the previous policy upstream). It does no I/O and is single-threaded
 * like everything in Node, so there is no locking.
 *
 * Compilation is incremental (src/compile/incremental-compiler.ts): a policy change recompiles
 * every host; a cluster change recomputes only the hosts it can affect, with results identical to
 * a full `compile`. Bursts coalesce: `queueCluster` keeps only the newest cluster and applies it
 * once, `coalesceMs` after the first change of the burst (default 20 ms), so a deployment that
 * moves fifty tasks costs one recompute and one notification. `setCluster` applies at once.
 */
import type { ClusterState } from '../inventory/cluster-state.js';
import type { Policy } from '../policy/policy-model.js';
import type { CompileReport } from '../compile/compile.js';
import type { DesiredState } from '../compile/desired-state.js';
import { IncrementalCompiler, type IncrementalResult } from '../compile/incremental-compiler.js';

export type StatesListener = (changedHostIds: readonly string[], info: RecomputeInfo) => void;

export interface DesiredStateStoreOptions {
  /** Window in which queued cluster changes are merged into one recompute. Default 20 ms. */
  readonly coalesceMs?: number;
}

export interface StoreStats {
  /** Recomputes run (policy or cluster), including ones that changed nothing. */
  readonly recomputes: number;
  /** Host states recomputed in total (dirty hosts). */
  readonly hostsRecomputed: number;
  /** Cluster changes merged into an already queued one. */
  readonly coalesced: number;
  /** Wall time of the last recompute and of all of them, in milliseconds. */
  readonly lastDurationMs: number | null;
  readonly totalDurationMs: number;
}

/** What a listener learns of each recompute that changed at least one host. */
export interface RecomputeInfo {
  readonly trigger: 'policy' | 'cluster';
  readonly durationMs: number;
}

export class DesiredStateStore {
  private policy: Policy | undefined;
  private cluster: ClusterState | undefined;
  private compiler: IncrementalCompiler | undefined;
  private readonly listeners = new Set<StatesListener>();
  private generation = 0;
  private queued: ClusterState | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly coalesceMs: number;
  private counters = { recomputes: 0, hostsRecomputed: 0, coalesced: 0, lastDurationMs: null as number | null, totalDurationMs: 0 };

  constructor(options: DesiredStateStoreOptions = {}) {
    this.coalesceMs = options.coalesceMs ?? 20;
  }

  setPolicy(policy: Policy): readonly string[] {
    this.policy = policy;
    return this.timed('policy', () => (this.compiler ? this.publish(this.compiler.setPolicy(policy)) : this.start()));
  }

  /** Applies `cluster` now (any queued cluster is superseded). */
  setCluster(cluster: ClusterState): readonly string[] {
    this.cancelQueued();
    this.cluster = cluster;
    return this.timed('cluster', () => (this.compiler ? this.publish(this.compiler.applyClusterChange(cluster)) : this.start()));
  }

  /** Applies `cluster` after the coalescing window; later calls in the window replace it. */
  queueCluster(cluster: ClusterState): void {
    if (this.queued !== undefined) this.counters.coalesced++;
    this.queued = cluster;
    this.timer ??= setTimeout(() => this.flush(), this.coalesceMs);
  }

  /** Applies a queued cluster now, if any; returns the changed hosts. */
  flush(): readonly string[] {
    const next = this.queued;
    this.cancelQueued();
    return next === undefined ? [] : this.setCluster(next);
  }

  /** Drops a queued cluster and its timer (shutdown). */
  close(): void {
    this.cancelQueued();
  }

  /** Both inputs are known, so states are meaningful. */
  ready(): boolean {
    return this.policy !== undefined && this.cluster !== undefined;
  }

  current(hostId: string): DesiredState | undefined {
    return this.compiler?.state(hostId);
  }

  hostIds(): readonly string[] {
    return this.compiler?.hostIds() ?? [];
  }

  /** The cluster the current states were compiled from (undefined before the first). */
  currentCluster(): ClusterState | undefined {
    return this.cluster;
  }

  reports(): readonly CompileReport[] {
    return this.compiler?.reports() ?? [];
  }

  /** Increases on every recompile that changed at least one host. */
  revision(): number {
    return this.generation;
  }

  stats(): StoreStats {
    return { ...this.counters };
  }

  subscribe(listener: StatesListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private cancelQueued(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.queued = undefined;
  }

  /** Runs one recompute, times it, and notifies listeners when hosts changed. */
  private timed(trigger: RecomputeInfo['trigger'], recompute: () => readonly string[]): readonly string[] {
    const started = performance.now();
    const changed = recompute();
    if (!this.compiler) return changed;
    const durationMs = Math.round((performance.now() - started) * 1000) / 1000;
    this.counters.recomputes++;
    this.counters.lastDurationMs = durationMs;
    this.counters.totalDurationMs += durationMs;
    if (changed.length > 0) {
      this.generation++;
      for (const listener of [...this.listeners]) listener(changed, { trigger, durationMs });
    }
    return changed;
  }

  private start(): readonly string[] {
    if (!this.policy || !this.cluster) return [];
    this.compiler = new IncrementalCompiler(this.policy, this.cluster);
    this.counters.hostsRecomputed += this.compiler.hostIds().length;
    return this.compiler.hostIds();
  }

  private publish(result: IncrementalResult): readonly string[] {
    this.counters.hostsRecomputed += result.recomputed;
    return [...result.changed.keys(), ...result.removed];
  }
}
