/**
 * Per-group mode, the reference evaluator's reading (README "Policy format", `groups.<name>.mode`):
 * whether a deny is enforced (dropped) or audited (logged, let through), and which group made it
 * audit. Naive on purpose and independent of src/compile (group-modes.ts there is the compiler's
 * reading; test/compile-group-modes-property.test.ts checks that they agree):
 *  - an app: walk the policy's groups in order; the first group with `mode: audit` containing
 *    the app makes it audit; else an explicit `mode: enforce` of a group containing it makes it
 *    enforce; else `defaults.mode`;
 *  - a claim (host, protocol, host port): audit only when every task port claiming it belongs to
 *    an audited app;
 *  - egress: the source app's mode.
 */
import type { App } from '../inventory/cluster-state.js';
import type { Mode, Policy } from '../policy/policy-model.js';
import { appInGroup } from './policy-walk.js';

export interface ModeReading {
  readonly mode: Mode;
  /** The group whose `mode: audit` made it audit (absent: enforce, or audit by defaults.mode). */
  readonly group?: string;
}

/** The mode of app `app`. */
export function appModeReading(policy: Policy, app: App): ModeReading {
  let explicitEnforce = false;
  for (const g of policy.groups) {
    if (g.mode === undefined || !appInGroup(policy, app, g.name)) continue;
    if (g.mode === 'audit') return { mode: 'audit', group: g.name };
    explicitEnforce = true;
  }
  return { mode: explicitEnforce ? 'enforce' : policy.defaults.mode };
}

/**
 * The mode of a claim that a port of `app` is part of, `owners` giving every task port claiming
 * it (egress-evaluator.ts claimOwners; asked only when `app` audits): audit only when every owner's app is; the group named is
 * `app`'s own (the owner being asked about).
 */
export function claimModeReading(policy: Policy, app: App, owners: () => readonly { readonly app: App }[]): ModeReading {
  const own = appModeReading(policy, app);
  if (own.mode === 'enforce') return own;
  const enforcing = owners().find((o) => appModeReading(policy, o.app).mode === 'enforce');
  return enforcing ? { mode: 'enforce' } : own;
}

/** The words added to a deny's reason when it is not enforced. */
export function auditNote(reading: ModeReading, what: string): string {
  return reading.group !== undefined ? ` (audit: group ${reading.group}: ${what})` : ` (audit mode: ${what})`;
}
