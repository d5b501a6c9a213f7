/**
 * The cluster index: the compiler's one reading of (Policy, ClusterState) into what a host's
 * claims are computed from, kept up to date as the cluster changes. Both compile paths stand on
 * it: `compile` builds one from empty and emits every host; the incremental compiler keeps one
 * and recomputes or patches only the hosts an update names. So every rule about the inputs is
 * written here once:
 *  - hosts: addresses parsed once; duplicate host ids merge; a bad address, or a host with no
 *    usable one, is reported (`host-without-address`), never guessed;
 *  - apps: the first definition of an id wins; per app its groups (app-selector.ts), candidate
 *    rules, checked label declarations (label-declarations.ts, problems reported) and, per port,
 *    the label key naming its applied declarations;
 *  - tasks: valid when their host and app are known, else reported (`task-unknown-host`,
 *    `task-unknown-app`) and ignored;
 *  - source sets: a group's set is every address of every host running a valid task of a member
 *    app ("no IP per app"); a network's is its CIDRs minus its excepts; `any` is everything;
 *    rule `from` sets and label sets are unions of those; SourceResolver turns them into a
 *    PortMatch's allowed set (resolve-sources.ts).
 *
 * Contract of `update(next, full)`: afterwards the index describes `next`, and the result names
 * what the output side must redo: `dirty` hosts (to recompute from their tasks: every host when
 * `full`; else the old and new host of every task that appeared, disappeared, moved or changed
 * ports, every host running a task of an app whose definition changed, new hosts), `removed`
 * hosts, and `changedGroups` whose source set changed (then every resolution reading them may
 * have changed). An app's definition changed when its App object is another one: ClusterState
 * values are immutable and the sources keep the object of an app whose definition did not change
 * (src/marathon/cluster-store.ts, the static inventory feed; src/inventory/cluster-state.ts
 * `reuseUnchangedApps`), so identity is the change signal; a producer that does not keep it only
 * costs recomputes, never a wrong state.
 *
 * Cost: the fast path (`tasksMovedInPlace`) is O(tasks) identity comparisons when only tasks
 * changed in place (same array length, hosts and apps element-identical, no duplicate task ids,
 * every old and new task at a changed position valid); anything else takes the general diff,
 * O(apps + tasks + hosts) of map work. Group sets are rebuilt for touched groups only. `full`
 * skips the diff bookkeeping (everything is redone anyway). The update is a generator that yields
 * between parts of a full build (IncrementalCompiler.building). Pure: no I/O, no clock.
 */
import { sameTask, type App, type ClusterState, type Host, type Task } from '../inventory/cluster-state.js';
import type { NetworkDef, PeerRef, Policy } from '../policy/policy-model.js';
import { groupMatcher } from '../policy/app-selector.js';
import { addressOf, type ParsedAddress } from '../net/address.js';
import { LENIENT } from '../net/cidr.js';
import { AddressSet } from './address-set.js';
import type { CompileReport } from './compile-report.js';
import { appCompileInfo, candidateRules, rulesByTarget, type AppCompileInfo, type PortMatch } from './host-claims.js';
import { declarationChecker, type CheckedDeclarations } from './label-declarations.js';
import { SourceResolver } from './resolve-sources.js';
import { GroupModes } from './group-modes.js';

export interface AppEntry extends AppCompileInfo {
  readonly groups: readonly string[];
  /** The peers behind each label key of the app's ports. */
  readonly labelPeers: ReadonlyMap<string, readonly PeerRef[]>;
  readonly problems: readonly CompileReport[];
}

/** What an update asks of the output side (see the header). */
export interface InputChange {
  readonly dirty: Set<string>;
  /** Hosts that left the cluster, sorted. */
  readonly removed: string[];
  readonly changedGroups: ReadonlySet<string>;
  /** Hosts whose addresses changed (new hosts included; not when `full`). */
  readonly readdressed: readonly string[];
}

/** The diff before group sets are rebuilt. */
interface InputDiff {
  readonly dirty: Set<string>;
  readonly removed: string[];
  readonly changedApps: Set<string>;
  readonly touchedGroups: Set<string>;
  readonly readdressed: readonly string[];
}

const EMPTY_CLUSTER: ClusterState = { hosts: [], apps: [], tasks: [] };
/** Above this many changed task positions the general diff is about as cheap. */
const FAST_PATH_MAX_CHANGES = 64;

/** A label key: the distinct peers of a port's applied declarations, sorted, as one string. */
function labelKey(peers: readonly PeerRef[]): string {
  return [...new Set(peers.map((p) => (p.kind === 'any' ? 'any' : `${p.kind}:${p.name}`)))].sort().join('\n');
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

/** Runs a generator to its end; its return value. */
export function runSteps<T>(steps: Generator<void, T>): T {
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
  }
}

export class ClusterIndex {
  /** The cluster the index describes. */
  cluster: ClusterState = EMPTY_CLUSTER;
  private groupsOf: ((app: App) => string[]) | undefined;
  private checkDeclarations: ((app: App, groups: readonly string[]) => CheckedDeclarations) | undefined;
  /** Per policy: rule indices per `to` group, networks by name (built on first use). */
  private rulesOfGroup: Map<string, number[]> | undefined;
  private networkByName: Map<string, NetworkDef> | undefined;
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
  private inventoryReports: CompileReport[] = [];
  private readonly groupModes: GroupModes | undefined;

  constructor(readonly policy: Policy) {
    this.groupModes = GroupModes.of(policy);
  }

  /** Whether a known app is in audit (its mode, group-modes.ts). */
  appAudit = (appId: string): boolean => this.apps.get(appId)?.mode === 'audit';

  /** Host ids of the cluster, sorted. */
  hostIds(): string[] {
    return [...this.addressText.keys()].sort();
  }

  /** The valid tasks of a host (in cluster order). */
  tasksOn(hostId: string): readonly Task[] {
    return this.tasksOfHost.get(hostId) ?? [];
  }

  /** A host's usable addresses (parsed, in inventory order). */
  addresses(hostId: string): readonly ParsedAddress[] {
    return this.addressesOfHost.get(hostId) ?? [];
  }

  /** A policy network's source set (its CIDRs minus its excepts; empty for an unknown name). */
  networkSource(name: string): AddressSet {
    return this.peerSet({ kind: 'network', name });
  }

  /** The entry of a known app (every valid task's app is one). */
  app(appId: string): AppEntry {
    return this.apps.get(appId)!;
  }

  /** The allowed set of a PortMatch under the current rule and label sets. */
  resolve(m: PortMatch): AddressSet {
    return this.resolver.resolve(m.matching, m.labelKey, this.labelSets.get(m.labelKey)!);
  }

  /** Reports about the inputs: hosts, tasks and label declarations (unsorted). */
  reports(): CompileReport[] {
    const all = [...this.inventoryReports];
    for (const e of this.apps.values()) all.push(...e.problems);
    return all;
  }

  /** Makes the index describe `next` (see the header); yields between parts when `full`. */
  *update(next: ClusterState, full: boolean): Generator<void, InputChange> {
    const change = (full ? undefined : this.tasksMovedInPlace(next)) ?? (yield* this.diffInputs(next, full));
    const { dirty, removed } = change;
    this.cluster = next;

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
    for (const id of removed) dirty.delete(id);

    if (full) {
      yield* this.rebuildResolver();
      for (const id of this.addressText.keys()) dirty.add(id);
    } else if (changedGroups.size > 0) {
      this.refreshRuleAndLabelSets(changedGroups);
    }
    // New label keys of changed apps need their sets (existing keys are still valid).
    for (const id of change.changedApps) this.addLabelSets(this.apps.get(id));
    if (full) yield;
    return { dirty, removed, changedGroups, readdressed: change.readdressed };
  }

  /**
   * The fast input diff (see the header), or undefined when its conditions do not hold. Updates
   * the task indexes in place.
   */
  private tasksMovedInPlace(next: ClusterState): InputDiff | undefined {
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

    const change: InputDiff = { dirty: new Set(), removed: [], changedApps: new Set(), touchedGroups: new Set(), readdressed: [] };
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

  /**
   * The general input diff: rebuilds the host, app and task indexes from `next`. With `full`,
   * the index starts from what `next` holds and nothing is diffed (update redoes every host and
   * group).
   */
  private *diffInputs(next: ClusterState, full: boolean): Generator<void, InputDiff> {
    const dirty = new Set<string>();
    const inventoryReports: CompileReport[] = [];

    // Hosts and their addresses (duplicates merge, bad addresses are reported).
    const addressesOfHost = new Map<string, ParsedAddress[]>();
    const addressText = new Map<string, string[]>();
    for (const host of next.hosts) parseHost(host, addressesOfHost, addressText, inventoryReports);
    const touchedHosts = new Set<string>();
    for (const [id, texts] of addressText) {
      if (addressesOfHost.get(id)!.length === 0) {
        inventoryReports.push({ kind: 'host-without-address', hostId: id, message: `host ${id} has no usable address; it is in no group's source set` });
      }
      if (full) continue;
      const text = texts.join(' ');
      if (this.addressText.get(id) !== text) touchedHosts.add(id);
      if (!this.addressText.has(id)) dirty.add(id);
    }
    const removed = [...this.addressText.keys()].filter((id) => !addressText.has(id)).sort();
    for (const id of removed) touchedHosts.add(id);

    yield;
    // Apps (the first definition of an id wins); a changed definition is another object.
    const nextApps = new Map<string, App>();
    for (const app of next.apps) if (!nextApps.has(app.id)) nextApps.set(app.id, app);
    const changedApps = new Set<string>();
    for (const [id, app] of nextApps) if (full || this.apps.get(id)?.app !== app) changedApps.add(id);
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
      if (!full) {
        // Duplicate task ids: both count; the diff below then sees the last one.
        const old = this.validTasks.get(task.id);
        if (!old || !sameTask(old, task) || validTasks.has(task.id)) {
          dirty.add(task.hostId);
          if (old) dirty.add(old.hostId);
        }
      }
      validTasks.set(task.id, task);
      countTask(hostsOfApp, task.appId, task.hostId, 1);
    }
    if (!full) {
      for (const [id, old] of this.validTasks) if (!validTasks.has(id)) dirty.add(old.hostId);
      // A host whose task list changed in any other way (duplicate ids) is dirty as well.
      for (const [hostId, tasks] of tasksOfHost) if (tasks.length !== (this.tasksOfHost.get(hostId)?.length ?? 0)) dirty.add(hostId);
    }

    yield;
    // App entries of changed apps, and (not full) the groups whose set may change: groups of
    // changed apps, of apps whose host set changed, and of apps on hosts whose addresses changed.
    const touchedGroups = new Set<string>();
    let appsRead = 0;
    for (const id of changedApps) {
      const old = this.apps.get(id);
      for (const g of old?.groups ?? []) {
        touchedGroups.add(g);
        this.groupMembers.get(g)?.delete(id);
      }
      if (!full) {
        for (const h of this.hostsOfApp.get(id)?.keys() ?? []) dirty.add(h);
        for (const h of hostsOfApp.get(id)?.keys() ?? []) dirty.add(h);
      }
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
    if (!full) {
      for (const id of new Set([...hostsOfApp.keys(), ...this.hostsOfApp.keys()])) {
        const a = hostsOfApp.get(id);
        const b = this.hostsOfApp.get(id);
        if (a?.size !== b?.size || [...(a?.keys() ?? [])].some((h) => !b!.has(h))) for (const g of this.apps.get(id)?.groups ?? []) touchedGroups.add(g);
      }
      for (const h of touchedHosts) {
        for (const t of [...(this.tasksOfHost.get(h) ?? []), ...(tasksOfHost.get(h) ?? [])]) {
          for (const g of this.apps.get(t.appId)?.groups ?? []) touchedGroups.add(g);
        }
      }
    }

    this.addressText = new Map([...addressText].map(([id, texts]) => [id, texts.join(' ')]));
    this.addressesOfHost = addressesOfHost;
    this.validTasks = validTasks;
    this.validCount = validCount;
    this.tasksOfHost = tasksOfHost;
    this.hostsOfApp = hostsOfApp;
    this.inventoryReports = inventoryReports;
    return { dirty, removed, changedApps, touchedGroups, readdressed: [...touchedHosts].filter((id) => addressText.has(id)) };
  }

  /** A group's source set: the addresses of every host running a valid task of a member app. */
  private buildGroupSet(group: string): AddressSet {
    const hosts = new Set<string>();
    for (const appId of this.groupMembers.get(group) ?? []) for (const h of this.hostsOfApp.get(appId)?.keys() ?? []) hosts.add(h);
    const addresses: ParsedAddress[] = [];
    for (const h of hosts) addresses.push(...(this.addressesOfHost.get(h) ?? []));
    return AddressSet.fromAddresses(addresses);
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
      const key = labelKey(applied);
      labelPeers.set(key, [...applied]);
      return key;
    });
    const mode = this.groupModes?.appMode(groups) ?? policy.defaults.mode;
    return { ...appCompileInfo(policy, app, mode, candidates, labelKeys), groups, labelPeers, problems };
  }
}

/** One host's addresses into the maps (a host listed twice merges), bad ones reported. */
function parseHost(host: Host, addressesOfHost: Map<string, ParsedAddress[]>, addressText: Map<string, string[]>, reports: CompileReport[]): void {
  const list = addressesOfHost.get(host.id) ?? [];
  addressesOfHost.set(host.id, list);
  const texts = addressText.get(host.id) ?? [];
  addressText.set(host.id, texts);
  for (const text of host.addresses) {
    texts.push(text);
    try {
      list.push(addressOf(text, LENIENT));
    } catch (err) {
      reports.push({ kind: 'host-without-address', hostId: host.id, message: `host ${host.id}: ${(err as Error).message}; address ignored` });
    }
  }
}
