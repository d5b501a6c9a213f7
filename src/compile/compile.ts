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
 * Audit mode does not change the allow sets, only `mode`; per-group modes (`groups.<name>.mode`)
 * set each host's mode and, where its apps' modes differ, its audit-tcp / audit-udp /
 * egress-audit lists (group-modes.ts, applied by host-claims.ts hostStates).
 *
 * `maxMembers` bounds what a compile may build: members are counted host by host in pass 1 (from
 * the resolved sets, before any text exists) and the compile stops with a PolicyLimitError once
 * over (src/policy/policy-limits.ts).
 *
 * One compile path: the inputs are read by the cluster index (cluster-index.ts: hosts, apps,
 * valid tasks, group/network/rule/label source sets, the inventory and label reports), each
 * host's claims and state by host-claims.ts; the incremental compiler stands on the same two and
 * only adds the bookkeeping to redo part of it. This function is that index built from empty and
 * every host emitted, without the bookkeeping: building an IncrementalCompiler costs about 15-25 %
 * more CPU at the benchmark's 1,000 hosts (its resolution index and claim suffixes), which a
 * one-off compile (check, explain, diff, the CLI) does not need.
 *
 * Cost: group/network/rule source sets are built once; each app gets its candidate rules (those
 * whose `to` names one of its groups); resolution depends only on (matching rule indices, applied
 * label peers) and is cached per distinct list by SourceResolver (O(M log k) for k rules of M
 * intervals); members are formatted once per distinct set and sorted by MemberEmitter without
 * string comparisons. Which rules match a port is memoised per app port (host-claims.ts PortMatch).
 */
import type { ClusterState } from '../inventory/cluster-state.js';
import type { Policy } from '../policy/policy-model.js';
import type { AddressSet } from './address-set.js';
import { ClusterIndex, runSteps } from './cluster-index.js';
import { sortedUniqueReports, type CompileReport } from './compile-report.js';
import type { DesiredState } from './desired-state.js';
import { EgressIndex, egressClaims, egressInput } from './egress.js';
import { hostClaims, hostStates, policyConstants, type HostClaim, type PortMatch } from './host-claims.js';
import { SourceTexts } from './emit-members.js';
import { MemberBudget } from '../policy/policy-limits.js';

export type { CompileReport, CompileReportKind } from './compile-report.js';

export interface CompileResult {
  /** One state per host of the cluster, keyed and iterated in sorted host-id order. */
  readonly states: ReadonlyMap<string, DesiredState>;
  readonly reports: readonly CompileReport[];
}

export interface CompileOptions {
  /**
   * Stop with a PolicyLimitError once the hosts compiled so far hold more allow-set members
   * than this (checked host by host before any member text is built). Default: no limit.
   */
  readonly maxMembers?: number;
}

export function compile(policy: Policy, cluster: ClusterState, options: CompileOptions = {}): CompileResult {
  const index = new ClusterIndex(policy);
  runSteps(index.update(cluster, true));
  const reports = index.reports();
  const hostIds = index.hostIds();

  // Pass 1: every host's managed ports and their allowed sets; pass 2: sorted members and states.
  const constants = policyConstants(policy);
  const claimsOfHost = new Map<string, readonly HostClaim[]>();
  const resolved = new Map<PortMatch, AddressSet>();
  const resolve = (m: PortMatch): AddressSet => {
    let set = resolved.get(m);
    if (!set) resolved.set(m, (set = index.resolve(m)));
    return set;
  };
  const infoOf = (appId: string) => index.app(appId);
  const budget = new MemberBudget(options.maxMembers ?? Infinity, hostIds.length);
  const sourceTexts = new SourceTexts();
  for (const hostId of hostIds) {
    const host = hostClaims(policy, constants, hostId, index.tasksOn(hostId), infoOf, resolve);
    budget.add(sourceTexts.claimsCount(host.claims));
    reports.push(...host.reports);
    claimsOfHost.set(hostId, host.claims);
  }
  const egress = policy.defaults.egress ? new EgressIndex(policy, (name) => index.networkSource(name)) : undefined;
  if (egress) {
    const input = egressInput(index, (hostId) => egressClaims(claimsOfHost.get(hostId) ?? []));
    egress.update(input, hostIds, [], hostIds);
    reports.push(...egress.reports());
  }
  const states = hostStates(policy, constants, claimsOfHost, sourceTexts, undefined, undefined, egress && ((id) => egress.sets(id)), index.appAudit);
  return { states, reports: sortedUniqueReports(reports) };
}
