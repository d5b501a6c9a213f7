/**
 * The Sync stream end to end over real gRPC (loopback, port 0, plaintext with `insecure`; mTLS
 * is in tls-mtls.test.ts): the controller's SyncService against the agent's SyncClient, and
 * against raw streams where the test plays the agent by hand to see the wire messages.
 */
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { SyncClient, type SyncClientEvent } from '../agent/sync-client.js';
import { SET_KINDS, type DesiredState } from '../src/compile/desired-state.js';
import { applyDelta } from '../src/compile/state-delta.js';
import { loadSyncProto, type AgentMessage__Output, type ControllerMessage, type ControllerMessage__Output } from '../src/grpc/proto.js';
import { SyncService, type SyncServiceOptions } from '../src/grpc/sync-service.js';
import { deltaFromMessage, snapshotMessage, stateFromSnapshot } from '../src/grpc/wire-state.js';
import { openRawStream, startServer, stopServer, waitFor, type RawStream, type RunningServer } from './support/grpc-harness.js';
import { MemoryStateSource, nthState } from './support/memory-state-source.js';
import { logCapture } from './support/log-capture.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function controller(source: MemoryStateSource, options: SyncServiceOptions = {}, port = 0): Promise<{ service: SyncService; running: RunningServer }> {
  const service = new SyncService(source, { insecure: true, ...options });
  const running = await startServer((server) => service.addToServer(server), undefined, port);
  cleanups.push(() => service.close(), () => stopServer(running));
  return { service, running };
}

/** A SyncClient whose "kernel" holds what `apply` last accepted (at first `initial`). */
function agent(target: string, hostId: string, apply: (s: DesiredState) => Promise<void>, extra: Partial<ConstructorParameters<typeof SyncClient>[0]> = {}, initial?: DesiredState) {
  const events: SyncClientEvent[] = [];
  let held = initial;
  const client = new SyncClient({
    target,
    credentials: grpc.credentials.createInsecure(),
    hostId,
    addresses: ['10.0.0.1'],
    agentVersion: 'test',
    held: () => held,
    apply: async (s) => {
      await apply(s);
      held = s;
    },
    backoff: { initialMs: 20, maxMs: 200 },
    onEvent: (e) => events.push(e),
    ...extra,
  });
  cleanups.push(() => client.close());
  client.start();
  return { client, events };
}

function raw(target: string): RawStream {
  const stream = openRawStream(target);
  cleanups.push(() => stream.close());
  return stream;
}

const stateMessages = (s: RawStream) => s.messages.filter((m) => m.msg === 'snapshot' || m.msg === 'delta');

describe('SyncService + SyncClient', () => {
  it('sends a snapshot on connect, and the agent applies it and is recorded in sync', async () => {
    const source = new MemoryStateSource();
    const s1 = nthState('host-a', 1);
    source.set(s1);
    source.set(nthState('host-b', 2));
    const { service, running } = await controller(source);
    const applied: DesiredState[] = [];
    agent(running.target, 'host-a', async (s) => void applied.push(s));

    await waitFor('agent acked', () => service.agent('host-a')?.appliedVersion === s1.version);
    expect(applied).toEqual([s1]);
    const status = service.agent('host-a');
    expect(status).toMatchObject({ connected: true, inSync: true, desiredVersion: s1.version, addresses: ['10.0.0.1'], agentVersion: 'test' });
    expect(service.agents().map((a) => a.hostId)).toEqual(['host-a']);
  });

  it('the first message is a snapshot of every set kind with seq 1 (to an agent announcing egress support and group modes)', async () => {
    const source = new MemoryStateSource();
    const s1 = nthState('host-a', 1);
    source.set(s1);
    const { running } = await controller(source);
    const stream = raw(running.target);
    stream.send({ hello: { hostId: 'host-a', addresses: [], agentVersion: 'raw', appliedVersion: '', egress: { supported: true, enforcing: true }, groupModes: true } });
    await waitFor('snapshot', () => stateMessages(stream).length === 1);
    const snapshot = stream.messages[0]?.snapshot;
    expect(snapshot?.seq).toBe(1);
    expect(snapshot?.sets).toHaveLength(SET_KINDS.length);
    expect(stateFromSnapshot('host-a', snapshot!)).toEqual(s1);
  });

  it('sends a delta against the acked version after a change, and records the new ack', async () => {
    const source = new MemoryStateSource();
    const [s1, s2] = [nthState('host-a', 1), nthState('host-a', 2)];
    source.set(s1);
    const { service, running } = await controller(source);
    const stream = raw(running.target);
    stream.send({ hello: { hostId: 'host-a', addresses: [], agentVersion: 'raw', appliedVersion: '' } });
    await waitFor('snapshot', () => stateMessages(stream).length === 1);
    stream.send({ ack: { version: s1.version, seq: 1 } });
    await waitFor('ack recorded', () => service.agent('host-a')?.appliedVersion === s1.version);

    source.set(s2);
    await waitFor('delta', () => stateMessages(stream).length === 2);
    const message = stream.messages.filter((m) => m.msg === 'delta')[0]?.delta;
    expect(message).toMatchObject({ seq: 2, baseVersion: s1.version, version: s2.version });
    expect(message?.removes.length).toBeGreaterThan(0);
    expect(applyDelta(s1, deltaFromMessage('host-a', message!))).toEqual(s2);
    expect(service.agent('host-a')?.inSync).toBe(false);

    stream.send({ ack: { version: s2.version, seq: 2 } });
    await waitFor('in sync again', () => service.agent('host-a')?.inSync === true);
  });

  it('keeps one state in flight and sends only the newest once the agent acks (no queue)', async () => {
    const source = new MemoryStateSource();
    source.set(nthState('host-a', 0));
    const { running } = await controller(source);
    const stream = raw(running.target);
    stream.send({ hello: { hostId: 'host-a', addresses: [], agentVersion: 'raw', appliedVersion: '' } });
    await waitFor('snapshot', () => stateMessages(stream).length === 1);
    for (let n = 1; n <= 10; n++) source.set(nthState('host-a', n));
    stream.send({ ack: { version: nthState('host-a', 0).version, seq: 1 } });
    await waitFor('second state', () => stateMessages(stream).length === 2);
    const second = stateMessages(stream)[1]?.delta;
    // seq 2 proves nothing was sent in between; the version proves it is the newest.
    expect(second).toMatchObject({ seq: 2, version: nthState('host-a', 10).version });
  });

  it('latest-wins: a slow agent given 10 rapid changes ends on the newest with few applies', async () => {
    const source = new MemoryStateSource();
    source.set(nthState('host-a', 0));
    const { service, running } = await controller(source);
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const applied: DesiredState[] = [];
    agent(running.target, 'host-a', async (s) => {
      applied.push(s);
      await gate;
    });
    await waitFor('first apply started', () => applied.length === 1);
    for (let n = 1; n <= 10; n++) source.set(nthState('host-a', n));
    release();
    const newest = nthState('host-a', 10);
    await waitFor('agent on the newest state', () => service.agent('host-a')?.appliedVersion === newest.version);
    expect(applied.at(-1)).toEqual(newest);
    expect(applied.length).toBeLessThanOrEqual(3);
  });

  it('reports an apply failure, then succeeds on the next state', async () => {
    const source = new MemoryStateSource();
    source.set(nthState('host-a', 1));
    const { service, running } = await controller(source, { errorRetryMs: 60_000 });
    let fail = true;
    agent(running.target, 'host-a', async () => {
      if (fail) throw new Error('iptables-restore: line 3 failed');
    });
    await waitFor('error recorded', () => service.agent('host-a')?.lastError === 'iptables-restore: line 3 failed');
    expect(service.agent('host-a')?.appliedVersion).toBeUndefined();
    fail = false;
    source.set(nthState('host-a', 2));
    await waitFor('recovered', () => service.agent('host-a')?.inSync === true);
    expect(service.agent('host-a')?.lastError).toBeUndefined();
  });

  it('reconnects with backoff after the controller restarts, and catches up', async () => {
    const source = new MemoryStateSource();
    const [s1, s2] = [nthState('host-a', 1), nthState('host-a', 2)];
    source.set(s1);
    const first = await controller(source);
    const applied: DesiredState[] = [];
    const { events } = agent(first.running.target, 'host-a', async (s) => void applied.push(s));
    await waitFor('first state applied', () => first.service.agent('host-a')?.appliedVersion === s1.version);

    first.service.close();
    stopServer(first.running);
    await waitFor('agent noticed', () => events.some((e) => e.type === 'disconnected'));
    expect(applied).toEqual([s1]); // fail static: nothing undone

    source.set(s2);
    const second = await controller(source, {}, first.running.port);
    await waitFor('agent caught up on the new controller', () => second.service.agent('host-a')?.appliedVersion === s2.version, 15_000);
    expect(applied.map((s) => s.version)).toEqual([s1.version, s2.version]);
    expect(second.service.agent('host-a')?.connected).toBe(true);
  });

  it('answers a delta on a wrong base with ApplyError, then gets a snapshot', async () => {
    const source = new MemoryStateSource();
    const [s1, s2] = [nthState('host-a', 1), nthState('host-a', 2)];
    source.set(s1);
    const { service, running } = await controller(source);
    const before = raw(running.target);
    before.send({ hello: { hostId: 'host-a', addresses: [], agentVersion: 'raw', appliedVersion: '' } });
    await waitFor('snapshot', () => stateMessages(before).length === 1);
    before.send({ ack: { version: s1.version, seq: 1 } });
    await waitFor('ack', () => service.agent('host-a')?.appliedVersion === s1.version);
    before.close();
    await waitFor('disconnected', () => service.agent('host-a')?.connected === false);

    source.set(s2);
    const after = raw(running.target);
    after.send({ hello: { hostId: 'host-a', addresses: [], agentVersion: 'raw', appliedVersion: s1.version } });
    await waitFor('delta on the announced version', () => stateMessages(after).length === 1);
    expect(after.messages[0]?.delta).toMatchObject({ seq: 1, baseVersion: s1.version, version: s2.version });
    after.send({ applyError: { version: s2.version, seq: 1, message: 'base mismatch' } });
    await waitFor('snapshot after the error', () => stateMessages(after).length === 2);
    const snapshot = stateMessages(after)[1]?.snapshot;
    expect(snapshot?.seq).toBe(2);
    expect(stateFromSnapshot('host-a', snapshot!)).toEqual(s2);
    expect(service.agent('host-a')?.lastError).toBe('base mismatch');
  });

  it('the agent refuses a delta on a base it does not have and applies the following snapshot', async () => {
    const s1 = nthState('host-a', 1);
    const received: { msg?: string; seq?: number; message?: string }[] = [];
    const running = await startServer((server) => {
      server.addService(loadSyncProto().service, {
        Sync: (call: grpc.ServerDuplexStream<AgentMessage__Output, ControllerMessage>) => {
          call.on('data', (m: AgentMessage__Output) => {
            received.push({ msg: m.msg, seq: m.ack?.seq ?? m.applyError?.seq, message: m.applyError?.message });
            if (m.msg === 'hello') {
              call.write({ delta: { seq: 1, baseVersion: 'ffffffffffffffff', version: s1.version, mode: 'enforce', adds: [], removes: [] } });
            } else if (m.msg === 'applyError') {
              call.write({ snapshot: snapshotMessage(s1, 2) });
            }
          });
          call.on('error', () => undefined);
        },
      });
    });
    cleanups.push(() => stopServer(running));
    const applied: DesiredState[] = [];
    agent(running.target, 'host-a', async (s) => void applied.push(s), {}, nthState('host-a', 7));
    await waitFor('ack of the snapshot', () => received.some((r) => r.msg === 'ack' && r.seq === 2));
    expect(received.map((r) => r.msg)).toEqual(['hello', 'applyError', 'ack']);
    expect(received[1]?.seq).toBe(1);
    expect(received[1]?.message).toMatch(/ffffffffffffffff/);
    expect(applied).toEqual([s1]);
  });
});

describe('SyncService stream hygiene', () => {
  it('rejects a stream whose first message is not Hello', async () => {
    const source = new MemoryStateSource();
    source.set(nthState('host-a', 1));
    const { running } = await controller(source);
    const stream = raw(running.target);
    stream.send({ ack: { version: 'x', seq: 1 } });
    await waitFor('stream ended', () => stream.status !== undefined);
    expect(stream.status?.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(stream.messages.map((m) => m.msg)).toEqual(['rejected']);
  });

  it('pings, keeps a stream that answers, drops one that does not', async () => {
    const source = new MemoryStateSource();
    const { service, running } = await controller(source, { pingIntervalMs: 30, maxMissedPongs: 2 });
    const good = raw(running.target);
    const silent = raw(running.target);
    good.call.on('data', (m: ControllerMessage__Output) => {
      if (m.ping) good.send({ pong: { nonce: m.ping.nonce } });
    });
    good.send({ hello: { hostId: 'good', addresses: [], agentVersion: 'raw', appliedVersion: '' } });
    silent.send({ hello: { hostId: 'silent', addresses: [], agentVersion: 'raw', appliedVersion: '' } });
    await waitFor('silent stream dropped', () => silent.status !== undefined);
    expect(silent.status?.code).toBe(grpc.status.UNAVAILABLE);
    await waitFor('good stream saw many pings', () => good.of('ping').length >= 8);
    expect(good.status).toBeUndefined();
    expect(service.agent('good')?.connected).toBe(true);
    expect(service.agent('silent')?.connected).toBe(false);
  });

  it('keeps a stream whose Pongs lag one ping behind, drops one that answers pings never sent', async () => {
    const source = new MemoryStateSource();
    const { service, running } = await controller(source, { pingIntervalMs: 30, maxMissedPongs: 2 });
    const lagging = raw(running.target);
    const forger = raw(running.target);
    // Answers each ping only when the next one arrives: alive, but always a ping behind.
    let previous: number | undefined;
    lagging.call.on('data', (m: ControllerMessage__Output) => {
      if (!m.ping) return;
      if (previous !== undefined) lagging.send({ pong: { nonce: previous } });
      previous = m.ping.nonce;
    });
    forger.call.on('data', (m: ControllerMessage__Output) => {
      if (m.ping) forger.send({ pong: { nonce: m.ping.nonce + 1000 } });
    });
    lagging.send({ hello: { hostId: 'lagging', addresses: [], agentVersion: 'raw', appliedVersion: '' } });
    forger.send({ hello: { hostId: 'forger', addresses: [], agentVersion: 'raw', appliedVersion: '' } });
    await waitFor('forger dropped', () => forger.status !== undefined);
    expect(forger.status?.code).toBe(grpc.status.UNAVAILABLE);
    await waitFor('lagging stream saw many pings', () => lagging.of('ping').length >= 8);
    expect(lagging.status).toBeUndefined();
    expect(service.agent('lagging')?.connected).toBe(true);
  });

  it('a newer stream from the same host supersedes the older one', async () => {
    const source = new MemoryStateSource();
    source.set(nthState('host-a', 1));
    const { service, running } = await controller(source);
    const older = raw(running.target);
    older.send({ hello: { hostId: 'host-a', addresses: [], agentVersion: 'old', appliedVersion: '' } });
    await waitFor('older got its snapshot', () => stateMessages(older).length === 1);
    const newer = raw(running.target);
    newer.send({ hello: { hostId: 'host-a', addresses: [], agentVersion: 'new', appliedVersion: '' } });
    await waitFor('older ended', () => older.status !== undefined);
    expect(older.status?.code).toBe(grpc.status.ABORTED);
    await waitFor('newer got a snapshot', () => stateMessages(newer).length === 1);
    expect(service.agent('host-a')).toMatchObject({ connected: true, agentVersion: 'new' });
    expect(service.streamsSuperseded()).toBe(1);
  });

  it('two agents with one host id keep superseding each other: counted, and said once at warn', async () => {
    const source = new MemoryStateSource();
    source.set(nthState('host-a', 1));
    const { logger, lines } = logCapture();
    const { service, running } = await controller(source, { logger });
    agent(running.target, 'host-a', async () => undefined);
    agent(running.target, 'host-a', async () => undefined);
    const said = () => lines.filter((l) => l['msg'] === 'sync: streams of one host id keep superseding each other: two agents with the same --host-id and certificate?');
    await waitFor('the conflict said at warn', () => said().length > 0, 15_000);
    expect(said()[0]).toMatchObject({ level: 40, hostId: 'host-a', times: 4 });
    expect((said()[0]!['peers'] as string[]).length).toBe(2);
    expect(service.streamsSuperseded()).toBeGreaterThanOrEqual(4);
    // Still flapping, but said at most once per five minutes.
    const count = service.streamsSuperseded();
    await waitFor('more supersedes', () => service.streamsSuperseded() >= count + 4, 15_000);
    expect(said()).toHaveLength(1);
  });

  it('rejects a stream that sends no Hello in time', async () => {
    const { running } = await controller(new MemoryStateSource(), { pingIntervalMs: 20, helloTimeoutMs: 60 });
    const stream = raw(running.target);
    await waitFor('stream ended', () => stream.status !== undefined);
    expect(stream.status?.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(stream.messages[0]?.rejected?.reason).toMatch(/no Hello/);
  });

  it('the agent replaces a stream on which the controller never says anything (first-message deadline)', async () => {
    const { service, running } = await controller(new MemoryStateSource(), { pingIntervalMs: 60_000 });
    const { events } = agent(running.target, 'host-a', async () => undefined, { idleTimeoutMs: 60_000, firstMessageTimeoutMs: 80 });
    await waitFor('two silent-stream disconnects', () => events.filter((e) => e.type === 'disconnected').length >= 2);
    expect(events.find((e) => e.type === 'disconnected')).toMatchObject({ reason: 'no message from the controller for 80 ms' });
    await waitFor('connected again', () => service.agent('host-a')?.connected === true);
  });

  it('after the first message the idle deadline applies', async () => {
    const source = new MemoryStateSource();
    source.set(nthState('host-a', 1));
    const { running } = await controller(source, { pingIntervalMs: 60_000 });
    const { events } = agent(running.target, 'host-a', async () => undefined, { idleTimeoutMs: 80, firstMessageTimeoutMs: 60_000 });
    await waitFor('an idle disconnect after the snapshot', () => events.some((e) => e.type === 'disconnected'));
    expect(events.findIndex((e) => e.type === 'applied')).toBeGreaterThanOrEqual(0);
    expect(events.findIndex((e) => e.type === 'applied')).toBeLessThan(events.findIndex((e) => e.type === 'disconnected'));
    expect(events.find((e) => e.type === 'disconnected')).toMatchObject({ reason: 'no message from the controller for 80 ms' });
  });

  it('close() unsubscribes from the source', async () => {
    const source = new MemoryStateSource();
    const service = new SyncService(source, { insecure: true });
    expect(source.listenerCount).toBe(1);
    service.close();
    expect(source.listenerCount).toBe(0);
  });
});
