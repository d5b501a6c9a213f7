/**
 * `portcullis explain`: "can A reach B on port P, and which rule says so", answered by the
 * reference evaluator (src/evaluate/reference-evaluator.ts). `--from` is an app id when it starts
 * with '/', else an address. From an app (with `defaults.egress` on): one verdict per (source
 * task, source address, destination task port, protocol) with both halves, the egress check at
 * the source host and the address check at the destination. From an address: one verdict per
 * (task port, protocol), judged at the destination only (an address is not a task).
 * Exit 0 whatever the verdicts; 1 when the question cannot be answered (unknown app or port).
 */
import type { EgressVerdict } from '../../evaluate/egress-evaluator.js';
import type { ExplainQuery, PairVerdict, Verdict } from '../../evaluate/reference-evaluator.js';
import { explain } from '../../evaluate/reference-evaluator.js';
import { egressEnabled } from '../../evaluate/egress-evaluator.js';
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

Answers "may FROM open a new connection to port PORT of app TO, and why", with the tier that
decided (failsafe, policy, labels, default) and the rule with its file:line:col.
From an app: one verdict per task of FROM, address of its host, task of TO and protocol, with
both checks: egress at the source host (may this app reach the port?) and the destination
host (may this host address?). From an address: one verdict per task of TO and protocol,
judged at the destination only (an address is not a task).

Options:
  --from APP|IP       source: an app id (starts with '/': each of its tasks, from each address
                      of its host) or an IPv4/IPv6 address (required)
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

/** "(audit)", or "(audit: group G)" when a group's mode (groups.<name>.mode) made it audit. */
function auditTag(v: { readonly auditGroup?: string }): string {
  return v.auditGroup !== undefined ? `(audit: group ${v.auditGroup})` : '(audit)';
}

function decisionText(v: Verdict): string {
  if (v.decision === 'allow') return 'ALLOW';
  if (v.enforced) return 'DENY';
  return v.auditGroup !== undefined ? `DENY ${auditTag(v)}: logged, not dropped` : 'DENY (audit: logged, not dropped)';
}

/** "rule x (file:line:col), tier t": what decided a verdict or a half of one. */
function decidedBy(v: Verdict | EgressVerdict): string {
  const rule = v.rule !== undefined ? `rule ${v.rule}${v.at ? ` (${v.at.file}:${v.at.line}:${v.at.col})` : ''}, ` : '';
  return `${rule}tier ${v.tier}`;
}

function verdictLines(v: Verdict, toAppId: string, shown: (text: string) => string): string {
  const name = v.portName !== undefined ? ` (${v.portName})` : '';
  const head = `${v.source} → ${toAppId} on ${v.hostId}:${v.hostPort}/${v.protocol}${name}: ${decisionText(v)} — ${decidedBy(v)}`;
  return shown(`${head}\n    ${v.reason}\n`);
}

const DENIED_AT = { source: 'at the source host (egress)', destination: 'at the destination host' } as const;

function pairDecision(p: PairVerdict): string {
  if (p.deniedAt === undefined) return 'ALLOW';
  if (p.enforced) {
    // The source host only logs (its app audits); the destination host drops it.
    if (p.deniedAt === 'source' && !p.egress.enforced) return `DENY ${DENIED_AT.destination} (the source host only logs it ${auditTag(p.egress)})`;
    return `DENY ${DENIED_AT[p.deniedAt]}`;
  }
  // Not dropped: every half that denies audits; name the one that denies first.
  const audited = p.egress.decision === 'deny' ? p.egress : p.destination;
  return `DENY ${DENIED_AT[p.deniedAt]}: would be dropped ${auditTag(audited)}`;
}

function halfDecision(v: Verdict | EgressVerdict): string {
  if (v.decision === 'allow') return 'ALLOW';
  if (v.enforced) return 'DENY';
  return v.auditGroup !== undefined ? `DENY ${auditTag(v)}: would be dropped` : 'DENY (would be dropped (audit))';
}

/** A task pair: the combined verdict, then each half with what decided it and why. */
function pairLines(p: PairVerdict, toAppId: string, shown: (text: string) => string): string {
  const name = p.portName !== undefined ? ` (${p.portName})` : '';
  const head = `task ${p.sourceTaskId} of ${p.sourceAppId} on ${p.sourceHostId} (${p.source}) → ${toAppId} on ${p.hostId}:${p.hostPort}/${p.protocol}${name}: ${pairDecision(p)}`;
  const egress = `    egress at ${p.sourceHostId}: ${halfDecision(p.egress)} — ${decidedBy(p.egress)}\n        ${p.egress.reason}`;
  const dest = `    destination ${p.hostId}: ${halfDecision(p.destination)} — ${decidedBy(p.destination)}\n        ${p.destination.reason}`;
  return shown(`${head}\n${egress}\n${dest}\n`);
}

function summary(verdicts: readonly { decision: 'allow' | 'deny'; deniedAt?: 'source' | 'destination' }[], perHalf: boolean): string {
  const allowed = verdicts.filter((v) => v.decision === 'allow').length;
  const denied = verdicts.length - allowed;
  const source = verdicts.filter((v) => v.deniedAt === 'source').length;
  const where = perHalf && denied > 0 ? ` (${source} at the source host, ${denied - source} at the destination host)` : '';
  return `${plural(allowed, 'connection')} allowed, ${denied} denied${where}\n`;
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
    const drift = await policyDriftNote(values.controller, () => compile(policy.loaded.policy, inventory.loaded.cluster).states);
    if (drift !== '') io.stderr(drift);
    const result = explain(policy.loaded.policy, inventory.loaded.cluster, query);
    if (!result.ok) {
      io.stderr(`portcullis explain: ${result.error}\n`);
      return EXIT_INPUT_ERROR;
    }

    const egress = egressEnabled(policy.loaded.policy);
    // What an address or an app without the egress half is judged by, in words.
    const note =
      'address' in query.from
        ? egress
          ? `${query.from.address} is an address, not a task: judged at the destination host only (egress checks the tasks of apps; ask with --from /app for an app's tasks)`
          : undefined
        : egress
          ? undefined
          : `egress is off (defaults.egress: off): the tasks of ${query.from.appId} are judged by their host addresses at the destination only`;
    if (format === 'json') {
      const body = {
        query,
        mode: policy.loaded.policy.defaults.mode,
        groupModes: policy.loaded.policy.groups.filter((g) => g.mode !== undefined).map((g) => ({ group: g.name, mode: g.mode })),
        egress,
        ...(note !== undefined ? { note } : {}),
        verdicts: result.verdicts,
        ...(result.pairs ? { pairs: result.pairs } : {}),
      };
      io.stdout(JSON.stringify(body, null, 2) + '\n');
      return EXIT_OK;
    }
    const shown = relativizer(io);
    if (note !== undefined) io.stdout(`${note}\n`);
    if (result.pairs) {
      io.stdout(result.pairs.map((p) => pairLines(p, query.toAppId, shown)).join(''));
      io.stdout(summary(result.pairs, true));
    } else {
      io.stdout(result.verdicts.map((v) => verdictLines(v, query.toAppId, shown)).join(''));
      io.stdout(summary(result.verdicts, false));
    }
    return EXIT_OK;
  },
};
