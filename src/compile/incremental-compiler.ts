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
 *    its object identity between calls, which the fast path below exploits.
 *
 * Two kinds of affected hosts:
 *  - "dirty" hosts are recomputed from their tasks (host-claims.ts): the old and new host of every
 *    task that appeared, disappeared, moved or changed ports (validity included: a task of an
 *    unknown host or app does not count); every host running a task of an app whose definition
 *    changed; new hosts; and hosts where a changed resolution feeds a port-conflict intersection.
 *  - when a group's source-address set changed (a host gained its first or lost its last task of
 *    the group, or such a host's addresses changed, or an app joined/left the group), every live
 *    resolution (ResolutionIndex: PortMatch key → set) reading that group is re-resolved once; a
 *    set that really changed is diffed into source texts to add and remove (only the intervals
 *    that differ are formatted), and every other host using it gets those members patched into
 *    its sorted lists (member-lists.ts) and a new version, updated from the claims that changed (state-version.ts). A patched host's lists equal what a
 *    recompute would emit because a member belongs to exactly one claim ("<source>,<proto>:<port>",
 *    claims of a host have distinct (proto, port)) and a non-conflict claim's set is its
 *    resolution.
 *
 * Cost per change: the input diff is O(hosts + apps + tasks) identity comparisons when only
 * tasks changed in place (same array length, hosts and apps element-identical, no duplicate task
 * ids, every old and new task at a changed position valid); anything else takes the general diff,
 * O(apps + tasks + hosts) of map work. Then the real work: group sets rebuilt for touched groups,
 * one resolution per affected distinct key, a full recompute of dirty hosts, and for patched hosts
 * a binary-search patch and an O(changed claims) version update. Pure: no I/O, no clock. Not reentrant (single-threaded use,
 * like the rest of the controller).
 */
import type { App, ClusterState, Host, Task } from '../inventory/cluster-state.js';
import type { NetworkDef, PeerRef, Policy } from '../policy/policy-model.js';
import { AddressSet, parseAddress, type ParsedAddress } from './address-set.js';
import { compareReports, type CompileReport } from './compile-report.js';
import { SET_KINDS, type DesiredState, type SetKind } from './desired-state.js';
import { ALLOW_KINDS, claimSuffix, SourceTexts, sourceTextDiff } from './emit-members.js';
import { MemberBudget } from '../policy/policy-limits.js';
import { appCompileInfo, candidateRules, hostClaims, hostStates, hostVersions, managedPorts, policyConstants, type AppCompileInfo, type HostClaim, type PolicyConstants, type PortMatch, rulesByTarget } from './host-claims.js';
import { declarationChecker, type CheckedDeclarations } from './label-declarations.js';
import { patchMemberList } from './member-lists.js';
import { groupMatcher } from '../policy/app-selector.js';
import { ResolutionIndex } from './resolution-index.js';
import { SourceResolver } from './resolve-sources.js';
import { diffMemberLists, type StateDelta } from './state-delta.js';
import type { ClaimChange } from './state-version.js';

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

interface AppEntry extends AppCompileInfo {
  readonly groups: readonly string[];
  readonly labelPeers: ReadonlyMap<string, readonly PeerRef[]>;
  readonly problems: readonly CompileReport[];
}

/** One claim of a host as last emitted: its member suffix, its owners' PortMatch keys, its set. */
interface ClaimUse {
  readonly suffix: string;
  readonly keys: readonly string[];
  set: AddressSet;
}

/** The input diff: hosts to recompute, hosts gone, apps redefined, groups whose set may change. */
interface InputChange {
  readonly dirty: Set<string>;
  readonly removed: string[];
  readonly changedApps: Set<string>;
  readonly touchedGroups: Set<string>;
}

/** Members to remove and add per allow kind, for one host. */
interface Patch {
  readonly removes: string[][];
  readonly adds: string[][];
  /** New managed-tcp / managed-udp lists (dirty hosts only). */
  managed?: { readonly tcp: string[]; readonly udp: string[] };
  /** The claims whose set changed, in order (what the version is updated from, see state-version.ts). */
  readonly claims: ClaimChange<AddressSet>[];
}

function newPatch(): Patch {
  return { removes: ALLOW_KINDS.map(() => []), adds: ALLOW_KINDS.map(() => []), claims: [] };
}

/** Adds `texts` (per allow kind) with `suffix` to the patch's removes or adds. */
function patchTexts(into: string[][], texts: readonly (readonly string[])[], suffix: string): void {
  for (let k = 0; k < ALLOW_KINDS.length; k++) for (const t of texts[k]!) into[k]!.push(t + suffix);
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

const EMPTY_CLUSTER: ClusterState = { hosts: [], apps: [], tasks: [] };
/** Passed by `building` to the constructor: no update yet (the generator runs it). */
const DEFERRED: ClusterState = { hosts: [], apps: [], tasks: [] };
/** Above this many changed task positions the general diff is about as cheap. */
const FAST_PATH_MAX_CHANGES = 64;

function peerKey(p: PeerRef): string {
  return p.kind === 'any' ? 'any' : `${p.kind}:${p.name}`;
}

function sameApp(a: App, b: App): boolean {
  return a === b || JSON.stringify(a) === JSON.stringify(b);
}

function sameTask(a: Task, b: Task): boolean {
  return a.appId === b.appId && a.hostId === b.hostId && a.hostPorts.length === b.hostPorts.length && a.hostPorts.every((p, i) => p === b.hostPorts[i]);
}

function sameElements<T>(a: readonly T[], b: readonly T[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function addTo<K, V>(map: Map<K, Set<V>>, key: K, value: V): void {
  let set = map.get(key);
  if (!set) map.set(key, (set = new Set()));
  set.add(value);
}

/** +1 / -1 on a (app → host → task count) map; true when the app's host set changed. */
function countTask(map: Map<string, Map<string, number>>, appId: string, hostId: string, delta: 1 | -1): boolean {
  let hosts = map.get(appId);
  if (!hosts) map.set(appId, (hosts = new Map()));
  const n = (hosts.get(hostId) ?? 0) + delta;
  if (n > 0) hosts.set(hostId, n);
  else hosts.delete(hostId);
  if (hosts.size === 0) map.delete(appId);
  return delta === 1 ? n === 1 : n === 0;
}

export class IncrementalCompiler {
  private policy: Policy;
  private groupsOf: ((app: App) => string[]) | undefined;
  private checkDeclarations: ((app: App, groups: readonly string[]) => CheckedDeclarations) | undefined;
  /** Per policy: rule indices per `to` group, networks by name (built on first use). */
  private rulesOfGroup: Map<string, number[]> | undefined;
  private networkByName: Map<string, NetworkDef> | undefined;
  private constants: PolicyConstants;
  private cluster: ClusterState = EMPTY_CLUSTER;
  private apps = new Map<string, AppEntry>();
  private groupMembers = new Map<string, Set<string>>();
  private addressText = new Map<string, string>();
  private addressesOfHost = new Map<string, ParsedAddress[]>();
  private validTasks = new Map<string, Task>();
  /** How many valid tasks there are (more than validTasks.size when task ids repeat). */
  private validCount = 0;
  private tasksOfHost = new Map<string, Task[]>();
  /** Valid tasks per app and host. */
  private hostsOfApp = new Map<string, Map<string, number>>();
  private groupSet = new Map<string, AddressSet>();
  private networkSet = new Map<string, AddressSet>();
  private ruleFrom: AddressSet[] = [];
  private labelSets = new Map<string, AddressSet>();
  /** The peers behind each label key of labelSets. */
  private labelPeers = new Map<string, readonly PeerRef[]>();
  private resolver!: SourceResolver;
  private resolutions = new ResolutionIndex();
  private claimsOf = new Map<string, readonly ClaimUse[]>();
  private stateOf = new Map<string, DesiredState>();
  /** Per patched host: the delta from the state it was patched from (see deltaFrom). */
  private deltaOf = new Map<string, StateDelta>();
  private readonly sourceTexts = new SourceTexts();
  /** Version sums per host, updated from the claims a patch changed (state-version.ts). */
  private readonly versions = hostVersions(this.sourceTexts);
  private conflictReports = new Map<string, readonly CompileReport[]>();
  private inventoryReports: CompileReport[] = [];
  private cachedReports: readonly CompileReport[] | undefined;

  private readonly maxMembers: number;

  constructor(policy: Policy, cluster: ClusterState = EMPTY_CLUSTER, options: IncrementalOptions = {}) {
    this.policy = policy;
    this.constants = policyConstants(policy);
    this.maxMembers = options.maxMembers ?? Infinity;
    if (cluster !== DEFERRED) this.update(cluster, true);
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
    this.policy = policy;
    this.groupsOf = undefined;
    this.checkDeclarations = undefined;
    this.rulesOfGroup = undefined;
    this.networkByName = undefined;
    this.constants = policyConstants(policy);
    this.apps = new Map();
    this.groupMembers = new Map();
    this.groupSet = new Map();
    this.networkSet = new Map();
    return this.update(this.cluster, true);
  }

  applyClusterChange(next: ClusterState): IncrementalResult {
    return this.update(next, false);
  }

  currentPolicy(): Policy {
    return this.policy;
  }

  currentCluster(): ClusterState {
    return this.cluster;
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
    const d = this.deltaOf.get(hostId);
    return d && d.baseVersion === baseVersion && d.version === this.stateOf.get(hostId)?.version ? d : undefined;
  }

  hostIds(): string[] {
    return [...this.stateOf.keys()].sort();
  }

  reports(): readonly CompileReport[] {
    if (!this.cachedReports) {
      const all: CompileReport[] = [...this.inventoryReports];
      for (const e of this.apps.values()) all.push(...e.problems);
      for (const list of this.conflictReports.values()) all.push(...list);
      all.sort(compareReports);
      this.cachedReports = all.filter((r, i) => i === 0 || compareReports(r, all[i - 1]!) !== 0);
    }
    return this.cachedReports;
  }

  private update(next: ClusterState, full: boolean): IncrementalResult {
    const steps = this.steps(next, full, Infinity);
    for (;;) {
      const r = steps.next();
      if (r.done) return r.value;
    }
  }

  /** The update, yielding after each recomputed host and each batch of `emitBatch` emitted hosts. */
  private *steps(next: ClusterState, full: boolean, emitBatch: number): Generator<void, IncrementalResult> {
    const change = (full ? undefined : this.tasksMovedInPlace(next)) ?? (yield* this.diffInputs(next, full));
    const { dirty, removed } = change;
    this.cluster = next;
    this.cachedReports = undefined;

    if (full) yield;
    // Group source sets: rebuilt for touched groups only.
    const changedGroups = new Set<string>();
    for (const group of this.policy.groups) {
      if (!full && !change.touchedGroups.has(group.name)) continue;
      const set = this.buildGroupSet(group.name);
      const old = this.groupSet.get(group.name);
      if (!old || !old.equals(set)) changedGroups.add(group.name);
      this.groupSet.set(group.name, set);
    }

    for (const id of removed) {
      this.releaseClaims(id);
      this.stateOf.delete(id);
      this.versions.forget(id);
      this.deltaOf.delete(id);
      this.conflictReports.delete(id);
      dirty.delete(id);
    }

    if (full) {
      yield* this.rebuildResolver();
      this.resolutions = new ResolutionIndex();
      this.claimsOf = new Map();
      for (const id of this.addressText.keys()) dirty.add(id);
    } else if (changedGroups.size > 0) {
      this.refreshRuleAndLabelSets(changedGroups);
    }
    // New label keys of changed apps need their sets (existing keys are still valid).
    for (const id of change.changedApps) this.addLabelSets(this.apps.get(id));

    if (full) yield;
    const patches = new Map<string, Patch>();
    const changedKeys = full || changedGroups.size === 0 ? [] : this.reresolve(changedGroups);
    const fresh = yield* this.recompute(dirty, full, patches);
    this.patchUsers(changedKeys, dirty, patches);

    const changed = new Map<string, DesiredState>();
    // One MemberEmitter per batch (host-claims.ts: the output does not depend on the batch).
    const freshHosts = [...fresh];
    for (let b = 0; b < freshHosts.length; b += emitBatch) {
      const batch = emitBatch >= freshHosts.length ? fresh : new Map(freshHosts.slice(b, b + emitBatch));
      for (const [hostId, state] of hostStates(this.policy, this.constants, batch, this.sourceTexts, (id) => this.stateOf.get(id), this.versions)) {
        if (this.stateOf.get(hostId)?.version !== state.version) changed.set(hostId, state);
        if (this.stateOf.get(hostId) !== state) this.deltaOf.delete(hostId);
        this.stateOf.set(hostId, state);
      }
      yield;
    }
    for (const [hostId, patch] of patches) {
      const old = this.stateOf.get(hostId)!;
      const state = this.patchState(hostId, old, patch);
      if (state.version !== old.version) changed.set(hostId, state);
      this.stateOf.set(hostId, state);
    }
    const recomputed = dirty.size + [...patches.keys()].filter((h) => !dirty.has(h)).length;
    return { changed, removed, recomputed };
  }

  /**
   * The fast input diff (see the header), or undefined when its conditions do not hold. Updates
   * the task indexes in place.
   */
  private tasksMovedInPlace(next: ClusterState): InputChange | undefined {
    const prev = this.cluster;
    if (!sameElements(next.hosts, prev.hosts) || !sameElements(next.apps, prev.apps)) return undefined;
    if (next.tasks.length !== prev.tasks.length || this.validTasks.size !== this.validCount) return undefined;
    const at: number[] = [];
    for (let i = 0; i < next.tasks.length; i++) {
      if (next.tasks[i] !== prev.tasks[i] && at.push(i) > FAST_PATH_MAX_CHANGES) return undefined;
    }
    // Old tasks at the changed positions, by id; a new task with the same id and content only
    // replaces the object (the array was shifted, or the task re-created).
    const gone = new Map<string, Task>();
    for (const i of at) {
      const old = prev.tasks[i]!;
      if (this.validTasks.get(old.id) !== old) return undefined;
      gone.set(old.id, old);
    }
    const same: Task[] = [];
    const added: Task[] = [];
    for (const i of at) {
      const task = next.tasks[i]!;
      if (!this.addressText.has(task.hostId) || !this.apps.has(task.appId)) return undefined;
      const old = gone.get(task.id);
      if (old) {
        gone.delete(task.id);
        (sameTask(old, task) ? same : added).push(task);
        if (!sameTask(old, task)) gone.set(`\0${task.id}`, old); // still removed, id reused
      } else if (this.validTasks.has(task.id) || added.some((t) => t.id === task.id) || same.some((t) => t.id === task.id)) {
        return undefined; // duplicate id
      } else {
        added.push(task);
      }
    }

    const change: InputChange = { dirty: new Set(), removed: [], changedApps: new Set(), touchedGroups: new Set() };
    const count = (task: Task, delta: 1 | -1) => {
      change.dirty.add(task.hostId);
      if (countTask(this.hostsOfApp, task.appId, task.hostId, delta)) {
        for (const g of this.apps.get(task.appId)!.groups) change.touchedGroups.add(g);
      }
    };
    const replace = (list: Task[], old: Task, task: Task | undefined) => {
      const k = list.indexOf(old);
      if (task) list[k] = task;
      else list.splice(k, 1);
    };
    for (const task of same) {
      const old = this.validTasks.get(task.id)!;
      this.validTasks.set(task.id, task);
      replace(this.tasksOfHost.get(task.hostId)!, old, task);
    }
    for (const old of gone.values()) {
      if (this.validTasks.get(old.id) === old) this.validTasks.delete(old.id);
      replace(this.tasksOfHost.get(old.hostId)!, old, undefined);
      count(old, -1);
    }
    for (const task of added) {
      this.validTasks.set(task.id, task);
      this.tasksOfHost.get(task.hostId)!.push(task);
      count(task, 1);
    }
    return change;
  }

  /** The general input diff: rebuilds the host, app and task indexes from `next`. */
  private *diffInputs(next: ClusterState, full: boolean): Generator<void, InputChange> {
    const dirty = new Set<string>();
    const inventoryReports: CompileReport[] = [];

    // Hosts and their addresses (compile's rules: duplicates merge, bad addresses are reported).
    const addressesOfHost = new Map<string, ParsedAddress[]>();
    const addressText = new Map<string, string[]>();
    for (const host of next.hosts) this.parseHost(host, addressesOfHost, addressText, inventoryReports);
    const touchedHosts = new Set<string>();
    for (const [id, texts] of addressText) {
      if (addressesOfHost.get(id)!.length === 0) {
        inventoryReports.push({ kind: 'host-without-address', hostId: id, message: `host ${id} has no usable address; it is in no group's source set` });
      }
      const text = texts.join(' ');
      if (full || this.addressText.get(id) !== text) touchedHosts.add(id);
      if (full || !this.addressText.has(id)) dirty.add(id);
    }
    const removed = [...this.addressText.keys()].filter((id) => !addressText.has(id)).sort();
    for (const id of removed) touchedHosts.add(id);

    yield;
    // Apps (first definition of an id wins, as in compile).
    const nextApps = new Map<string, App>();
    for (const app of next.apps) if (!nextApps.has(app.id)) nextApps.set(app.id, app);
    const changedApps = new Set<string>();
    for (const [id, app] of nextApps) {
      const old = this.apps.get(id);
      if (full || !old || !sameApp(old.app, app)) changedApps.add(id);
    }
    for (const id of this.apps.keys()) if (!nextApps.has(id)) changedApps.add(id);

    // Tasks: the valid ones (known host and app), diffed by id against the last valid ones.
    const validTasks = new Map<string, Task>();
    let validCount = 0;
    const tasksOfHost = new Map<string, Task[]>([...addressesOfHost.keys()].map((id) => [id, []]));
    const hostsOfApp = new Map<string, Map<string, number>>();
    for (const task of next.tasks) {
      const onHost = tasksOfHost.get(task.hostId);
      if (!onHost) {
        inventoryReports.push({ kind: 'task-unknown-host', taskId: task.id, appId: task.appId, hostId: task.hostId, message: `task ${task.id} runs on host ${task.hostId}, which the inventory does not list; ignored` });
        continue;
      }
      if (!nextApps.has(task.appId)) {
        inventoryReports.push({ kind: 'task-unknown-app', taskId: task.id, appId: task.appId, hostId: task.hostId, message: `task ${task.id} belongs to app ${task.appId}, which the inventory does not list; ignored` });
        continue;
      }
      onHost.push(task);
      validCount++;
      // Duplicate task ids: compile keeps both; so do we (the diff below then sees the last one).
      const old = this.validTasks.get(task.id);
      if (!old || !sameTask(old, task) || validTasks.has(task.id)) {
        dirty.add(task.hostId);
        if (old) dirty.add(old.hostId);
      }
      validTasks.set(task.id, task);
      countTask(hostsOfApp, task.appId, task.hostId, 1);
    }
    for (const [id, old] of this.validTasks) if (!validTasks.has(id)) dirty.add(old.hostId);
    if (!full) {
      // A host whose task list changed in any other way (duplicate ids) is dirty as well.
      for (const [hostId, tasks] of tasksOfHost) if (tasks.length !== (this.tasksOfHost.get(hostId)?.length ?? 0)) dirty.add(hostId);
    }

    yield;
    // Apps whose host set changed, and app entries of changed apps.
    const touchedApps = new Set<string>(changedApps);
    for (const id of new Set([...hostsOfApp.keys(), ...this.hostsOfApp.keys()])) {
      const a = hostsOfApp.get(id);
      const b = this.hostsOfApp.get(id);
      if (a?.size !== b?.size || [...(a?.keys() ?? [])].some((h) => !b!.has(h))) touchedApps.add(id);
    }
    const touchedGroups = new Set<string>();
    let appsRead = 0;
    for (const id of changedApps) {
      const old = this.apps.get(id);
      for (const g of old?.groups ?? []) {
        touchedGroups.add(g);
        this.groupMembers.get(g)?.delete(id);
      }
      for (const h of this.hostsOfApp.get(id)?.keys() ?? []) dirty.add(h);
      for (const h of hostsOfApp.get(id)?.keys() ?? []) dirty.add(h);
      const app = nextApps.get(id);
      if (!app) {
        this.apps.delete(id);
        continue;
      }
      if (++appsRead % 64 === 0) yield;
      const entry = this.appEntry(app);
      this.apps.set(id, entry);
      for (const g of entry.groups) {
        touchedGroups.add(g);
        addTo(this.groupMembers, g, id);
      }
    }
    for (const id of touchedApps) for (const g of this.apps.get(id)?.groups ?? []) touchedGroups.add(g);
    for (const h of touchedHosts) {
      for (const t of [...(this.tasksOfHost.get(h) ?? []), ...(tasksOfHost.get(h) ?? [])]) {
        for (const g of this.apps.get(t.appId)?.groups ?? []) touchedGroups.add(g);
      }
    }

    this.addressText = new Map([...addressText].map(([id, texts]) => [id, texts.join(' ')]));
    this.addressesOfHost = addressesOfHost;
    this.validTasks = validTasks;
    this.validCount = validCount;
    this.tasksOfHost = tasksOfHost;
    this.hostsOfApp = hostsOfApp;
    this.inventoryReports = inventoryReports;
    return { dirty, removed, changedApps, touchedGroups };
  }

  private parseHost(host: Host, addressesOfHost: Map<string, ParsedAddress[]>, addressText: Map<string, string[]>, reports: CompileReport[]): void {
    const list = addressesOfHost.get(host.id) ?? [];
    addressesOfHost.set(host.id, list);
    const texts = addressText.get(host.id) ?? [];
    addressText.set(host.id, texts);
    for (const text of host.addresses) {
      texts.push(text);
      try {
        list.push(parseAddress(text));
      } catch (err) {
        reports.push({ kind: 'host-without-address', hostId: host.id, message: `host ${host.id}: ${(err as Error).message}; address ignored` });
      }
    }
  }

  /** A group's source set: the addresses of every host running a valid task of a member app. */
  private buildGroupSet(group: string): AddressSet {
    const hosts = new Set<string>();
    for (const appId of this.groupMembers.get(group) ?? []) for (const h of this.hostsOfApp.get(appId)?.keys() ?? []) hosts.add(h);
    const addresses: ParsedAddress[] = [];
    for (const h of hosts) addresses.push(...(this.addressesOfHost.get(h) ?? []));
    return AddressSet.fromAddresses(addresses);
  }

  /** After group sets changed: re-resolves every live key reading one of them, once; the changed keys. */
  private reresolve(changedGroups: ReadonlySet<string>): string[] {
    const changedKeys: string[] = [];
    for (const key of this.resolutions.readingAny(changedGroups)) {
      const match = this.resolutions.match(key);
      const set = this.resolver.resolve(match.matching, match.labelKey, this.labelSets.get(match.labelKey)!);
      if (!this.resolutions.store(key, set).equals(set)) changedKeys.push(key);
    }
    return changedKeys;
  }

  /**
   * Member patches for the claims (of hosts not dirty) that use a changed key: each claim's new
   * set (its key's set, or the intersection of its owners' keys for a port conflict) is diffed
   * against the set it last emitted. Diffs are shared between claims with the same old and new set.
   */
  private patchUsers(changedKeys: readonly string[], dirty: ReadonlySet<string>, patches: Map<string, Patch>): void {
    const diffs = new Map<AddressSet, { to: AddressSet; diff: ReturnType<typeof sourceTextDiff> }>();
    for (const key of changedKeys) {
      for (const hostId of this.resolutions.users(key)) {
        if (dirty.has(hostId)) continue;
        for (const claim of this.claimsOf.get(hostId)!) {
          if (!claim.keys.includes(key)) continue;
          let set = this.resolutions.get(claim.keys[0]!)!;
          for (let i = 1; i < claim.keys.length; i++) set = set.intersect(this.resolutions.get(claim.keys[i]!)!);
          if (set === claim.set || set.equals(claim.set)) continue;
          let d = diffs.get(claim.set);
          if (!d || d.to !== set) diffs.set(claim.set, (d = { to: set, diff: sourceTextDiff(claim.set, set) }));
          let patch = patches.get(hostId);
          if (!patch) patches.set(hostId, (patch = newPatch()));
          patchTexts(patch.removes, d.diff.removed, claim.suffix);
          patchTexts(patch.adds, d.diff.added, claim.suffix);
          patch.claims.push({ suffix: claim.suffix, from: claim.set, to: set, diff: d.diff });
          claim.set = set;
        }
      }
    }
  }

  /**
   * A patched host's new state (lists of untouched kinds are shared with the old state); its
   * version is updated from the claims the patch changed (O(change), state-version.ts).
   */
  private patchState(hostId: string, old: DesiredState, patch: Patch): DesiredState {
    const sets = { ...old.sets } as Record<SetKind, readonly string[]>;
    let touched = false;
    if (patch.managed) {
      if (!sameList(old.sets['managed-tcp'], patch.managed.tcp)) sets['managed-tcp'] = patch.managed.tcp;
      if (!sameList(old.sets['managed-udp'], patch.managed.udp)) sets['managed-udp'] = patch.managed.udp;
      touched = sets['managed-tcp'] !== old.sets['managed-tcp'] || sets['managed-udp'] !== old.sets['managed-udp'];
    }
    ALLOW_KINDS.forEach((kind, k) => {
      const removes = patch.removes[k]!;
      const adds = patch.adds[k]!;
      if (removes.length === 0 && adds.length === 0) return;
      sets[kind] = patchMemberList(old.sets[kind], removes, adds);
      touched = true;
    });
    // Claims whose members did not change (equal texts) change no term either.
    if (!touched) return old;
    const state = { hostId: old.hostId, mode: old.mode, sets, version: this.versions.patched(hostId, old.mode, sets, patch.claims) };
    this.deltaOf.set(hostId, this.patchDelta(old, state, patch));
    return state;
  }

  /** The delta a patch made: the allow kinds' edits sorted, the (short) managed lists merged. */
  private patchDelta(old: DesiredState, state: DesiredState, patch: Patch): StateDelta {
    const adds = {} as Record<SetKind, readonly string[]>;
    const removes = {} as Record<SetKind, readonly string[]>;
    for (const kind of SET_KINDS) {
      const k = (ALLOW_KINDS as readonly string[]).indexOf(kind);
      if (k < 0) ({ adds: adds[kind], removes: removes[kind] } = diffMemberLists(old.sets[kind], state.sets[kind]));
      else [adds[kind], removes[kind]] = [[...patch.adds[k]!].sort(), [...patch.removes[k]!].sort()];
    }
    return { hostId: old.hostId, baseVersion: old.version, version: state.version, mode: state.mode, adds, removes };
  }

  /**
   * Dirty hosts: claims rebuilt from their tasks, resolution uses re-registered. A host that has a
   * state (and `full` is false) gets a patch from its old claims to the new ones; the others are
   * returned for a full emission (hostStates).
   */
  private *recompute(dirty: ReadonlySet<string>, full: boolean, patches: Map<string, Patch>): Generator<void, Map<string, HostClaim[]>> {
    const fresh = new Map<string, HostClaim[]>();
    const infoOf = (appId: string) => this.apps.get(appId)!;
    const resolve = (m: PortMatch) => this.resolutions.get(m.key) ?? this.resolver.resolve(m.matching, m.labelKey, this.labelSets.get(m.labelKey)!);
    const budget = full ? new MemberBudget(this.maxMembers, dirty.size) : undefined;
    for (const hostId of [...dirty].sort()) {
      yield;
      const r = hostClaims(this.policy, this.constants, hostId, this.tasksOfHost.get(hostId) ?? [], infoOf, resolve);
      budget?.add(this.sourceTexts.claimsCount(r.claims));
      const uses: ClaimUse[] = [];
      for (const c of r.claims) {
        uses.push({ suffix: claimSuffix(c.protocol, c.port), keys: c.matches.map((m) => m.key), set: c.set });
        for (const m of c.matches) this.resolutions.acquire(hostId, m, resolve(m));
      }
      const old = this.claimsOf.get(hostId);
      if (full || !old || !this.stateOf.has(hostId)) fresh.set(hostId, r.claims);
      else patches.set(hostId, this.claimsPatch(old, uses, r.claims));
      this.releaseClaims(hostId);
      this.claimsOf.set(hostId, uses);
      if (r.reports.length > 0) this.conflictReports.set(hostId, r.reports);
      else this.conflictReports.delete(hostId);
    }
    return fresh;
  }

  /** The patch from a host's old claims to its new ones (matched by member suffix). */
  private claimsPatch(old: readonly ClaimUse[], uses: readonly ClaimUse[], claims: readonly HostClaim[]): Patch {
    const patch = newPatch();
    patch.managed = { tcp: managedPorts(claims, 'tcp'), udp: managedPorts(claims, 'udp') };
    const before = new Map(old.map((u) => [u.suffix, u.set]));
    for (const u of uses) {
      const was = before.get(u.suffix);
      before.delete(u.suffix);
      if (was === undefined) {
        patchTexts(patch.adds, this.sourceTexts.of(u.set), u.suffix);
        patch.claims.push({ suffix: u.suffix, to: u.set });
      } else if (was !== u.set && !was.equals(u.set)) {
        const d = sourceTextDiff(was, u.set);
        patchTexts(patch.removes, d.removed, u.suffix);
        patchTexts(patch.adds, d.added, u.suffix);
        patch.claims.push({ suffix: u.suffix, from: was, to: u.set, diff: d });
      }
    }
    for (const [suffix, was] of before) {
      patchTexts(patch.removes, this.sourceTexts.of(was), suffix);
      patch.claims.push({ suffix, from: was });
    }
    return patch;
  }

  private releaseClaims(hostId: string): void {
    for (const c of this.claimsOf.get(hostId) ?? []) for (const key of c.keys) this.resolutions.release(hostId, key);
    this.claimsOf.delete(hostId);
  }

  private peerSet = (peer: PeerRef): AddressSet => {
    if (peer.kind === 'any') return AddressSet.ALL;
    if (peer.kind === 'group') return this.groupSet.get(peer.name) ?? AddressSet.EMPTY;
    let set = this.networkSet.get(peer.name);
    if (!set) {
      this.networkByName ??= new Map(this.policy.networks.map((n) => [n.name, n]));
      const net = this.networkByName.get(peer.name);
      set = net ? AddressSet.fromStrings(net.cidrs).subtract(AddressSet.fromStrings(net.except)) : AddressSet.EMPTY;
      this.networkSet.set(peer.name, set);
    }
    return set;
  };

  private newResolver(): void {
    this.resolver = new SourceResolver(this.policy.rules.map((r) => r.action), this.ruleFrom, this.policy.defaults.action === 'allow');
  }

  private *rebuildResolver(): Generator<void, void> {
    this.ruleFrom = [];
    for (const r of this.policy.rules) {
      this.ruleFrom.push(AddressSet.unionAll(r.from.map(this.peerSet)));
      if (this.ruleFrom.length % 512 === 0) yield;
    }
    this.newResolver();
    this.labelSets = new Map();
    this.labelPeers = new Map();
    for (const entry of this.apps.values()) this.addLabelSets(entry);
  }

  /** Rule and label sets that read a changed group are rebuilt; the resolver starts afresh. */
  private refreshRuleAndLabelSets(changedGroups: ReadonlySet<string>): void {
    const reads = (peers: readonly PeerRef[]) => peers.some((p) => p.kind === 'group' && changedGroups.has(p.name));
    this.ruleFrom = this.policy.rules.map((r, i) => (reads(r.from) ? AddressSet.unionAll(r.from.map(this.peerSet)) : this.ruleFrom[i]!));
    this.newResolver();
    for (const [key, peers] of this.labelPeers) {
      if (reads(peers)) this.labelSets.set(key, AddressSet.unionAll(peers.map(this.peerSet)));
    }
  }

  private addLabelSets(entry: AppEntry | undefined): void {
    for (const [key, peers] of entry?.labelPeers ?? []) {
      if (this.labelSets.has(key)) continue;
      this.labelSets.set(key, AddressSet.unionAll(peers.map(this.peerSet)));
      this.labelPeers.set(key, peers);
    }
  }

  private appEntry(app: App): AppEntry {
    const policy = this.policy;
    const groups = (this.groupsOf ??= groupMatcher(policy))(app);
    const candidates = candidateRules((this.rulesOfGroup ??= rulesByTarget(policy)), groups);
    const checked = (this.checkDeclarations ??= declarationChecker(policy))(app, groups);
    const problems: CompileReport[] = checked.problems.map((p) => ({ kind: p.kind, appId: app.id, message: p.message }));
    const labelPeers = new Map<string, PeerRef[]>();
    const labelKeys = checked.appliedByPort.map((applied) => {
      const key = [...new Set(applied.map(peerKey))].sort().join('\n');
      labelPeers.set(key, [...applied]);
      return key;
    });
    return { ...appCompileInfo(policy, app, candidates, labelKeys), groups, labelPeers, problems };
  }
}
