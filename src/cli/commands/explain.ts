/**
 * `portcullis explain`: "can A reach B on port P, and which rule says so", answered by the
 * reference evaluator (src/evaluate/reference-evaluator.ts) for every (source address, task port,
 * protocol) the question covers. `--from` is an app id when it starts with '/', else an address.
 * Exit 0 whatever the verdicts; 1 when the question cannot be answered (unknown app or port).
 */
import type { ExplainQuery, Verdict } from '../../evaluate/reference-evaluator.js';
import { explain } from '../../evaluate/reference-evaluator.js';
import { sortDiagnostics } from '../../diagnostic.js';
import { compile } from '../../compile/compile.js';
import { EXIT_INPUT_ERROR, EXIT_OK, type CliIO, type Command } from '../command.js';
import { UsageError } from '../../usage-error.js';
import { CONTROLLER_CLUSTER_HELP, loadClusterInput, policyDriftNote } from '../controller-client.js';
import {
  INVENTORY_OPTION_HELP,
  POLICY_OPTION_HELP,
  loadPolicyInput,
  oneOf,
  parseFlags,
  plural,
  relativizer,
  resolvePolicyPath,
  writeDiagnostics,
} from '../load-inputs.js';
import { POLICY_LIMIT_HELP, POLICY_LIMIT_OPTIONS, policyLimitsFrom } from '../policy-limit-options.js';

const help = `Usage: portcullis explain --from APP|IP --to APP --port N|NAME [--protocol tcp|udp]
                         [--format text|json] [--policy FILE|DIR] [--inventory FILE | --controller URL]

Answers "may FROM open a new connection to port PORT of app TO, and why": one verdict per
source address, task of TO and protocol, with the tier that decided (failsafe, policy, labels,
default) and the rule with its file:line:col.

Options:
  --from APP|IP       source: an app id (starts with '/': every address of the hosts running
                      its tasks) or an IPv4/IPv6 address (required)
  --to APP            destination app id (required)
  --port N|NAME       a host port number, a container port (BRIDGE) or a port name (required)
  --protocol tcp|udp  only this protocol (default: every protocol the port uses)
  --format text|json  output format (default: text)
${POLICY_OPTION_HELP}
${INVENTORY_OPTION_HELP}
${CONTROLLER_CLUSTER_HELP}
${POLICY_LIMIT_HELP}

Exit codes: 0 answered (allowed or not), 1 policy/inventory error or a question about an
unknown app or port, 2 usage error.

Examples:
  portcullis explain --from /shop/web --to /shop/api --port http
  portcullis explain --policy ./policy --controller http://10.0.0.5:7444 --from 10.20.0.7 --to /shop/db --port 5432
`;

function decisionText(v: Verdict): string {
  if (v.decision === 'allow') return 'ALLOW';
  return v.enforced ? 'DENY' : 'DENY (audit: logged, not dropped)';
}

function verdictLines(v: Verdict, toAppId: string, shown: (text: string) => string): string {
  const name = v.portName !== undefined ? ` (${v.portName})` : '';
  const rule = v.rule !== undefined ? `rule ${v.rule}${v.at ? ` (${v.at.file}:${v.at.line}:${v.at.col})` : ''}, ` : '';
  const head = `${v.source} → ${toAppId} on ${v.hostId}:${v.hostPort}/${v.protocol}${name}: ${decisionText(v)} — ${rule}tier ${v.tier}`;
  return shown(`${head}\n    ${v.reason}\n`);
}

export const explainCommand: Command = {
  name: 'explain',
  help,
  async run(args: readonly string[], io: CliIO): Promise<number> {
    const values = parseFlags(args, {
      from: { type: 'string' },
      to: { type: 'string' },
      port: { type: 'string' },
      protocol: { type: 'string' },
      format: { type: 'string' },
      policy: { type: 'string' },
      inventory: { type: 'string' },
      controller: { type: 'string' },
      ...POLICY_LIMIT_OPTIONS,
    });
    for (const required of ['from', 'to', 'port'] as const) {
      if (values[required] === undefined || values[required] === '') throw new UsageError(`--${required} is required`);
    }
    const format = oneOf('format', values.format, ['text', 'json'] as const, 'text');
    const protocol = values.protocol === undefined ? undefined : oneOf('protocol', values.protocol, ['tcp', 'udp'] as const, 'tcp');
    const from = values.from!;
    const portText = values.port!;
    if (/^\d+$/.test(portText) && (Number(portText) < 1 || Number(portText) > 65535)) {
      throw new UsageError(`--port must be a port number from 1 to 65535 or a port name; got '${portText}'`);
    }
    const query: ExplainQuery = {
      from: from.startsWith('/') ? { appId: from } : { address: from },
      toAppId: values.to!,
      port: /^\d+$/.test(portText) ? Number(portText) : portText,
      ...(protocol !== undefined ? { protocol } : {}),
    };

    const [policy, inventory] = await Promise.all([
      loadPolicyInput(resolvePolicyPath(io, values.policy), policyLimitsFrom(values)),
      loadClusterInput(io, values),
    ]);
    if (!policy.ok || !inventory.ok) {
      writeDiagnostics(io.stderr, io, sortDiagnostics([...(policy.ok ? [] : policy.errors), ...(inventory.ok ? [] : inventory.errors)]));
      io.stderr('portcullis explain: cannot answer; fix the errors above (portcullis check lists them all)\n');
      return EXIT_INPUT_ERROR;
    }
    const note = await policyDriftNote(values.controller, () => compile(policy.loaded.policy, inventory.loaded.cluster).states);
    if (note !== '') io.stderr(note);
    const result = explain(policy.loaded.policy, inventory.loaded.cluster, query);
    if (!result.ok) {
      io.stderr(`portcullis explain: ${result.error}\n`);
      return EXIT_INPUT_ERROR;
    }

    if (format === 'json') {
      io.stdout(JSON.stringify({ query, mode: policy.loaded.policy.defaults.mode, verdicts: result.verdicts }, null, 2) + '\n');
      return EXIT_OK;
    }
    const shown = relativizer(io);
    io.stdout(result.verdicts.map((v) => verdictLines(v, query.toAppId, shown)).join(''));
    const allowed = result.verdicts.filter((v) => v.decision === 'allow').length;
    io.stdout(`${plural(allowed, 'connection')} allowed, ${result.verdicts.length - allowed} denied\n`);
    return EXIT_OK;
  },
};
