/**
 * The compiler: (Policy, ClusterState) → one DesiredState per host, plus reports. Pure and
 * deterministic: no I/O, no clock; hosts, set members and reports are sorted, so replicas compile
 * identical bytes and versions.
 *
 * Contract (docs/architecture.md "Semantics"): for every managed task port (protocol, host port)
 * on a host, the allowed sources are resolved here, with interval arithmetic, into the exact set
 * of addresses whose verdict is ALLOW:
 *   remaining = ALL, allowed = passed = ∅
 *   for each matching policy rule r, in order (S = r's from set):
 *     allow: allowed ∪= S ∩ remaining · pass: passed ∪= S ∩ remaining · deny: nothing
 *     remaining -= S                                  (first match decides)
 *   scope = passed ∪ remaining                        (what reaches tier 2)
 *   allowed ∪= applied label declarations ∩ scope
 *   default allow: allowed ∪= scope
 * A failsafe (protocol, port) is never managed, even when a task uses it (failsafe wins).
 * Two task ports claiming one (protocol, host port) on a host are a `port-conflict`: reported,
 * and the port gets the INTERSECTION of their allowed sets (fail closed).
 * Audit mode does not change the sets, only `mode`.
 *
 * Cost: group/network/rule source sets are built once; each app gets its candidate rules (those
 * whose `to` names one of its groups); resolution depends only on (matching rule indices, applied
 * label peers) and is shared through SourceResolver's prefix trie; members are formatted once per
 * distinct set and sorted by MemberEmitter without string comparisons.
 */
import type { App, ClusterState, Task } from '../inventory/cluster-state.js';
import type { PeerRef, Policy, Protocol, RuleDef } from '../policy/policy-model.js';
import { AddressSet, parseAddress, type ParsedAddress } from './address-set.js';
import { compareReports, type CompileReport } from './compile-report.js';
import type { DesiredState, SetKind } from './desired-state.js';
import { MemberEmitter, type PortClaim } from './emit-members.js';
import { checkAppDeclarations } from './label-declarations.js';
import { buildPeerSets } from './peer-sets.js';
import { SourceResolver } from './resolve-sources.js';
import { stateVersion } from './state-version.js';

export type { CompileReport, CompileReportKind } from './compile-report.js';

export interface CompileResult {
  /** One state per host of the cluster, keyed and iterated in sorted host-id order. */
  readonly states: ReadonlyMap<string, DesiredState>;
  readonly reports: readonly CompileReport[];
}

/** Whether rule `r` covers port `index` (host port `hostPort`) of an app for `protocol`. */
export function ruleMatchesPort(r: RuleDef, portName: string | undefined, hostPort: number, protocol: Protocol): boolean {
  if (r.protocols !== null && !r.protocols.includes(protocol)) return false;
  if (r.ports.length === 0) return true;
  return r.ports.some((p) =>
    p.kind === 'number'
      ? p.port === hostPort
      : p.kind === 'range'
        ? p.from <= hostPort && hostPort <= p.to
        : portName !== undefined && p.name === portName,
  );
}

function peerKey(p: PeerRef): string {
  return p.kind === 'any' ? 'any' : `${p.kind}:${p.name}`;
}

function sortedUnique(list: string[]): string[] {
  list.sort();
  let w = 0;
  for (let i = 0; i < list.length; i++) if (i === 0 || list[i] !== list[w - 1]) list[w++] = list[i]!;
  list.length = w;
  return list;
}

function isPort(p: number): boolean {
  return Number.isInteger(p) && p >= 1 && p <= 65535;
}

export function compile(policy: Policy, cluster: ClusterState): CompileResult {
  const reports: CompileReport[] = [];

  // Hosts: addresses parsed once; unknown or bad addresses reported, never guessed.
  const addressesOfHost = new Map<string, ParsedAddress[]>();
  for (const host of cluster.hosts) {
    const list = addressesOfHost.get(host.id) ?? [];
    addressesOfHost.set(host.id, list);
    for (const text of host.addresses) {
      try {
        list.push(parseAddress(text));
      } catch (err) {
        reports.push({
          kind: 'host-without-address',
          hostId: host.id,
          message: `host ${host.id}: ${(err as Error).message}; address ignored`,
        });
      }
    }
  }
  const hostIds = [...addressesOfHost.keys()].sort();
  for (const id of hostIds) {
    if (addressesOfHost.get(id)!.length === 0) {
      reports.push({
        kind: 'host-without-address',
        hostId: id,
        message: `host ${id} has no usable address; it is in no group's source set`,
      });
    }
  }

  // Apps and the tasks that can be placed.
  const apps = new Map<string, App>();
  for (const app of cluster.apps) if (!apps.has(app.id)) apps.set(app.id, app);
  const appList = [...apps.values()];
  const tasksOfHost = new Map<string, Task[]>(hostIds.map((id) => [id, []]));
  const hostsOfApp = new Map<string, Set<string>>();
  for (const task of cluster.tasks) {
    const onHost = tasksOfHost.get(task.hostId);
    if (!onHost) {
      reports.push({
        kind: 'task-unknown-host',
        taskId: task.id,
        appId: task.appId,
        hostId: task.hostId,
        message: `task ${task.id} runs on host ${task.hostId}, which the inventory does not list; ignored`,
      });
      continue;
    }
    if (!apps.has(task.appId)) {
      reports.push({
        kind: 'task-unknown-app',
        taskId: task.id,
        appId: task.appId,
        hostId: task.hostId,
        message: `task ${task.id} belongs to app ${task.appId}, which the inventory does not list; ignored`,
      });
      continue;
    }
    onHost.push(task);
    let hosts = hostsOfApp.get(task.appId);
    if (!hosts) hostsOfApp.set(task.appId, (hosts = new Set()));
    hosts.add(task.hostId);
  }

  const peers = buildPeerSets(policy, appList, hostsOfApp, addressesOfHost);
  const ruleFrom = policy.rules.map((r) => AddressSet.unionAll(r.from.map(peers.peerSet)));
  const rulesOfGroup = new Map<string, number[]>();
  policy.rules.forEach((r, i) => {
    for (const g of new Set(r.to)) {
      let list = rulesOfGroup.get(g);
      if (!list) rulesOfGroup.set(g, (list = []));
      list.push(i);
    }
  });

  // Per app: candidate rules and applied label peers per port index (key + set).
  interface AppInfo {
    readonly candidates: readonly number[];
    readonly labelKeys: readonly string[];
  }
  const labelSets = new Map<string, AddressSet>();
  const appInfo = new Map<string, AppInfo>();
  for (const app of appList) {
    const groups = peers.groupsOfApp.get(app.id) ?? [];
    const candidates = [...new Set(groups.flatMap((g) => rulesOfGroup.get(g) ?? []))].sort((a, b) => a - b);
    const checked = checkAppDeclarations(policy, app, groups);
    for (const p of checked.problems) reports.push({ kind: p.kind, appId: app.id, message: p.message });
    const labelKeys = checked.appliedByPort.map((applied) => {
      const key = [...new Set(applied.map(peerKey))].sort().join('\n');
      if (!labelSets.has(key)) labelSets.set(key, AddressSet.unionAll(applied.map(peers.peerSet)));
      return key;
    });
    appInfo.set(app.id, { candidates, labelKeys });
  }

  const resolver = new SourceResolver(
    policy.rules.map((r) => r.action),
    ruleFrom,
    policy.defaults.action === 'allow',
  );

  const failsafe = new Set(policy.defaults.failsafe.map((f) => `${f.protocol}:${f.port}`));
  const failsafeOf = (proto: Protocol) =>
    sortedUnique(policy.defaults.failsafe.filter((f) => f.protocol === proto).map((f) => String(f.port)));
  const failsafeTcp = failsafeOf('tcp');
  const failsafeUdp = failsafeOf('udp');

  // Pass 1: every host's managed ports and their allowed sets.
  interface Claim extends PortClaim {
    set: AddressSet;
    readonly owners: string[];
  }
  const claimsOfHost = new Map<string, Claim[]>();
  for (const hostId of hostIds) {
    const claims = new Map<string, Claim>();
    const tasks = tasksOfHost.get(hostId)!.slice().sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    for (const task of tasks) {
      const app = apps.get(task.appId)!;
      const info = appInfo.get(app.id)!;
      const n = Math.min(task.hostPorts.length, app.ports.length);
      for (let i = 0; i < n; i++) {
        const hostPort = task.hostPorts[i]!;
        if (!isPort(hostPort)) continue;
        const port = app.ports[i]!;
        for (const protocol of new Set(port.protocols)) {
          const key = `${protocol}:${hostPort}`;
          if (failsafe.has(key)) continue;
          const matching = info.candidates.filter((r) => ruleMatchesPort(policy.rules[r]!, port.name, hostPort, protocol));
          const labelKey = info.labelKeys[i]!;
          const set = resolver.resolve(matching, labelKey, labelSets.get(labelKey)!);
          const owner = `${task.id}#${i}`;
          const claim = claims.get(key);
          if (claim) {
            claim.set = claim.set.intersect(set);
            claim.owners.push(owner);
          } else {
            claims.set(key, { protocol, port: hostPort, set, owners: [owner] });
          }
        }
      }
    }
    for (const [key, claim] of claims) {
      if (claim.owners.length > 1) {
        reports.push({
          kind: 'port-conflict',
          hostId,
          message: `host ${hostId}: ${key} is claimed by ${claim.owners.join(', ')}; only sources all of them allow are allowed`,
        });
      }
    }
    claimsOfHost.set(hostId, [...claims.values()]);
  }

  // Pass 2: sorted members and the state of each host.
  const emitter = new MemberEmitter([...claimsOfHost.values()].flatMap((claims) => claims.map((c) => c.set)));
  const mode = policy.defaults.mode;
  const states = new Map<string, DesiredState>();
  for (const hostId of hostIds) {
    const claims = claimsOfHost.get(hostId)!;
    const managed = (protocol: Protocol) =>
      sortedUnique(claims.filter((c) => c.protocol === protocol).map((c) => String(c.port)));
    const sets: Record<SetKind, string[]> = {
      'managed-tcp': managed('tcp'),
      'managed-udp': managed('udp'),
      'failsafe-tcp': [...failsafeTcp],
      'failsafe-udp': [...failsafeUdp],
      ...emitter.emit(claims),
    };
    states.set(hostId, { hostId, mode, sets, version: stateVersion(mode, sets) });
  }

  reports.sort(compareReports);
  const unique = reports.filter((r, i) => i === 0 || compareReports(r, reports[i - 1]!) !== 0);
  return { states, reports: unique };
}
