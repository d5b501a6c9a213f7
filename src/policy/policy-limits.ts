/**
 * What one policy load may cost, and the clear error when it would cost more.
 *
 * A policy is operator input, and a large one is legitimate, but the controller must never die
 * of one: every load is bounded by three limits, each checked before the work it bounds.
 *   - bytes: the total size of the policy files, checked before they are read (parsing YAML
 *     costs memory proportional to the text, so this bounds parse time and memory);
 *   - rules: the number of rules, checked after parsing and before compiling;
 *   - members: allow-set members a full compile produces, summed over every host (what the
 *     controller keeps and sends, and agents write into ipsets), counted host by host as the
 *     compile goes and checked before member text is built, so a policy over the limit stops
 *     early instead of after building gigabytes.
 * Exceeding one is an error like any invalid policy: the last good policy stays in force (hot
 * reload) or `check` exits 1, and the message names the limit, the value found and the flag that
 * raises it. Pure: no I/O.
 */
import type { Diagnostic } from '../diagnostic.js';
import { parsePolicy, type ParseResult, type PolicyFileText } from './parse-policy.js';
import type { Policy } from './policy-model.js';

export interface PolicyLimits {
  /** Total bytes of the policy files. */
  readonly maxBytes: number;
  /** Rules in the policy (all files). */
  readonly maxRules: number;
  /** Allow-set members of a full compile, summed over every host. */
  readonly maxMembers: number;
}

/** Defaults: about 6x what the 10,000-rule, 10,000-network benchmark policy needs (BENCHMARKS.md). */
export const DEFAULT_POLICY_LIMITS: PolicyLimits = { maxBytes: 8 * 1024 * 1024, maxRules: 50_000, maxMembers: 5_000_000 };

/** The command-line flag that sets each limit (controller and CLI alike). */
export const POLICY_LIMIT_FLAGS: Readonly<Record<keyof PolicyLimits, string>> = {
  maxBytes: 'max-policy-bytes',
  maxRules: 'max-rules',
  maxMembers: 'max-members',
};

function raise(limit: keyof PolicyLimits, max: number): string {
  const flag = POLICY_LIMIT_FLAGS[limit];
  return `the limit is ${max} (--${flag}); make the policy smaller, or raise --${flag} if the controller has the memory for it`;
}

/** A load over one of the limits (thrown by the compiler for `maxMembers`). */
export class PolicyLimitError extends Error {
  constructor(
    readonly limit: keyof PolicyLimits,
    message: string,
  ) {
    super(message);
    this.name = 'PolicyLimitError';
  }

  /** The error as a Diagnostic of the policy (at `file`, line 1). */
  diagnostic(file: string): Diagnostic {
    return { file, line: 1, col: 1, message: this.message, severity: 'error' };
  }
}

export function bytesOverLimit(path: string, bytes: number, limits: Pick<PolicyLimits, 'maxBytes'>): Diagnostic | undefined {
  if (bytes <= limits.maxBytes) return undefined;
  return { file: path, line: 1, col: 1, message: `policy too large: its files hold ${bytes} bytes; ${raise('maxBytes', limits.maxBytes)}`, severity: 'error' };
}

/** An error at the first rule over the limit, or undefined. */
export function rulesOverLimit(policy: Policy, limits: PolicyLimits): Diagnostic | undefined {
  if (policy.rules.length <= limits.maxRules) return undefined;
  const first = policy.rules[limits.maxRules]!;
  return {
    ...first.at,
    message: `too many rules: the policy has ${policy.rules.length}, and rule '${first.name}' is number ${limits.maxRules + 1}; ${raise('maxRules', limits.maxRules)}`,
    severity: 'error',
  };
}

/** Counts members host by host as a compile goes; throws PolicyLimitError once over the limit. */
export class MemberBudget {
  private used = 0;
  private hosts = 0;

  constructor(
    private readonly max: number,
    private readonly totalHosts: number,
  ) {}

  add(members: number): void {
    this.used += members;
    this.hosts++;
    if (this.used > this.max) {
      throw new PolicyLimitError(
        'maxMembers',
        `policy too costly to compile: it gives more than ${this.max} allow-set members (${this.used} after ${this.hosts} of ${this.totalHosts} hosts; compile stopped there); ${raise('maxMembers', this.max)}`,
      );
    }
  }
}

/**
 * parsePolicy within the limits: the files' size first (for callers that hold the texts; readers
 * of files check it before reading, src/sources/policy-files.ts), then the rule count. `path` is
 * what a size error points at (the file or directory given).
 */
export function parsePolicyWithin(path: string, files: readonly PolicyFileText[], limits: PolicyLimits): ParseResult {
  let bytes = 0;
  for (const f of files) bytes += Buffer.byteLength(f.text);
  const tooLarge = bytesOverLimit(path, bytes, limits);
  if (tooLarge) return { ok: false, errors: [tooLarge] };
  const result = parsePolicy(files);
  const tooMany = result.ok ? rulesOverLimit(result.policy, limits) : undefined;
  return tooMany ? { ok: false, errors: [tooMany] } : result;
}
