/**
 * `portcullis plan OLD NEW`: which recorded flows change verdict under a policy edit
 * (src/flows/plan.ts, the pure core: each flow re-judged by the reference evaluator under both
 * policies in the same cluster). Flows from a controller's /flows or `--flows FILE`, the cluster
 * from its /cluster or `--inventory FILE`. Exit 0 whatever changes.
 */
import { parseArgs } from 'node:util';
import { sortDiagnostics, type Diagnostic } from '../../diagnostic.js';
import { planFlows, type PlanChange } from '../../flows/plan.js';
import { EXIT_INPUT_ERROR, EXIT_OK, type CliIO, type Command } from '../command.js';
import { UsageError } from '../../usage-error.js';
import { DEFAULT_STATUS_LISTEN, printable } from '../controller-client.js';
import { FLOWS_FILE_HELP, FLOW_CLUSTER_HELP, checkTime, loadFlowContext, timeMs } from '../flows-input.js';
import { decidedByText, flowDestinationText, flowSourceText, seenText } from '../flow-table.js';
import { loadPolicyInput, oneOf, parseOptions, plural, resolvePolicyPath, writeDiagnostics } from '../load-inputs.js';
import { POLICY_LIMIT_HELP, POLICY_LIMIT_OPTIONS, policyLimitsFrom } from '../policy-limit-options.js';
import { table } from './status.js';

const help = `Usage: portcullis plan OLD NEW [--controller URL | --flows FILE] [--inventory FILE]
                      [--since D] [--format table|json]

Re-judges every recorded flow under OLD and under NEW (policy files or directories) with the
reference evaluator (the one explain uses), in the same cluster, and lists the flows whose
verdict changes: allowed → denied (traffic seen today that NEW would refuse), denied →
allowed, and the audit moves of a mode change (audit → denied: a group switched to enforce
would drop these). Each row gives the connections seen and the rule that decides under each.

Options:
  --controller URL    the controller's status listener, for /flows and /cluster (default
                      http://${DEFAULT_STATUS_LISTEN}, the controller's default --status-listen)
${FLOWS_FILE_HELP}
${FLOW_CLUSTER_HELP}
  --since D           only flows seen since: a duration back from now (10m, 1h, 2d) or an
                      ISO 8601 time (with --flows FILE, back from the answer's "now")
  --format table|json output format (default: table)
${POLICY_LIMIT_HELP}

Exit codes: 0 compared (with or without changes), 1 a policy, the flows or the cluster could
not be read, 2 usage error.

Example:
  cp -r policies/shop /tmp/shop-new && \$EDITOR /tmp/shop-new/10-groups.yaml   # a group to enforce
  portcullis plan policies/shop /tmp/shop-new --controller http://10.0.5.5:7444
`;

function changeRow(c: PlanChange): string[] {
  return [
    seenText(c.flow.lastSeen),
    `${c.before.verdict} → ${c.after.verdict}`,
    flowSourceText(c.flow),
    flowDestinationText(c.flow),
    c.flow.destination.protocol,
    String(c.flow.packets),
    decidedByText(c.before),
    decidedByText(c.after),
  ];
}

export const planCommand: Command = {
  name: 'plan',
  help,
  async run(args: readonly string[], io: CliIO): Promise<number> {
    const { values, positionals } = parseOptions(() =>
      parseArgs({
        args: [...args],
        options: { controller: { type: 'string' }, flows: { type: 'string' }, inventory: { type: 'string' }, since: { type: 'string' }, format: { type: 'string' }, ...POLICY_LIMIT_OPTIONS },
        strict: true,
        allowPositionals: true,
      }),
    );
    if (positionals.length !== 2) throw new UsageError(`expected two policies, OLD and NEW; got ${positionals.length} argument(s)`);
    const format = oneOf('format', values.format, ['table', 'json'] as const, 'table');
    const since = checkTime('since', values.since);
    const [oldPath, newPath] = positionals.map((p) => resolvePolicyPath(io, p)) as [string, string];
    const limits = policyLimitsFrom(values);
    const query = new URLSearchParams({ limit: '100000', ...(since !== undefined ? { since } : {}) });
    const [before, after, context] = await Promise.all([loadPolicyInput(oldPath, limits), loadPolicyInput(newPath, limits), loadFlowContext(io, values, query)]);
    if (!before.ok || !after.ok || !context.ok) {
      const errors: Diagnostic[] = [...(before.ok ? [] : before.errors), ...(after.ok ? [] : after.errors), ...(context.ok ? [] : context.errors)];
      writeDiagnostics(io.stderr, io, sortDiagnostics(errors));
      io.stderr('portcullis plan: nothing compared; fix the errors above\n');
      return EXIT_INPUT_ERROR;
    }
    const { answer } = context.flows;
    const sinceMs = since !== undefined ? timeMs(since, Date.parse(answer.now)) : undefined;
    const flows = sinceMs === undefined ? answer.flows : answer.flows.filter((f) => Date.parse(f.lastSeen) >= sinceMs);
    const plan = planFlows(before.loaded.policy, after.loaded.policy, context.cluster, flows);
    if (format === 'json') {
      io.stdout(`${JSON.stringify({ ...plan, changes: plan.changes.map((c) => ({ before: c.before, after: c.after, flow: c.flow })), flows: flows.length, now: answer.now }, null, 2)}\n`);
      return EXIT_OK;
    }
    const s = plan.summary;
    if (plan.changes.length === 0) io.stdout(`no recorded flow changes verdict (${plural(s.judged, 'flow')} judged under both policies)\n`);
    else {
      const head = ['LAST SEEN', 'CHANGE', 'SOURCE', 'DESTINATION', 'PROTO', 'CONNS', 'DECIDED BY (OLD)', 'DECIDED BY (NEW)'];
      io.stdout(`${table([head, ...plan.changes.map(changeRow)])}\n`);
      const moves = Object.entries(s.moves).map(([m, n]) => `${n} ${m}`).join(', ');
      io.stdout(`${plural(plan.changes.length, 'flow')} of ${s.judged} change verdict (${moves}); ${s.unchanged} unchanged\n`);
    }
    for (const n of plan.notJudged) io.stderr(`not judged: ${plural(n.flows, 'flow')} (${plural(n.connections, 'connection')}): ${printable(n.reason)}\n`);
    return EXIT_OK;
  },
};
