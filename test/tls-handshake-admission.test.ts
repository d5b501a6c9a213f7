/**
 * Handshake admission in the controller's mTLS listener (src/tls/handshake-queue.ts, issue 12):
 * real TLS on 127.0.0.1 port 0, real grpc-js behind it, certificates from makeTestPki. A raw TCP
 * socket that says nothing holds a handshake slot (its handshake waits for a ClientHello), so the
 * tests fill the slots at will: at most K handshakes run, the waiting ones complete in arrival
 * order as slots free, a waiting socket that closes is never handshaked, a full queue or a long
 * wait closes the newcomer unhandshaked ('busy', counted and logged), a silent holder's slot is
 * freed by the handshake timeout, and an agent's established stream keeps answering pings while a
 * storm waits. The agent's side: a channel the sync client closes abandons its handshake in
 * progress (src/tls/agent-channel-credentials.ts), so a replica's queue drops it unmade; an agent
 * queued at a busy replica keeps its place past its connect deadline (agent/connect-deadline.ts)
 * and is served there, and one whose queued wait passes leaves a queued connection that costs
 * nothing. The flags are checked on the command line.
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ControllerTargets } from '../agent/controller-targets.js';
import { SyncClient } from '../agent/sync-client.js';
import { loadSyncProto } from '../src/grpc/proto.js';
import { SyncService } from '../src/grpc/sync-service.js';
import { loadClientCredentials, readTlsFiles, type TlsMaterial } from '../src/tls/credentials.js';
import { HandshakeAdmission, type HandshakeAdmissionOptions } from '../src/tls/handshake-queue.js';
import { listenMtls } from '../src/tls/mtls-listener.js';
import { makeTestPki, type TestPki } from '../src/tls/pki.js';
import { TlsRefusals } from '../src/tls/tls-refusals.js';
import { waitFor } from './support/grpc-harness.js';
import { logCapture } from './support/log-capture.js';
import { MemoryStateSource, nthState } from './support/memory-state-source.js';
import { runCli as cli } from './support/run-cli.js';

let tmp = '';
let pki: TestPki;
let material: TlsMaterial;
const log = logCapture();
const cleanups: (() => unknown)[] = [];

beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'pcut-admission-'));
  pki = await makeTestPki(path.join(tmp, 'pki'), { hosts: ['node-1'], controllerNames: ['controller'] });
  material = await readTlsFiles(pki.files('controller'));
});

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

afterAll(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

/** An admission that remembers the most handshakes it ever had in flight. */
class WatchedAdmission extends HandshakeAdmission {
  maxSeen = 0;
  override offer(socket: net.Socket): void {
    super.offer(socket);
    this.maxSeen = Math.max(this.maxSeen, this.status().inFlight);
  }
  override handshakeEnded(): void {
    super.handshakeEnded();
    this.maxSeen = Math.max(this.maxSeen, this.status().inFlight);
  }
}

interface Served {
  readonly port: number;
  readonly admission: WatchedAdmission;
  readonly refusals: TlsRefusals;
  readonly service: SyncService;
}

async function serve(options: Partial<HandshakeAdmissionOptions>, extra: { handshakeTimeoutMs?: number; pingIntervalMs?: number } = {}): Promise<Served> {
  const admission = new WatchedAdmission({ maxInFlight: 2, maxQueued: 100, maxWaitMs: 60_000, logger: log.logger, ...options });
  const refusals = new TlsRefusals();
  const source = new MemoryStateSource();
  source.set(nthState('node-1', 1));
  const service = new SyncService(source, { pingIntervalMs: extra.pingIntervalMs ?? 10_000 });
  const server = new grpc.Server();
  service.addToServer(server);
  const listener = await listenMtls(server, '127.0.0.1', 0, { material, refusals, admission, handshakeTimeoutMs: extra.handshakeTimeoutMs ?? 60_000 });
  cleanups.push(async () => {
    service.close();
    server.forceShutdown();
    await listener.close();
  });
  return { port: listener.port, admission, refusals, service };
}

/** A TCP connection that sends nothing (or `bytes`), destroyed at cleanup. */
async function raw(port: number, bytes?: string): Promise<net.Socket & { closedByServer: boolean }> {
  const socket = net.connect(port, '127.0.0.1') as net.Socket & { closedByServer: boolean };
  socket.closedByServer = false;
  socket.on('error', () => undefined);
  socket.on('close', () => (socket.closedByServer = true));
  cleanups.push(() => socket.destroy());
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  if (bytes !== undefined) socket.write(bytes);
  return socket;
}

/**
 * A replica whose one handshake slot a silent socket holds (`holder`), a free one, and a started
 * agent dialling the busy one first (connect deadline 200 ms, the given queued wait).
 */
async function busyThenFree(queuedWaitMs: number) {
  const busy = await serve({ maxInFlight: 1 });
  const holder = await raw(busy.port);
  await waitFor('the slot held', () => busy.admission.status().inFlight === 1);
  const free = await serve({ maxInFlight: 2 });
  const targets = [`127.0.0.1:${busy.port}`, `127.0.0.1:${free.port}`];
  const order = new ControllerTargets(targets);
  while (order.current() !== targets[0]) order.advance();
  const events: string[] = [];
  const client = new SyncClient({
    targets: order,
    credentials: await loadClientCredentials(pki.files('node-1')),
    channelOptions: { 'grpc.ssl_target_name_override': 'localhost' },
    hostId: 'node-1',
    agentVersion: 'test',
    apply: async () => undefined,
    backoff: { initialMs: 20, maxMs: 100 },
    connectTimeoutMs: 200,
    queuedWaitMs,
    onEvent: (e) => void events.push(e.type),
  });
  cleanups.push(() => client.close());
  client.start();
  return { busy, free, holder, targets, client, events };
}

interface TlsPeer {
  readonly socket: tls.TLSSocket;
  secure: boolean;
  closed: boolean;
}

/** A real TLS client with node-1's certificate; `order` gets `name` when its handshake completes. */
function tlsPeer(port: number, name: string, order: string[]): TlsPeer {
  const files = pki.files('node-1');
  const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: material.ca, cert: readFileText(files.certFile), key: readFileText(files.keyFile), ALPNProtocols: ['h2'] });
  const peer: TlsPeer = { socket, secure: false, closed: false };
  socket.on('secureConnect', () => {
    peer.secure = true;
    order.push(name);
  });
  socket.on('error', () => undefined);
  socket.on('close', () => (peer.closed = true));
  cleanups.push(() => socket.destroy());
  return peer;
}

function readFileText(file: string): string {
  return readFileSync(file, 'utf8');
}

describe('mTLS listener: handshake admission', () => {
  it('runs at most K handshakes; the waiting ones complete in arrival order as slots free', async () => {
    const s = await serve({ maxInFlight: 2 });
    const holderA = await raw(s.port);
    const holderB = await raw(s.port);
    await waitFor('both slots held', () => s.admission.status().inFlight === 2);
    const order: string[] = [];
    const peers: TlsPeer[] = [];
    for (const name of ['first', 'second', 'third']) {
      peers.push(tlsPeer(s.port, name, order));
      await waitFor(`${name} waiting`, () => s.admission.status().queued === peers.length);
    }
    expect(order).toEqual([]);
    expect(s.admission.status()).toMatchObject({ inFlight: 2, queued: 3 });
    holderA.destroy();
    // One slot (holderB keeps the other): the three go one after the other, in arrival order.
    await waitFor('every waiting client handshaked', () => order.length === 3);
    expect(order).toEqual(['first', 'second', 'third']);
    // The client's handshake completes a moment before the replica's end of it.
    await waitFor('the last handshake over at the replica', () => s.admission.status().inFlight === 1);
    expect(s.admission.maxSeen).toBe(2);
    expect(s.admission.status()).toMatchObject({ inFlight: 1, queued: 0, abandoned: 0, busy: { queue_full: 0, waited_too_long: 0 } });
    holderB.destroy();
    await waitFor('no handshake left', () => s.admission.status().inFlight === 0);
    // A peer that connects and leaves without a word is not a refusal.
    expect(s.refusals.status().refusals).toBe(0);
  });

  it('a waiting socket whose peer closes is dropped, never handshaked', async () => {
    const s = await serve({ maxInFlight: 1 });
    const holder = await raw(s.port);
    await waitFor('the slot held', () => s.admission.status().inFlight === 1);
    // Not TLS: were it handshaked, it would be a handshake_failed refusal.
    const leaver = await raw(s.port, 'GET / HTTP/1.1\r\n\r\n');
    await waitFor('the leaver waiting', () => s.admission.status().queued === 1);
    leaver.destroy();
    await waitFor('the leaver dropped', () => s.admission.status().abandoned === 1 && s.admission.status().queued === 0);
    holder.destroy();
    await waitFor('the slot free', () => s.admission.status().inFlight === 0);
    // The same bytes handshaked are refused: the leaver's were not.
    const control = await raw(s.port, 'GET / HTTP/1.1\r\n\r\n');
    await waitFor('the control refused', () => s.refusals.status().byReason.handshake_failed === 1 && control.closedByServer);
    expect(s.refusals.status().refusals).toBe(1);
  });

  it('a full queue closes the newcomer at once, unhandshaked, counted and logged as busy', async () => {
    const s = await serve({ maxInFlight: 1, maxQueued: 1 });
    await raw(s.port);
    await waitFor('the slot held', () => s.admission.status().inFlight === 1);
    const waiting = await raw(s.port);
    await waitFor('one waiting', () => s.admission.status().queued === 1);
    const order: string[] = [];
    const newcomer = tlsPeer(s.port, 'newcomer', order);
    await waitFor('the newcomer closed', () => newcomer.closed);
    expect(newcomer.secure).toBe(false);
    expect(waiting.closedByServer).toBe(false);
    expect(s.admission.status()).toMatchObject({ inFlight: 1, queued: 1, busy: { queue_full: 1, waited_too_long: 0 } });
    const line = log.lines.find((l) => String(l['msg']).startsWith('tls: busy'));
    expect(line).toMatchObject({ level: 40, reason: 'queue_full', closed: 1, maxHandshakes: 1 });
    // Metrics next to portcullis_tls_refusals_total.
    const metrics = s.admission.metrics();
    expect(metrics).toMatch(/^portcullis_tls_handshakes_in_flight 1$/m);
    expect(metrics).toMatch(/^portcullis_tls_handshakes_queued 1$/m);
    expect(metrics).toMatch(/^portcullis_tls_busy_total\{reason="queue_full"\} 1$/m);
    expect(metrics).toMatch(/^portcullis_tls_abandoned_total 0$/m);
  });

  it('a socket that waited --handshake-queue-wait is closed busy; a silent holder loses its slot at the handshake timeout', async () => {
    const s = await serve({ maxInFlight: 1, maxWaitMs: 150 }, { handshakeTimeoutMs: 60_000 });
    await raw(s.port);
    await waitFor('the slot held', () => s.admission.status().inFlight === 1);
    const order: string[] = [];
    const late = tlsPeer(s.port, 'late', order);
    await waitFor('the late one closed', () => late.closed);
    expect(late.secure).toBe(false);
    expect(s.admission.status()).toMatchObject({ queued: 0, busy: { queue_full: 0, waited_too_long: 1 } });

    const t = await serve({ maxInFlight: 1 }, { handshakeTimeoutMs: 300 });
    await raw(t.port);
    await waitFor('the slot held', () => t.admission.status().inFlight === 1);
    const next = tlsPeer(t.port, 'next', order);
    await waitFor('the next one waiting', () => t.admission.status().queued === 1);
    await waitFor('the next one handshaked after the holder timed out', () => next.secure);
    expect(t.refusals.status().byReason.handshake_failed).toBe(1);
    expect(t.refusals.status().lastRefusal?.detail).toMatch(/timeout/i);
  });

  it("an established agent's stream keeps answering pings while a handshake storm waits", async () => {
    const s = await serve({ maxInFlight: 2, maxQueued: 200 }, { pingIntervalMs: 50 });
    const events: string[] = [];
    const client = new SyncClient({
      target: `127.0.0.1:${s.port}`,
      credentials: await loadClientCredentials(pki.files('node-1')),
      channelOptions: { 'grpc.ssl_target_name_override': 'localhost' },
      hostId: 'node-1',
      agentVersion: 'test',
      apply: async () => undefined,
      onEvent: (e) => events.push(e.type),
    });
    cleanups.push(() => client.close());
    client.start();
    await waitFor('the agent in sync', () => s.service.agents().some((a) => a.hostId === 'node-1' && a.inSync));
    await raw(s.port);
    await raw(s.port);
    const order: string[] = [];
    for (let i = 0; i < 50; i++) tlsPeer(s.port, `storm-${i}`, order);
    await waitFor('the storm waiting', () => s.admission.status().queued === 50);
    const stormAt = Date.now();
    // Twenty ping periods with the storm queued: the stream stays, its pongs keep coming.
    await waitFor('pongs during the storm', () => (s.service.agents().find((a) => a.hostId === 'node-1')?.lastSeen ?? 0) > stormAt + 1000, 10_000);
    expect(s.admission.status()).toMatchObject({ inFlight: 2, queued: 50 });
    expect(order).toEqual([]);
    expect(events.filter((e) => e === 'disconnected')).toEqual([]);
    expect(s.service.agents().find((a) => a.hostId === 'node-1')?.connected).toBe(true);
  });
});

describe('agent: a connection given up is closed, not left to a replica to handshake', () => {
  it('closing a channel destroys its TLS handshake in progress at once (grpc-js alone would finish it)', async () => {
    const s = await serve({ maxInFlight: 1 });
    await raw(s.port);
    await waitFor('the slot held', () => s.admission.status().inFlight === 1);
    const stub = new (loadSyncProto().Client)(`127.0.0.1:${s.port}`, await loadClientCredentials(pki.files('node-1')), { 'grpc.ssl_target_name_override': 'localhost' });
    const call = stub.Sync();
    call.on('error', () => undefined);
    cleanups.push(() => stub.close());
    await waitFor('the connection waiting', () => s.admission.status().queued === 1);
    stub.close();
    await waitFor('the waiting connection closed by the agent', () => s.admission.status().abandoned === 1, 2_000);
    expect(s.admission.status()).toMatchObject({ queued: 0, inFlight: 1 });
  });

  it('an agent queued at a busy replica keeps its place past its connect deadline and is served there when a slot frees', async () => {
    const { busy, free, holder, targets, client, events } = await busyThenFree(30_000);
    await waitFor('the agent queued at the busy replica', () => busy.admission.status().queued === 1, 5_000);
    // Five of its connect deadlines pass while it waits: it stays queued, on the same connection.
    const until = Date.now() + 1_000;
    await waitFor('five connect deadlines passed', () => Date.now() >= until, 5_000);
    expect(busy.admission.status().queued).toBe(1);
    expect(events.filter((e) => e === 'disconnected')).toEqual([]);
    holder.destroy();
    await waitFor('the agent served by the busy replica', () => busy.service.agents().some((a) => a.hostId === 'node-1' && a.inSync), 10_000);
    expect(free.service.agents()).toEqual([]);
    expect(events.filter((e) => e === 'connecting')).toHaveLength(1);
    expect(client.channelTargets).toEqual([targets[0]]);
  });

  it('an agent whose queued wait passes moves on; its queued connection costs the replica nothing', async () => {
    const { busy, free, targets, client } = await busyThenFree(600);
    await waitFor('the agent served by the free replica', () => free.service.agents().some((a) => a.hostId === 'node-1' && a.inSync), 10_000);
    await waitFor('its connection to the busy one dropped unmade', () => busy.admission.status().abandoned === 1 && busy.admission.status().queued === 0, 2_000);
    expect(busy.refusals.status().refusals).toBe(0);
    expect(client.channelTargets).toEqual([targets[1]]);
  });
});

describe('portcullis controller: admission flags', () => {
  it.each([
    [['controller', '--insecure', '--max-handshakes=-1'], /--max-handshakes must be a whole number 0\.\.100000/],
    [['controller', '--insecure', '--max-handshakes', '1.5'], /--max-handshakes must be a whole number 0\.\.100000/],
    [['controller', '--insecure', '--handshake-queue-wait', 'soon'], /--handshake-queue-wait must be a number of seconds/],
  ])('%j exits 2 with a precise message', async (argv, message) => {
    const r = await cli(argv);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(message);
  });
});
