/**
 * Typed iptables rules: a rule is {match, action, comment} and a chain is {name, rules}; text
 * appears only when rendering (restore-text.ts). Every rule's comment is `pcu:<8 hex>`, the first
 * 8 hex digits of sha256 over its match and action, so the agent can find its own rules in
 * `iptables-save` and tell a drifted rule from a current one without parsing anything else.
 * Objects are frozen plain data.
 */
import { createHash } from 'node:crypto';

export interface Rule {
  /** Match arguments, e.g. ['-p', 'tcp', '-m', 'set', '--match-set', 'pcu4-managed-tcp', 'dst']. */
  readonly match: readonly string[];
  /** Target arguments, e.g. ['-j', 'RETURN']. */
  readonly action: readonly string[];
  /** "pcu:<8 hex>": hash of match + action. */
  readonly comment: string;
}

export interface Chain {
  readonly name: string;
  readonly rules: readonly Rule[];
}

export const COMMENT_PREFIX = 'pcu:';

export function ruleHash(match: readonly string[], action: readonly string[]): string {
  return createHash('sha256').update(JSON.stringify([match, action])).digest('hex').slice(0, 8);
}

export function makeRule(match: readonly string[], action: readonly string[]): Rule {
  return Object.freeze({
    match: Object.freeze([...match]),
    action: Object.freeze([...action]),
    comment: COMMENT_PREFIX + ruleHash(match, action),
  });
}

/**
 * The rule as an argument vector, in the order `iptables-save` prints it (match, comment, action):
 * ['-i','lo','-m','comment','--comment','pcu:1a2b3c4d','-j','RETURN'].
 */
export function ruleArgs(rule: Rule): string[] {
  return [...rule.match, '-m', 'comment', '--comment', rule.comment, ...rule.action];
}
