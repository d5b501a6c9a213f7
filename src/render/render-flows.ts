/**
 * Flow recording in the kernel (issue 11; docs/architecture.md "Flows"): every new connection to
 * a managed port, and (with per-app egress) every new connection of a local app to a managed
 * destination, is recorded in a bounded `hash:ip,port` set of its verdict class, with no
 * userspace work per packet. Pure and deterministic.
 *
 * Recording R(S, X) of set S with direction flags <dir>, ending in target X:
 *
 *   -m set --match-set S <dir>                      -j X   known entry: its counters +1
 *   -j SET --add-set S <dir>                               new entry (counters: packets 1; no
 *                                                          --exist, which would reset counters
 *                                                          and timeout)
 *   -m set --match-set S <dir> ! --update-counters  -j X   just added
 *   -j X                                                   the set is full: THIS rule's counter
 *                                                          counts the connections not recorded
 *
 * A full set never blocks or slows anything: the SET target fails silently and the last rule
 * decides as the unrecorded chain would. Only new connections reach these chains (established
 * and related traffic returns earlier), so a set's packets are new connections.
 *
 * Ingress (PCU-MANAGED, render-chains.ts): with recording the allow rules go (`-g`) to
 * PCU-FL-ALLOW = R(fl-allow, RETURN), the tail to PCU-FL-DENY = R(fl-deny, DROP) in enforce or
 * PCU-FL-AUDIT = NFLOG pcu-audit + R(fl-audit, RETURN) in audit, and the audit ports of a host
 * that enforces (group modes: sets audit-tcp / audit-udp) to PCU-FL-AUDIT. Without recording
 * the allow rules RETURN, the tail DROPs or NFLOGs + RETURNs, and the audit ports go to
 * PCU-AUDIT (NFLOG + RETURN). With no audit port and no recording, PCU-MANAGED is exactly what it
 * was before issue 11.
 *
 * Egress (render-egress.ts): PCU-EG-<H> of local app <app> is, without recording,
 * `dst,dst in eg-<h> RETURN; -j PCU-EG-DENY` (or `-j PCU-EG-AUDIT` for an app of egress-audit
 * while the state enforces); with recording `! dst,dst in eg-<h> -g PCU-EGD-<H>; R(fa-<h>,
 * RETURN)` and PCU-EGD-<H> = R(fd-<h>, DROP), or NFLOG pcu-egress + R(fw-<h>, RETURN) in audit.
 *
 * The sets (`flowSets`) are created by the agent when missing and never swapped or flushed by an
 * apply; `overflowRules` names the counting rules the agent reads (chain, comment) for the lost
 * connections of each (direction, verdict).
 */
import type { AuditKind, DesiredState } from '../compile/desired-state.js';
import type { Family } from '../net/family.js';
import type { Mode } from '../policy/policy-model.js';
import {
  AUDIT_CHAIN,
  EGRESS_AUDIT_CHAIN,
  EGRESS_DENY_CHAIN,
  FLOW_CHAIN,
  MANAGED_CHAIN,
  auditPortSetName,
  egressAppChainName,
  egressAppSetName,
  egressFlowDenyChainName,
  egressFlowSetName,
  flowSetName,
  ipsetName,
  type FlowVerdict,
} from './owned-names.js';
import { makeRule, type Chain, type Rule } from './rule-model.js';

/** How the agent records flows (`--flow-max-entries`, `--flow-timeout`). */
export interface FlowRecording {
  readonly maxEntries: number;
  readonly timeoutSeconds: number;
}

export const DEFAULT_FLOW_RECORDING: FlowRecording = { maxEntries: 65536, timeoutSeconds: 600 };

/** NFLOG prefix of audit-mode would-be drops (group 0, the default, left implicit as iptables-save does). */
export const AUDIT_LOG_PREFIX = 'pcu-audit';
/** NFLOG prefix of egress would-be drops in audit mode. */
export const EGRESS_LOG_PREFIX = 'pcu-egress';

export type FlowDirectionClass = 'ingress' | 'egress';

/** One flow set of a rendered state. */
export interface FlowSet {
  readonly name: string;
  readonly family: Family;
  readonly direction: FlowDirectionClass;
  readonly verdict: FlowVerdict;
  /** Egress: the local app whose connections the set holds. */
  readonly appId?: string;
}

/** A rule whose counter is the connections a full set could not record. */
export interface OverflowRule {
  readonly chain: string;
  readonly comment: string;
  readonly family: Family;
  readonly direction: FlowDirectionClass;
  readonly verdict: FlowVerdict;
}

/** What recording adds to a rendered state (RenderedChains.flows). */
export interface RenderedFlows {
  readonly sets: readonly FlowSet[];
  readonly overflow: readonly OverflowRule[];
}

/** Which protocols of a host that enforces have audit ports (sets audit-tcp / audit-udp not empty). */
export interface AuditPorts {
  readonly tcp: boolean;
  readonly udp: boolean;
}

/** The group-mode kinds of a state (audit-tcp, audit-udp, egress-audit), empty when it has none. */
function groupModeMembers(state: DesiredState, kind: AuditKind): readonly string[] {
  return state.sets[kind] ?? [];
}

/** The audit port sets a state renders (only while it enforces): name and members (ports), tcp then udp. */
export function auditPortSets(state: DesiredState, family: Family): { name: string; members: readonly string[] }[] {
  const audit = auditPorts(state);
  return (['tcp', 'udp'] as const).filter((p) => audit[p]).map((p) => ({ name: auditPortSetName(p, family), members: groupModeMembers(state, `audit-${p}`) }));
}

/** What of the group modes shapes the rules: which protocols have audit ports, which local apps audit (a change is a full write). */
export function groupModeLayout(state: DesiredState): string {
  const audit = auditPorts(state);
  return JSON.stringify([audit.tcp, audit.udp, [...egressAuditApps(state)]]);
}

/** Which protocols have audit ports in `state` (only while it enforces: in audit every port is). */
export function auditPorts(state: DesiredState): AuditPorts {
  const enforce = state.mode === 'enforce';
  return { tcp: enforce && groupModeMembers(state, 'audit-tcp').length > 0, udp: enforce && groupModeMembers(state, 'audit-udp').length > 0 };
}

/** The local apps whose egress is in audit while the state enforces (egress-audit). */
export function egressAuditApps(state: DesiredState): ReadonlySet<string> {
  return new Set(state.mode === 'enforce' ? groupModeMembers(state, 'egress-audit') : []);
}

const VERDICTS: readonly FlowVerdict[] = ['allowed', 'denied', 'audit'];

function matchSet(name: string, dir: string): string[] {
  return ['-m', 'set', '--match-set', name, dir];
}

/** R(S, X): see the header. The last rule is the overflow rule. */
export function recordRules(set: string, dir: string, target: string): Rule[] {
  return [
    makeRule(matchSet(set, dir), ['-j', target]),
    makeRule([], ['-j', 'SET', '--add-set', set, dir]),
    makeRule([...matchSet(set, dir), '!', '--update-counters'], ['-j', target]),
    makeRule([], ['-j', target]),
  ];
}

/** The counting rule of R(·, X) (the last one). */
function overflowComment(target: string): string {
  return makeRule([], ['-j', target]).comment;
}

/** The `ipset create` type arguments of a flow set. */
export function flowSetTypeArgs(family: Family, recording: FlowRecording): string {
  const inet = family === 4 ? 'inet' : 'inet6';
  return `hash:ip,port family ${inet} timeout ${recording.timeoutSeconds} counters maxelem ${recording.maxEntries}`;
}

function nflog(prefix: string): Rule {
  return makeRule([], ['-j', 'NFLOG', '--nflog-prefix', prefix]);
}

/** The unrecorded verdict tail: DROP, or NFLOG + RETURN. */
function tail(audit: boolean, prefix: string): Rule[] {
  return audit ? [nflog(prefix), makeRule([], ['-j', 'RETURN'])] : [makeRule([], ['-j', 'DROP'])];
}

/** The rules of a recorded verdict chain: R(S, RETURN) / R(S, DROP) / NFLOG + R(S, RETURN). */
function recordedTail(verdict: FlowVerdict, set: string, dir: string, prefix: string): Rule[] {
  if (verdict === 'allowed') return recordRules(set, dir, 'RETURN');
  if (verdict === 'denied') return recordRules(set, dir, 'DROP');
  return [nflog(prefix), ...recordRules(set, dir, 'RETURN')];
}

function targetOf(verdict: FlowVerdict): string {
  return verdict === 'denied' ? 'DROP' : 'RETURN';
}

/** PCU-MANAGED and the chains it goes to (see the header). */
export function managedChains(mode: Mode, family: Family, recording: boolean, audit: AuditPorts): Chain[] {
  const ip = ipsetName(family === 4 ? 'allow-ip4' : 'allow-ip6', family) as string;
  const net = ipsetName(family === 4 ? 'allow-net4' : 'allow-net6', family) as string;
  const allowed = recording ? ['-g', FLOW_CHAIN.allowed] : ['-j', 'RETURN'];
  const auditTarget = recording ? FLOW_CHAIN.audit : AUDIT_CHAIN;
  const auditRules = (['tcp', 'udp'] as const)
    .filter((proto) => audit[proto])
    .map((proto) => makeRule(['-p', proto, ...matchSet(auditPortSetName(proto, family), 'dst')], ['-g', auditTarget]));
  const verdict = recording ? [makeRule([], ['-g', FLOW_CHAIN[mode === 'enforce' ? 'denied' : 'audit']])] : tail(mode === 'audit', AUDIT_LOG_PREFIX);
  const managed: Chain = {
    name: MANAGED_CHAIN,
    rules: [makeRule(matchSet(ip, 'src,dst'), allowed), makeRule(matchSet(net, 'src,dst'), allowed), ...auditRules, ...verdict],
  };
  if (recording) {
    return [managed, ...VERDICTS.map((v) => ({ name: FLOW_CHAIN[v], rules: recordedTail(v, flowSetName(v, family), 'src,dst', AUDIT_LOG_PREFIX) }))];
  }
  return auditRules.length > 0 ? [managed, { name: AUDIT_CHAIN, rules: tail(true, AUDIT_LOG_PREFIX) }] : [managed];
}

/**
 * How a local app's egress is judged: the state's mode (`enforce`, `audit`: PCU-EG-DENY says
 * which), or `audit-app`: in audit (egress-audit) while the state enforces.
 */
export type EgressAppMode = 'enforce' | 'audit' | 'audit-app';

/** The chains of local app `appId`: PCU-EG-<H>, and PCU-EGD-<H> when recording (see the header). */
export function egressAppChains(appId: string, family: Family, mode: EgressAppMode, recording: boolean): Chain[] {
  const chain = egressAppChainName(appId);
  const allowSet = egressAppSetName(appId, family);
  if (!recording) {
    const deny = mode === 'audit-app' ? EGRESS_AUDIT_CHAIN : EGRESS_DENY_CHAIN;
    return [{ name: chain, rules: [makeRule(matchSet(allowSet, 'dst,dst'), ['-j', 'RETURN']), makeRule([], ['-j', deny])] }];
  }
  const denyChain = egressFlowDenyChainName(appId);
  const denied: FlowVerdict = mode === 'enforce' ? 'denied' : 'audit';
  return [
    {
      name: chain,
      rules: [
        makeRule(['-m', 'set', '!', '--match-set', allowSet, 'dst,dst'], ['-g', denyChain]),
        ...recordRules(egressFlowSetName(appId, 'allowed', family), 'dst,dst', 'RETURN'),
      ],
    },
    { name: denyChain, rules: recordedTail(denied, egressFlowSetName(appId, denied, family), 'dst,dst', EGRESS_LOG_PREFIX) },
  ];
}

/** PCU-EG-AUDIT: the unrecorded deny path of the apps of egress-audit while the state enforces. */
export function egressAuditChain(): Chain {
  return { name: EGRESS_AUDIT_CHAIN, rules: tail(true, EGRESS_LOG_PREFIX) };
}

/**
 * The flow sets and overflow rules of a state rendered with recording: the three ingress sets,
 * and (`egressApps`, when per-app egress is rendered) for each local app its allowed set and the
 * one of its deny path (denied, or audit when `auditApp` says so).
 */
export function renderedFlows(family: Family, egressApps: readonly string[], auditApp: (appId: string) => boolean): RenderedFlows {
  const sets: FlowSet[] = VERDICTS.map((verdict) => ({ name: flowSetName(verdict, family), family, direction: 'ingress', verdict }));
  const overflow: OverflowRule[] = VERDICTS.map((verdict) => ({
    chain: FLOW_CHAIN[verdict],
    comment: overflowComment(targetOf(verdict)),
    family,
    direction: 'ingress',
    verdict,
  }));
  for (const appId of egressApps) {
    const denied: FlowVerdict = auditApp(appId) ? 'audit' : 'denied';
    for (const verdict of ['allowed', denied] as const) {
      sets.push({ name: egressFlowSetName(appId, verdict, family), family, direction: 'egress', verdict, appId });
      const chain = verdict === 'allowed' ? egressAppChainName(appId) : egressFlowDenyChainName(appId);
      overflow.push({ chain, comment: overflowComment(targetOf(verdict)), family, direction: 'egress', verdict });
    }
  }
  return { sets, overflow };
}
