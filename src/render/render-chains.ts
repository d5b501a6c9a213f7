/**
 * The chains of one host, as typed rules (see docs/architecture.md, "DesiredState → kernel").
 *
 * Contract: the rules depend only on (mode, family), never on set members, so every host has a
 * constant handful of rules and membership changes are ipset swaps only. Members live in ipsets;
 * a packet costs a few hash lookups whatever the policy size. Deterministic.
 *
 *   PREROUTING (mangle): -j PCU-PREROUTING                       (the one foreign touch)
 *   PCU-PREROUTING: loopback, established/related and failsafe ports RETURN; new connections to
 *                   a managed local port go to PCU-MANAGED.
 *   PCU-MANAGED:    allowed (source, proto:port) RETURN; then DROP (enforce) or NFLOG + RETURN (audit).
 *
 * Per-app egress (render-egress.ts) is added only when the agent enforces it (it passes its local
 * task map) and the state carries egress members: then the rules also depend on that map (O(local
 * tasks + local apps) of them), PCU-PREROUTING gets one more rule (BRIDGE tasks, after
 * established/related) and a second jump goes into mangle OUTPUT. Without it the output is
 * exactly the host-level one above.
 *
 * Flow recording (render-flows.ts) is added only when the agent records (it passes its
 * `FlowRecording`): PCU-MANAGED's verdicts go to the recording chains and the egress app chains
 * record too; `flows` lists the sets and overflow counters the agent reads. Without it, and with
 * no audit port (group modes), the output is exactly the one above.
 */
import { hasEgressMembers, type DesiredState, type SetKind } from '../compile/desired-state.js';
import { ENTRY_CHAIN, MANAGED_CHAIN, TABLE, ipsetName } from './owned-names.js';
import type { Family } from '../net/family.js';
import { makeRule, type Chain, type Rule } from './rule-model.js';
import { localApps, renderEgress, type EgressMapping, type RenderedEgress } from './render-egress.js';
import { auditPorts, egressAuditApps, managedChains, renderedFlows, type FlowRecording, type RenderedFlows } from './render-flows.js';

export { ruleArgs } from './rule-model.js';
export { AUDIT_LOG_PREFIX } from './render-flows.js';

export interface RenderedChains {
  readonly table: 'mangle';
  readonly chains: Chain[];
  /** The rule inserted at the top of the kernel's PREROUTING chain. */
  readonly jump: Rule;
  /** Per-app egress, when rendered (its chains are in `chains` too). */
  readonly egress?: RenderedEgress;
  /** Flow recording, when rendered: its sets and overflow counters. */
  readonly flows?: RenderedFlows;
}

function setName(kind: SetKind, family: Family): string {
  const name = ipsetName(kind, family);
  if (name === undefined) throw new Error(`set kind ${kind} has no IPv${family} set`);
  return name;
}

function matchSet(kind: SetKind, family: Family, flags: string): string[] {
  return ['-m', 'set', '--match-set', setName(kind, family), flags];
}

export function jumpRule(): Rule {
  return makeRule([], ['-j', ENTRY_CHAIN]);
}

export function entryChain(family: Family, bridgeRule?: Rule): Chain {
  return {
    name: ENTRY_CHAIN,
    rules: [
      makeRule(['-i', 'lo'], ['-j', 'RETURN']),
      makeRule(['-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED'], ['-j', 'RETURN']),
      ...(bridgeRule ? [bridgeRule] : []),
      makeRule(['-p', 'tcp', ...matchSet('failsafe-tcp', family, 'dst')], ['-j', 'RETURN']),
      makeRule(['-p', 'udp', ...matchSet('failsafe-udp', family, 'dst')], ['-j', 'RETURN']),
      makeRule(
        ['-p', 'tcp', '-m', 'addrtype', '--dst-type', 'LOCAL', ...matchSet('managed-tcp', family, 'dst')],
        ['-j', MANAGED_CHAIN],
      ),
      makeRule(
        ['-p', 'udp', '-m', 'addrtype', '--dst-type', 'LOCAL', ...matchSet('managed-udp', family, 'dst')],
        ['-j', MANAGED_CHAIN],
      ),
    ],
  };
}

/** True when `renderChains(state, family, egress)` renders per-app egress. */
export function rendersEgress(state: DesiredState, egress: EgressMapping | undefined): egress is EgressMapping {
  return egress !== undefined && hasEgressMembers(state.sets);
}

export function renderChains(state: DesiredState, family: Family, egress?: EgressMapping, flows?: FlowRecording): RenderedChains {
  if (state.mode !== 'enforce' && state.mode !== 'audit') {
    throw new Error(`unknown mode ${JSON.stringify(state.mode)}`);
  }
  if (family !== 4 && family !== 6) throw new Error(`unknown family ${JSON.stringify(family)}`);
  const recording = flows !== undefined;
  const managed = managedChains(state.mode, family, recording, auditPorts(state));
  const withEgress = rendersEgress(state, egress);
  const rendered = withEgress ? renderEgress(state, family, egress, recording) : undefined;
  const audited = egressAuditApps(state);
  return {
    table: TABLE,
    chains: [entryChain(family, rendered?.bridgeRule), ...managed, ...(rendered?.chains ?? [])],
    jump: jumpRule(),
    ...(rendered ? { egress: rendered } : {}),
    ...(recording ? { flows: renderedFlows(family, withEgress ? [...localApps(state).keys()] : [], (app) => state.mode === 'audit' || audited.has(app)) } : {}),
  };
}
