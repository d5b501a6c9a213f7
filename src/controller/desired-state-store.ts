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
 *
 * A policy is compiled into a NEW compiler and swapped in only when that succeeded: a policy
 * over `maxMembers` (PolicyLimitError, src/policy/policy-limits.ts) leaves the store exactly as
 * it was, serving the last good policy. `loadPolicy` (the controller's reload) builds that
 * compiler in slices of about `sliceMs` of work, yielding to the event loop between them, so the
 * gRPC streams, pings and the status endpoint keep being served during a large recompile; cluster
 * changes arriving meanwhile go to the live compiler and are applied to the new one before the
 * swap. Only the newest of overlapping loads is applied. `setPolicy` is the same in one go.
 *
 * Input stamp (src/grpc/input-stamp.ts; `stamp()`, read by the Sync service): the policy side is
 * the stamp given with the policy (the Consul ModifyIndex of its pointer; 0 for a directory),
 * taken in the same step as the policy's compiler is swapped in, so a state is never sent with
 * the stamp of a policy it was not compiled from; `setPolicyStamp` moves it for a policy named
 * again without a recompile. The cluster side and the last Consul read come from `stampInputs`
 * (the controller wires its feeds in).
 */
import type { ClusterState } from '../inventory/cluster-state.js';
import type { Policy } from '../policy/policy-model.js';
import type { CompileReport } from '../compile/compile.js';
import type { DesiredState } from '../compile/desired-state.js';
import type { StateDelta } from '../compile/state-delta.js';
import { IncrementalCompiler, type IncrementalResult } from '../compile/incremental-compiler.js';
import { PolicyLimitError } from '../policy/policy-limits.js';
import type { SourceStamp } from '../grpc/state-source.js';

export type StatesListener = (changedHostIds: readonly string[], info: RecomputeInfo) => void;

export interface DesiredStateStoreOptions {
  /** Window in which queued cluster changes are merged into one recompute. Default 20 ms. */
  readonly coalesceMs?: number;
  /** Bound on the allow-set members of a policy's compile (PolicyLimits.maxMembers). Default: none. */
  readonly maxMembers?: number;
  /** Work between two yields of `loadPolicy`, in milliseconds. Default 10. */
  readonly sliceMs?: number;
}

/** Lets other callbacks run (the event loop's I/O included) before it resolves. */
const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

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
  private readonly maxMembers: number | undefined;
  private readonly sliceMs: number;
  /** Increases with every policy load; a load applies only if it is still the newest. */
  private loads = 0;
  /** Called when the first compile (policy before cluster) hits a limit and the policy is dropped. */
  onPolicyRejected: ((error: PolicyLimitError) => void) | undefined;
  private policyStamp = 0;
  /** Where the cluster side of the stamp and the last Consul policy read come from (0 / none: not comparable). */
  stampInputs: { readonly cluster?: () => number; readonly consulRead?: () => SourceStamp['consulRead'] } = {};
  private counters = { recomputes: 0, hostsRecomputed: 0, coalesced: 0, lastDurationMs: null as number | null, totalDurationMs: 0 };

  constructor(options: DesiredStateStoreOptions = {}) {
    this.coalesceMs = options.coalesceMs ?? 20;
    this.maxMembers = options.maxMembers;
    this.sliceMs = options.sliceMs ?? 10;
  }

  /** Compiles and applies `policy` now; throws PolicyLimitError, keeping the last good policy. */
  setPolicy(policy: Policy, policyStamp = 0): readonly string[] {
    this.loads++;
    if (!this.cluster) return this.remember(policy, policyStamp);
    const cluster = this.cluster;
    const started = performance.now();
    const next = new IncrementalCompiler(policy, cluster, this.options());
    return this.swap(policy, policyStamp, next, cluster, started);
  }

  /**
   * `setPolicy` without blocking the event loop: the compile runs in slices (see the header).
   * Resolves to the changed hosts, or undefined when a newer load superseded this one (then
   * nothing of it was applied); rejects with PolicyLimitError, keeping the last good policy.
   */
  async loadPolicy(policy: Policy, policyStamp = 0): Promise<readonly string[] | undefined> {
    const load = ++this.loads;
    if (!this.cluster) return this.remember(policy, policyStamp);
    const cluster = this.cluster;
    const started = performance.now();
    const steps = IncrementalCompiler.building(policy, cluster, this.options());
    let sliceStart = performance.now();
    for (;;) {
      const r = steps.next();
      if (r.done) return load === this.loads ? this.swap(policy, policyStamp, r.value, cluster, started) : undefined;
      if (performance.now() - sliceStart >= this.sliceMs) {
        await turn();
        if (load !== this.loads) return undefined;
        sliceStart = performance.now();
      }
    }
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

  /** A good policy is held (compiled, or waiting for the first cluster). */
  hasPolicy(): boolean {
    return this.policy !== undefined;
  }

  /** Both inputs are known, so states are meaningful. */
  ready(): boolean {
    return this.policy !== undefined && this.cluster !== undefined;
  }

  current(hostId: string): DesiredState | undefined {
    return this.compiler?.state(hostId);
  }

  deltaFrom(hostId: string, baseVersion: string): StateDelta | undefined {
    return this.compiler?.deltaFrom(hostId, baseVersion);
  }

  hostIds(): readonly string[] {
    return this.compiler?.hostIds() ?? [];
  }

  /** The good policy held (compiled, or waiting for the first cluster); undefined before the first. */
  currentPolicy(): Policy | undefined {
    return this.policy;
  }

  /** The cluster the current states were compiled from (undefined before the first). */
  currentCluster(): ClusterState | undefined {
    return this.cluster;
  }

  reports(): readonly CompileReport[] {
    return this.compiler?.reports() ?? [];
  }

  /** What the current states were compiled from (src/grpc/input-stamp.ts; see the header). */
  stamp(): SourceStamp {
    const cluster = this.cluster === undefined ? 0 : (this.stampInputs.cluster?.() ?? 0);
    return { policy: this.policy === undefined ? 0 : this.policyStamp, cluster, consulRead: this.stampInputs.consulRead?.() };
  }

  /** The policy in force was named again (same content) with this stamp: no recompile. */
  setPolicyStamp(policyStamp: number): void {
    this.policyStamp = policyStamp;
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
  private timed(trigger: RecomputeInfo['trigger'], recompute: () => readonly string[], started = performance.now()): readonly string[] {
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

  private options(): { maxMembers?: number } {
    return this.maxMembers === undefined ? {} : { maxMembers: this.maxMembers };
  }

  /** A policy before any cluster: compiled (and checked) when the first cluster arrives. */
  private remember(policy: Policy, policyStamp: number): readonly string[] {
    this.policy = policy;
    this.policyStamp = policyStamp;
    return [];
  }

  /** Makes `next` (built from `builtFrom`) the live compiler and notifies the hosts that changed. */
  private swap(policy: Policy, policyStamp: number, next: IncrementalCompiler, builtFrom: ClusterState, started: number): readonly string[] {
    if (this.cluster !== builtFrom) next.applyClusterChange(this.cluster!);
    const old = this.compiler;
    this.policy = policy;
    this.policyStamp = policyStamp;
    this.compiler = next;
    return this.timed('policy', () => {
      this.counters.hostsRecomputed += next.hostIds().length;
      if (!old) return next.hostIds();
      const changed = next.hostIds().filter((id) => old.state(id)?.version !== next.state(id)!.version);
      return [...changed, ...old.hostIds().filter((id) => next.state(id) === undefined)];
    }, started);
  }

  /** The first compile, when both inputs are known; a policy over a limit is dropped and reported. */
  private start(): readonly string[] {
    if (!this.policy || !this.cluster) return [];
    try {
      this.compiler = new IncrementalCompiler(this.policy, this.cluster, this.options());
    } catch (e) {
      if (!(e instanceof PolicyLimitError)) throw e;
      this.policy = undefined;
      this.onPolicyRejected?.(e);
      return [];
    }
    this.counters.hostsRecomputed += this.compiler.hostIds().length;
    return this.compiler.hostIds();
  }

  private publish(result: IncrementalResult): readonly string[] {
    this.counters.hostsRecomputed += result.recomputed;
    return [...result.changed.keys(), ...result.removed];
  }
}
