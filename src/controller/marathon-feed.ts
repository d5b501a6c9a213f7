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
import type { Logger } from 'pino';
import pino from 'pino';
import type { ClusterState } from '../inventory/cluster-state.js';
import type { MarathonAuth, MarathonTls } from '../marathon/http-client.js';
import { MarathonSource, type MarathonSourceStatus } from '../marathon/marathon-source.js';
import { isoTime } from '../logging.js';
import { HostAddresses, type AgentAddressSource, type SharedAddressSource } from './host-addresses.js';

/** What the feed needs of a MarathonSource (the real one fits). */
export interface MarathonLike {
  start(): Promise<void>;
  stop(): Promise<void>;
  cluster(): ClusterState;
  status(): MarathonSourceStatus;
  onChange(fn: (cluster: ClusterState, changedAppIds: string[]) => void): () => void;
  /** As MarathonSource.freshAsOf; absent: the view has no comparable time (stamp 0). */
  freshAsOf?(): number;
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
  private stopped = false;

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
    if (this.stopped) return; // stop() came during the source's first list
    this.check();
    this.timer = setInterval(() => this.check(), this.opts.checkMs ?? 500);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
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

  /** The cluster side of the input stamp: 0 until a good list was delivered (ClusterFeed.freshAsOf). */
  freshAsOf(): number {
    return this.delivered ? (this.opts.source.freshAsOf?.() ?? 0) : 0;
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

/** How to reach Marathon, checked and read from the command line by src/cli/marathon-options.ts. */
export interface MarathonFeedConfig {
  readonly urls: readonly string[];
  readonly auth?: MarathonAuth;
  readonly tls?: MarathonTls;
  readonly relistIntervalMs: number;
  readonly dns: boolean;
}

/**
 * The feed the controller runs with `--marathon`: Marathon source + address book over the
 * agents' Hellos (e.g. `() => syncService.agents()`), and the Hellos other replicas shared
 * (FeedContext.sharedAddresses, with Consul).
 */
export function createMarathonFeed(r: MarathonFeedConfig, agents: AgentAddressSource, logger?: Logger, shared?: SharedAddressSource): MarathonFeed {
  if (r.tls?.insecureSkipVerify) logger?.warn('Marathon certificates are NOT verified (--marathon-insecure-skip-verify)');
  const source = new MarathonSource({
    url: [...r.urls],
    ...(r.auth ? { auth: r.auth } : {}),
    ...(r.tls ? { tls: r.tls } : {}),
    relistIntervalMs: r.relistIntervalMs,
    ...(logger ? { logger } : {}),
  });
  const addresses = new HostAddresses({ agents, dns: r.dns, ...(logger ? { logger } : {}), ...(shared ? { shared } : {}) });
  return new MarathonFeed({ source, addresses, ...(logger ? { logger } : {}) });
}
