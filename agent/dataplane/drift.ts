/**
 * Drift: how the kernel differs from what we rendered. Pure comparison of parsed kernel output with
 * the renderer's chains and the DesiredState's set members.
 *
 * Rules are identified by their `pcu:<hash>` comment (the hash covers the rule's content), so a
 * rule is found without parsing iptables-save's text. A chain drifts when one of our rules is
 * missing, a rule we did not render is in it (anything without a known comment), a rule with our
 * comment has other arguments than rendered (the renderer writes lines exactly as iptables-save
 * prints them), or our rules are out of order. The jump drifts when it
 * is missing or duplicated; a jump that is not first is tolerated (we do not fight other tools).
 */
import { EGRESS_OUTPUT_CHAIN, ENTRY_CHAIN, HOOK_CHAIN, OUTPUT_HOOK_CHAIN, isOwnedChainName } from '../../src/render/owned-names.js';
import type { Family } from '../../src/net/family.js';
import { ruleArgs, type Chain } from '../../src/render/rule-model.js';
import { normalizeMember } from '../../src/net/member.js';
import { commentOf, targetOf, type SavedTable } from './kernel-read.js';

export type DriftKind =
  | 'missing-jump'
  | 'duplicate-jump'
  | 'missing-chain'
  | 'missing-rule'
  | 'extra-rule'
  | 'changed-rule'
  | 'missing-set'
  | 'missing-member'
  | 'extra-member';

export interface Drift {
  readonly kind: DriftKind;
  readonly family: Family;
  /** Chain or set name the drift is in. */
  readonly object?: string;
  /** The rule's comment (or text, for a foreign rule) or the set member. */
  readonly item?: string;
}

/** Rules in a hook chain (mangle PREROUTING, or OUTPUT for per-app egress) that jump into one of our chains. */
export function findOurJumps(saved: SavedTable, hook: string = HOOK_CHAIN): (readonly string[])[] {
  return (saved.rules.get(hook) ?? []).filter((tokens) => {
    const target = targetOf(tokens);
    return target !== undefined && isOwnedChainName(target);
  });
}

function sameArgs(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function chainDrift(family: Family, chain: Chain, saved: SavedTable): Drift[] {
  if (!saved.chains.includes(chain.name)) return [{ kind: 'missing-chain', family, object: chain.name }];
  const actual = saved.rules.get(chain.name) ?? [];
  const desiredByComment = new Map(chain.rules.map((r) => [r.comment, r]));
  const drifts: Drift[] = [];
  const seen = new Set<string>();
  for (const tokens of actual) {
    const comment = commentOf(tokens);
    const desired = comment === undefined ? undefined : desiredByComment.get(comment);
    if (!desired || seen.has(comment!)) {
      drifts.push({ kind: 'extra-rule', family, object: chain.name, item: comment ?? tokens.join(' ') });
      continue;
    }
    seen.add(comment!);
    if (!sameArgs(ruleArgs(desired), tokens)) drifts.push({ kind: 'changed-rule', family, object: chain.name, item: comment });
  }
  for (const rule of chain.rules) {
    if (!seen.has(rule.comment)) drifts.push({ kind: 'missing-rule', family, object: chain.name, item: rule.comment });
  }
  if (drifts.length === 0) {
    const order = actual.map((t) => commentOf(t) ?? '');
    if (order.some((c, i) => c !== chain.rules[i]?.comment)) {
      drifts.push({ kind: 'changed-rule', family, object: chain.name, item: 'order' });
    }
  }
  return drifts;
}

function jumpDrift(family: Family, saved: SavedTable, hook: string, target: string, wanted: boolean): Drift[] {
  const jumps = findOurJumps(saved, hook).filter((tokens) => targetOf(tokens) === target);
  if (wanted && jumps.length === 0) return [{ kind: 'missing-jump', family, object: hook }];
  if (!wanted && jumps.length > 0) return [{ kind: 'extra-rule', family, object: hook, item: `-j ${target}` }];
  if (jumps.length > 1) return [{ kind: 'duplicate-jump', family, object: hook, item: String(jumps.length) }];
  return [];
}

/**
 * Drift of our chains and our jumps in the table. `egress`: per-app egress is rendered, so the
 * jump into PCU-OUTPUT must be in OUTPUT (and must not be when it is not rendered).
 */
export function tableDrift(family: Family, chains: readonly Chain[], saved: SavedTable, egress = false): Drift[] {
  const drifts: Drift[] = chains.flatMap((chain) => chainDrift(family, chain, saved));
  drifts.push(...jumpDrift(family, saved, HOOK_CHAIN, ENTRY_CHAIN, true));
  drifts.push(...jumpDrift(family, saved, OUTPUT_HOOK_CHAIN, EGRESS_OUTPUT_CHAIN, egress));
  return drifts;
}

/**
 * Drift of one set: `desired` as rendered (validated, `/0` expanded), `actual` as `ipset save`
 * printed it, undefined when the set does not exist.
 */
export function setDrift(family: Family, name: string, desired: readonly string[], actual: readonly string[] | undefined): Drift[] {
  if (actual === undefined) return [{ kind: 'missing-set', family, object: name }];
  const want = new Set(desired.map(normalizeMember));
  const have = new Set(actual.map(normalizeMember));
  const drifts: Drift[] = [];
  for (const m of want) if (!have.has(m)) drifts.push({ kind: 'missing-member', family, object: name, item: m });
  for (const m of have) if (!want.has(m)) drifts.push({ kind: 'extra-member', family, object: name, item: m });
  return drifts;
}
