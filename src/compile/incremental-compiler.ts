/**
 * The incremental compiler: `compile(policy, cluster)` kept up to date as the cluster changes,
 * recomputing only the hosts whose state can change, and patching rather than recomputing the
 * hosts that only see a source set change.
 *
 * Contract
 *  - After `setPolicy(p)` and any sequence of `applyClusterChange(c)`, `states()` equals
 *    `compile(p, c).states` (same sets, same versions) and `reports()` equals its reports.
 *  - `applyClusterChange` returns `changed` (hosts whose state version changed or that appeared)
 *    and `removed` (hosts that left the cluster). `setPolicy` recompiles everything (policy edits
 *    are rare) and reports changes the same way.
 *  - Inputs are immutable values (ClusterState says so); an unchanged task, host or app may keep
 *    its object identity between calls, which the input diff exploits; an app whose definition
 *    changed must be a new object (cluster-index.ts).
 *  - `compile` (compile.ts) is the same reading of the inputs (cluster-index.ts) and the same
 *    per-host code (host-claims.ts) without the bookkeeping below: one compile path.
 *
 * Two kinds of affected hosts:
 *  - "dirty" hosts are recomputed from their tasks (host-claims.ts): those the input diff names
 *    (ClusterIndex.update: hosts whose tasks, or whose tasks' apps, changed; new hosts).
 *  - when a group's source-address set changed (a host gained its first or lost its last task of
 *    the group, or such a host's addresses changed, or an app joined/left the group), every live
 *    resolution (ResolutionIndex: PortMatch key → set) reading that group is re-resolved once; a
 *    set that really changed is diffed into source texts to add and remove, and every other host
 *    using it gets those members patched into its sorted lists and a new version (host-patch.ts);
 *    a port-conflict claim gets the intersection of its owners' sets, patched the same way.
 *
 * Cost per change: the input diff (cluster-index.ts: O(tasks) identity comparisons when only
 * tasks moved, else O(apps + tasks + hosts) of map work), group sets rebuilt for touched groups,
 * one resolution per affected distinct key, a full recompute of dirty hosts, and for patched hosts
 * a binary-search patch and an O(changed claims) version update (state-version.ts). Pure: no I/O, no clock. Not reentrant (single-threaded use,
 * like the rest of the controller).
 */
import type { ClusterState } from '../inventory/cluster-state.js';
import type { Policy } from '../policy/policy-model.js';
import type { AddressSet } from './address-set.js';
import { ClusterIndex, runSteps } from './cluster-index.js';
import { sortedUniqueReports, type CompileReport } from './compile-report.js';
import type { DesiredState } from './desired-state.js';
import { EgressIndex, egressInput } from './egress.js';
import { sourceTextDiff, SourceTexts } from './emit-members.js';
import { MemberBudget } from '../policy/policy-limits.js';
import { hostClaims, hostMode, hostStates, hostVersions, policyConstants, type HostClaim, type PolicyConstants, type PortMatch } from './host-claims.js';
import { claimsPatch, claimUse, HostPatches, newPatch, NO_EDITS, patchClaim, type ClaimUse, type Patch } from './host-patch.js';
import { ResolutionIndex } from './resolution-index.js';
import type { StateDelta } from './state-delta.js';

export interface IncrementalOptions {
  /**
   * Bound on the allow-set members of a full compile (construction, setPolicy), as `compile`'s
   * option: a PolicyLimitError once over, after which the instance must be dropped. Cluster
   * changes are not bounded (they must not be refused half-way). Default: no limit.
   */
  readonly maxMembers?: number;
}

/** Hosts whose members are emitted with one MemberEmitter when building in steps. */
const EMIT_BATCH = 8;

export interface IncrementalResult {
  /** Hosts whose state is new or has a new version, with that state. */
  readonly changed: ReadonlyMap<string, DesiredState>;
  /** Hosts that left the cluster (their state is gone). */
  readonly removed: readonly string[];
  /** How many hosts were recomputed (dirty) or patched, for metrics and tests. */
  readonly recomputed: number;
}

function newEgress(index: ClusterIndex): EgressIndex | undefined {
  return index.policy.defaults.egress ? new EgressIndex(index.policy, (name) => index.networkSource(name)) : undefined;
}

const EMPTY_CLUSTER: ClusterState = { hosts: [], apps: [], tasks: [] };
/** Passed by `building` to the constructor: no update yet (the generator runs it). */
const DEFERRED: ClusterState = { hosts: [], apps: [], tasks: [] };

export class IncrementalCompiler {
  private index: ClusterIndex;
  private constants: PolicyConstants;
  private resolutions = new ResolutionIndex<ClaimUse>();
  private claimsOf = new Map<string, readonly ClaimUse[]>();
  private stateOf = new Map<string, DesiredState>();
  private readonly sourceTexts = new SourceTexts();
  /** Deltas of patched hosts and every host's version sum (host-patch.ts, state-version.ts). */
  private readonly patched = new HostPatches(hostVersions(this.sourceTexts));
  private conflictReports = new Map<string, readonly CompileReport[]>();
  private egressReports = new Map<string, readonly CompileReport[]>();
  private cachedReports: readonly CompileReport[] | undefined;

  private readonly maxMembers: number;
  /** Egress lists (egress.ts), when the policy has egress on. */
  private egress: EgressIndex | undefined;

  constructor(policy: Policy, cluster: ClusterState = EMPTY_CLUSTER, options: IncrementalOptions = {}) {
    this.index = new ClusterIndex(policy);
    this.constants = policyConstants(policy);
    this.egress = newEgress(this.index);
    this.maxMembers = options.maxMembers ?? Infinity;
    if (cluster !== DEFERRED) runSteps(this.steps(cluster, true, Infinity));
  }

  /**
   * `new IncrementalCompiler(policy, cluster, options)` in steps: the generator yields between
   * hosts (and between batches of hosts when their members are emitted), so a caller can spread
   * a large compile over several event-loop turns; its return value is the compiler. Equal
   * states to the constructor's. A PolicyLimitError is thrown out of `next()`.
   */
  static *building(policy: Policy, cluster: ClusterState, options: IncrementalOptions = {}): Generator<void, IncrementalCompiler> {
    const compiler = new IncrementalCompiler(policy, DEFERRED, options);
    yield* compiler.steps(cluster, true, EMIT_BATCH);
    return compiler;
  }

  /** Full recompile under a new policy. */
  setPolicy(policy: Policy): IncrementalResult {
    const cluster = this.index.cluster;
    this.index = new ClusterIndex(policy);
    this.constants = policyConstants(policy);
    this.egress = newEgress(this.index);
    return runSteps(this.steps(cluster, true, Infinity));
  }

  /** The cluster changed; apps whose definition changed must be new App objects (see the header). */
  applyClusterChange(next: ClusterState): IncrementalResult {
    return runSteps(this.steps(next, false, Infinity));
  }

  currentPolicy(): Policy {
    return this.index.policy;
  }

  currentCluster(): ClusterState {
    return this.index.cluster;
  }

  /** One state per host, in sorted host-id order (as `compile`). */
  states(): ReadonlyMap<string, DesiredState> {
    return new Map([...this.stateOf.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  }

  state(hostId: string): DesiredState | undefined {
    return this.stateOf.get(hostId);
  }

  /**
   * The delta to the host's current state from its state of version `baseVersion`, when the
   * current one was patched directly from that one (O(edits), no list comparison); otherwise
   * undefined, and the caller diffs the states (diffStates).
   */
  deltaFrom(hostId: string, baseVersion: string): StateDelta | undefined {
    const d = this.patched.delta(hostId);
    return d && d.baseVersion === baseVersion && d.version === this.stateOf.get(hostId)?.version ? d : undefined;
  }

  hostIds(): string[] {
    return [...this.stateOf.keys()].sort();
  }

  reports(): readonly CompileReport[] {
    if (!this.cachedReports) {
      const all = this.index.reports();
      for (const list of this.conflictReports.values()) all.push(...list);
      for (const list of this.egressReports.values()) all.push(...list);
      this.cachedReports = sortedUniqueReports(all);
    }
    return this.cachedReports;
  }

  /** The update, yielding after each recomputed host and each batch of `emitBatch` emitted hosts. */
  private *steps(next: ClusterState, full: boolean, emitBatch: number): Generator<void, IncrementalResult> {
    const { dirty, removed, changedGroups, readdressed } = yield* this.index.update(next, full);
    this.cachedReports = undefined;
    for (const id of removed) {
      this.releaseClaims(id);
      this.stateOf.delete(id);
      this.patched.remove(id);
      this.conflictReports.delete(id);
    }
    if (full) {
      this.resolutions = new ResolutionIndex<ClaimUse>();
      this.claimsOf = new Map();
    }

    const patches = new Map<string, Patch>();
    const changedKeys = full || changedGroups.size === 0 ? [] : this.reresolve(changedGroups);
    const fresh = yield* this.recompute(dirty, full, patches);
    this.patchUsers(changedKeys, dirty, patches);
    const egress = this.egress;
    let egressChanged: ReadonlySet<string> = new Set();
    if (full) this.egressReports = new Map();
    if (egress) {
      const hostIds = this.index.hostIds();
      const input = egressInput(this.index, (id) => this.claimsOf.get(id) ?? []);
      egressChanged = yield* egress.steps(input, full ? hostIds : new Set([...dirty, ...readdressed]), full ? [] : removed, hostIds);
      for (const id of removed) this.egressReports.delete(id);
      for (const id of full ? hostIds : egressChanged) this.egressReports.set(id, egress.reportsOf(id));
    }
    const egressOf = egress && ((id: string) => egress.sets(id));

    const changed = new Map<string, DesiredState>();
    // One MemberEmitter per batch (host-claims.ts: the output does not depend on the batch).
    const freshHosts = [...fresh];
    for (let b = 0; b < freshHosts.length; b += emitBatch) {
      const batch = emitBatch >= freshHosts.length ? fresh : new Map(freshHosts.slice(b, b + emitBatch));
      for (const [hostId, state] of hostStates(this.index.policy, this.constants, batch, this.sourceTexts, (id) => this.stateOf.get(id), this.patched.versions, egressOf, this.index.appAudit)) {
        if (this.stateOf.get(hostId)?.version !== state.version) changed.set(hostId, state);
        if (this.stateOf.get(hostId) !== state) this.patched.forget(hostId);
        this.stateOf.set(hostId, state);
      }
      yield;
    }
    const editsFrom = (a: readonly string[], b: readonly string[]) => egress!.editsFrom(a, b);
    const patchHost = (hostId: string, patch: Patch) => {
      const old = this.stateOf.get(hostId)!;
      const sets = egress?.sets(hostId);
      const modes = hostMode(this.constants, this.claimsOf.get(hostId) ?? [], sets, this.index.appAudit);
      const state = this.patched.patchState(hostId, old, patch, sets && { sets, editsFrom }, modes);
      if (state.version !== old.version) changed.set(hostId, state);
      this.stateOf.set(hostId, state);
    };
    for (const [hostId, patch] of patches) patchHost(hostId, patch);
    // Hosts whose only change is egress (egress-managed changes on every host).
    for (const hostId of egressChanged) if (!fresh.has(hostId) && !patches.has(hostId)) patchHost(hostId, NO_EDITS);
    const recomputed = dirty.size + [...patches.keys()].filter((h) => !dirty.has(h)).length;
    return { changed, removed, recomputed };
  }

  /** After group sets changed: re-resolves every live key reading one of them, once; the changed keys. */
  private reresolve(changedGroups: ReadonlySet<string>): string[] {
    const changedKeys: string[] = [];
    for (const key of this.resolutions.readingAny(changedGroups)) {
      const set = this.index.resolve(this.resolutions.match(key));
      if (!this.resolutions.store(key, set).equals(set)) changedKeys.push(key);
    }
    return changedKeys;
  }

  /**
   * Member patches for the claims (of hosts not dirty) that use a changed key: each claim's new
   * set (its key's set, or the intersection of its owners' keys for a port conflict) is diffed
   * against the set it last emitted. The claims come from the resolution index (the claims per
   * key), not from a scan of their hosts. Diffs are shared between claims with the same old and new set.
   */
  private patchUsers(changedKeys: readonly string[], dirty: ReadonlySet<string>, patches: Map<string, Patch>): void {
    const diffs = new Map<AddressSet, { to: AddressSet; diff: ReturnType<typeof sourceTextDiff> }>();
    for (const key of changedKeys) {
      for (const [hostId, claims] of this.resolutions.users(key)) {
        if (dirty.has(hostId)) continue;
        for (const claim of claims) {
          let set = this.resolutions.get(claim.keys[0]!)!;
          for (let i = 1; i < claim.keys.length; i++) set = set.intersect(this.resolutions.get(claim.keys[i]!)!);
          if (set === claim.set || set.equals(claim.set)) continue;
          let d = diffs.get(claim.set);
          if (!d || d.to !== set) diffs.set(claim.set, (d = { to: set, diff: sourceTextDiff(claim.set, set) }));
          let patch = patches.get(hostId);
          if (!patch) patches.set(hostId, (patch = newPatch()));
          patchClaim(patch, claim.suffix, claim.set, set, d.diff);
          claim.set = set;
        }
      }
    }
  }

  /**
   * Dirty hosts: claims rebuilt from their tasks, resolution uses re-registered. A host that has a
   * state (and `full` is false) gets a patch from its old claims to the new ones; the others are
   * returned for a full emission (hostStates).
   */
  private *recompute(dirty: ReadonlySet<string>, full: boolean, patches: Map<string, Patch>): Generator<void, Map<string, HostClaim[]>> {
    const fresh = new Map<string, HostClaim[]>();
    const index = this.index;
    const infoOf = (appId: string) => index.app(appId);
    const resolve = (m: PortMatch) => this.resolutions.get(m.key) ?? index.resolve(m);
    const budget = full ? new MemberBudget(this.maxMembers, dirty.size) : undefined;
    for (const hostId of [...dirty].sort()) {
      yield;
      const r = hostClaims(index.policy, this.constants, hostId, index.tasksOn(hostId), infoOf, resolve);
      budget?.add(this.sourceTexts.claimsCount(r.claims));
      const uses: ClaimUse[] = [];
      for (const c of r.claims) {
        const use = claimUse(c);
        uses.push(use);
        for (const m of c.matches) this.resolutions.acquire(hostId, m, resolve(m), use);
      }
      const old = this.claimsOf.get(hostId);
      if (full || !old || !this.stateOf.has(hostId)) fresh.set(hostId, r.claims);
      else patches.set(hostId, claimsPatch(this.sourceTexts, old, uses, r.claims));
      this.releaseClaims(hostId);
      this.claimsOf.set(hostId, uses);
      if (r.reports.length > 0) this.conflictReports.set(hostId, r.reports);
      else this.conflictReports.delete(hostId);
    }
    return fresh;
  }

  private releaseClaims(hostId: string): void {
    for (const c of this.claimsOf.get(hostId) ?? []) for (const key of c.keys) this.resolutions.release(hostId, key, c);
    this.claimsOf.delete(hostId);
  }
}
