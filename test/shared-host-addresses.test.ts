/**
 * The pure parts of shared host addresses (key segments of untrusted host ids, entry parsing),
 * SharedHostAddresses against the Consul API double (writes only when KV differs, follows other
 * writers, skips a bad entry), and HostAddresses' order with a shared source (own connected Hello
 * > shared > own Hello of an agent that left > literal).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ConsulClient, type KvPutOptions } from '../src/consul/consul-client.js';
import type { ConsulKvEntry } from '../src/consul/consul-payloads.js';
import { HostAddresses, type SharedAddressSource } from '../src/controller/host-addresses.js';
import { hostIdOfSegment, hostKeySegment, MAX_HOST_ID_BYTES, parseHostEntry, SharedHostAddresses } from '../src/controller/shared-host-addresses.js';
import { waitFor } from './support/cluster-harness.js';
import { ConsulDouble } from './support/consul-double.js';
import { logCapture } from './support/log-capture.js';

/** A client whose writes under `p/hosts/h1` wait while held (a slow Consul), the others not. */
class GatedWrites extends ConsulClient {
  private gate: Promise<void> | undefined;
  private open: () => void = () => undefined;
  waiting = false;

  constructor(url: string) {
    super({ url, timeoutMs: 2_000 });
  }

  hold(): void {
    this.gate = new Promise((resolve) => (this.open = resolve));
  }

  release(): void {
    this.gate = undefined;
    this.open();
  }

  override async kvPut(key: string, value: string | Buffer, o: KvPutOptions = {}): Promise<boolean> {
    if (key === 'p/hosts/h1' && this.gate) {
      this.waiting = true;
      await this.gate;
    }
    return super.kvPut(key, value, o);
  }
}

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const entry = (key: string, value: string): ConsulKvEntry => ({ key, value: Buffer.from(value), flags: 0, session: undefined, lockIndex: 0, createIndex: 1, modifyIndex: 1 });

describe('host key segments', () => {
  it('keep plain names readable and encode everything else so no segment holds / % .. or _ unescaped', () => {
    expect(hostKeySegment('node-1.example.com')).toBe('node-1.example.com');
    expect(hostKeySegment('a/b')).toBe('a_2Fb');
    expect(hostKeySegment('..')).toBe('_2E.');
    expect(hostKeySegment('.hidden')).toBe('_2Ehidden');
    expect(hostKeySegment('50%_off')).toBe('50_25_5Foff');
    expect(hostKeySegment('hôte')).toBe('h_C3_B4te');
    expect(hostKeySegment('')).toBeUndefined();
    expect(hostKeySegment('x'.repeat(MAX_HOST_ID_BYTES))).toHaveLength(MAX_HOST_ID_BYTES);
    expect(hostKeySegment('x'.repeat(MAX_HOST_ID_BYTES + 1))).toBeUndefined();
    for (const id of ['node-1', 'a/b', '..', '.hidden', '50%_off', 'hôte', 'ä/../\u0000', '10.0.0.1', '::1']) {
      const seg = hostKeySegment(id)!;
      expect(seg).toMatch(/^(?:[A-Za-z0-9.-]|_[0-9A-F]{2})+$/);
      expect(seg.startsWith('.')).toBe(false);
      expect(hostIdOfSegment(seg)).toBe(id);
    }
  });

  it('refuse segments that are not the canonical encoding of a host id', () => {
    for (const seg of ['a/b', 'a%2Fb', '_2f', '_2', 'a_5F_', '.hidden', '', 'a b', '_41']) expect(hostIdOfSegment(seg), seg).toBeUndefined();
  });
});

describe('parseHostEntry', () => {
  const base = 'p/hosts/';
  it('reads a good entry as canonical, sorted addresses', () => {
    expect(parseHostEntry(base, entry('p/hosts/h1', '{"addresses":["10.0.0.2","2001:DB8::1","10.0.0.2"],"at":"x"}'))).toEqual({ hostId: 'h1', addresses: ['10.0.0.2', '2001:db8::1'] });
    expect(parseHostEntry(base, entry('p/hosts/a_2Fb', '{"addresses":["10.0.0.3"]}'))).toEqual({ hostId: 'a/b', addresses: ['10.0.0.3'] });
  });
  it('says why a bad one is not usable', () => {
    expect(parseHostEntry(base, entry('p/hosts/h1', 'nope'))).toMatch(/not JSON/);
    expect(parseHostEntry(base, entry('p/hosts/h1', '{"addresses":[]}'))).toMatch(/list of 1 to 64/);
    expect(parseHostEntry(base, entry('p/hosts/h1', '{"addresses":[1]}'))).toMatch(/strings/);
    expect(parseHostEntry(base, entry('p/hosts/h1', JSON.stringify({ addresses: Array.from({ length: 65 }, (_, i) => `10.0.0.${i}`) })))).toMatch(/list of 1 to 64/);
    expect(parseHostEntry(base, entry('p/hosts/h1', '{"addresses":["::ffff:10.0.0.1"]}'))).toMatch(/not usable/);
    expect(parseHostEntry(base, entry('p/hosts/h1', '{"addresses":["10.0.0.0/8"]}'))).toMatch(/not usable/);
    expect(parseHostEntry(base, entry('p/hosts/a%2Fb', '{"addresses":["10.0.0.1"]}'))).toMatch(/not an encoded host id/);
    expect(parseHostEntry(base, entry('p/hosts/x/y', '{"addresses":["10.0.0.1"]}'))).toMatch(/not an encoded host id/);
  });
});

async function consulSetup(): Promise<{ consul: ConsulDouble; client: ConsulClient }> {
  const consul = new ConsulDouble();
  const client = new ConsulClient({ url: await consul.start(), timeoutMs: 2_000 });
  cleanups.push(() => consul.close(), () => client.close());
  return { consul, client };
}

describe('SharedHostAddresses on the Consul double', () => {
  it('writes a host only when KV differs, follows other writers and skips a bad entry once logged', async () => {
    const { client } = await consulSetup();
    const { logger, lines } = logCapture();
    const shared = new SharedHostAddresses({ client, prefix: 'p', minWriteIntervalMs: 0, waitMs: 2_000, logger });
    cleanups.push(() => shared.stop());
    const changes: string[][] = [];
    shared.onChange((ids) => changes.push([...ids]));
    shared.start();
    shared.publish('h1', ['10.0.0.1']);
    await waitFor(() => shared.writes === 1 && shared.lookup('h1')?.join() === '10.0.0.1', 5_000, 'h1 written');
    for (let i = 0; i < 5; i++) shared.publish('h1', ['10.0.0.1']); // as every poll does
    const stored = await client.kvGet('p/hosts/h1');
    expect(JSON.parse(stored.value!.value.toString('utf8'))).toMatchObject({ addresses: ['10.0.0.1'] });

    await client.kvPut('p/hosts/h2', '{"addresses":["10.0.0.2"],"at":"2026-01-01T00:00:00Z"}'); // another replica
    await waitFor(() => shared.lookup('h2')?.join() === '10.0.0.2', 5_000, 'h2 followed');
    expect(changes.some((c) => c.includes('h2'))).toBe(true);

    await client.kvPut('p/hosts/h3', '{"addresses":["bad"]}');
    await client.kvPut('p/hosts/h4', '{"addresses":["10.0.0.4"]}');
    await waitFor(() => shared.lookup('h4') !== undefined, 5_000, 'h4 followed');
    expect(shared.lookup('h3')).toBeUndefined();
    await client.kvPut('p/hosts/h5', '{"addresses":["10.0.0.5"]}'); // another read over the same bad h3
    await waitFor(() => shared.lookup('h5') !== undefined, 5_000, 'h5 followed');
    expect(lines.filter((l) => l.event === 'hosts_kv.entry_skipped' && l.key === 'p/hosts/h3')).toHaveLength(1);
    expect(shared.writes).toBe(1); // the repeated publishes of an unchanged list wrote nothing

    shared.publish('h1', ['10.0.0.9']); // the host's next Hello replaces its entry
    await waitFor(async () => (await client.kvGet('p/hosts/h1')).value?.value.toString('utf8').includes('10.0.0.9'), 5_000, 'h1 replaced');
    expect(shared.writes).toBe(2);
  });

  it('a write Consul keeps refusing does not hold up the hosts queued behind it', async () => {
    const { consul } = await consulSetup();
    class RefusesH1 extends ConsulClient {
      override async kvPut(key: string, value: string | Buffer, o: KvPutOptions = {}): Promise<boolean> {
        if (key === 'p/hosts/h1') throw new Error('kv put p/hosts/h1: Consul answered HTTP 403 ("Permission denied")');
        return super.kvPut(key, value, o);
      }
    }
    const client = new RefusesH1({ url: consul.url, timeoutMs: 2_000 });
    cleanups.push(() => client.close());
    const { logger, lines } = logCapture();
    const shared = new SharedHostAddresses({ client, prefix: 'p', minWriteIntervalMs: 0, waitMs: 2_000, logger });
    cleanups.push(() => shared.stop());
    shared.start();
    shared.publish('h1', ['10.0.0.1']);
    shared.publish('h2', ['10.0.0.2']);
    shared.publish('h3', ['10.0.0.3']);
    await waitFor(() => shared.writes === 2, 10_000, 'h2 and h3 written past the refused h1');
    expect(shared.lookup('h2')).toEqual(['10.0.0.2']);
    expect(shared.lookup('h3')).toEqual(['10.0.0.3']);
    expect(lines.some((l) => l.event === 'hosts_kv.write_failed' && l.host === 'h1')).toBe(true);
  });

  it('keeps the last list through an outage and writes what was published meanwhile once Consul is back', async () => {
    const { consul, client } = await consulSetup();
    const { logger, lines } = logCapture();
    const shared = new SharedHostAddresses({ client, prefix: 'p', minWriteIntervalMs: 0, waitMs: 500, logger });
    cleanups.push(() => shared.stop());
    await client.kvPut('p/hosts/h2', '{"addresses":["10.0.0.2"]}');
    shared.start();
    await waitFor(() => shared.lookup('h2') !== undefined, 5_000, 'h2 followed');
    consul.setOutage('refuse');
    shared.publish('h1', ['10.0.0.1']);
    await waitFor(() => lines.some((l) => l.event === 'hosts_kv.read_failed') && lines.some((l) => l.event === 'hosts_kv.write_failed'), 10_000, 'reads and writes failing');
    expect(shared.lookup('h2')).toEqual(['10.0.0.2']);
    consul.setOutage(null);
    await waitFor(async () => (await client.kvGet('p/hosts/h1')).value !== undefined, 40_000, 'h1 written after the outage');
  }, 60_000);

  it("the host's latest Hello wins: one that goes back to what KV holds while another list is being written is written after it", async () => {
    const { consul } = await consulSetup();
    const gated = new GatedWrites(consul.url);
    cleanups.push(() => gated.close());
    await gated.kvPut('p/hosts/h1', '{"addresses":["10.0.0.1"]}'); // from another replica
    const shared = new SharedHostAddresses({ client: gated, prefix: 'p', minWriteIntervalMs: 0, waitMs: 2_000 });
    cleanups.push(() => shared.stop());
    shared.start();
    await waitFor(() => shared.lookup('h1')?.join() === '10.0.0.1', 5_000, 'h1 followed');
    gated.hold();
    shared.publish('h1', ['10.0.0.2']); // the agent's Hello: a new address...
    await waitFor(() => gated.waiting, 5_000, 'the write of 10.0.0.2 under way');
    shared.publish('h1', ['10.0.0.1']); // ...and its next one, back at the address KV held
    await gated.kvPut('p/hosts/h9', '{"addresses":["10.0.0.9"]}'); // a change the follower reads meanwhile
    await waitFor(() => shared.lookup('h9') !== undefined, 5_000, 'h9 followed');
    gated.release();
    await waitFor(() => shared.writes === 2, 5_000, 'the latest list written after the one under way');
    expect(JSON.parse((await gated.kvGet('p/hosts/h1')).value!.value.toString('utf8'))).toMatchObject({ addresses: ['10.0.0.1'] });
  });

  it('a list another replica keeps replacing is written back ever more rarely, and said at warn on the third time', async () => {
    const { client } = await consulSetup();
    const { logger, lines } = logCapture();
    let now = Date.parse('2026-12-03T12:00:00Z');
    const shared = new SharedHostAddresses({ client, prefix: 'p', minWriteIntervalMs: 0, waitMs: 2_000, logger, now: () => new Date(now), writerId: 'replica-a' });
    cleanups.push(() => shared.stop());
    shared.start();
    const theirs = async (address: string) => {
      await client.kvPut('p/hosts/h1', JSON.stringify({ addresses: [address], at: 'x', by: 'replica-b' }));
      await waitFor(() => shared.lookup('h1')?.join() === address, 5_000, `h1 read back as ${address}`);
    };
    const ours = async (writes: number) => {
      shared.publish('h1', ['10.0.0.1']);
      await waitFor(() => shared.writes === writes && shared.lookup('h1')?.join() === '10.0.0.1', 5_000, `our write ${writes}`);
    };
    await ours(1);
    // Our own write read back is not a replacement (its `by` is ours), however late the read.
    await waitFor(async () => JSON.parse((await client.kvGet('p/hosts/h1')).value!.value.toString('utf8')).by === 'replica-a', 5_000, 'by written');
    for (const [round, waitMs] of [[1, 5_000], [2, 10_000], [3, 20_000]] as const) {
      await theirs(`10.0.0.${round + 1}`);
      for (let i = 0; i < 3; i++) shared.publish('h1', ['10.0.0.1']); // the refreshes while held back: nothing written
      expect(shared.writes).toBe(round);
      now += waitMs - 1;
      shared.publish('h1', ['10.0.0.1']);
      expect(shared.writes).toBe(round);
      now += 1;
      await ours(round + 1);
    }
    const said = lines.filter((l) => l.event === 'hosts_kv.contested');
    expect(said).toHaveLength(1);
    expect(said[0]).toMatchObject({ level: 40, host: 'h1', ours: ['10.0.0.1'], theirs: ['10.0.0.4'], replaced: 3, holdMs: 20_000 });
    // Our agent's own list changing is written at once.
    await theirs('10.0.0.7');
    shared.publish('h1', ['10.0.0.8']);
    await waitFor(() => shared.lookup('h1')?.join() === '10.0.0.8' && shared.writes === 5, 5_000, 'a new list of ours written at once');
  });

  it('does not share a host id over the bound (logged once)', async () => {
    const { client } = await consulSetup();
    const { logger, lines } = logCapture();
    const shared = new SharedHostAddresses({ client, prefix: 'p', logger });
    cleanups.push(() => shared.stop());
    shared.start();
    const long = 'x'.repeat(MAX_HOST_ID_BYTES + 1);
    shared.publish(long, ['10.0.0.1']);
    shared.publish(long, ['10.0.0.1']);
    expect(lines.filter((l) => l.event === 'hosts_kv.not_shared')).toHaveLength(1);
    expect(shared.writes).toBe(0);
  });
});

/** A shared source held in memory. */
function memoryShared(): SharedAddressSource & { set(id: string, list: string[]): void; published: [string, readonly string[]][] } {
  const kv = new Map<string, readonly string[]>();
  const listeners = new Set<(ids: readonly string[]) => void>();
  const published: [string, readonly string[]][] = [];
  return {
    published,
    lookup: (id) => kv.get(id),
    hosts: () => kv.entries(),
    publish: (id, list) => void published.push([id, list]),
    onChange: (fn) => (listeners.add(fn), () => listeners.delete(fn)),
    set(id, list) {
      kv.set(id, list);
      for (const fn of listeners) fn([id]);
    },
  };
}

describe('HostAddresses with a shared source', () => {
  it('orders own connected Hello > shared > own Hello of an agent that left > literal, and fires on a shared change', () => {
    const shared = memoryShared();
    let agents = [{ hostId: 'h1', addresses: ['10.0.0.1'], connected: true }];
    const book = new HostAddresses({ agents: () => agents, shared });
    const fired: string[][] = [];
    book.onChange((ids) => fired.push([...ids]));
    book.start();
    cleanups.push(() => book.stop());
    expect(shared.published).toEqual([['h1', ['10.0.0.1']]]);

    shared.set('h2', ['10.0.0.2']);
    expect(fired).toContainEqual(['h2']);
    expect(book.lookup('h2')).toEqual({ addresses: ['10.0.0.2'], origin: 'shared' });
    const before = fired.length;
    shared.set('h1', ['10.9.9.9']); // KV says otherwise, but h1's agent is here: its Hello wins
    expect(fired).toHaveLength(before);
    expect(book.lookup('h1')).toEqual({ addresses: ['10.0.0.1'], origin: 'hello' });
    shared.set('10.0.0.7', ['10.0.0.8']);
    expect(book.lookup('10.0.0.7')?.origin).toBe('shared');

    // h1's agent left (to another replica): the shared list is newer than the Hello kept here.
    agents = [{ hostId: 'h1', addresses: ['10.0.0.1'], connected: false }];
    book.refreshAgents();
    expect(fired.at(-1)).toEqual(['h1']);
    expect(book.lookup('h1')).toEqual({ addresses: ['10.9.9.9'], origin: 'shared' });
    expect(shared.published).toHaveLength(1); // published while connected (the poll at start), not after it left
    // A host known only from KV gets a state like a Hello-only host.
    const cluster = book.fill({ hosts: [], apps: [], tasks: [] });
    expect(cluster.hosts.map((h) => [h.id, h.addresses])).toEqual([
      ['h1', ['10.9.9.9']],
      ['h2', ['10.0.0.2']],
      ['10.0.0.7', ['10.0.0.8']],
    ]);
  });
});
