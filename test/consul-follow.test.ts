/**
 * Blocking-query followers (src/consul/blocking-follow.ts, consul-follow.ts) against the Consul
 * API double: a change wakes a waiting follower, no change delivers nothing, the index going
 * backwards resets to 0 and re-reads everything (features/blocking.mdx), an outage is retried
 * with backoff and recovered from, and a churning value is rate limited. Every wait is a
 * condition with a deadline; every follower and server is stopped in afterEach.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { followBlocking, type Follower } from '../src/consul/blocking-follow.js';
import { ConsulClient } from '../src/consul/consul-client.js';
import { followKvPrefix, followPassingInstances } from '../src/consul/consul-follow.js';
import type { ConsulKvEntry, ConsulServiceInstance } from '../src/consul/consul-payloads.js';
import { ConsulDouble } from './support/consul-double.js';
import { waitFor } from './support/grpc-harness.js';

let consul: ConsulDouble;
let client: ConsulClient;
const followers: Follower[] = [];

beforeEach(async () => {
  consul = new ConsulDouble();
  client = new ConsulClient({ url: await consul.start(), timeoutMs: 2_000 });
});

afterEach(async () => {
  await Promise.all(followers.splice(0).map((f) => f.stop()));
  client.close();
  await consul.close();
});

function instance(n: number): Parameters<ConsulDouble['addRemoteInstance']>[0] {
  return { node: `node-${n}`, nodeAddress: `10.0.0.${n}`, id: `portcullis-${n}`, name: 'portcullis', port: 9443 };
}

function followInstances(o: { waitMs?: number; minIntervalMs?: number } = {}): { seen: string[][]; errors: Error[]; resets: { from: number; to: number }[]; f: Follower } {
  const seen: string[][] = [];
  const errors: Error[] = [];
  const resets: { from: number; to: number }[] = [];
  const f = followPassingInstances(client, 'portcullis', {
    waitMs: o.waitMs ?? 30_000,
    minIntervalMs: o.minIntervalMs ?? 0,
    backoff: { initialMs: 20, maxMs: 100, random: () => 0.999 },
    onChange: (v: ConsulServiceInstance[]) => seen.push(v.map((i) => `${i.id}@${i.address}:${i.port}`)),
    onError: (e) => errors.push(e),
    onReset: (r) => resets.push(r),
  });
  followers.push(f);
  return { seen, errors, resets, f };
}

const last = <T>(xs: readonly T[]): T | undefined => xs[xs.length - 1];

describe('following the passing instances of a service', () => {
  it('delivers the first list, then wakes on a change long before the wait runs out', async () => {
    consul.addRemoteInstance(instance(1));
    consul.addRemoteInstance({ ...instance(2), status: 'critical' });
    const { seen, f } = followInstances({ waitMs: 30_000 });
    await waitFor('first delivery', () => seen.length === 1);
    expect(seen[0]).toEqual(['portcullis-1@10.0.0.1:9443']);
    await waitFor('the follower blocks', () => consul.blockedQueries() === 1);
    const changedAt = Date.now();
    consul.setCheck('portcullis-2', 'passing');
    await waitFor('the change is delivered', () => seen.length === 2, 5_000);
    expect(Date.now() - changedAt).toBeLessThan(5_000);
    expect(seen[1]).toEqual(['portcullis-1@10.0.0.1:9443', 'portcullis-2@10.0.0.2:9443']);
    consul.setCheck('portcullis-1', 'critical');
    await waitFor('the failing instance leaves the list', () => seen.length === 3);
    expect(seen[2]).toEqual(['portcullis-2@10.0.0.2:9443']);
    expect(f.stats.errors).toBe(0);
  });

  it('no change: each blocking read returns after its wait with the same index, and nothing is delivered again', async () => {
    consul.addRemoteInstance(instance(1));
    const { seen, f } = followInstances({ waitMs: 100 });
    await waitFor('first delivery', () => seen.length === 1);
    const index = f.stats.index;
    await waitFor('three more reads', () => f.stats.reads >= 4, 5_000);
    expect(seen).toHaveLength(1);
    expect(f.stats.index).toBe(index);
    expect(f.stats.changes).toBe(1);
  });

  it('a raft index bump without a change moves the index on, and delivers nothing', async () => {
    consul.addRemoteInstance(instance(1));
    const { seen, f } = followInstances();
    await waitFor('first delivery', () => seen.length === 1);
    await waitFor('the follower blocks', () => consul.blockedQueries() === 1);
    const before = f.stats.index;
    consul.touch();
    await waitFor('the follower took the new index', () => f.stats.index > before);
    expect(seen).toHaveLength(1);
  });

  it('the index going backwards (snapshot restore): reset to 0, full re-read, the restored list delivered', async () => {
    consul.addRemoteInstance(instance(1));
    const older = consul.snapshot();
    consul.addRemoteInstance(instance(2));
    const { seen, resets, f } = followInstances();
    await waitFor('first delivery', () => seen.length === 1);
    expect(seen[0]).toHaveLength(2);
    await waitFor('the follower blocks', () => consul.blockedQueries() === 1);
    const high = f.stats.index;
    consul.restore(older);
    await waitFor('the restored list is delivered', () => seen.length === 2);
    expect(seen[1]).toEqual(['portcullis-1@10.0.0.1:9443']);
    expect(resets).toHaveLength(1);
    expect(resets[0]!.from).toBe(high);
    expect(resets[0]!.to).toBeLessThan(high);
    expect(f.stats.index).toBeLessThan(high);
  });
});

describe('following a KV prefix', () => {
  function followPrefix(minIntervalMs = 0): { seen: string[][]; f: Follower } {
    const seen: string[][] = [];
    const f = followKvPrefix(client, 'portcullis/policy/', {
      waitMs: 30_000,
      minIntervalMs,
      backoff: { initialMs: 20, maxMs: 100 },
      onChange: (v: ConsulKvEntry[]) => seen.push(v.map((e) => `${e.key}=${e.value.toString()}`)),
    });
    followers.push(f);
    return { seen, f };
  }

  it('a write under the prefix wakes the follower; a write elsewhere does not', async () => {
    await client.kvPut('portcullis/policy/a.yaml', 'one');
    const { seen, f } = followPrefix();
    await waitFor('first delivery', () => seen.length === 1);
    await waitFor('the follower blocks', () => consul.blockedQueries() === 1);
    const reads = f.stats.reads;
    await client.kvPut('elsewhere', 'x');
    await client.kvPut('portcullis/policy/a.yaml', 'two');
    await waitFor('the change is delivered', () => seen.length === 2);
    expect(seen[1]).toEqual(['portcullis/policy/a.yaml=two']);
    await waitFor('blocking again', () => consul.blockedQueries() === 1);
    expect(f.stats.reads).toBe(reads + 1); // the blocked read returned once, for the change only
  });

  it('restored to identical content at a lower index: the follower resets, and a later write (at an index below the old one) is still seen', async () => {
    await client.kvPut('portcullis/policy/a.yaml', 'one');
    const older = consul.snapshot();
    for (let i = 0; i < 5; i++) consul.touch();
    const { seen, f } = followPrefix();
    await waitFor('first delivery', () => seen.length === 1);
    await waitFor('the follower blocks', () => consul.blockedQueries() === 1);
    const high = f.stats.index;
    consul.restore(older);
    await waitFor('the follower reset and blocks again', () => f.stats.resets === 1 && consul.blockedQueries() === 1 && f.stats.index < high);
    expect(seen).toHaveLength(1); // same content: nothing new to deliver
    await client.kvPut('portcullis/policy/a.yaml', 'after-restore');
    expect(consul.state.raft).toBeLessThan(high);
    await waitFor('the write after the restore is delivered', () => seen.length === 2);
    expect(last(seen)).toEqual(['portcullis/policy/a.yaml=after-restore']);
  });

  it('a churning prefix is rate limited (token bucket, burst 2) instead of read in a busy loop', async () => {
    await client.kvPut('portcullis/policy/a.yaml', '0');
    const { f } = followPrefix(100);
    await waitFor('first read', () => f.stats.reads >= 1);
    const start = Date.now();
    const readsAtStart = f.stats.reads;
    // Churn: a write every few ms for ~600 ms (each one would wake a read at once).
    for (let i = 1; Date.now() - start < 600 && i < 1_000; i++) {
      await client.kvPut('portcullis/policy/a.yaml', String(i));
      await new Promise((r) => setTimeout(r, 3));
    }
    const elapsed = Date.now() - start;
    const reads = f.stats.reads - readsAtStart;
    expect(reads).toBeGreaterThanOrEqual(2);
    expect(reads).toBeLessThanOrEqual(2 + Math.ceil(elapsed / 100) + 1);
  });
});

describe('a Consul outage', () => {
  for (const mode of ['refuse', 'error'] as const) {
    it(`(${mode === 'refuse' ? 'connections refused' : 'HTTP 500'}): retried with growing backoff, the last list kept, recovered when it ends`, async () => {
      consul.addRemoteInstance(instance(1));
      const delays: number[] = [];
      const seen: string[][] = [];
      const f = followPassingInstances(client, 'portcullis', {
        waitMs: 30_000,
        minIntervalMs: 0,
        backoff: { initialMs: 20, maxMs: 160, random: () => 0.999 },
        onChange: (v) => seen.push(v.map((i) => i.id)),
        onError: (_e, info) => delays.push(info.delayMs),
      });
      followers.push(f);
      await waitFor('first delivery', () => seen.length === 1);
      await waitFor('the follower blocks', () => consul.blockedQueries() === 1);
      consul.setOutage(mode);
      consul.addRemoteInstance(instance(2)); // changes while Consul cannot be read
      await waitFor('five failed reads', () => delays.length >= 5, 10_000);
      expect(seen).toHaveLength(1);
      // Full jitter with random()≈1: each delay just under its cap, caps doubling up to maxMs.
      expect(delays.slice(0, 5)).toEqual([19, 39, 79, 159, 159]);
      consul.setOutage(null);
      await waitFor('recovered: the change made during the outage is delivered', () => seen.length === 2, 5_000);
      expect(seen[1]).toEqual(['portcullis-1', 'portcullis-2']);
      const errors = f.stats.errors;
      await waitFor('blocking again', () => consul.blockedQueries() === 1);
      expect(f.stats.errors).toBe(errors);
    });
  }
});

describe('followBlocking with a scripted read (no HTTP)', () => {
  it('an index below 1 is taken as 1 (the loop blocks instead of spinning); a throwing consumer does not end the loop', async () => {
    const asked: number[] = [];
    const errors: string[] = [];
    let n = 0;
    const f = followBlocking<string>({
      minIntervalMs: 0,
      read: async (b) => {
        asked.push(b.index ?? -1);
        n += 1;
        return { index: n < 3 ? 0 : 5, value: `v${n}`, skipped: [] };
      },
      onChange: (v) => {
        if (v === 'v1') throw new Error('consumer failed');
      },
      onError: (e) => errors.push(e.message),
    });
    followers.push(f);
    await waitFor('five reads', () => asked.length >= 5);
    await f.stop();
    expect(asked.slice(0, 5)).toEqual([0, 1, 1, 5, 5]);
    expect(errors).toEqual(['consumer failed']);
    expect(f.stats.changes).toBeGreaterThanOrEqual(4);
  });
});
