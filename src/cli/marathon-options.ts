/**
 * The controller's `--marathon*` flags: their parseArgs spec, the flags a user gave (paths made
 * absolute, not yet read), and checking them and reading the files they name into the
 * MarathonFeedConfig that src/controller/marathon-feed.ts runs with. Flag mistakes parseArgs can
 * see are UsageErrors (exit 2); what needs the files (unreadable, empty, not PEM) or a URL check
 * is a MarathonConfigError, which the controller reports as a start-up problem (exit 1).
 */
import { readFile } from 'node:fs/promises';
import type { MarathonAuth, MarathonTls } from '../marathon/http-client.js';
import type { MarathonFeedConfig } from '../controller/marathon-feed.js';
import { UsageError } from '../usage-error.js';
import type { CliIO } from './command.js';
import { absolutePath, parseSeconds, secretFileLine } from './process-options.js';

export const MARATHON_OPTIONS = {
  marathon: { type: 'string', multiple: true },
  'marathon-credentials': { type: 'string' },
  'marathon-user': { type: 'string' },
  'marathon-password': { type: 'string' },
  'marathon-token-file': { type: 'string' },
  'marathon-ca': { type: 'string' },
  'marathon-insecure-skip-verify': { type: 'boolean' },
  'relist-interval': { type: 'string' },
  dns: { type: 'boolean' },
} as const;

type MarathonValues = {
  marathon?: string[];
  'marathon-credentials'?: string;
  'marathon-user'?: string;
  'marathon-password'?: string;
  'marathon-token-file'?: string;
  'marathon-ca'?: string;
  'marathon-insecure-skip-verify'?: boolean;
  'relist-interval'?: string;
  dns?: boolean;
};

/** The Marathon flags given, or undefined without `--marathon` (then no other Marathon flag may be given). */
export function marathonFlagsFrom(values: MarathonValues, io: CliIO): MarathonFlags | undefined {
  const marathonUrls = values.marathon ?? [];
  if (marathonUrls.length === 0) {
    const stray = (Object.keys(MARATHON_OPTIONS) as (keyof MarathonValues)[]).find((name) => name !== 'marathon' && values[name] !== undefined);
    if (stray) throw new UsageError(`--${stray} needs --marathon URL`);
    return undefined;
  }
  const relist = values['relist-interval'] === undefined ? undefined : parseSeconds(values['relist-interval'], 'relist-interval', 1, 86_400);
  return {
    urls: marathonUrls,
    ...(values['marathon-user'] !== undefined ? { user: values['marathon-user'] } : {}),
    ...(values['marathon-password'] !== undefined ? { password: values['marathon-password'] } : {}),
    ...(values['marathon-credentials'] !== undefined ? { credentialsFile: absolutePath(io, values['marathon-credentials']) } : {}),
    ...(values['marathon-token-file'] !== undefined ? { tokenFile: absolutePath(io, values['marathon-token-file']) } : {}),
    ...(values['marathon-ca'] !== undefined ? { caFile: absolutePath(io, values['marathon-ca']) } : {}),
    ...(values['marathon-insecure-skip-verify'] ? { insecureSkipVerify: true } : {}),
    ...(relist !== undefined ? { relistIntervalSeconds: relist } : {}),
    ...(values.dns ? { dns: true } : {}),
  };
}

/** The controller's Marathon flags, as parsed from the command line (file paths, not contents). */
export interface MarathonFlags {
  readonly urls: readonly string[];
  readonly user?: string;
  readonly password?: string;
  /** A file holding `user:password` (first line). */
  readonly credentialsFile?: string;
  /** A file holding a DC/OS token (first line). */
  readonly tokenFile?: string;
  readonly caFile?: string;
  readonly insecureSkipVerify?: boolean;
  readonly relistIntervalSeconds?: number;
  readonly dns?: boolean;
}

export class MarathonConfigError extends Error {}

function firstLine(path: string, what: string): Promise<string> {
  return secretFileLine(path, what, (m) => new MarathonConfigError(m));
}

/** Checks the flags and reads the files they name; errors say which flag and what to do. */
export async function resolveMarathonFlags(flags: MarathonFlags): Promise<MarathonFeedConfig> {
  if (flags.urls.length === 0) throw new MarathonConfigError('--marathon needs a URL, e.g. --marathon http://marathon.example:8080');
  for (const u of flags.urls) {
    let url: URL;
    try {
      url = new URL(u);
    } catch {
      throw new MarathonConfigError(`--marathon ${JSON.stringify(u)} is not a URL; expected http(s)://host:port`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new MarathonConfigError(`--marathon ${u}: only http and https URLs are supported`);
    if (url.username || url.password) throw new MarathonConfigError(`--marathon ${url.host}: put credentials in --marathon-credentials, not in the URL`);
  }
  const ways = [flags.user !== undefined || flags.password !== undefined, flags.credentialsFile !== undefined, flags.tokenFile !== undefined].filter(Boolean).length;
  if (ways > 1) throw new MarathonConfigError('use one of --marathon-user/--marathon-password, --marathon-credentials or --marathon-token-file');
  let auth: MarathonAuth | undefined;
  if (flags.user !== undefined || flags.password !== undefined) {
    if (flags.user === undefined || flags.password === undefined) throw new MarathonConfigError('--marathon-user and --marathon-password go together (or use --marathon-credentials FILE)');
    auth = { basic: { user: flags.user, password: flags.password } };
  } else if (flags.credentialsFile !== undefined) {
    const line = await firstLine(flags.credentialsFile, '--marathon-credentials');
    const colon = line.indexOf(':');
    if (colon <= 0) throw new MarathonConfigError(`the --marathon-credentials file ${flags.credentialsFile} must hold user:password`);
    auth = { basic: { user: line.slice(0, colon), password: line.slice(colon + 1) } };
  } else if (flags.tokenFile !== undefined) {
    auth = { token: await firstLine(flags.tokenFile, '--marathon-token-file') };
  }
  let tls: MarathonTls | undefined;
  if (flags.caFile !== undefined || flags.insecureSkipVerify) {
    let ca: string | undefined;
    if (flags.caFile !== undefined) {
      try {
        ca = await readFile(flags.caFile, 'utf8');
      } catch (e) {
        throw new MarathonConfigError(`cannot read the --marathon-ca file ${flags.caFile}: ${(e as Error).message}`);
      }
      if (!ca.includes('-----BEGIN CERTIFICATE-----')) throw new MarathonConfigError(`--marathon-ca ${flags.caFile} holds no PEM certificate`);
    }
    tls = { ...(ca !== undefined ? { ca } : {}), ...(flags.insecureSkipVerify ? { insecureSkipVerify: true } : {}) };
  }
  const relist = flags.relistIntervalSeconds ?? 60;
  if (!Number.isFinite(relist) || relist < 1 || relist > 86_400) throw new MarathonConfigError(`--relist-interval must be 1..86400 seconds, got ${relist}`);
  return { urls: [...flags.urls], ...(auth ? { auth } : {}), ...(tls ? { tls } : {}), relistIntervalMs: Math.round(relist * 1000), dns: flags.dns ?? false };
}
