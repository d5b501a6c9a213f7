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
 * `maxMembers` bounds what a compile may build: members are counted host by host in pass 1 (from
 * the resolved sets, before any text exists) and the compile stops with a PolicyLimitError once
 * over (src/policy/policy-limits.ts).
 *
 * Cost: group/network/rule source sets are built once; each app gets its candidate rules (those
 * whose `to` names one of its groups); resolution depends only on (matching rule indices, applied
 * label peers) and is cached per distinct list by SourceResolver (O(M log k) for k rules of M
 * intervals); members are formatted once per
 * distinct set and sorted by MemberEmitter without string comparisons. Which rules match a port is
 * memoised per app port (host-claims.ts PortMatch).
 */
import type { App, ClusterState, Task } from '../inventory/cluster-state.js';
import type { PeerRef, Policy } from '../policy/policy-model.js';
import { addressOf, type ParsedAddress } from '../net/address.js';
import { LENIENT } from '../net/cidr.js';
import { AddressSet } from './address-set.js';
import { compareReports, type CompileReport } from './compile-report.js';
import type { DesiredState } from './desired-state.js';
import { appCompileInfo, candidateRules, hostClaims, rulesByTarget, hostStates, policyConstants, type AppCompileInfo, type HostClaim, type PortMatch } from './host-claims.js';
import { SourceTexts } from './emit-members.js';
import { declarationChecker } from './label-declarations.js';
import { MemberBudget } from '../policy/policy-limits.js';
import { buildPeerSets } from './peer-sets.js';
import { SourceResolver } from './resolve-sources.js';

export type { CompileReport, CompileReportKind } from './compile-report.js';

export interface CompileResult {
  /** One state per host of the cluster, keyed and iterated in sorted host-id order. */
  readonly states: ReadonlyMap<string, DesiredState>;
  readonly reports: readonly CompileReport[];
}

function peerKey(p: PeerRef): string {
  return p.kind === 'any' ? 'any' : `${p.kind}:${p.name}`;
}

export interface CompileOptions {
  /**
   * Stop with a PolicyLimitError once the hosts compiled so far hold more allow-set members
   * than this (checked host by host before any member text is built). Default: no limit.
   */
  readonly maxMembers?: number;
}

export function compile(policy: Policy, cluster: ClusterState, options: CompileOptions = {}): CompileResult {
  const reports: CompileReport[] = [];

  // Hosts: addresses parsed once; unknown or bad addresses reported, never guessed.
  const addressesOfHost = new Map<string, ParsedAddress[]>();
  for (const host of cluster.hosts) {
    const list = addressesOfHost.get(host.id) ?? [];
    addressesOfHost.set(host.id, list);
    for (const text of host.addresses) {
      try {
        list.push(addressOf(text, LENIENT));
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
  const rulesOfGroup = rulesByTarget(policy);

  // Per app: candidate rules and applied label peers per port index (key + set).
  const labelSets = new Map<string, AddressSet>();
  const appInfo = new Map<string, AppCompileInfo>();
  const checkAppDeclarations = declarationChecker(policy);
  for (const app of appList) {
    const groups = peers.groupsOfApp.get(app.id) ?? [];
    const candidates = candidateRules(rulesOfGroup, groups);
    const checked = checkAppDeclarations(app, groups);
    for (const p of checked.problems) reports.push({ kind: p.kind, appId: app.id, message: p.message });
    const labelKeys = checked.appliedByPort.map((applied) => {
      const key = [...new Set(applied.map(peerKey))].sort().join('\n');
      if (!labelSets.has(key)) labelSets.set(key, AddressSet.unionAll(applied.map(peers.peerSet)));
      return key;
    });
    appInfo.set(app.id, appCompileInfo(policy, app, candidates, labelKeys));
  }

  const resolver = new SourceResolver(
    policy.rules.map((r) => r.action),
    ruleFrom,
    policy.defaults.action === 'allow',
  );

  // Pass 1: every host's managed ports and their allowed sets; pass 2: sorted members and states.
  const constants = policyConstants(policy);
  const claimsOfHost = new Map<string, readonly HostClaim[]>();
  const resolved = new Map<PortMatch, AddressSet>();
  const resolve = (m: PortMatch): AddressSet => {
    let set = resolved.get(m);
    if (!set) resolved.set(m, (set = resolver.resolve(m.matching, m.labelKey, labelSets.get(m.labelKey)!)));
    return set;
  };
  const infoOf = (appId: string) => appInfo.get(appId)!;
  const budget = new MemberBudget(options.maxMembers ?? Infinity, hostIds.length);
  const sourceTexts = new SourceTexts();
  for (const hostId of hostIds) {
    const host = hostClaims(policy, constants, hostId, tasksOfHost.get(hostId)!, infoOf, resolve);
    budget.add(sourceTexts.claimsCount(host.claims));
    reports.push(...host.reports);
    claimsOfHost.set(hostId, host.claims);
  }
  const states = hostStates(policy, constants, claimsOfHost, sourceTexts);

  reports.sort(compareReports);
  const unique = reports.filter((r, i) => i === 0 || compareReports(r, reports[i - 1]!) !== 0);
  return { states, reports: unique };
}
