/**
 * `portcullis check`: parses the policy, lints it against the inventory and compiles it, then
 * prints every diagnostic (errors and warnings, sorted) and a one-line summary.
 * Exit 1 on any error in the policy or the inventory; warnings (compile reports, groups that
 * select no app) never fail the check. With `--controller` it also warns of every host whose
 * agent cannot enforce per-app egress (from the controller's /status), unless the policy turns
 * egress off; without a controller it knows nothing of agents and says nothing of them.
 */
import { sortDiagnostics, type Diagnostic } from '../../diagnostic.js';
import { lintPolicyAgainstCluster } from '../../policy/lint-against-cluster.js';
import { EXIT_INPUT_ERROR, EXIT_OK, type CliIO, type Command } from '../command.js';
import { CONTROLLER_CLUSTER_HELP, egressWarnings, loadClusterInput } from '../controller-client.js';
import {
  INVENTORY_OPTION_HELP,
  POLICY_OPTION_HELP,
  countErrors,
  loadPolicyInput,
  oneOf,
  parseFlags,
  plural,
  relativizer,
  reportsAsDiagnostics,
  resolvePolicyPath,
  writeDiagnostics,
} from '../load-inputs.js';
import { compileWithin, POLICY_LIMIT_HELP, POLICY_LIMIT_OPTIONS, policyLimitsFrom } from '../policy-limit-options.js';

const help = `Usage: portcullis check [--policy FILE|DIR] [--inventory FILE | --controller URL] [--format text|json] [limits]

Validates a policy: parses it, checks it against the inventory (port names the target apps do
not define, protocols that can never match, groups that select no app) and compiles it (label
declarations the guardrails reject, hosts without address, port conflicts). Prints every
problem as file:line:col: message, then a summary. With --controller it also warns of every
host whose agent cannot enforce per-app egress (host-level only there), with the agent's
reason, unless the policy sets defaults.egress: false.

Options:
${POLICY_OPTION_HELP}
${INVENTORY_OPTION_HELP}
${CONTROLLER_CLUSTER_HELP}
  --format text|json  output format (default: text)
${POLICY_LIMIT_HELP}

Exit codes: 0 no error (warnings allowed), 1 an error in the policy or the inventory,
2 usage error.

Example:
  portcullis check --policy policies/shop --inventory policies/inventory.yaml
`;

export const checkCommand: Command = {
  name: 'check',
  help,
  async run(args: readonly string[], io: CliIO): Promise<number> {
    return checkPolicy(parseFlags(args, CHECK_OPTIONS), io);
  },
};

/** The options of `check` (also taken by `policy push`, which checks before it pushes). */
export const CHECK_OPTIONS = { policy: { type: 'string' }, inventory: { type: 'string' }, controller: { type: 'string' }, format: { type: 'string' }, ...POLICY_LIMIT_OPTIONS } as const;

export type CheckValues = Partial<Record<keyof typeof CHECK_OPTIONS, string>>;

/** Runs the check on parsed `check` options, printing as `check` does; its exit code. */
export async function checkPolicy(values: CheckValues, io: CliIO): Promise<number> {
  const format = oneOf('format', values.format, ['text', 'json'] as const, 'text');
  const limits = policyLimitsFrom(values);
  const [policy, inventory] = await Promise.all([
    loadPolicyInput(resolvePolicyPath(io, values.policy), limits),
    loadClusterInput(io, values),
  ]);

  const diagnostics: Diagnostic[] = [];
  let overLimit = false;
  if (policy.ok) diagnostics.push(...policy.loaded.warnings);
  else diagnostics.push(...policy.errors);
  if (!inventory.ok) diagnostics.push(...inventory.errors);
  if (values.controller !== undefined && inventory.ok && !(policy.ok && !policy.loaded.policy.defaults.egress)) {
    diagnostics.push(...(await egressWarnings(values.controller)));
  }
  if (policy.ok && inventory.ok) {
    const { policy: p, sites } = policy.loaded;
    const cluster = inventory.loaded.cluster;
    diagnostics.push(...lintPolicyAgainstCluster(p, cluster, sites));
    const compiled = compileWithin(p, cluster, limits, policy.loaded.path);
    if (compiled.ok) diagnostics.push(...(await reportsAsDiagnostics(compiled.result.reports, inventory.loaded.path)));
    else {
      diagnostics.push(...compiled.errors);
      overLimit = true;
    }
  }
  const sorted = sortDiagnostics(diagnostics);
  const errors = countErrors(sorted);
  const warnings = sorted.length - errors;
  const policyErrors = policy.ok ? 0 : policy.errors.length;
  const inventoryErrors = inventory.ok ? 0 : inventory.errors.length;

  if (format === 'json') {
    const summary = {
      ok: errors === 0,
      errors,
      warnings,
      policy: policy.ok
        ? { ok: true, path: policy.loaded.path, groups: policy.loaded.policy.groups.length, networks: policy.loaded.policy.networks.length, rules: policy.loaded.policy.rules.length }
        : { ok: false, path: policy.path, errors: policyErrors },
      inventory: inventory.ok
        ? { ok: true, path: inventory.loaded.path, hosts: inventory.loaded.cluster.hosts.length, apps: inventory.loaded.cluster.apps.length, tasks: inventory.loaded.cluster.tasks.length }
        : { ok: false, path: inventory.path, errors: inventoryErrors },
      diagnostics: sorted.map((d) => ({ file: d.file, line: d.line, col: d.col, severity: d.severity ?? 'error', message: d.message })),
    };
    io.stdout(JSON.stringify(summary, null, 2) + '\n');
    return errors === 0 ? EXIT_OK : EXIT_INPUT_ERROR;
  }

  writeDiagnostics(io.stdout, io, sorted);
  const shown = relativizer(io);
  const policyText = overLimit
    ? `policy ${shown(policy.ok ? policy.loaded.path : policy.path)}: over a load limit, not compiled`
    : policy.ok
    ? `policy ok: ${plural(policy.loaded.policy.groups.length, 'group')}, ${plural(policy.loaded.policy.networks.length, 'network')}, ${plural(policy.loaded.policy.rules.length, 'rule')}`
    : `policy ${shown(policy.path)}: ${plural(policyErrors, 'error')}`;
  const inventoryText = inventory.ok
    ? `inventory: ${plural(inventory.loaded.cluster.hosts.length, 'host')}, ${plural(inventory.loaded.cluster.apps.length, 'app')}, ${plural(inventory.loaded.cluster.tasks.length, 'task')}`
    : `inventory ${shown(inventory.path)}: ${plural(inventoryErrors, 'error')}`;
  const checked = policy.ok && inventory.ok ? '' : ' (not linted or compiled: fix the errors first)';
  io.stdout(`${policyText}; ${inventoryText}; ${plural(errors, 'error')}, ${plural(warnings, 'warning')}${checked}\n`);
  return errors === 0 ? EXIT_OK : EXIT_INPUT_ERROR;
}
