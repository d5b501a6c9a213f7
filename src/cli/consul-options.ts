/**
 * The Consul flags every command that talks to Consul shares (`controller`, `agent`, `policy`):
 * `--consul URL` (the local Consul agent; no credentials in the URL) and `--consul-token-file
 * FILE`, the ACL token sent as X-Consul-Token on every request, read from the first line of a
 * file so that it shows neither in `ps` nor in a log. Without it requests carry no token and
 * Consul answers them as its anonymous token (with ACLs off, the default, that is everything).
 * The CONSUL_HTTP_TOKEN environment variable of Consul's own CLI is not read: the token comes
 * from one place, the one the command line names.
 */
import { ConsulClient } from '../consul/consul-client.js';
import { UsageError } from '../usage-error.js';
import type { CliIO } from './command.js';
import { absolutePath, httpUrlOption, secretFileLine } from './process-options.js';

export const CONSUL_TOKEN_HELP = [
  '  --consul-token-file FILE',
  '                      the Consul ACL token (first line of FILE), sent with every request;',
  '                      default: none (Consul\'s anonymous token)',
].join('\n');

/** Where a command reaches Consul: the agent's base URL (no trailing slash) and the token file, if any. */
export interface ConsulTarget {
  readonly url: string;
  readonly tokenFile?: string;
}

/** `--consul` and `--consul-token-file` (undefined without `--consul`; the token file alone is a UsageError). */
export function consulTargetFrom(values: { consul?: string; 'consul-token-file'?: string }, io: CliIO): ConsulTarget | undefined {
  const file = values['consul-token-file'];
  if (values.consul === undefined) {
    if (file !== undefined) throw new UsageError('--consul-token-file needs --consul URL');
    return undefined;
  }
  const url = httpUrlOption(values.consul, '--consul', 'give an ACL token with --consul-token-file FILE');
  return { url: url.href.replace(/\/$/, ''), ...(file !== undefined ? { tokenFile: absolutePath(io, file) } : {}) };
}

/** The ACL token of `target` (read from its file now), or undefined. */
export async function consulToken(target: ConsulTarget): Promise<string | undefined> {
  return target.tokenFile === undefined ? undefined : secretFileLine(target.tokenFile, '--consul-token-file');
}

/** A client of `target`, its token read from its file. */
export async function consulClientOf(target: ConsulTarget): Promise<ConsulClient> {
  const token = await consulToken(target);
  return new ConsulClient({ url: target.url, ...(token !== undefined ? { token } : {}) });
}
