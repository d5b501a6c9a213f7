/**
 * The two followers issue 12 needs, over blocking-follow.ts: the passing instances of a service
 * (an agent's list of controllers: `--consul URL --consul-service NAME`) and every key under a KV
 * prefix (the replicas' shared policy). Values are delivered sorted (instances by node then ID;
 * keys as Consul sorts them), and only when they differ from the last delivered.
 */
import { followBlocking, type FollowOptions, type Follower } from './blocking-follow.js';
import type { ConsulClient } from './consul-client.js';
import type { ConsulKvEntry, ConsulServiceInstance } from './consul-payloads.js';

export type FollowerOptions<T> = Omit<FollowOptions<T>, 'read' | 'fingerprint'>;

function byNodeThenId(a: ConsulServiceInstance, b: ConsulServiceInstance): number {
  if (a.node !== b.node) return a.node < b.node ? -1 : 1;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/** Follows the instances of `service` whose checks all pass (health API, `passing`). */
export function followPassingInstances(client: ConsulClient, service: string, o: FollowerOptions<ConsulServiceInstance[]>): Follower {
  return followBlocking<ConsulServiceInstance[]>({
    ...o,
    read: async (b) => {
      const r = await client.healthService(service, true, b);
      return { ...r, value: [...r.value].sort(byNodeThenId) };
    },
  });
}

function kvFingerprint(entries: readonly ConsulKvEntry[]): string {
  return JSON.stringify(entries.map((e) => [e.key, e.modifyIndex, e.flags, e.session ?? '', e.value.toString('base64')]));
}

/** Follows every key under `prefix` (KV list with `recurse`, blocking on the prefix). */
export function followKvPrefix(client: ConsulClient, prefix: string, o: FollowerOptions<ConsulKvEntry[]>): Follower {
  return followBlocking<ConsulKvEntry[]>({ ...o, fingerprint: kvFingerprint, read: (b) => client.kvList(prefix, b) });
}
