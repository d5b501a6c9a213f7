/**
 * Live Marathon inventory through the controller pieces, in process: MarathonDouble → MarathonSource
 * → MarathonFeed (+ HostAddresses from the agents' Hello) → DesiredStateStore (incremental,
 * coalesced) → SyncService → agents played over real gRPC streams that apply and ack.
 * Scale up, kill, move: the right hosts get new versions, as Deltas; the others get nothing.
 * Marathon failing or unreachable: states unchanged, feed stale; back: reconciled.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { applyDelta } from '../src/compile/state-delta.js';
import { AddressSet } from '../src/compile/address-set.js';
import type { DesiredState } from '../src/compile/desired-state.js';
import { HostAddresses } from '../src/controller/host-addresses.js';
import { MarathonFeed } from '../src/controller/marathon-feed.js';
import { DesiredStateStore } from '../src/controller/desired-state-store.js';
import { SyncService } from '../src/grpc/sync-service.js';
import { deltaFromMessage, stateFromSnapshot } from '../src/grpc/wire-state.js';
import { MarathonSource } from '../src/marathon/marathon-source.js';
import { openRawStream, startServer, stopServer, waitFor, type RawStream, type RunningServer } from './support/grpc-harness.js';
import { MarathonDouble } from './support/marathon-double.js';
import { group, policy } from './support/policy-builder.js';

const HOSTS = ['h1', 'h2', 'h3', 'h4'];
const addressOf = (h: string) => `10.0.0.${h.slice(1)}`;

/** Plays one agent by hand: applies snapshots and deltas, acks them, counts each kind. */
class PlayedAgent {
  readonly stream: RawStream;
  state: DesiredState | undefined;
  snapshots = 0;
  deltas = 0;
  private seen = 0;

  constructor(target: string, readonly hostId: string) {
    this.stream = openRawStream(target);
    this.stream.call.on('data', () => this.drain());
    this.stream.send({ hello: { hostId, addresses: [addressOf(hostId)], agentVersion: 'played', appliedVersion: '' } });
  }

  get received(): number {
    return this.snapshots + this.deltas;
  }

  private drain(): void {
    for (; this.seen < this.stream.messages.length; this.seen++) {
      const m = this.stream.messages[this.seen]!;
      if (m.msg === 'ping') this.stream.send({ pong: { nonce: m.ping!.nonce } });
      if (m.msg === 'snapshot') {
        this.snapshots++;
        this.state = stateFromSnapshot(this.hostId, m.snapshot!);
        this.stream.send({ ack: { version: this.state.version, seq: m.snapshot!.seq } });
      }
      if (m.msg === 'delta') {
        this.deltas++;
        this.state = applyDelta(this.state!, deltaFromMessage(this.hostId, m.delta!));
        this.stream.send({ ack: { version: this.state.version, seq: m.delta!.seq } });
      }
    }
  }
}

describe('controller with a live Marathon inventory', () => {
  let double: MarathonDouble;
  let store: DesiredStateStore;
  let service: SyncService;
  let server: RunningServer | undefined;
  let feed: MarathonFeed;
  let agents: Map<string, PlayedAgent>;
  const tasks = new Map<string, string>();

  const inSync = () => HOSTS.every((h) => store.current(h) !== undefined && agents.get(h)!.state?.version === store.current(h)!.version);
  const versions = () => new Map(HOSTS.map((h) => [h, store.current(h)?.version]));
  const counts = () => new Map(HOSTS.map((h) => [h, agents.get(h)!.received]));
  /** Some managed port of host `h` admits `source`'s address (allow-ip4 or allow-net4, e.g. a /31). */
  const allowsFrom = (h: string, source: string) => {
    const sets = store.current(h)!.sets;
    const sources = [...sets['allow-ip4'], ...sets['allow-net4']].map((m) => m.split(',')[0]!);
    return AddressSet.fromStrings(sources).contains(addressOf(source));
  };

  beforeEach(async () => {
    double = await MarathonDouble.start();
    double.addApp({ id: '/shop/web', network: 'host', ports: [{ name: 'http' }] });
    double.addApp({ id: '/shop/api', network: 'host', ports: [{ name: 'http' }] });
    double.addApp({ id: '/shop/db', network: 'host', ports: [{ name: 'sql' }] });
    double.addApp({ id: '/ops/node-exporter', network: 'host', ports: [{ name: 'metrics' }] });
    for (const h of HOSTS) double.startTask('/ops/node-exporter', h, [9100]);
    tasks.set('web', double.startTask('/shop/web', 'h1', [31000]));
    tasks.set('api', double.startTask('/shop/api', 'h2', [31100]));
    tasks.set('db', double.startTask('/shop/db', 'h3', [31200]));

    store = new DesiredStateStore({ coalesceMs: 10 });
    store.setPolicy(
      policy({
        groups: [group('web', ['/shop/web']), group('api', ['/shop/api']), group('db', ['/shop/db'])],
        rules: [
          { action: 'allow', from: ['web'], to: ['api'] },
          { action: 'allow', from: ['api'], to: ['db'] },
        ],
      }),
    );
    service = new SyncService(store, { insecure: true, pingIntervalMs: 200 });
    server = await startServer((s) => service.addToServer(s));
    const source = new MarathonSource({ url: double.url, backoff: { initialMs: 20, maxMs: 100 }, relistIntervalMs: 60_000 });
    feed = new MarathonFeed({ source, addresses: new HostAddresses({ agents: () => service.agents(), pollMs: 20 }), checkMs: 20 });
    await feed.start((cluster) => store.queueCluster(cluster));
    agents = new Map();
  });

  afterEach(async () => {
    for (const a of agents.values()) a.stream.close();
    await feed.stop();
    store.close();
    service.close();
    stopServer(server);
    await double.close();
  });

  it('sends Deltas to exactly the hosts that a scale-up, a kill and a move affect', async () => {
    // Before any agent said Hello, the hosts have no address: reported, not guessed.
    await waitFor('cluster compiled', () => store.hostIds().length === 4);
    expect(feed.status().problems).toContain('host h1 has no known address: its tasks are not allowed as sources (no agent Hello yet; --dns is off)');
    expect(allowsFrom('h2', 'h1')).toBe(false);

    for (const h of HOSTS) agents.set(h, new PlayedAgent(server!.target, h));
    await waitFor('addresses from Hello reach the states', () => allowsFrom('h2', 'h1') && allowsFrom('h3', 'h2'));
    await waitFor('every agent in sync', inSync);
    expect(feed.status().problems).toEqual([]);
    expect(feed.status()).toMatchObject({ ready: true, stale: false, hosts: 4, apps: 4, tasks: 7 });

    // Scale web up onto h4: web's source set gains h4 → h2 (api) changes; h4 gets its port managed.
    let before = versions();
    let sent = counts();
    double.startTask('/shop/web', 'h4', [31001]);
    await waitFor('h2 allows h4', () => allowsFrom('h2', 'h4'));
    await waitFor('every agent in sync', inSync);
    expect(store.current('h4')!.sets['managed-tcp']).toContain('31001');
    const changed = (b: Map<string, string | undefined>) => HOSTS.filter((h) => store.current(h)!.version !== b.get(h));
    expect(changed(before)).toEqual(['h2', 'h4']);
    for (const h of ['h1', 'h3']) expect(agents.get(h)!.received).toBe(sent.get(h));
    for (const h of ['h2', 'h4']) expect(agents.get(h)!.received).toBeGreaterThan(sent.get(h)!);

    // Kill the original web task on h1: h1 loses its port, api (h2) stops allowing h1.
    before = versions();
    sent = counts();
    double.killTask(tasks.get('web')!);
    await waitFor('h2 no longer allows h1', () => !allowsFrom('h2', 'h1'));
    await waitFor('every agent in sync', inSync);
    expect(changed(before)).toEqual(['h1', 'h2']);
    for (const h of ['h3', 'h4']) expect(agents.get(h)!.received).toBe(sent.get(h));

    // Move api h2 → h1: h2 and h1 change ports; db (h3) swaps h2 for h1; h4 (web) is untouched.
    before = versions();
    sent = counts();
    double.moveTask(tasks.get('api')!, 'h1', [31100]);
    await waitFor('db follows api to h1', () => allowsFrom('h3', 'h1') && !allowsFrom('h3', 'h2'));
    await waitFor('every agent in sync', inSync);
    expect(changed(before)).toEqual(['h1', 'h2', 'h3']);
    expect(agents.get('h4')!.received).toBe(sent.get('h4'));

    // An agent on a host that runs no task gets a state without managed ports; a task started
    // there and killed again leaves it managed-free, not stuck with the dead task's port.
    const h5 = new PlayedAgent(server!.target, 'h5');
    agents.set('h5', h5);
    await waitFor('h5 gets a state', () => h5.state !== undefined && h5.state.version === store.current('h5')?.version);
    expect(h5.state!.sets['managed-tcp']).toEqual([]);
    const h5Task = double.startTask('/shop/web', 'h5', [31005]);
    await waitFor('h5 manages the new port, api (now on h1) allows h5', () => h5.state?.sets['managed-tcp'].includes('31005') === true && allowsFrom('h1', 'h5'));
    double.killTask(h5Task);
    await waitFor('h5 releases the port', () => h5.state?.sets['managed-tcp'].length === 0 && h5.state.version === store.current('h5')?.version);
    expect(allowsFrom('h1', 'h5')).toBe(false);

    // After the first Snapshot, every change travelled as a Delta.
    for (const a of agents.values()) {
      expect(a.snapshots, a.hostId).toBe(1);
      expect(a.deltas).toBeGreaterThan(0);
    }
    // The bursts were coalesced and recomputed only part of the cluster.
    expect(store.stats().hostsRecomputed).toBeLessThan(store.stats().recomputes * HOSTS.length);
  });

  it('keeps every state while Marathon fails or is unreachable, says stale, and reconciles when it is back', async () => {
    for (const h of HOSTS) agents.set(h, new PlayedAgent(server!.target, h));
    await waitFor('every agent in sync with addresses', () => inSync() && allowsFrom('h2', 'h1'));
    const before = versions();
    const revision = store.revision();

    // HTTP 500 on every list: stale, nothing changes.
    double.setFailing('http500');
    double.dropStreams();
    await waitFor('feed stale with the reason', () => feed.status().stale && /HTTP 500/.test(feed.status().reason ?? ''));
    const requests = double.requests.length;
    await waitFor('the source keeps retrying', () => double.requests.length >= requests + 3);
    expect(versions()).toEqual(before);
    expect(store.revision()).toBe(revision);
    expect(feed.status().ready).toBe(true);
    double.setFailing('none');
    await waitFor('fresh again', () => !feed.status().stale);
    expect(versions()).toEqual(before);

    // Unreachable (every request redirected to a closed port), while a task starts meanwhile.
    double.setStandbyRedirect('http://127.0.0.1:1');
    double.dropStreams();
    await waitFor('feed stale', () => feed.status().stale && !feed.status().streamConnected);
    double.startTask('/shop/web', 'h3', [31002]);
    const seen = double.requests.length;
    await waitFor('the source keeps retrying', () => double.requests.length >= seen + 3);
    expect(versions()).toEqual(before);
    expect(store.revision()).toBe(revision);
    expect(allowsFrom('h2', 'h3')).toBe(false);

    // Back: the re-list after the stream re-attaches brings the missed task in.
    double.setStandbyRedirect(null);
    await waitFor('h2 allows h3 (missed task reconciled)', () => allowsFrom('h2', 'h3'), 10_000);
    await waitFor('fresh again', () => !feed.status().stale);
    await waitFor('every agent in sync', inSync);
    expect(HOSTS.filter((h) => store.current(h)!.version !== before.get(h))).toEqual(['h2', 'h3']);
  });
});

describe('MarathonFeed before the first good list', () => {
  it('delivers nothing and is not ready until Marathon answers a good list, then delivers it', async () => {
    const double = await MarathonDouble.start();
    const source = new MarathonSource({ url: double.url, backoff: { initialMs: 20, maxMs: 100 } });
    const feed = new MarathonFeed({ source, addresses: new HostAddresses(), checkMs: 20 });
    const delivered: number[] = [];
    try {
      double.addApp({ id: '/shop/web', network: 'host', ports: [{ name: 'http' }] });
      double.startTask('/shop/web', '10.0.0.1', [31000]);
      double.setFailing('http500');
      await feed.start((c) => delivered.push(c.tasks.length));
      expect(feed.status()).toMatchObject({ ready: false, stale: true });
      expect(feed.status().reason).toMatch(/HTTP 500/);
      const requests = double.requests.length;
      await waitFor('the source retries', () => double.requests.length >= requests + 2);
      expect(delivered).toEqual([]);
      double.setFailing('none');
      await waitFor('first good list delivered', () => delivered.length > 0);
      expect(delivered[0]).toBe(1);
      // The host id is an address literal: known without any Hello or DNS.
      expect(feed.cluster()!.hosts).toEqual([{ id: '10.0.0.1', addresses: ['10.0.0.1'] }]);
      await waitFor('fresh', () => !feed.status().stale);
      expect(feed.status().ready).toBe(true);
    } finally {
      await feed.stop();
      await double.close();
    }
  });
});

