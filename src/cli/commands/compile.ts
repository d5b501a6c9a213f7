/**
 * `portcullis compile`: the DesiredState of one host or of every host (json), or the exact text
 * the agent feeds to `ipset restore` and `iptables-restore` / `ip6tables-restore --noflush` on a
 * host that has no Portcullis objects yet (iptables). Compile reports and lint findings go to
 * stderr as warnings; only a broken policy or inventory fails (exit 1), as in the controller.
 */
import { hasAuditMembers, hasEgressMembers, type DesiredState } from '../../compile/desired-state.js';
import { egressAppOf } from '../../net/member-syntax.js';
import { sortDiagnostics } from '../../diagnostic.js';
import { lintPolicyAgainstCluster } from '../../policy/lint-against-cluster.js';
import { FAMILIES } from '../../net/family.js';
import { renderIpsetRestore } from '../../render/render-ipsets.js';
import { renderIptablesRestore, restoreCommand } from '../../render/render-iptables.js';
import { EXIT_INPUT_ERROR, EXIT_OK, type CliIO, type Command } from '../command.js';
import { UsageError } from '../../usage-error.js';
import { CONTROLLER_OPTION_HELP, ControllerError, controllerBase, fetchHostState, fetchHostVersions, getJson, printable } from '../controller-client.js';
import {
  INVENTORY_OPTION_HELP,
  POLICY_OPTION_HELP,
  loadInventoryInput,
  loadPolicyInput,
  oneOf,
  parseFlags,
  reportsAsDiagnostics,
  resolveInventoryPath,
  resolvePolicyPath,
  writeDiagnostics,
} from '../load-inputs.js';
import { compileWithin, POLICY_LIMIT_HELP, POLICY_LIMIT_OPTIONS, policyLimitsFrom } from '../policy-limit-options.js';

const help = `Usage: portcullis compile [--host HOST] [--format iptables|json] [--policy FILE|DIR] [--inventory FILE]
                         [limits]
       portcullis compile --controller URL [--host HOST] [--format iptables|json]

Compiles the policy against the inventory and prints what each host must enforce. With
--controller, prints instead the states a running controller serves its agents now (with
Marathon: what each host should have, from where its tasks run), through the same renderer.
  iptables  for each host and address family: the 'ipset restore' input, then the
            'iptables-restore --noflush' / 'ip6tables-restore --noflush' input, each under a
            '# ---' header: exactly what the agent writes on a host without Portcullis rules.
            With per-app egress (defaults.egress on), each host ends with '# egress'
            comment lines saying which tasks are local and what each local app may reach:
            the agent renders those chains itself, from its local task map.
            A host whose apps are in different modes (groups.<name>.mode) ends with
            '# group modes' comment lines: its ports and local apps that audit.
  json      the DesiredState of the host, or of every host as an object keyed by host id
            (egress-task, egress-managed4/6 and egress-ip4/6 included; audit-tcp, audit-udp
            and egress-audit: what audits while the state's mode is enforce).
Compile reports (rejected label declarations, hosts without address, port conflicts, tasks
whose ids cannot be named in egress sets) are printed on stderr as warnings.

Options:
  --host HOST         one host id of the inventory (default: every host)
  --format iptables|json
                      output format (default: iptables)
${POLICY_OPTION_HELP}
${INVENTORY_OPTION_HELP}
${CONTROLLER_OPTION_HELP}
${POLICY_LIMIT_HELP}

Exit codes: 0 ok, 1 policy or inventory error, unknown host or controller unreachable,
2 usage error.

Examples:
  portcullis compile --host node-2 --format json
  portcullis compile --controller http://10.0.0.5:7444 --host node-2
`;

function printStates(io: CliIO, states: readonly DesiredState[], format: 'iptables' | 'json', oneHost: boolean): void {
  states = [...states].sort((a, b) => (a.hostId < b.hostId ? -1 : a.hostId > b.hostId ? 1 : 0));
  if (format === 'json') {
    const body = oneHost ? states[0] : Object.fromEntries(states.map((s) => [s.hostId, s]));
    io.stdout(JSON.stringify(body, null, 2) + '\n');
  } else {
    io.stdout(states.map(renderHost).join('\n'));
  }
}

/** Fetches in batches, so a cluster of thousands of hosts does not open thousands of requests at once. */
async function inBatches<T, R>(items: readonly T[], size: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += size) out.push(...(await Promise.all(items.slice(i, i + size).map(fn))));
  return out;
}

/** `compile --controller`: the states the controller serves, and its compile reports as warnings. */
async function compileFromController(io: CliIO, url: string, host: string | undefined, format: 'iptables' | 'json'): Promise<number> {
  const base = controllerBase('controller', url);
  try {
    let states: DesiredState[];
    if (host !== undefined) {
      const state = await fetchHostState(base, host);
      if (!state) {
        const known = (await fetchHostVersions(base)).map((h) => h.hostId);
        io.stderr(`portcullis compile: unknown host '${printable(host)}'; hosts the controller has a state for: ${known.length > 0 ? printable(known.join(', ')) : '(none: is it ready? see portcullis status)'}\n`);
        return EXIT_INPUT_ERROR;
      }
      states = [state];
    } else {
      const versions = await fetchHostVersions(base);
      const fetched = await inBatches(versions, 16, (h) => fetchHostState(base, h.hostId));
      states = fetched.filter((s): s is DesiredState => s !== undefined);
    }
    const { body, url: statusUrl } = await getJson(base, '/status');
    const reports = (body as { compile?: { reports?: unknown } } | null)?.compile?.reports;
    for (const r of Array.isArray(reports) ? (reports as { message?: unknown; kind?: unknown }[]) : []) {
      if (typeof r?.message === 'string') io.stderr(`${statusUrl.href}: warning: ${printable(r.message)} [${printable(String(r.kind))}]\n`);
    }
    printStates(io, states, format, host !== undefined);
    return EXIT_OK;
  } catch (err) {
    if (!(err instanceof ControllerError)) throw err;
    io.stderr(`portcullis compile: ${err.message}\n`);
    return EXIT_INPUT_ERROR;
  }
}

function renderHost(state: DesiredState): string {
  const out: string[] = [];
  for (const family of FAMILIES) {
    out.push(`# --- host ${state.hostId}: ipset restore (IPv${family}) ---\n`);
    out.push(renderIpsetRestore(state, family));
    out.push(`# --- host ${state.hostId}: ${restoreCommand(family)} --noflush (IPv${family}) ---\n`);
    out.push(renderIptablesRestore(state, family, { insertJump: true }));
  }
  out.push(renderEgress(state));
  out.push(renderGroupModes(state));
  return out.join('');
}

/**
 * A host whose apps are in different modes (groups.<name>.mode): which of its ports and local
 * apps audit while the state enforces, as comment lines. Nothing when the host has one mode
 * (the state's mode says it).
 */
function renderGroupModes(state: DesiredState): string {
  if (!hasAuditMembers(state.sets)) return '';
  const list = (members: readonly string[]) => (members.length === 0 ? '(none)' : members.join(' '));
  return [
    `# group modes of host ${state.hostId}: the state enforces, except what audits (logged, not dropped):`,
    `# audit tcp ports: ${list(state.sets['audit-tcp'])}`,
    `# audit udp ports: ${list(state.sets['audit-udp'])}`,
    `# audit egress of apps: ${list(state.sets['egress-audit'])}`,
  ].join('\n') + '\n';
}

/**
 * A host's per-app egress, as comment lines: its chains (PCU-OUTPUT, PCU-EG-*) and per-app sets
 * depend on the host's local task map (cgroups, container addresses), which only its agent
 * knows, so they are rendered by the agent; this says what the state asks of it.
 */
function renderEgress(state: DesiredState): string {
  if (!hasEgressMembers(state.sets)) return '';
  const tasks = state.sets['egress-task'];
  const lines = [
    `# egress of host ${state.hostId}: rendered by the agent (its chains and per-app sets depend on the local task map)`,
    `# egress local tasks: ${tasks.length === 0 ? '(none)' : tasks.join(', ')}`,
    `# egress-managed destinations checked at the source: ${state.sets['egress-managed4'].length} IPv4, ${state.sets['egress-managed6'].length} IPv6 (the cluster's)`,
  ];
  const reach = new Map<string, string[]>(tasks.map((m) => [egressAppOf(m), []]));
  for (const m of [...state.sets['egress-ip4'], ...state.sets['egress-ip6']]) reach.get(egressAppOf(m))?.push(m.slice(m.indexOf('|') + 1));
  for (const [app, dests] of reach) lines.push(`# egress ${app} may reach: ${dests.length === 0 ? 'no managed destination' : dests.join(' ')}`);
  return `${lines.join('\n')}\n`;
}

export const compileCommand: Command = {
  name: 'compile',
  help,
  async run(args: readonly string[], io: CliIO): Promise<number> {
    const values = parseFlags(args, {
      host: { type: 'string' },
      format: { type: 'string' },
      policy: { type: 'string' },
      inventory: { type: 'string' },
      controller: { type: 'string' },
      ...POLICY_LIMIT_OPTIONS,
    });
    const format = oneOf('format', values.format, ['iptables', 'json'] as const, 'iptables');
    if (values.controller !== undefined) {
      const local = (['policy', 'inventory'] as const).find((o) => values[o] !== undefined);
      if (local) throw new UsageError(`--${local} and --controller exclude each other: --controller prints the states the controller compiled (to compile a local policy against its cluster, use explain or diff --controller)`);
      return compileFromController(io, values.controller, values.host, format);
    }
    const limits = policyLimitsFrom(values);
    const [policy, inventory] = await Promise.all([
      loadPolicyInput(resolvePolicyPath(io, values.policy), limits),
      loadInventoryInput(resolveInventoryPath(io, values.inventory)),
    ]);
    if (!policy.ok || !inventory.ok) {
      writeDiagnostics(io.stderr, io, sortDiagnostics([...(policy.ok ? [] : policy.errors), ...(inventory.ok ? [] : inventory.errors)]));
      io.stderr('portcullis compile: nothing compiled; fix the errors above (portcullis check lists them all)\n');
      return EXIT_INPUT_ERROR;
    }
    const { policy: p, sites } = policy.loaded;
    const cluster = inventory.loaded.cluster;
    const compiled = compileWithin(p, cluster, limits, policy.loaded.path);
    if (!compiled.ok) {
      writeDiagnostics(io.stderr, io, compiled.errors);
      return EXIT_INPUT_ERROR;
    }
    const result = compiled.result;

    let states: DesiredState[] = [...result.states.values()];
    if (values.host !== undefined) {
      const state = result.states.get(values.host);
      if (!state) {
        const known = [...result.states.keys()];
        io.stderr(`portcullis compile: unknown host '${values.host}'; hosts of the inventory: ${known.length > 0 ? known.join(', ') : '(none)'}\n`);
        return EXIT_INPUT_ERROR;
      }
      states = [state];
    }

    const notes = sortDiagnostics([
      ...policy.loaded.warnings,
      ...lintPolicyAgainstCluster(p, cluster, sites).map((d) => ({ ...d, severity: 'warning' as const })),
      ...(await reportsAsDiagnostics(result.reports, inventory.loaded.path)),
    ]);
    writeDiagnostics(io.stderr, io, notes);

    printStates(io, states, format, values.host !== undefined);
    return EXIT_OK;
  },
};
