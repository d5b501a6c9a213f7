/**
 * `portcullis policy push|show`: the policy kept in Consul KV for controller replicas
 * (src/consul/policy-kv.ts has the layout and the check-and-set). `push` runs exactly `check`
 * first and pushes nothing unless it passes; it reads the index of the policy in force BEFORE
 * checking, and switches to the new one only if that index still holds, so of two pushes at once
 * one lands and the other is told, with nothing of it in force.
 */
import { hostname } from 'node:os';
import { basename } from 'node:path';
import { CONSUL_TOKEN_HELP, consulClientOf, consulTargetFrom, type ConsulTarget } from '../consul-options.js';
import { DEFAULT_POLICY_PREFIX, PolicyPushConflict, policyPointerKey, prefixError, pushKvPolicy, readKvPolicy } from '../../consul/policy-kv.js';
import { readPolicyFiles } from '../../sources/policy-files.js';
import { UsageError } from '../../usage-error.js';
import { EXIT_INPUT_ERROR, EXIT_OK, type CliIO, type Command } from '../command.js';
import { CHECK_OPTIONS, checkPolicy } from './check.js';
import { INVENTORY_OPTION_HELP, POLICY_OPTION_HELP, parseFlags, resolvePolicyPath, writeDiagnostics } from '../load-inputs.js';
import { CONTROLLER_CLUSTER_HELP } from '../controller-client.js';
import { POLICY_LIMIT_HELP, policyLimitsFrom } from '../policy-limit-options.js';

const CONSUL_FLAGS = { consul: { type: 'string' }, 'consul-token-file': { type: 'string' }, 'consul-prefix': { type: 'string' } } as const;

const CONSUL_HELP = `  --consul URL        the local Consul agent's HTTP API, e.g. http://127.0.0.1:8500 (required)
${CONSUL_TOKEN_HELP}
  --consul-prefix P   KV prefix of the policy (default ${DEFAULT_POLICY_PREFIX})`;

const help = `Usage: portcullis policy push [--policy FILE|DIR] --consul URL [--consul-token-file FILE] [--consul-prefix P]
                              [--inventory FILE | --controller URL] [limits]
       portcullis policy show --consul URL [--consul-token-file FILE] [--consul-prefix P]

push: checks the policy exactly as \`portcullis check\` does (same options, same output) and,
only when it passes, writes it to Consul KV and makes it the policy in force for every
controller replica that follows the prefix (controller --policy-consul). The switch is a
check-and-set on the version read before the check: if another push landed meanwhile, this one
is refused with a clear error and nothing of it is in force (check the new policy, merge, push
again).
show: prints the policy in force in KV: its bundle id, files, when and from where it was pushed.

Options:
${POLICY_OPTION_HELP}
${CONSUL_HELP}
${INVENTORY_OPTION_HELP}
${CONTROLLER_CLUSTER_HELP}
${POLICY_LIMIT_HELP}

Exit codes: 0 pushed (or shown), 1 the policy does not check, Consul refused or failed, or
another push landed first; 2 usage error.

Example:
  portcullis policy push --policy policies/shop --inventory policies/inventory.yaml --consul http://127.0.0.1:8500
`;

function consulOptions(values: { consul?: string; 'consul-token-file'?: string; 'consul-prefix'?: string }, io: CliIO): { target: ConsulTarget; prefix: string } {
  const target = consulTargetFrom(values, io);
  if (target === undefined) throw new UsageError('--consul URL is required (the local Consul agent, e.g. http://127.0.0.1:8500)');
  const prefix = values['consul-prefix'] ?? DEFAULT_POLICY_PREFIX;
  const bad = prefixError(prefix);
  if (bad !== undefined) throw new UsageError(`--consul-prefix: ${bad}`);
  return { target, prefix };
}

async function push(args: readonly string[], io: CliIO): Promise<number> {
  const values = parseFlags(args, { ...CHECK_OPTIONS, ...CONSUL_FLAGS });
  const { target, prefix } = consulOptions(values, io);
  const url = target.url;
  const client = await consulClientOf(target);
  try {
    // The version in force before the check: the switch lands only if it still holds.
    const expectIndex = (await client.kvGet(policyPointerKey(prefix))).value?.modifyIndex ?? 0;
    if ((await checkPolicy(values, io)) !== EXIT_OK) {
      io.stderr('policy push: the policy does not check (see above); nothing pushed\n');
      return EXIT_INPUT_ERROR;
    }
    const policyPath = resolvePolicyPath(io, values.policy);
    const read = await readPolicyFiles(policyPath, policyLimitsFrom(values).maxBytes);
    if (read.errors.length > 0) {
      writeDiagnostics(io.stderr, io, read.errors);
      return EXIT_INPUT_ERROR;
    }
    const files = read.files.map((f) => ({ name: basename(f.path), text: f.text }));
    const pointer = await pushKvPolicy(client, prefix, files, { expectIndex, pushedBy: hostname() });
    io.stdout(`pushed policy ${pointer.bundle} (${files.length} file${files.length === 1 ? '' : 's'}) to ${url} under ${prefix}\n`);
    return EXIT_OK;
  } catch (e) {
    io.stderr(`policy push: ${e instanceof PolicyPushConflict ? '' : 'failed: '}${(e as Error).message}\n`);
    return EXIT_INPUT_ERROR;
  } finally {
    client.close();
  }
}

async function show(args: readonly string[], io: CliIO): Promise<number> {
  const values = parseFlags(args, CONSUL_FLAGS);
  const { target, prefix } = consulOptions(values, io);
  const url = target.url;
  const client = await consulClientOf(target);
  try {
    const inForce = await readKvPolicy(client, prefix);
    if (!inForce) {
      io.stdout(`no policy under ${prefix} in ${url} (push one with portcullis policy push)\n`);
      return EXIT_OK;
    }
    const p = inForce.pointer;
    io.stdout(`policy ${p.bundle} under ${prefix}: pushed ${p.pushedAt || 'at an unknown time'} from ${JSON.stringify(p.pushedBy)}\n`);
    for (const f of inForce.files) io.stdout(`  ${f.path} (${Buffer.byteLength(f.text)} bytes)\n`);
    return EXIT_OK;
  } catch (e) {
    io.stderr(`policy show: ${(e as Error).message}\n`);
    return EXIT_INPUT_ERROR;
  } finally {
    client.close();
  }
}

export const policyCommand: Command = {
  name: 'policy',
  help,
  async run(args: readonly string[], io: CliIO): Promise<number> {
    const [verb, ...rest] = args;
    if (verb === 'push') return push(rest, io);
    if (verb === 'show') return show(rest, io);
    throw new UsageError(verb === undefined ? 'policy needs a verb: push or show' : `unknown policy verb ${JSON.stringify(verb.slice(0, 40))}: expected push or show`);
  },
};
