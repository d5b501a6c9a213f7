/**
 * The controller's one source of truth for what every host must enforce.
 *
 * Contract: it holds the last good Policy and the current ClusterState; whenever either changes
 * it recompiles (pure `compile`) and tells subscribers which hosts' versions changed. Readers get
 * immutable DesiredStates. It never sees a broken policy: callers hand it only parsed, valid ones
 * (a failed reload keeps the previous policy upstream). It does no I/O and is single-threaded
 * like everything in Node, so there is no locking.
 */
import type { ClusterState } from '../inventory/cluster-state.js';
import type { Policy } from '../policy/policy-model.js';
import { compile, type CompileReport } from '../compile/compile.js';
import type { DesiredState } from '../compile/desired-state.js';

export type StatesListener = (changedHostIds: readonly string[]) => void;

export class DesiredStateStore {
  private policy: Policy | undefined;
  private cluster: ClusterState | undefined;
  private states: ReadonlyMap<string, DesiredState> = new Map();
  private compileReports: readonly CompileReport[] = [];
  private readonly listeners = new Set<StatesListener>();
  private generation = 0;

  setPolicy(policy: Policy): readonly string[] {
    this.policy = policy;
    return this.recompile();
  }

  setCluster(cluster: ClusterState): readonly string[] {
    this.cluster = cluster;
    return this.recompile();
  }

  /** Both inputs are known, so states are meaningful. */
  ready(): boolean {
    return this.policy !== undefined && this.cluster !== undefined;
  }

  current(hostId: string): DesiredState | undefined {
    return this.states.get(hostId);
  }

  hostIds(): readonly string[] {
    return [...this.states.keys()];
  }

  reports(): readonly CompileReport[] {
    return this.compileReports;
  }

  /** Increases on every recompile that changed at least one host. */
  revision(): number {
    return this.generation;
  }

  subscribe(listener: StatesListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private recompile(): readonly string[] {
    if (!this.policy || !this.cluster) return [];
    const result = compile(this.policy, this.cluster);
    const changed: string[] = [];
    for (const [hostId, state] of result.states) {
      if (this.states.get(hostId)?.version !== state.version) changed.push(hostId);
    }
    for (const hostId of this.states.keys()) {
      if (!result.states.has(hostId)) changed.push(hostId);
    }
    this.states = result.states;
    this.compileReports = result.reports;
    if (changed.length > 0) {
      this.generation++;
      for (const listener of this.listeners) listener(changed);
    }
    return changed;
  }
}
