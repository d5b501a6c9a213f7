/**
 * The controller's live inventory: Marathon (src/marathon/marathon-source.ts) plus host addresses
 * (host-addresses.ts), delivered as whole, validated ClusterStates.
 *
 * Contract
 *  - `start(onCluster)` starts the Marathon source and the address book. `onCluster` is called
 *    only with clusters built from a Marathon answer the source accepted (a good list, or events
 *    applied on top of one), with every host's known addresses filled in; never before the first
 *    good list. It is called again on every Marathon change and whenever a host gets new
 *    addresses (agent Hello, DNS). Hosts whose agent said Hello but that run no Marathon task are
 *    in the cluster too (they get a state with no managed port, so ports of departed tasks are
 *    released). Callers coalesce (DesiredStateStore.queueCluster).
 *  - Marathon unreachable, failing or answering garbage: the source keeps the last good cluster,
 *    so nothing is delivered and agents keep their states; `status()` says `stale: true` with the
 *    reason and since when, and one log line marks each transition (stale / fresh again).
 *    `status().ready` stays true once one good list was had (the controller's /readyz stays 200:
 *    the states it serves are the last known truth, and failing readiness would only take a
 *    healthy controller out of rotation; staleness is visible in /status and the metrics).
 *  - Hosts without a known address are listed in `status().problems` ("host X has no known
 *    address: its tasks are not allowed as sources").
 */
import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import pino from 'pino';
import type { ClusterState } from '../inventory/cluster-state.js';
import type { MarathonAuth, MarathonTls } from '../marathon/http-client.js';
import { MarathonSource, type MarathonSourceStatus } from '../marathon/marathon-source.js';
import { isoTime } from '../logging.js';
import { HostAddresses, type AgentAddressSource } from './host-addresses.js';

/** What the feed needs of a MarathonSource (the real one fits). */
export interface MarathonLike {
  start(): Promise<void>;
  stop(): Promise<void>;
  cluster(): ClusterState;
  status(): MarathonSourceStatus;
  onChange(fn: (cluster: ClusterState, changedAppIds: string[]) => void): () => void;
}

export interface MarathonFeedStatus {
  readonly source: 'marathon';
  /** A good list was had at least once (states are meaningful). */
  readonly ready: boolean;
  readonly stale: boolean;
  readonly reason?: string;
  /** ISO time since when stale. */
  readonly since?: string;
  /** ISO time of the last accepted full list. */
  readonly lastSync?: string;
  readonly streamConnected: boolean;
  readonly hosts: number;
  readonly apps: number;
  readonly tasks: number;
  /** Parts of Marathon's answers skipped, and hosts without a known address. */
  readonly problems: readonly string[];
}

export interface MarathonFeedOptions {
  readonly source: MarathonLike;
  readonly addresses: HostAddresses;
  readonly logger?: Logger;
  /** Period of the status check (first good list, stale transitions). Default 500 ms. */
  readonly checkMs?: number;
}

export class MarathonFeed {
  private readonly log: Logger;
  private onCluster: ((cluster: ClusterState) => void) | undefined;
  private delivered: ClusterState | undefined;
  private hadGoodList = false;
  private wasStale = false;
  private readonly unsubscribers: (() => void)[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly opts: MarathonFeedOptions) {
    this.log = (opts.logger ?? pino({ level: 'silent' })).child({ module: 'marathon-feed' });
  }

  async start(onCluster: (cluster: ClusterState) => void): Promise<void> {
    this.onCluster = onCluster;
    const { source, addresses } = this.opts;
    this.unsubscribers.push(
      source.onChange((cluster) => {
        this.hadGoodList ||= source.status().lastSync !== undefined;
        if (this.hadGoodList) this.deliver(cluster);
      }),
      addresses.onChange(() => {
        if (this.delivered) this.deliver(source.cluster());
      }),
    );
    addresses.start();
    await source.start();
    this.check();
    this.timer = setInterval(() => this.check(), this.opts.checkMs ?? 500);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    for (const u of this.unsubscribers.splice(0)) u();
    this.opts.addresses.stop();
    await this.opts.source.stop();
    this.onCluster = undefined;
  }

  /** The last cluster delivered (addresses filled), if any. */
  cluster(): ClusterState | undefined {
    return this.delivered;
  }

  status(): MarathonFeedStatus {
    const s = this.opts.source.status();
    const c = this.delivered;
    const problems = [...s.problems, ...(c ? this.opts.addresses.problems(c) : [])];
    return {
      source: 'marathon',
      ready: this.hadGoodList,
      stale: s.stale || !this.hadGoodList,
      ...(s.reason !== undefined ? { reason: s.reason } : !this.hadGoodList ? { reason: 'no good Marathon list yet' } : {}),
      ...(s.since !== undefined ? { since: isoTime(s.since) } : {}),
      ...(s.lastSync !== undefined ? { lastSync: isoTime(s.lastSync) } : {}),
      streamConnected: s.streamConnected,
      hosts: c?.hosts.length ?? 0,
      apps: c?.apps.length ?? 0,
      tasks: c?.tasks.length ?? 0,
      problems,
    };
  }

  private deliver(cluster: ClusterState): void {
    const filled = this.opts.addresses.fill(cluster);
    this.delivered = filled;
    this.onCluster?.(filled);
  }

  private check(): void {
    const s = this.opts.source.status();
    if (!this.hadGoodList && s.lastSync !== undefined) {
      this.hadGoodList = true;
      this.log.info({ lastSync: isoTime(s.lastSync) }, 'first good Marathon list');
      this.deliver(this.opts.source.cluster());
    }
    if (s.stale !== this.wasStale) {
      this.wasStale = s.stale;
      if (s.stale) this.log.warn({ reason: s.reason, since: isoTime(s.since) }, 'Marathon inventory is stale: keeping the last good cluster and the states built from it');
      else this.log.info({ lastSync: isoTime(s.lastSync) }, 'Marathon inventory is fresh again');
    }
  }
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

async function firstLine(path: string, what: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new MarathonConfigError(`cannot read the ${what} file ${path}: ${(e as Error).message}`);
  }
  const line = text.split(/\r?\n/)[0]!.trim();
  if (line === '') throw new MarathonConfigError(`the ${what} file ${path} is empty`);
  return line;
}

/** Checks the flags and reads the files they name; errors say which flag and what to do. */
export async function resolveMarathonFlags(flags: MarathonFlags): Promise<{ urls: string[]; auth?: MarathonAuth; tls?: MarathonTls; relistIntervalMs: number; dns: boolean }> {
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

/**
 * The feed the controller runs with `--marathon`: Marathon source + address book over the
 * agents' Hellos (e.g. `() => syncService.agents()`).
 */
export async function createMarathonFeed(flags: MarathonFlags, agents: AgentAddressSource, logger?: Logger): Promise<MarathonFeed> {
  const r = await resolveMarathonFlags(flags);
  if (r.tls?.insecureSkipVerify) logger?.warn('Marathon certificates are NOT verified (--marathon-insecure-skip-verify)');
  const source = new MarathonSource({
    url: r.urls,
    ...(r.auth ? { auth: r.auth } : {}),
    ...(r.tls ? { tls: r.tls } : {}),
    relistIntervalMs: r.relistIntervalMs,
    ...(logger ? { logger } : {}),
  });
  const addresses = new HostAddresses({ agents, dns: r.dns, ...(logger ? { logger } : {}) });
  return new MarathonFeed({ source, addresses, ...(logger ? { logger } : {}) });
}
