/**
 * Tier resolution for one managed port, as address-set arithmetic (the heart of the compiler).
 *
 * Contract: `resolve(matching, labelKey, labelSet)` returns exactly the sources whose verdict is
 * ALLOW, given the indices of the policy rules that match the port (in policy order), the peers
 * applied by label declarations, and the default action:
 *   remaining = ALL; allowed = passed = ∅
 *   for r in matching: allow → allowed ∪= from(r) ∩ remaining; pass → passed ∪= from(r) ∩ remaining;
 *                      deny → nothing; then remaining -= from(r)
 *   scope = passed ∪ remaining; allowed ∪= labelSet ∩ scope; default allow → allowed ∪= scope
 *
 * Cost: the state after each prefix of a matching list is kept in a trie, so ports whose matching
 * lists share a prefix (the ports of one app, apps of one group) share the work; the result is
 * cached per (trie node, labelKey). Each step is a linear merge of interval lists.
 */
import type { RuleAction } from '../policy/policy-model.js';
import { AddressSet } from './address-set.js';

interface PrefixState {
  readonly allowed: AddressSet;
  readonly passed: AddressSet;
  readonly remaining: AddressSet;
  readonly children: Map<number, PrefixState>;
  readonly results: Map<string, AddressSet>;
}

function node(allowed: AddressSet, passed: AddressSet, remaining: AddressSet): PrefixState {
  return { allowed, passed, remaining, children: new Map(), results: new Map() };
}

export class SourceResolver {
  private readonly root = node(AddressSet.EMPTY, AddressSet.EMPTY, AddressSet.ALL);

  constructor(
    private readonly actions: readonly RuleAction[],
    private readonly ruleFrom: readonly AddressSet[],
    private readonly defaultAllow: boolean,
  ) {}

  resolve(matching: readonly number[], labelKey: string, labelSet: AddressSet): AddressSet {
    let at = this.root;
    for (const r of matching) {
      let next = at.children.get(r);
      if (!next) {
        next = this.step(at, r);
        at.children.set(r, next);
      }
      at = next;
    }
    let result = at.results.get(labelKey);
    if (!result) {
      const scope = at.passed.union(at.remaining);
      result = at.allowed.union(labelSet.intersect(scope));
      if (this.defaultAllow) result = result.union(scope);
      at.results.set(labelKey, result);
    }
    return result;
  }

  private step(s: PrefixState, r: number): PrefixState {
    if (s.remaining.isEmpty()) return node(s.allowed, s.passed, s.remaining);
    const from = this.ruleFrom[r]!;
    const action = this.actions[r]!;
    const reached = action === 'deny' ? AddressSet.EMPTY : from.intersect(s.remaining);
    return node(
      action === 'allow' ? s.allowed.union(reached) : s.allowed,
      action === 'pass' ? s.passed.union(reached) : s.passed,
      s.remaining.subtract(from),
    );
  }
}
