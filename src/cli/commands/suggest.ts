/**
 * `portcullis suggest`: the rules that would allow what the cluster was seen doing but the policy
 * does not allow yet (src/flows/suggest.ts, the pure core), printed as policy YAML to paste
 * (src/flows/suggest-yaml.ts) or as JSON. Flows come from a controller's /flows or a saved
 * answer (`--flows FILE`); the cluster they are judged in from the controller's /cluster or
 * `--inventory FILE`; the policy is the local `--policy`. Exit 0 whatever was found.
 */
import { sortDiagnostics } from '../../diagnostic.js';
import { suggestRules } from '../../flows/suggest.js';
import { suggestionYaml } from '../../flows/suggest-yaml.js';
import { UsageError } from '../../usage-error.js';
import { EXIT_INPUT_ERROR, EXIT_OK, type CliIO, type Command } from '../command.js';
import { DEFAULT_STATUS_LISTEN, printable } from '../controller-client.js';
import { FLOWS_FILE_HELP, FLOW_CLUSTER_HELP, checkTime, checkVerdicts, loadFlowContext, timeMs } from '../flows-input.js';
import { POLICY_OPTION_HELP, loadPolicyInput, oneOf, parseFlags, relativizer, resolvePolicyPath, writeDiagnostics } from '../load-inputs.js';
import { POLICY_LIMIT_HELP, POLICY_LIMIT_OPTIONS, policyLimitsFrom } from '../policy-limit-options.js';

/** `--top`'s default: more rules than one reviews and pastes into a policy, far fewer than a scan gives. */
export const DEFAULT_TOP = 1000;

const help = `Usage: portcullis suggest [--controller URL | --flows FILE] [--policy FILE|DIR] [--inventory FILE]
                         [--since D] [--verdict denied,audit] [--top N] [--format yaml|json]

Reads the recorded flows and prints the rules, in the policy's own YAML, that would allow what
was observed but the policy does not allow now: one rule per (source, destination, port),
sources as groups when the apps seen are exactly the apps of groups of the policy (else a
proposed group listing exactly those app ids), outside addresses as the smallest network of
the policy holding them (else a proposed network of exactly the /32 and /128 addresses seen),
destinations likewise, ports by name (else the host port number); ordered by connections,
each with a comment giving its evidence (connections, first and last seen, hosts). Never
broader than the evidence. Flows an explicit deny rule refuses, or a pass rule hands to
developer labels, are listed as not suggested (a rule appended cannot change them).
At most --top rules are printed (default ${DEFAULT_TOP}), those of most connections, with the
groups and networks they use; a comment (JSON: leftOut) says how many more there are and the
connections and flows they carry.

Paste the groups under groups:, the networks under networks: and the rules at the END of
rules: (first match wins) — or save the output as a policy file sorted after the others,
e.g. policies/shop/99-suggested.yaml — then run portcullis check.

Options:
  --controller URL    the controller's status listener, for /flows and /cluster (default
                      http://${DEFAULT_STATUS_LISTEN}, the controller's default --status-listen)
${FLOWS_FILE_HELP}
${POLICY_OPTION_HELP}
${FLOW_CLUSTER_HELP}
  --since D           only flows seen since: a duration back from now (10m, 1h, 2d) or an
                      ISO 8601 time (with --flows FILE, back from the answer's "now")
  --verdict V         the recorded verdicts taken as evidence (default denied,audit)
  --top N             print the N rules of most connections (default ${DEFAULT_TOP}: a policy of
                      hundreds of rules is shown whole, a scan of random addresses is not
                      pasted rule by rule); 0: every rule
  --format yaml|json  yaml (default): policy text to paste; json: groups, networks, rules with
                      their evidence, what was not suggested, and leftOut (the rules --top
                      left out: rules, connections, bytes, flows)
${POLICY_LIMIT_HELP}

Exit codes: 0 answered (with or without rules), 1 the flows, the cluster or the policy could
not be read, 2 usage error.

Examples:
  portcullis suggest --controller http://10.0.5.5:7444 --policy policies/shop --since 1d
  portcullis suggest --flows flows.json --inventory inventory.yaml --policy policies/shop > 99-suggested.yaml
`;

export const suggestCommand: Command = {
  name: 'suggest',
  help,
  async run(args: readonly string[], io: CliIO): Promise<number> {
    const values = parseFlags(args, {
      controller: { type: 'string' },
      flows: { type: 'string' },
      policy: { type: 'string' },
      inventory: { type: 'string' },
      since: { type: 'string' },
      verdict: { type: 'string' },
      format: { type: 'string' },
      top: { type: 'string' },
      ...POLICY_LIMIT_OPTIONS,
    });
    const format = oneOf('format', values.format, ['yaml', 'json'] as const, 'yaml');
    const verdicts = checkVerdicts(values.verdict, ['denied', 'audit']);
    const since = checkTime('since', values.since);
    const top = values.top === undefined ? DEFAULT_TOP : Number(values.top);
    if (values.top !== undefined && (!/^[0-9]+$/.test(values.top) || !Number.isSafeInteger(top))) throw new UsageError(`--top must be a whole number (0: every rule); got '${printable(values.top.slice(0, 100))}'`);
    const query = new URLSearchParams({ verdict: verdicts.join(','), limit: '100000', ...(since !== undefined ? { since } : {}) });
    const [policy, context] = await Promise.all([loadPolicyInput(resolvePolicyPath(io, values.policy), policyLimitsFrom(values)), loadFlowContext(io, values, query)]);
    if (!policy.ok || !context.ok) {
      writeDiagnostics(io.stderr, io, sortDiagnostics([...(policy.ok ? [] : policy.errors), ...(context.ok ? [] : context.errors)]));
      io.stderr('portcullis suggest: nothing suggested; fix the errors above\n');
      return EXIT_INPUT_ERROR;
    }
    const { answer } = context.flows;
    const sinceMs = since !== undefined ? timeMs(since, Date.parse(answer.now)) : undefined;
    const suggestion = suggestRules(policy.loaded.policy, context.cluster, answer.flows, { verdicts, top, ...(sinceMs !== undefined ? { sinceMs } : {}) });
    if (format === 'json') {
      io.stdout(`${JSON.stringify({ ...suggestion, top, flows: answer.flows.length, now: answer.now }, null, 2)}\n`);
      return EXIT_OK;
    }
    io.stdout(suggestionYaml(suggestion, { policy: relativizer(io)(policy.loaded.path), verdicts }));
    return EXIT_OK;
  },
};
