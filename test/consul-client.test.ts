/**
 * src/consul's client against the Consul API double (test/support/consul-double.ts, built from
 * Consul's documented HTTP API): every operation over real HTTP, answers as documented (KV true
 * and false, 404 as no key, base64 values, X-Consul-Index), and one-shot blocking reads.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConsulCallError, ConsulClient } from '../src/consul/consul-client.js';
import { ConsulDouble } from './support/consul-double.js';
import { waitFor } from './support/grpc-harness.js';

let consul: ConsulDouble;
let client: ConsulClient;

beforeEach(async () => {
  consul = new ConsulDouble();
  client = new ConsulClient({ url: await consul.start(), timeoutMs: 5_000 });
});

afterEach(async () => {
  client.close();
  await consul.close();
});

const readyz = { http: 'https://127.0.0.1:9090/readyz', interval: '5s', timeout: '2s', deregisterCriticalServiceAfter: '1m' };

describe('agent services and health', () => {
  it('registers a service with an HTTP check; it is passing only once its check passes', async () => {
    await client.register({ id: 'portcullis-a', name: 'portcullis', address: '10.0.0.1', port: 9443, tags: ['grpc'], meta: { version: '1' }, check: readyz });
    const local = await client.agentServices();
    expect(local).toEqual([{ node: '-', id: 'portcullis-a', name: 'portcullis', address: '10.0.0.1', port: 9443, tags: ['grpc'], meta: { version: '1' } }]);
    const check = consul.localServices()[0]!.checks[0]!;
    expect(check).toMatchObject({ checkId: 'service:portcullis-a', status: 'critical', http: readyz.http, interval: '5s', deregisterCriticalServiceAfter: '1m' });

    expect((await client.healthService('portcullis', true)).value).toEqual([]);
    const all = await client.healthService('portcullis', false);
    expect(all.value.map((i) => i.id)).toEqual(['portcullis-a']);

    consul.setCheck('service:portcullis-a', 'passing');
    const passing = await client.healthService('portcullis', true);
    expect(passing.value).toEqual([{ node: 'node-1', id: 'portcullis-a', name: 'portcullis', address: '10.0.0.1', port: 9443, tags: ['grpc'], meta: { version: '1' } }]);
    expect(passing.index).toBeGreaterThan(all.index!);

    const catalog = await client.catalogService('portcullis');
    expect(catalog.value.map((i) => [i.node, i.id, i.address, i.port])).toEqual([['node-1', 'portcullis-a', '10.0.0.1', 9443]]);
    expect(catalog.index).toBe(passing.index);
  });

  it('an instance without its own address takes its node address', async () => {
    consul.addRemoteInstance({ node: 'node-2', nodeAddress: '10.0.0.2', id: 'p-b', name: 'portcullis', port: 9443 });
    expect((await client.healthService('portcullis', true)).value.map((i) => i.address)).toEqual(['10.0.0.2']);
  });

  it('re-registering keeps the check status; deregister removes it; an unknown id is no error', async () => {
    await client.register({ id: 'a', name: 'portcullis', port: 9443, check: readyz });
    consul.setCheck('a', 'passing');
    await client.register({ id: 'a', name: 'portcullis', port: 9444, check: readyz });
    expect((await client.healthService('portcullis', true)).value.map((i) => i.port)).toEqual([9444]);
    await client.deregister('a');
    await client.deregister('never-registered');
    expect(await client.agentServices()).toEqual([]);
    expect((await client.healthService('portcullis', false)).value).toEqual([]);
  });

  it('forgetAgent: the registration is gone from the agent and the catalog', async () => {
    await client.register({ id: 'a', name: 'portcullis', port: 9443, check: readyz });
    expect(consul.forgetAgent()).toBe(1);
    expect(await client.agentServices()).toEqual([]);
    expect((await client.catalogService('portcullis')).value).toEqual([]);
  });

  it('a registration Consul refuses is a ConsulCallError with the status', async () => {
    const err = await client.register({ id: 'a', name: 'portcullis', port: 9443, check: { http: 'http://x/readyz', interval: 'soon' } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConsulCallError);
    expect((err as ConsulCallError).status).toBe(400);
    expect((err as Error).message).toMatch(/agent\/service\/register a: Consul answered HTTP 400/);
  });
});

describe('KV', () => {
  it('put, get (base64 decoded), flags, list a prefix, delete; absent keys are undefined (404)', async () => {
    expect((await client.kvGet('portcullis/policy/a.yaml')).value).toBeUndefined();
    expect(await client.kvPut('portcullis/policy/a.yaml', 'rules: []\n', { flags: 7 })).toBe(true);
    expect(await client.kvPut('portcullis/policy/b.yaml', Buffer.from([0, 1, 2, 255]))).toBe(true);
    expect(await client.kvPut('portcullis/other', 'x')).toBe(true);
    const a = await client.kvGet('portcullis/policy/a.yaml');
    expect(a.value?.value.toString('utf8')).toBe('rules: []\n');
    expect(a.value?.flags).toBe(7);
    expect(a.index).toBe(a.value?.modifyIndex);
    const list = await client.kvList('portcullis/policy/');
    expect(list.value.map((e) => [e.key, [...e.value]])).toEqual([
      ['portcullis/policy/a.yaml', [...Buffer.from('rules: []\n')]],
      ['portcullis/policy/b.yaml', [0, 1, 2, 255]],
    ]);
    expect(list.index).toBe(Math.max(...list.value.map((e) => e.modifyIndex)));
    expect(await client.kvDelete('portcullis/policy/a.yaml')).toBe(true);
    expect((await client.kvGet('portcullis/policy/a.yaml')).value).toBeUndefined();
    expect(await client.kvDelete('portcullis/', { recurse: true })).toBe(true);
    expect((await client.kvList('portcullis/')).value).toEqual([]);
  });

  it('check-and-set: cas=0 only creates; a stale ModifyIndex is refused (false); the current one wins', async () => {
    expect(await client.kvPut('k', 'v1', { cas: 0 })).toBe(true);
    expect(await client.kvPut('k', 'again', { cas: 0 })).toBe(false);
    const v1 = (await client.kvGet('k')).value!;
    expect(await client.kvPut('k', 'v2', { cas: v1.modifyIndex })).toBe(true);
    expect(await client.kvPut('k', 'v3', { cas: v1.modifyIndex })).toBe(false);
    expect((await client.kvGet('k')).value?.value.toString()).toBe('v2');
    const v2 = (await client.kvGet('k')).value!;
    expect(await client.kvDelete('k', { cas: 0 })).toBe(false);
    expect(await client.kvDelete('k', { cas: v1.modifyIndex })).toBe(false);
    expect(await client.kvDelete('k', { cas: v2.modifyIndex })).toBe(true);
  });

  it('two CAS writers racing from the same index: exactly one wins', async () => {
    await client.kvPut('portcullis/policy', 'v0');
    const base = (await client.kvGet('portcullis/policy')).value!.modifyIndex;
    const other = new ConsulClient({ url: consul.url });
    try {
      const results = await Promise.all([client.kvPut('portcullis/policy', 'from-a', { cas: base }), other.kvPut('portcullis/policy', 'from-b', { cas: base })]);
      expect(results.filter(Boolean)).toHaveLength(1);
      const winner = results[0] ? 'from-a' : 'from-b';
      expect((await client.kvGet('portcullis/policy')).value?.value.toString()).toBe(winner);
    } finally {
      other.close();
    }
  });
});

describe('sessions and locks', () => {
  it('create, info, renew, destroy; renew of a gone session is false', async () => {
    const id = await client.sessionCreate({ name: 'portcullis-lock', ttl: '15s', lockDelay: '0s' });
    expect((await client.sessionInfo(id)).value).toEqual({ id, name: 'portcullis-lock', node: 'node-1', ttl: '15s', behavior: 'release' });
    expect(await client.sessionRenew(id)).toBe(true);
    expect(consul.state.sessions.get(id)?.renewals).toBe(1);
    await client.sessionDestroy(id);
    expect((await client.sessionInfo(id)).value).toBeUndefined();
    expect(await client.sessionRenew(id)).toBe(false);
  });

  it('a TTL out of the documented 10s..24h is refused', async () => {
    await expect(client.sessionCreate({ name: 'x', ttl: '1s' })).rejects.toThrow(/HTTP 400/);
  });

  it('a lock held by one session is refused to another, and released on destroy', async () => {
    const a = await client.sessionCreate({ name: 'a', ttl: '15s', lockDelay: '0s' });
    const b = await client.sessionCreate({ name: 'b', ttl: '15s', lockDelay: '0s' });
    expect(await client.kvPut('portcullis/leader', 'a', { acquire: a })).toBe(true);
    expect(await client.kvPut('portcullis/leader', 'b', { acquire: b })).toBe(false);
    expect(await client.kvPut('portcullis/leader', 'b', { release: b })).toBe(false);
    const held = (await client.kvGet('portcullis/leader')).value!;
    expect([held.session, held.lockIndex, held.value.toString()]).toEqual([a, 1, 'a']);
    // The holder may update without giving the lock up; LockIndex stays.
    expect(await client.kvPut('portcullis/leader', 'a2', { acquire: a })).toBe(true);
    expect((await client.kvGet('portcullis/leader')).value!.lockIndex).toBe(1);

    await client.sessionDestroy(a);
    const released = (await client.kvGet('portcullis/leader')).value!;
    expect([released.session, released.lockIndex, released.value.toString()]).toEqual([undefined, 1, 'a2']);
    expect(await client.kvPut('portcullis/leader', 'b', { acquire: b })).toBe(true);
    expect((await client.kvGet('portcullis/leader')).value).toMatchObject({ session: b, lockIndex: 2 });
    expect(await client.kvPut('portcullis/leader', 'b', { release: b })).toBe(true);
    expect((await client.kvGet('portcullis/leader')).value?.session).toBeUndefined();
  });

  it('Behavior delete: an expired session deletes the keys it held', async () => {
    const s = await client.sessionCreate({ name: 'a', ttl: '15s', behavior: 'delete', lockDelay: '0s' });
    expect(await client.kvPut('portcullis/once', 'x', { acquire: s })).toBe(true);
    expect(consul.expireSession(s)).toBe(true);
    expect((await client.kvGet('portcullis/once')).value).toBeUndefined();
  });

  it('lock delay: after the holder died, the key cannot be taken until the delay has passed', async () => {
    const a = await client.sessionCreate({ name: 'a', ttl: '15s', lockDelay: '300ms' });
    const b = await client.sessionCreate({ name: 'b', ttl: '15s', lockDelay: '0s' });
    expect(await client.kvPut('l', 'a', { acquire: a })).toBe(true);
    const died = Date.now();
    await client.sessionDestroy(a);
    expect(await client.kvPut('l', 'b', { acquire: b })).toBe(false);
    let got = false;
    for (let i = 0; i < 200 && !got && Date.now() - died < 5_000; i++) {
      got = await client.kvPut('l', 'b', { acquire: b });
      if (!got) await new Promise((r) => setTimeout(r, 20));
    }
    expect(got).toBe(true);
    expect(Date.now() - died).toBeGreaterThanOrEqual(290);
  });

  it('acquire with an unknown session is an error, not false', async () => {
    await expect(client.kvPut('l', 'x', { acquire: '00000000-0000-4000-8000-00000000ffff' })).rejects.toThrow(/HTTP 500/);
  });
});

describe('one blocking read', () => {
  it('waits for a change after the index, and answers with it', async () => {
    await client.kvPut('p/a', '1');
    const first = await client.kvList('p/');
    const waiting = client.kvList('p/', { index: first.index, waitMs: 10_000 });
    await waitFor('the read is blocked in the double', () => consul.blockedQueries() === 1);
    await client.kvPut('p/b', '2');
    const next = await waiting;
    expect(next.index).toBeGreaterThan(first.index!);
    expect(next.value.map((e) => e.key)).toEqual(['p/a', 'p/b']);
  });

  it('on one key that does not exist yet: 404 with an index, then its creation wakes the read', async () => {
    const absent = await client.kvGet('portcullis/policy');
    expect(absent.value).toBeUndefined();
    expect(absent.index).toBeGreaterThanOrEqual(1);
    const waiting = client.kvGet('portcullis/policy', { index: absent.index, waitMs: 10_000 });
    await waitFor('the read is blocked in the double', () => consul.blockedQueries() === 1);
    await client.kvPut('portcullis/policy', 'v1');
    const created = await waiting;
    expect(created.value?.value.toString()).toBe('v1');
    expect(created.index).toBe(created.value?.modifyIndex);
  });

  it('no change: answers after the wait with the same index and result', async () => {
    await client.register({ id: 'a', name: 'portcullis', port: 9443, check: readyz });
    const first = await client.healthService('portcullis', false);
    const started = Date.now();
    const again = await client.healthService('portcullis', false, { index: first.index, waitMs: 200 });
    expect(Date.now() - started).toBeGreaterThanOrEqual(190);
    expect(again).toEqual(first);
  });

  it('a raft index bump without a change: the read returns with a higher index and the same result', async () => {
    await client.kvPut('p/a', '1');
    const first = await client.kvList('p/');
    const waiting = client.kvList('p/', { index: first.index, waitMs: 10_000 });
    await waitFor('the read is blocked in the double', () => consul.blockedQueries() === 1);
    consul.touch();
    const next = await waiting;
    expect(next.index).toBeGreaterThan(first.index!);
    expect(next.value).toEqual(first.value);
  });

  it('a stop signal cancels a blocked read', async () => {
    const first = await client.kvList('p/');
    const stop = new AbortController();
    const waiting = client.kvList('p/', { index: first.index, waitMs: 60_000, signal: stop.signal });
    await waitFor('the read is blocked in the double', () => consul.blockedQueries() === 1);
    stop.abort();
    await expect(waiting).rejects.toThrow(/cancelled/);
  });
});
