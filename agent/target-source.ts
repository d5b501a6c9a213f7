/**
 * Where an agent's list of controller replicas comes from (issue 12, "Agents know several
 * controllers"), feeding the SyncClient's ControllerTargets:
 *
 * - `--controller HOST:PORT` given once or more: every address each name resolves to (A and
 *   AAAA; an address is itself), resolved at start and again whenever the client has tried every
 *   target without a good stream (`refresh`). A name that does not resolve keeps the addresses it
 *   had (at start: the name itself, left to gRPC's resolver), so a DNS outage changes nothing.
 *   A target made from a name dials the address but verifies the controller's certificate for
 *   the name (`channelOptionsFor`: the TLS name and authority), as a single `--controller` did.
 * - `--consul URL --consul-service NAME`: the service's instances whose checks all pass (health
 *   API, `passing`), followed with blocking queries (src/consul/consul-follow.ts); an instance
 *   that cannot be dialled (no usable address or port) is skipped and logged at warn. A Consul
 *   outage delivers nothing, so the last list stays; an empty list (no replica passing) is
 *   logged at warn and the last list stays too, so the agent keeps trying the replicas it knew.
 */
import { lookup } from 'node:dns/promises';
import type * as grpc from '@grpc/grpc-js';
import { ConsulClient } from '../src/consul/consul-client.js';
import { followPassingInstances } from '../src/consul/consul-follow.js';
import type { Follower } from '../src/consul/blocking-follow.js';
import { describeSkipped } from '../src/consul/consul-payloads.js';
import type { SyncLogger } from '../src/grpc/sync-logger.js';
import { resolveAll, splitTarget, targetOf, type LookupAll, type Target } from './controller-targets.js';

export type ControllerSource =
  | { readonly kind: 'list'; readonly controllers: readonly string[] }
  | { readonly kind: 'consul'; readonly url: string; readonly service: string; /** ACL token (X-Consul-Token); none: Consul's anonymous token. */ readonly token?: string };

export interface TargetSourceOptions {
  readonly logger: SyncLogger;
  /** DNS lookup of every address of a name. Default node:dns lookup with `all`. */
  readonly lookup?: LookupAll;
  /** Consul: the blocking wait of each read. Default 60 s. */
  readonly consulWaitMs?: number;
  /** Consul: bound of each call. Default 10 s. */
  readonly consulTimeoutMs?: number;
}

export type CandidateSink = (list: readonly Target[]) => void;

export interface TargetSource {
  /** The first list (resolved names; Consul: empty until its first answer). */
  initial(): Promise<Target[]>;
  /** Starts following (Consul); `sink` gets each new list. */
  start(sink: CandidateSink): void;
  /** Every target failed: resolve the names again (Consul is followed anyway). */
  refresh(): void;
  /** TLS name and authority for a target made from a DNS name. */
  channelOptionsFor(target: Target): grpc.ChannelOptions | undefined;
  stop(): Promise<void>;
}

const defaultLookup: LookupAll = (host) => lookup(host, { all: true });

/** The source for `--controller` (names resolved to every address) or `--consul`. */
export function targetSource(source: ControllerSource, o: TargetSourceOptions): TargetSource {
  return source.kind === 'list' ? new DnsTargets(source.controllers, o) : new ConsulTargets(source.url, source.service, o, source.token);
}

class DnsTargets implements TargetSource {
  /** Per `--controller`: the targets it resolved to last. */
  private readonly resolved = new Map<string, Target[]>();
  /** Target → the name it came from (for the TLS name). */
  private readonly names = new Map<Target, string>();
  private sink: CandidateSink | undefined;
  private refreshing = false;
  private readonly lookup: LookupAll;

  constructor(
    private readonly controllers: readonly string[],
    private readonly o: TargetSourceOptions,
  ) {
    this.lookup = o.lookup ?? defaultLookup;
  }

  async initial(): Promise<Target[]> {
    await this.resolve();
    return this.list();
  }

  start(sink: CandidateSink): void {
    this.sink = sink;
  }

  refresh(): void {
    if (this.refreshing) return;
    this.refreshing = true;
    void this.resolve()
      .then(() => this.sink?.(this.list()))
      .finally(() => {
        this.refreshing = false;
      });
  }

  channelOptionsFor(target: Target): grpc.ChannelOptions | undefined {
    const name = this.names.get(target);
    return name === undefined ? undefined : { 'grpc.ssl_target_name_override': name, 'grpc.default_authority': name };
  }

  async stop(): Promise<void> {
    this.sink = undefined;
  }

  private list(): Target[] {
    return [...new Set([...this.resolved.values()].flat())].sort();
  }

  private async resolve(): Promise<void> {
    await Promise.all(
      this.controllers.map(async (controller) => {
        const host = splitTarget(controller)?.host;
        try {
          const targets = await resolveAll(controller, this.lookup);
          this.resolved.set(controller, targets);
          for (const t of targets) if (host !== undefined && t !== controller) this.names.set(t, host);
        } catch (err) {
          // Keep what it resolved to before; at start, the name itself (gRPC resolves it).
          if (!this.resolved.has(controller)) this.resolved.set(controller, [controller]);
          this.o.logger.warn({ controller, error: (err as Error).message }, 'sync: cannot resolve the controller name: keeping the addresses it had');
        }
      }),
    );
  }
}

class ConsulTargets implements TargetSource {
  private readonly client: ConsulClient;
  private follower: Follower | undefined;

  constructor(
    url: string,
    private readonly service: string,
    private readonly o: TargetSourceOptions,
    token: string | undefined,
  ) {
    this.client = new ConsulClient({ url, timeoutMs: o.consulTimeoutMs ?? 10_000, ...(token !== undefined ? { token } : {}) });
  }

  async initial(): Promise<Target[]> {
    return [];
  }

  start(sink: CandidateSink): void {
    this.follower = followPassingInstances(this.client, this.service, {
      waitMs: this.o.consulWaitMs ?? 60_000,
      onChange: (instances, { skipped }) => {
        if (skipped.length > 0) {
          this.o.logger.warn({ event: 'sync.consul_instances_skipped', service: this.service, skipped: skipped.length, entries: describeSkipped(skipped) }, 'sync: Consul lists passing controllers that cannot be dialled: skipped');
        }
        if (instances.length === 0) {
          this.o.logger.warn({ service: this.service }, 'sync: Consul lists no passing controller: keeping the last list');
          return;
        }
        const list = [...new Set(instances.map((i) => targetOf(i.address, i.port)))].sort();
        this.o.logger.info({ service: this.service, controllers: list }, 'sync: controllers from Consul');
        sink(list);
      },
      onError: (error, info) => this.o.logger.warn({ service: this.service, error: error.message, retryInMs: info.delayMs }, 'sync: cannot read the controllers from Consul: keeping the last list'),
    });
  }

  refresh(): void {}

  channelOptionsFor(): undefined {
    return undefined;
  }

  async stop(): Promise<void> {
    await this.follower?.stop();
    this.client.close();
  }
}
