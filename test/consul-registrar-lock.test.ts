/**
 * The long-running Consul helpers of src/consul against the API double: ServiceRegistrar keeps
 * a service registered (again after the local agent forgot it, also across an agent outage) and
 * deregisters on stop; SessionLock gives a key to exactly one holder, refuses it to the other,
 * and hands it over when the holder stops or its session dies. Conditions with deadlines only;
 * everything started is stopped in afterEach.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConsulClient, type BlockingOptions } from '../src/consul/consul-client.js';
import { ServiceRegistrar } from '../src/consul/service-registrar.js';
import { SessionLock } from '../src/consul/session-lock.js';
import { ConsulDouble } from './support/consul-double.js';
import { waitFor } from './support/grpc-harness.js';

let consul: ConsulDouble;
let client: ConsulClient;
const stops: (() => Promise<void>)[] = [];

beforeEach(async () => {
  consul = new ConsulDouble();
  client = new ConsulClient({ url: await consul.start(), timeoutMs: 2_000 });
});

afterEach(async () => {
  await Promise.all(stops.splice(0).map((s) => s()));
  client.close();
  await consul.close();
});

/**
 * A Consul whose X-Consul-Index is 0 for every KV read (features/blocking.mdx: "clients should sanity
 * check that their index is at least 1 ... if it returns 0, reset it to 1"): a read with index >= 1
 * blocks until the key changes, as a real Consul at index 0 would; each index asked is recorded.
 */
class ZeroIndexClient extends ConsulClient {
  readonly indexes: (number | undefined)[] = [];
  private real = 0;

  override async kvGet(key: string, b: BlockingOptions = {}): ReturnType<ConsulClient['kvGet']> {
    this.indexes.push(b.index);
    const r = await super.kvGet(key, b.index !== undefined && b.index >= 1 ? { ...b, index: this.real } : { ...b, index: 0 });
    this.real = r.index ?? 0;
    return { ...r, index: 0 };
  }
}

const registration = { id: 'portcullis-node-1', name: 'portcullis', address: '10.0.0.1', port: 9443, tags: ['grpc'], check: { http: 'https://10.0.0.1:9090/readyz', interval: '5s', deregisterCriticalServiceAfter: '1m' } };

describe('ServiceRegistrar', () => {
  function registrar(): { r: ServiceRegistrar; again: boolean[]; errors: Error[] } {
    const again: boolean[] = [];
    const errors: Error[] = [];
    const r = new ServiceRegistrar({ client, registration, checkEveryMs: 30, backoff: { initialMs: 10, maxMs: 50 }, onRegistered: (i) => again.push(i.again), onError: (e) => errors.push(e) });
    stops.push(() => r.stop());
    return { r, again, errors };
  }

  it('registers with the HTTP check, registers again when the agent forgets, deregisters on stop', async () => {
    const { r, again } = registrar();
    r.start();
    await waitFor('registered', () => consul.localServices().some((s) => s.id === registration.id));
    expect(consul.localServices()[0]!.checks[0]).toMatchObject({ http: registration.check.http, interval: '5s', deregisterCriticalServiceAfter: '1m' });
    consul.setCheck(registration.id, 'passing');
    expect((await client.healthService('portcullis', true)).value.map((i) => i.id)).toEqual([registration.id]);

    expect(consul.forgetAgent()).toBe(1);
    await waitFor('registered again', () => again.length === 2);
    expect(again).toEqual([false, true]);
    expect(consul.localServices().map((s) => s.id)).toEqual([registration.id]);
    await waitFor('a few more checks', () => r.stats.checks >= r.stats.registrations + 3);
    expect(r.stats.registrations).toBe(2); // present: not registered again

    await r.stop();
    expect(consul.localServices()).toEqual([]);
  });

  it('an agent that is down is retried; once back (without its registrations) the service is registered again', async () => {
    const { r, errors } = registrar();
    r.start();
    await waitFor('registered', () => consul.localServices().length === 1);
    consul.setOutage('refuse');
    consul.forgetAgent(); // it restarts without its data
    await waitFor('failures seen', () => errors.length >= 3);
    expect(consul.localServices()).toEqual([]);
    consul.setOutage(null);
    await waitFor('registered again after the outage', () => r.stats.registrations === 2);
    expect(consul.localServices().map((s) => s.id)).toEqual([registration.id]);
  });
});

describe('SessionLock', () => {
  function lock(name: string, events: string[]): SessionLock {
    const l = new SessionLock({
      client,
      key: 'portcullis/locks/once',
      value: name,
      sessionName: `portcullis-${name}`,
      ttl: '10s',
      lockDelay: '0s',
      backoff: { initialMs: 10, maxMs: 50 },
      onAcquired: (i) => events.push(`${name} acquired #${i.lockIndex}`),
      onLost: (why) => events.push(`${name} lost: ${why}`),
    });
    stops.push(() => l.stop());
    return l;
  }

  it('one holder at a time: the other is refused, and takes over when the holder stops', async () => {
    const events: string[] = [];
    const a = lock('a', events);
    const b = lock('b', events);
    a.start();
    await waitFor('a holds the lock', () => a.held);
    b.start();
    await waitFor('b tried and was refused', () => b.stats.acquireAttempts >= 1 && consul.state.sessions.size === 2);
    expect(b.held).toBe(false);
    const key = consul.state.kv.get('portcullis/locks/once')!;
    expect([key.value.toString(), key.session]).toEqual(['a', [...consul.state.sessions.values()].find((s) => s.name === 'portcullis-a')!.id]);

    await a.stop();
    await waitFor('b took over', () => b.held, 5_000);
    expect(events).toEqual(['a acquired #1', 'b acquired #2']);
    expect(consul.state.kv.get('portcullis/locks/once')!.value.toString()).toBe('b');
    expect(consul.state.sessions.size).toBe(1); // a's session destroyed
  });

  it("the holder's session dies (TTL ran out): it learns it lost the lock, the other takes over", async () => {
    const events: string[] = [];
    const a = lock('a', events);
    a.start();
    await waitFor('a holds the lock', () => a.held);
    const b = lock('b', events);
    b.start();
    await waitFor('b refused', () => b.stats.acquireAttempts >= 1);
    const aSession = [...consul.state.sessions.values()].find((s) => s.name === 'portcullis-a')!.id;
    expect(consul.expireSession(aSession)).toBe(true);
    await waitFor('b took over and a knows it lost', () => b.held && !a.held, 5_000);
    expect(events).toContain('a lost: the key is no longer held by this session');
    expect(events.filter((e) => e.includes('acquired'))).toEqual(['a acquired #1', 'b acquired #2']);
  });

  it('Consul unreachable for a whole TTL: the holder stops counting itself the holder (Consul may have given the lock away)', { timeout: 30_000 }, async () => {
    const events: string[] = [];
    const a = lock('a', events);
    a.start();
    await waitFor('a holds the lock', () => a.held);
    const cutAt = Date.now();
    consul.setOutage('refuse');
    await waitFor('a lost the lock', () => !a.held, 15_000);
    const after = Date.now() - cutAt;
    expect(events).toEqual(['a acquired #1', 'a lost: no renewal for a whole TTL (Consul unreachable)']);
    // Renewed every TTL/2 (5 s), so the last renewal was at most 5 s before the cut: lost between 5 and 10 s after it.
    expect(after).toBeGreaterThanOrEqual(4_900);
    expect(after).toBeLessThan(11_000);
    expect(a.stats.errors).toBeGreaterThan(0);
  });

  it('Consul stops answering (a partition, not a refusal): held is false within a TTL of the last renewal sent, though the blocked read has not failed yet', { timeout: 30_000 }, async () => {
    // A client timeout longer than the TTL's margin: the blocked read (wait TTL/2, plus this) ends long after the TTL.
    const slow = new ConsulClient({ url: consul.url, timeoutMs: 8_000 });
    const events: string[] = [];
    const a = new SessionLock({ client: slow, key: 'portcullis/locks/once', value: 'a', sessionName: 'portcullis-a', ttl: '10s', lockDelay: '0s', backoff: { initialMs: 10, maxMs: 50 }, onLost: (why) => events.push(why) });
    stops.push(async () => {
      consul.setOutage(null);
      await a.stop();
      slow.close();
    });
    const before = Date.now(); // before the session was created: its TTL counts from a moment after this
    a.start();
    await waitFor('a holds the lock and blocks on the key', () => a.held && consul.blockedQueries() === 1);
    consul.setOutage('hang');
    await waitFor('a no longer counts itself the holder', () => !a.held, 20_000);
    // Consul may invalidate the session a TTL after it handled the create (a lower bound): no later than that,
    // give or take waitFor's 10 ms polling (the blocked read itself fails only after 5 s + 8 s).
    expect(Date.now() - before).toBeLessThan(10_200);
    expect(events).toEqual(['no renewal for a whole TTL (Consul unreachable)']);
  });

  it('a Consul answering X-Consul-Index 0 for the key: the lock blocks on index 1 instead of re-reading at once in a loop', async () => {
    const zero = new ZeroIndexClient({ url: consul.url, timeoutMs: 2_000 });
    const a = new SessionLock({ client: zero, key: 'portcullis/locks/once', value: 'a', sessionName: 'portcullis-a', ttl: '10s', lockDelay: '0s', backoff: { initialMs: 10, maxMs: 50 } });
    stops.push(async () => {
      await a.stop();
      zero.close();
    });
    a.start();
    await waitFor('a holds the lock and its read of the key blocks', () => a.held && consul.blockedQueries() === 1, 3_000);
    expect(consul.requests.get('GET kv') ?? 0).toBeLessThanOrEqual(3);
    expect(zero.indexes.filter((i) => i === 0 || i === undefined).length).toBeLessThanOrEqual(2); // the reads without an index: after acquire, then the first wait
  });

  it('a TTL outside 10s..24h is refused before anything is sent', () => {
    expect(() => new SessionLock({ client, key: 'k', value: 'v', sessionName: 's', ttl: '1s' })).toThrow(/between 10s and 24h/);
  });
});
