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
 */
import { hasEgressMembers, type DesiredState, type SetKind } from '../compile/desired-state.js';
import type { Mode } from '../policy/policy-model.js';
import { ENTRY_CHAIN, MANAGED_CHAIN, TABLE, ipsetName } from './owned-names.js';
import type { Family } from '../net/family.js';
import { makeRule, type Chain, type Rule } from './rule-model.js';
import { renderEgress, type EgressMapping, type RenderedEgress } from './render-egress.js';

export { ruleArgs } from './rule-model.js';

/** NFLOG prefix of audit-mode would-be drops (group 0, the default, left implicit as iptables-save does). */
export const AUDIT_LOG_PREFIX = 'pcu-audit';

export interface RenderedChains {
  readonly table: 'mangle';
  readonly chains: Chain[];
  /** The rule inserted at the top of the kernel's PREROUTING chain. */
  readonly jump: Rule;
  /** Per-app egress, when rendered (its chains are in `chains` too). */
  readonly egress?: RenderedEgress;
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

export function managedChain(mode: Mode, family: Family): Chain {
  const ip: SetKind = family === 4 ? 'allow-ip4' : 'allow-ip6';
  const net: SetKind = family === 4 ? 'allow-net4' : 'allow-net6';
  const verdict =
    mode === 'enforce'
      ? [makeRule([], ['-j', 'DROP'])]
      : [makeRule([], ['-j', 'NFLOG', '--nflog-prefix', AUDIT_LOG_PREFIX]), makeRule([], ['-j', 'RETURN'])];
  return {
    name: MANAGED_CHAIN,
    rules: [
      makeRule(matchSet(ip, family, 'src,dst'), ['-j', 'RETURN']),
      makeRule(matchSet(net, family, 'src,dst'), ['-j', 'RETURN']),
      ...verdict,
    ],
  };
}

/** True when `renderChains(state, family, egress)` renders per-app egress. */
export function rendersEgress(state: DesiredState, egress: EgressMapping | undefined): egress is EgressMapping {
  return egress !== undefined && hasEgressMembers(state.sets);
}

export function renderChains(state: DesiredState, family: Family, egress?: EgressMapping): RenderedChains {
  if (state.mode !== 'enforce' && state.mode !== 'audit') {
    throw new Error(`unknown mode ${JSON.stringify(state.mode)}`);
  }
  if (family !== 4 && family !== 6) throw new Error(`unknown family ${JSON.stringify(family)}`);
  if (!rendersEgress(state, egress)) return { table: TABLE, chains: [entryChain(family), managedChain(state.mode, family)], jump: jumpRule() };
  const rendered = renderEgress(state, family, egress);
  return {
    table: TABLE,
    chains: [entryChain(family, rendered.bridgeRule), managedChain(state.mode, family), ...rendered.chains],
    jump: jumpRule(),
    egress: rendered,
  };
}
