/**
 * One host's managed ports and their allowed source sets, and the DesiredState built from them:
 * the per-host half of the compiler (its passes 1 and 2), used by the full `compile` and by the
 * incremental compiler alike, so both build a host's state with the same code.
 *
 * Contract: given the cluster-wide inputs `compile` derives (valid tasks of the host, app infos
 * with candidate rules and label keys, a resolution function over the rule and label sets),
 * `hostClaims` + `hostStates` give the host's state and its `port-conflict` reports. The sorted
 * output of MemberEmitter does not depend on which other sets it ranked, so emitters may be built
 * per batch of hosts. test/compile-incremental.test.ts checks the equality on long random change
 * sequences.
 *
 * A claim's allowed set depends only on its PortMatch (matching rule indices + applied label
 * key); `PortMatch.key` names that resolution, so equal keys always resolve to equal sets, and
 * `PortMatch.groups` lists the groups whose source sets it reads (the incremental compiler
 * re-resolves a key only when one of those changes). PortMatches are memoised per app port.
 */
import type { App, Task } from '../inventory/cluster-state.js';
import type { Mode, Policy, Protocol, RuleDef } from '../policy/policy-model.js';
import type { AddressSet } from './address-set.js';
import type { CompileReport } from './compile-report.js';
import { SET_KINDS, emptySets, type DesiredState, type AuditKind, type EgressKind, type EgressSets, type SetKind } from './desired-state.js';
import { GroupModes, type HostMode, type ModeClaim } from './group-modes.js';
import { memberSuffix } from '../net/member.js';
import { MemberEmitter, type PortClaim, type SourceTexts } from './emit-members.js';
import { HostVersions } from './state-version.js';

/** What decides one claim's allowed set (see the header). */
export interface PortMatch {
  /** Indices of the policy rules that match the port, in policy order. */
  readonly matching: readonly number[];
  readonly labelKey: string;
  /** Names the resolution: `matching` and `labelKey` as one string. */
  readonly key: string;
  /** Groups whose source sets the resolution reads (`from` groups, label groups). */
  readonly groups: readonly string[];
}

export interface AppCompileInfo {
  readonly app: App;
  /** The app's mode (group-modes.ts: its groups' explicit modes, else defaults.mode). */
  readonly mode: Mode;
  readonly candidates: readonly number[];
  readonly labelKeys: readonly string[];
  /** Candidates that name a port by number or range (then host ports matter), in policy order. */
  readonly hostPortRules: readonly number[];
  /** Memo per "<port index>:<protocol>": what does not depend on the host port (see portMatch). */
  readonly portBases: Map<string, PortBase>;
  /** Memo: PortMatch per "<port index>:<protocol>[:<matching host-port rules>]". */
  readonly portMatches: Map<string, PortMatch>;
}

/** One app port and protocol: the candidates that match whatever the host port, and the others to test. */
interface PortBase {
  readonly fixed: readonly number[];
  readonly byHostPort: readonly number[];
}

export interface HostClaim extends PortClaim {
  set: AddressSet;
  readonly owners: string[];
  /** PortMatches of the owners, in owner order. */
  readonly matches: PortMatch[];
  /** Every owner's app is in audit (group-modes.ts). */
  audit: boolean;
}

export interface PolicyConstants {
  readonly failsafe: ReadonlySet<string>;
  readonly failsafeTcp: readonly string[];
  readonly failsafeUdp: readonly string[];
  /** The policy's group modes; undefined when no group has one (group-modes.ts). */
  readonly groupModes: GroupModes | undefined;
}

/** Resolves a PortMatch to its allowed set (callers memoise by key as they see fit). */
export type Resolve = (match: PortMatch) => AddressSet;

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

/** Rule indices per `to` group, ascending. */
export function rulesByTarget(policy: Policy): Map<string, number[]> {
  const out = new Map<string, number[]>();
  policy.rules.forEach((r, i) => {
    for (const g of new Set(r.to)) {
      let list = out.get(g);
      if (!list) out.set(g, (list = []));
      list.push(i);
    }
  });
  return out;
}

/** The rules whose `to` names one of `groups`, ascending. */
export function candidateRules(rulesOfGroup: ReadonlyMap<string, readonly number[]>, groups: readonly string[]): number[] {
  if (groups.length === 1) return [...(rulesOfGroup.get(groups[0]!) ?? [])];
  return [...new Set(groups.flatMap((g) => rulesOfGroup.get(g) ?? []))].sort((a, b) => a - b);
}

function namesHostPort(r: RuleDef): boolean {
  return r.ports.some((p) => p.kind !== 'name');
}

export function appCompileInfo(policy: Policy, app: App, mode: Mode, candidates: readonly number[], labelKeys: readonly string[]): AppCompileInfo {
  const hostPortRules = candidates.filter((r) => namesHostPort(policy.rules[r]!));
  return { app, mode, candidates, labelKeys, hostPortRules, portBases: new Map(), portMatches: new Map() };
}

/** Merges two ascending lists of distinct rule indices. */
function mergeAscending(a: readonly number[], b: readonly number[]): number[] {
  const out: number[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) out.push(j >= b.length || (i < a.length && a[i]! < b[j]!) ? a[i++]! : b[j++]!);
  return out;
}

/**
 * The PortMatch of one task port. Which candidates match depends on the port index and protocol,
 * and for the (usually few) rules that name host ports on the host port too: the first part is
 * memoised per (index, protocol), so a task port costs a test of the host-port rules only.
 */
function portMatch(policy: Policy, info: AppCompileInfo, index: number, hostPort: number, protocol: Protocol): PortMatch {
  const baseKey = `${index}:${protocol}`;
  const portName = info.app.ports[index]!.name;
  let base = info.portBases.get(baseKey);
  if (!base) {
    const fixed: number[] = [];
    const byHostPort: number[] = [];
    for (const r of info.candidates) {
      const rule = policy.rules[r]!;
      if (namesHostPort(rule)) {
        if (rule.protocols === null || rule.protocols.includes(protocol)) byHostPort.push(r);
      } else if (ruleMatchesPort(rule, portName, hostPort, protocol)) {
        fixed.push(r);
      }
    }
    info.portBases.set(baseKey, (base = { fixed, byHostPort }));
  }
  const hostMatched = base.byHostPort.length === 0 ? base.byHostPort : base.byHostPort.filter((r) => ruleMatchesPort(policy.rules[r]!, portName, hostPort, protocol));
  const memoKey = hostMatched.length === 0 ? baseKey : `${baseKey}:${hostMatched.join(',')}`;
  let m = info.portMatches.get(memoKey);
  if (!m) {
    const matching = hostMatched.length === 0 ? base.fixed : mergeAscending(base.fixed, hostMatched);
    const labelKey = info.labelKeys[index]!;
    const groups = new Set<string>();
    for (const r of matching) for (const p of policy.rules[r]!.from) if (p.kind === 'group') groups.add(p.name);
    for (const k of labelKey.split('\n')) if (k.startsWith('group:')) groups.add(k.slice('group:'.length));
    m = { matching, labelKey, key: `${matching.join(',')}|${labelKey}`, groups: [...groups] };
    info.portMatches.set(memoKey, m);
  }
  return m;
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

export function policyConstants(policy: Policy): PolicyConstants {
  const of = (proto: Protocol) =>
    sortedUnique(policy.defaults.failsafe.filter((f) => f.protocol === proto).map((f) => String(f.port)));
  return {
    failsafe: new Set(policy.defaults.failsafe.map((f) => `${f.protocol}:${f.port}`)),
    failsafeTcp: of('tcp'),
    failsafeUdp: of('udp'),
    groupModes: GroupModes.of(policy),
  };
}

function byId(a: Task, b: Task): number {
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/**
 * Pass 1 for one host: its claims (tasks sorted by id, each claim with the PortMatches of its
 * owners) and port-conflict reports.
 */
export function hostClaims(
  policy: Policy,
  constants: PolicyConstants,
  hostId: string,
  validTasks: readonly Task[],
  infoOf: (appId: string) => AppCompileInfo,
  resolve: Resolve,
): { claims: HostClaim[]; reports: CompileReport[] } {
  const claims = new Map<string, HostClaim>();
  const tasks = validTasks.slice().sort(byId);
  for (const task of tasks) {
    const info = infoOf(task.appId);
    const app = info.app;
    const n = Math.min(task.hostPorts.length, app.ports.length);
    for (let i = 0; i < n; i++) {
      const hostPort = task.hostPorts[i]!;
      if (!isPort(hostPort)) continue;
      const protocols = app.ports[i]!.protocols;
      for (let p = 0; p < protocols.length; p++) {
        const protocol = protocols[p]!;
        if (protocols.indexOf(protocol) !== p) continue; // listed twice
        const key = `${protocol}:${hostPort}`;
        if (constants.failsafe.has(key)) continue;
        const match = portMatch(policy, info, i, hostPort, protocol);
        const set = resolve(match);
        const owner = `${task.id}#${i}`;
        const audit = info.mode === 'audit';
        const claim = claims.get(key);
        if (claim) {
          claim.set = claim.set.intersect(set);
          claim.owners.push(owner);
          claim.matches.push(match);
          claim.audit &&= audit;
        } else {
          claims.set(key, { protocol, port: hostPort, set, owners: [owner], matches: [match], audit });
        }
      }
    }
  }
  const reports: CompileReport[] = [];
  for (const [key, claim] of claims) {
    if (claim.owners.length > 1) {
      reports.push({
        kind: 'port-conflict',
        hostId,
        message: `host ${hostId}: ${key} is claimed by ${claim.owners.join(', ')}; only sources all of them allow are allowed`,
      });
    }
  }
  return { claims: [...claims.values()], reports };
}

/** The sorted `managed-<protocol>` members of a host's claims. */
export function managedPorts(claims: readonly PortClaim[], protocol: Protocol): string[] {
  return sortedUnique(claims.filter((c) => c.protocol === protocol).map((c) => String(c.port)));
}

function sameSets(a: DesiredState['sets'], b: Record<SetKind, string[]>): boolean {
  for (const kind of SET_KINDS) {
    const x = a[kind];
    const y = b[kind];
    if (x.length !== y.length) return false;
    for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  }
  return true;
}

/**
 * A host's mode and audit lists (group-modes.ts) from its claims and egress lists; `appAudit`
 * says whether a local app is in audit. Without group modes: defaults.mode, no audit member.
 */
export function hostMode(
  constants: PolicyConstants,
  claims: readonly ModeClaim[],
  egress: EgressSets | undefined,
  appAudit: (appId: string) => boolean,
): HostMode | undefined {
  return constants.groupModes?.host(claims, egress?.['egress-task'] ?? [], appAudit);
}

/** HostVersions over the source texts of `sourceTexts` (one per compile / incremental compiler). */
export function hostVersions(sourceTexts: SourceTexts): HostVersions<AddressSet> {
  return new HostVersions((set) => sourceTexts.of(set));
}

/**
 * Pass 2 for a batch of hosts: sorted members and versions (`versions`, made by hostVersions
 * over the same `sourceTexts`, keeps each host's version sums); `egressOf` gives a host's egress
 * lists (egress.ts; none when egress is off). A host whose sets and mode equal
 * its `previous` state gets that very object back (no re-hash; its sums are still those of
 * `previous`).
 */
export function hostStates(
  policy: Policy,
  constants: PolicyConstants,
  claimsOfHost: ReadonlyMap<string, readonly HostClaim[]>,
  sourceTexts: SourceTexts,
  previous: (hostId: string) => DesiredState | undefined = () => undefined,
  versions: HostVersions<AddressSet> = hostVersions(sourceTexts),
  egressOf: (hostId: string) => EgressSets | undefined = () => undefined,
  appAudit: (appId: string) => boolean = () => false,
): Map<string, DesiredState> {
  const emitter = new MemberEmitter([...claimsOfHost.values()].flatMap((claims) => claims.map((c) => c.set)), sourceTexts);
  const states = new Map<string, DesiredState>();
  for (const [hostId, claims] of claimsOfHost) {
    const egress = egressOf(hostId);
    const modes = hostMode(constants, claims, egress, appAudit);
    const mode = modes?.mode ?? policy.defaults.mode;
    const managed = (protocol: Protocol) => managedPorts(claims, protocol);
    const sets: Record<SetKind, string[]> = {
      ...emptySets(),
      'managed-tcp': managed('tcp'),
      'managed-udp': managed('udp'),
      'failsafe-tcp': [...constants.failsafeTcp],
      'failsafe-udp': [...constants.failsafeUdp],
      ...emitter.emit(claims),
      ...(egress as Record<EgressKind, string[]> | undefined),
      ...(modes?.sets as Record<AuditKind, string[]> | undefined),
    };
    const old = previous(hostId);
    if (old && old.mode === mode && sameSets(old.sets, sets)) {
      states.set(hostId, old);
      continue;
    }
    const version = versions.fresh(hostId, mode, sets, claims.map((c) => ({ suffix: memberSuffix(c.protocol, c.port), set: c.set })));
    states.set(hostId, { hostId, mode, sets, version });
  }
  return states;
}
