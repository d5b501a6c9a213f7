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
 * How, and what it costs: first match means every address is decided by the first rule of the
 * list whose `from` holds it. So the list is split in halves and resolved as "the first half
 * wins where it decides, the second half elsewhere" (`overlay`), recursively: each level is a
 * few linear merges over all the intervals of the list, so a list of k rules with M intervals
 * in all costs O(M log k) time and O(M) memory, whatever the order of its rules. (A left-to-right
 * walk costs O(k·M): `remaining` grows with every rule and is merged again at every step; with
 * tens of thousands of rules onto one group that was quadratic in time and, when each step was
 * kept to be shared, in memory.) The result of each (list, label key) is cached, so ports with
 * the same matching rules resolve once; the verdicts behind a result only for the last list (the
 * ports of one app come together), since a `decided` set can be far larger than what is allowed
 * and is not bounded by the member limit.
 */
import type { RuleAction } from '../policy/policy-model.js';
import { AddressSet } from './address-set.js';

/** What a run of rules decides: `allowed` and `passed` are disjoint parts of `decided`. */
interface Verdicts {
  readonly allowed: AddressSet;
  readonly passed: AddressSet;
  /** Every address some rule of the run matches (allowed, passed or denied). */
  readonly decided: AddressSet;
}

const NONE: Verdicts = { allowed: AddressSet.EMPTY, passed: AddressSet.EMPTY, decided: AddressSet.EMPTY };

/** `first` where it decides, `then` elsewhere. */
function overlay(first: Verdicts, then: Verdicts): Verdicts {
  if (first.decided.isEmpty()) return then;
  if (then.decided.isEmpty()) return first;
  return {
    allowed: first.allowed.union(then.allowed.subtract(first.decided)),
    passed: first.passed.union(then.passed.subtract(first.decided)),
    decided: first.decided.union(then.decided),
  };
}

export class SourceResolver {
  private last: { readonly listKey: string; readonly verdicts: Verdicts } | undefined;
  private readonly results = new Map<string, AddressSet>();

  constructor(
    private readonly actions: readonly RuleAction[],
    private readonly ruleFrom: readonly AddressSet[],
    private readonly defaultAllow: boolean,
  ) {}

  resolve(matching: readonly number[], labelKey: string, labelSet: AddressSet): AddressSet {
    const listKey = matching.join(',');
    const key = `${listKey}|${labelKey}`;
    let result = this.results.get(key);
    if (result) return result;
    if (this.last?.listKey !== listKey) this.last = { listKey, verdicts: this.run(matching, 0, matching.length) };
    const v = this.last.verdicts;
    const scope = v.passed.union(v.decided.complement());
    result = v.allowed.union(labelSet.intersect(scope));
    if (this.defaultAllow) result = result.union(scope);
    this.results.set(key, result);
    return result;
  }

  /** The verdicts of `matching[lo..hi)`. */
  private run(matching: readonly number[], lo: number, hi: number): Verdicts {
    if (hi - lo === 0) return NONE;
    if (hi - lo === 1) {
      const r = matching[lo]!;
      const from = this.ruleFrom[r]!;
      const action = this.actions[r]!;
      return { allowed: action === 'allow' ? from : AddressSet.EMPTY, passed: action === 'pass' ? from : AddressSet.EMPTY, decided: from };
    }
    const mid = (lo + hi) >>> 1;
    const first = this.run(matching, lo, mid);
    if (first.decided === AddressSet.ALL || first.decided.equals(AddressSet.ALL)) return first;
    return overlay(first, this.run(matching, mid, hi));
  }
}
