/**
 * The incremental compiler: `compile(policy, cluster)` kept up to date as the cluster changes,
 * recomputing only the hosts whose state can change.
 *
 * Contract
 *  - After `setPolicy(p)` and any sequence of `applyClusterChange(c)`, `states()` equals
 *    `compile(p, c).states` (same sets, same versions) and `reports()` equals its reports.
 *  - `applyClusterChange` returns `changed` (hosts whose state version changed or that appeared)
 *    and `removed` (hosts that left the cluster). `setPolicy` recompiles everything (policy edits
 *    are rare) and reports changes the same way.
 *
 * Which hosts are recomputed ("dirty"): the old and new host of every task that appeared,
 * disappeared, moved or changed ports (validity included: a task of an unknown host or app does
 * not count); every host running a task of an app whose definition changed; new hosts; and, when
 * a group's source-address set changed (a host gained its first or lost its last task of the
 * group, or such a host's addresses changed, or an app joined/left the group), every host running
 * a task of an app whose candidate rules or applied label declarations name that group.
 *
 * Cost per change: O(apps + tasks + hosts) of map work to diff the new ClusterState against the
 * last one (no set arithmetic), plus the real work — resolution, member emission and hashing —
 * for dirty hosts only. Group sets are rebuilt only for groups touched by the change.
 * Pure: no I/O, no clock. Not reentrant (single-threaded use, like the rest of the controller).
 */
import type { App, ClusterState, Task } from '../inventory/cluster-state.js';
import { appMatchesGroup } from '../policy/app-selector.js';
import type { PeerRef, Policy } from '../policy/policy-model.js';
import { AddressSet, parseAddress, type ParsedAddress } from './address-set.js';
import { compareReports, type CompileReport } from './compile-report.js';
import type { DesiredState } from './desired-state.js';
import { hostClaims, hostStates, policyConstants, type AppCompileInfo, type HostClaim, type PolicyConstants } from './host-claims.js';
import { checkAppDeclarations } from './label-declarations.js';
import { SourceResolver } from './resolve-sources.js';

export interface IncrementalResult {
  /** Hosts whose state is new or has a new version, with that state. */
  readonly changed: ReadonlyMap<string, DesiredState>;
  /** Hosts that left the cluster (their state is gone). */
  readonly removed: readonly string[];
  /** How many hosts were recomputed (dirty), for metrics and tests. */
  readonly recomputed: number;
}

interface AppEntry extends AppCompileInfo {
  readonly groups: readonly string[];
  readonly labelPeers: ReadonlyMap<string, readonly PeerRef[]>;
  readonly problems: readonly CompileReport[];
}

const EMPTY_CLUSTER: ClusterState = { hosts: [], apps: [], tasks: [] };

function peerKey(p: PeerRef): string {
  return p.kind === 'any' ? 'any' : `${p.kind}:${p.name}`;
}

function sameApp(a: App, b: App): boolean {
  return a === b || JSON.stringify(a) === JSON.stringify(b);
}

function sameTask(a: Task, b: Task): boolean {
  return a.appId === b.appId && a.hostId === b.hostId && a.hostPorts.length === b.hostPorts.length && a.hostPorts.every((p, i) => p === b.hostPorts[i]);
}

function addTo<K, V>(map: Map<K, Set<V>>, key: K, value: V): void {
  let set = map.get(key);
  if (!set) map.set(key, (set = new Set()));
  set.add(value);
}

export class IncrementalCompiler {
  private policy: Policy;
  private constants: PolicyConstants;
  private cluster: ClusterState = EMPTY_CLUSTER;
  private apps = new Map<string, AppEntry>();
  private groupMembers = new Map<string, Set<string>>();
  private addressText = new Map<string, string>();
  private validTasks = new Map<string, Task>();
  private tasksOfHost = new Map<string, Task[]>();
  private hostsOfApp = new Map<string, Set<string>>();
  private groupSet = new Map<string, AddressSet>();
  private networkSet = new Map<string, AddressSet>();
  private labelSets = new Map<string, AddressSet>();
  private resolver!: SourceResolver;
  private stateOf = new Map<string, DesiredState>();
  private conflictReports = new Map<string, readonly CompileReport[]>();
  /** Per host: the groups whose source sets its last computed state depends on. */
  private dependsOn = new Map<string, ReadonlySet<string>>();
  private inventoryReports: CompileReport[] = [];
  private cachedReports: readonly CompileReport[] | undefined;

  constructor(policy: Policy, cluster: ClusterState = EMPTY_CLUSTER) {
    this.policy = policy;
    this.constants = policyConstants(policy);
    this.update(cluster, true);
  }

  /** Full recompile under a new policy. */
  setPolicy(policy: Policy): IncrementalResult {
    this.policy = policy;
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
    const policy = this.policy;
    const dirty = new Set<string>();
    const inventoryReports: CompileReport[] = [];

    // Hosts and their addresses (compile's rules: duplicates merge, bad addresses are reported).
    const addressesOfHost = new Map<string, ParsedAddress[]>();
    const addressText = new Map<string, string[]>();
    for (const host of next.hosts) {
      const list = addressesOfHost.get(host.id) ?? [];
      addressesOfHost.set(host.id, list);
      const texts = addressText.get(host.id) ?? [];
      addressText.set(host.id, texts);
      for (const text of host.addresses) {
        texts.push(text);
        try {
          list.push(parseAddress(text));
        } catch (err) {
          inventoryReports.push({ kind: 'host-without-address', hostId: host.id, message: `host ${host.id}: ${(err as Error).message}; address ignored` });
        }
      }
    }
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
    const tasksOfHost = new Map<string, Task[]>([...addressesOfHost.keys()].map((id) => [id, []]));
    const hostsOfApp = new Map<string, Set<string>>();
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
      // Duplicate task ids: compile keeps both; so do we (the diff below then sees the last one).
      const old = this.validTasks.get(task.id);
      if (!old || !sameTask(old, task) || validTasks.has(task.id)) {
        dirty.add(task.hostId);
        if (old) dirty.add(old.hostId);
      }
      validTasks.set(task.id, task);
      addTo(hostsOfApp, task.appId, task.hostId);
    }
    for (const [id, old] of this.validTasks) if (!validTasks.has(id)) dirty.add(old.hostId);
    if (!full) {
      // A host whose task list changed in any other way (duplicate ids) is dirty as well.
      for (const [hostId, tasks] of tasksOfHost) if (tasks.length !== (this.tasksOfHost.get(hostId)?.length ?? 0)) dirty.add(hostId);
    }

    // Apps whose host set changed, and app entries of changed apps.
    const touchedApps = new Set<string>(changedApps);
    for (const id of new Set([...hostsOfApp.keys(), ...this.hostsOfApp.keys()])) {
      const a = hostsOfApp.get(id);
      const b = this.hostsOfApp.get(id);
      if (a?.size !== b?.size || [...(a ?? [])].some((h) => !b!.has(h))) touchedApps.add(id);
    }
    const touchedGroups = new Set<string>();
    for (const id of changedApps) {
      const old = this.apps.get(id);
      for (const g of old?.groups ?? []) {
        touchedGroups.add(g);
        this.groupMembers.get(g)?.delete(id);
      }
      for (const h of this.hostsOfApp.get(id) ?? []) dirty.add(h);
      for (const h of hostsOfApp.get(id) ?? []) dirty.add(h);
      const app = nextApps.get(id);
      if (!app) {
        this.apps.delete(id);
        continue;
      }
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

    // Group source sets: rebuilt for touched groups only; changed ones make dependants dirty.
    const changedGroups = new Set<string>();
    for (const group of policy.groups) {
      if (!full && !touchedGroups.has(group.name)) continue;
      const hosts = new Set<string>();
      for (const appId of this.groupMembers.get(group.name) ?? []) for (const h of hostsOfApp.get(appId) ?? []) hosts.add(h);
      const addresses: ParsedAddress[] = [];
      for (const h of hosts) addresses.push(...(addressesOfHost.get(h) ?? []));
      const set = AddressSet.fromAddresses(addresses);
      const old = this.groupSet.get(group.name);
      if (!old || !old.equals(set)) changedGroups.add(group.name);
      this.groupSet.set(group.name, set);
    }

    this.addressText = new Map([...addressText].map(([id, texts]) => [id, texts.join(' ')]));
    this.validTasks = validTasks;
    this.tasksOfHost = tasksOfHost;
    this.hostsOfApp = hostsOfApp;
    this.cluster = next;
    this.inventoryReports = inventoryReports;
    this.cachedReports = undefined;

    if (full || changedGroups.size > 0) {
      this.rebuildResolver();
      for (const [hostId, groups] of this.dependsOn) {
        if (full || [...groups].some((g) => changedGroups.has(g))) dirty.add(hostId);
      }
    } else {
      // New label keys of changed apps need their sets (existing keys are still valid).
      for (const id of changedApps) this.addLabelSets(this.apps.get(id));
    }

    for (const id of removed) {
      this.stateOf.delete(id);
      this.conflictReports.delete(id);
      this.dependsOn.delete(id);
      dirty.delete(id);
    }
    return { changed: this.recompute(dirty), removed, recomputed: dirty.size };
  }

  private recompute(dirty: ReadonlySet<string>): Map<string, DesiredState> {
    const claimsOfHost = new Map<string, HostClaim[]>();
    const infoOf = (appId: string) => this.apps.get(appId)!;
    const labelSet = (key: string) => this.labelSets.get(key)!;
    for (const hostId of [...dirty].sort()) {
      const r = hostClaims(this.policy, this.constants, hostId, this.tasksOfHost.get(hostId) ?? [], infoOf, this.resolver, labelSet);
      claimsOfHost.set(hostId, r.claims);
      if (r.groups.size > 0) this.dependsOn.set(hostId, r.groups);
      else this.dependsOn.delete(hostId);
      if (r.reports.length > 0) this.conflictReports.set(hostId, r.reports);
      else this.conflictReports.delete(hostId);
    }
    const changed = new Map<string, DesiredState>();
    for (const [hostId, state] of hostStates(this.policy, this.constants, claimsOfHost, (id) => this.stateOf.get(id))) {
      if (this.stateOf.get(hostId)?.version !== state.version) changed.set(hostId, state);
      this.stateOf.set(hostId, state);
    }
    return changed;
  }

  private peerSet = (peer: PeerRef): AddressSet => {
    if (peer.kind === 'any') return AddressSet.ALL;
    if (peer.kind === 'group') return this.groupSet.get(peer.name) ?? AddressSet.EMPTY;
    let set = this.networkSet.get(peer.name);
    if (!set) {
      const net = this.policy.networks.find((n) => n.name === peer.name);
      set = net ? AddressSet.fromStrings(net.cidrs).subtract(AddressSet.fromStrings(net.except)) : AddressSet.EMPTY;
      this.networkSet.set(peer.name, set);
    }
    return set;
  };

  private rebuildResolver(): void {
    const policy = this.policy;
    const ruleFrom = policy.rules.map((r) => AddressSet.unionAll(r.from.map(this.peerSet)));
    this.resolver = new SourceResolver(policy.rules.map((r) => r.action), ruleFrom, policy.defaults.action === 'allow');
    this.labelSets = new Map();
    for (const entry of this.apps.values()) this.addLabelSets(entry);
  }

  private addLabelSets(entry: AppEntry | undefined): void {
    for (const [key, peers] of entry?.labelPeers ?? []) {
      if (!this.labelSets.has(key)) this.labelSets.set(key, AddressSet.unionAll(peers.map(this.peerSet)));
    }
  }

  private appEntry(app: App): AppEntry {
    const policy = this.policy;
    const groups = policy.groups.filter((g) => appMatchesGroup(app, g)).map((g) => g.name);
    const candidateSet = new Set<number>();
    policy.rules.forEach((r, i) => {
      if (r.to.some((g) => groups.includes(g))) candidateSet.add(i);
    });
    const candidates = [...candidateSet].sort((a, b) => a - b);
    const checked = checkAppDeclarations(policy, app, groups);
    const problems: CompileReport[] = checked.problems.map((p) => ({ kind: p.kind, appId: app.id, message: p.message }));
    const labelPeers = new Map<string, PeerRef[]>();
    const labelKeys = checked.appliedByPort.map((applied) => {
      const key = [...new Set(applied.map(peerKey))].sort().join('\n');
      labelPeers.set(key, [...applied]);
      return key;
    });
    return { app, groups, candidates, labelKeys, labelPeers, problems };
  }
}
