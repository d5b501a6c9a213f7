/**
 * What the long-running commands (`controller`, `agent`) share on their command line: the mTLS
 * file options (or an explicit `--insecure`), durations in seconds, paths resolved against the
 * caller's working directory, http(s) URLs of the services they call (never with credentials in
 * them: a URL is logged, shown on /status and visible in `ps`), secret files (a token or
 * user:password on the first line), and waiting for the signal that stops them.
 */
import path from 'node:path';
import { HostPortError, parseHostPort, type HostPort } from '../controller/host-port.js';
import type { TlsFiles } from '../tls/credentials.js';
import { type CliIO } from './command.js';
import { UsageError } from '../usage-error.js';
import { readRegularFile } from '../sources/read-regular-file.js';

export const TLS_OPTION_HELP = [
  '  --ca FILE           CA certificate that signs the other side (PEM)',
  "  --cert FILE         this side's certificate (PEM)",
  "  --key FILE          this side's private key (PEM)",
  '  --insecure          plaintext gRPC, no authentication (local trials only)',
].join('\n');

export function absolutePath(io: CliIO, given: string): string {
  return path.resolve(io.cwd, given);
}

/** The TLS files of `--ca --cert --key`, or undefined with `--insecure`; anything else is a UsageError. */
export function tlsFilesFrom(values: { ca?: string; cert?: string; key?: string; insecure?: boolean }, io: CliIO): TlsFiles | undefined {
  const given = (['ca', 'cert', 'key'] as const).filter((name) => values[name] !== undefined);
  if (values.insecure) {
    if (given.length > 0) throw new UsageError(`--insecure and --${given[0]} exclude each other`);
    return undefined;
  }
  if (given.length !== 3) {
    const missing = (['ca', 'cert', 'key'] as const).filter((name) => values[name] === undefined).map((n) => `--${n}`);
    throw new UsageError(`mTLS needs --ca, --cert and --key (missing ${missing.join(', ')}); for a plaintext local trial pass --insecure`);
  }
  return { caFile: absolutePath(io, values.ca as string), certFile: absolutePath(io, values.cert as string), keyFile: absolutePath(io, values.key as string) };
}

/** A `HOST:PORT` option (or its default); a malformed one is a UsageError naming the flag. */
export function hostPortOption(value: string | undefined, fallback: string, flag: string): HostPort;
export function hostPortOption(value: string | undefined, fallback: undefined, flag: string): HostPort | undefined;
export function hostPortOption(value: string | undefined, fallback: string | undefined, flag: string): HostPort | undefined {
  const text = value ?? fallback;
  if (text === undefined) return undefined;
  try {
    return parseHostPort(text, flag);
  } catch (err) {
    throw err instanceof HostPortError ? new UsageError(err.message) : err;
  }
}

/** A number of seconds within [min, max]. */
export function parseSeconds(value: string, flag: string, min: number, max: number): number {
  const seconds = Number(value);
  if (value.trim() === '' || !Number.isFinite(seconds) || seconds < min || seconds > max) {
    throw new UsageError(`--${flag} must be a number of seconds in ${min}..${max}, got '${value}'`);
  }
  return seconds;
}

/**
 * An http:// or https:// URL option (`flag` with its dashes). Credentials written in it are
 * refused, naming only the host: `credentials` says where they go instead. `orElse` adds the
 * flag's other values to the error (" or 'off'").
 */
export function httpUrlOption(text: string, flag: string, credentials: string, orElse = ''): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    url = new URL('invalid:');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError(`${flag} must be an http:// or https:// URL${orElse}, got '${text.slice(0, 100)}'`);
  if (url.username !== '' || url.password !== '') throw new UsageError(`${flag} ${url.host}: no credentials in the URL (it is logged and shown on /status); ${credentials}`);
  return url;
}

/** The first line of a secret file (`what` names it in errors), trimmed; `fail` makes the error (a UsageError by default). */
export async function secretFileLine(file: string, what: string, fail: (message: string) => Error = (m) => new UsageError(m)): Promise<string> {
  let text: string;
  try {
    text = await readRegularFile(file);
  } catch (e) {
    throw fail(`cannot read the ${what} file ${file}: ${(e as Error).message}`);
  }
  const line = text.split(/\r?\n/)[0]!.trim();
  if (line === '') throw fail(`the ${what} file ${file} is empty`);
  return line;
}

/** Resolves with the name of the first SIGTERM or SIGINT. */
export function waitForStopSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const stop = (signal: NodeJS.Signals): void => {
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
      resolve(signal);
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
}
