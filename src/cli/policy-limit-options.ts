/**
 * The policy load limits on the command line (src/policy/policy-limits.ts), shared by the
 * controller and by every CLI command that loads a policy: `--max-policy-bytes`, `--max-rules`,
 * `--max-members`, each a positive whole number, defaults DEFAULT_POLICY_LIMITS.
 */
import { compile, type CompileResult } from '../compile/compile.js';
import type { Diagnostic } from '../diagnostic.js';
import type { ClusterState } from '../inventory/cluster-state.js';
import { DEFAULT_POLICY_LIMITS, POLICY_LIMIT_FLAGS, PolicyLimitError, type PolicyLimits } from '../policy/policy-limits.js';
import type { Policy } from '../policy/policy-model.js';
import { UsageError } from '../usage-error.js';

export const POLICY_LIMIT_OPTIONS = {
  'max-policy-bytes': { type: 'string' },
  'max-rules': { type: 'string' },
  'max-members': { type: 'string' },
} as const;

export const POLICY_LIMIT_HELP = [
  `  --max-policy-bytes N  refuse a policy whose files hold more than N bytes (default ${DEFAULT_POLICY_LIMITS.maxBytes})`,
  `  --max-rules N       refuse a policy with more than N rules (default ${DEFAULT_POLICY_LIMITS.maxRules})`,
  `  --max-members N     refuse a policy whose compile gives more than N allow-set members`,
  `                      over all hosts (default ${DEFAULT_POLICY_LIMITS.maxMembers})`,
].join('\n');

export function policyLimitsFrom(values: Partial<Record<keyof typeof POLICY_LIMIT_OPTIONS, string>>): PolicyLimits {
  const limit = (key: keyof PolicyLimits): number => {
    const flag = POLICY_LIMIT_FLAGS[key] as keyof typeof POLICY_LIMIT_OPTIONS;
    const text = values[flag];
    if (text === undefined) return DEFAULT_POLICY_LIMITS[key];
    if (!/^[1-9][0-9]*$/.test(text.trim()) || !Number.isSafeInteger(Number(text))) throw new UsageError(`--${flag} must be a positive whole number, got '${text}'`);
    return Number(text);
  };
  return { maxBytes: limit('maxBytes'), maxRules: limit('maxRules'), maxMembers: limit('maxMembers') };
}

/** `compile` within `limits.maxMembers`; over it, the error as a Diagnostic of the policy at `policyPath`. */
export function compileWithin(
  policy: Policy,
  cluster: ClusterState,
  limits: PolicyLimits,
  policyPath: string,
): { readonly ok: true; readonly result: CompileResult } | { readonly ok: false; readonly errors: Diagnostic[] } {
  try {
    return { ok: true, result: compile(policy, cluster, { maxMembers: limits.maxMembers }) };
  } catch (e) {
    if (e instanceof PolicyLimitError) return { ok: false, errors: [e.diagnostic(policyPath)] };
    throw e;
  }
}
