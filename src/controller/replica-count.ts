/**
 * How many controller replicas serve now, for active rebalancing (src/grpc/agent-rebalance.ts):
 * `--replicas N` (fixed), or with `--consul-service NAME` the passing instances of this
 * replica's own service (health API, followed with blocking queries: src/consul/consul-follow.ts).
 * A Consul outage keeps the last count; no passing instance yet (this replica's own check has
 * not passed) counts as unknown, and an unknown count sheds nothing.
 */
import type { Logger } from 'pino';
import type { ConsulClient } from '../consul/consul-client.js';
import { followPassingInstances } from '../consul/consul-follow.js';
import { describeSkipped } from '../consul/consul-payloads.js';

export interface ReplicaCount {
  /** Replicas serving now; undefined when not known. */
  current(): number | undefined;
  stop(): Promise<void>;
}

export interface ReplicaCountOptions {
  /** `--replicas N`. */
  readonly fixed?: number;
  /** `--consul-service NAME` with its client. */
  readonly consul?: { readonly client: ConsulClient; readonly service: string };
  readonly logger: Logger;
  /** Blocking wait of each Consul read. Default 60 s. */
  readonly waitMs?: number;
}

export function replicaCount(o: ReplicaCountOptions): ReplicaCount {
  if (o.fixed !== undefined) {
    const n = o.fixed;
    return { current: () => n, stop: async () => undefined };
  }
  if (!o.consul) return { current: () => undefined, stop: async () => undefined };
  const { client, service } = o.consul;
  let count: number | undefined;
  const follower = followPassingInstances(client, service, {
    waitMs: o.waitMs ?? 60_000,
    onChange: (instances, { skipped }) => {
      count = instances.length === 0 ? undefined : instances.length;
      if (skipped.length > 0) o.logger.warn({ event: 'consul.replicas_skipped', service, skipped: skipped.length, entries: describeSkipped(skipped) }, 'Consul lists passing replicas that are not usable: not counted');
      o.logger.info({ event: 'consul.replicas', service, replicas: instances.length }, 'replicas serving (Consul, passing)');
    },
    onError: (e, { delayMs }) => o.logger.warn({ event: 'consul.replicas_failed', service, err: e.message, retryInMs: delayMs, replicas: count ?? null }, 'cannot read the replicas from Consul: keeping the last count'),
  });
  return { current: () => count, stop: () => follower.stop() };
}
