/**
 * Egress over the real Sync stream (loopback gRPC, port 0, plaintext with `insecure`), the test
 * playing the agent by hand to see the wire messages:
 *  - an agent whose Hello announces no egress support (a release before egress) is sent every
 *    state without the egress kinds, versioned as stateVersion of the stripped sets, and deltas
 *    between those views, also when the source offers its own patch (deltaFrom);
 *  - an agent that announces support gets the full states;
 *  - the EgressStatus of Hello, Ack and Pong is kept per host, cleaned of control characters and
 *    bounded, and a host that cannot enforce is logged at warn once per reason.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { AUDIT_KINDS, EGRESS_KINDS, INGRESS_KINDS, SET_KINDS, emptySets, type DesiredState, type SetKind } from '../src/compile/desired-state.js';
import { applyDelta } from '../src/compile/state-delta.js';
import { stateVersion } from '../src/compile/state-version.js';
import type { AgentMessage } from '../src/grpc/proto.js';
import { REASON_MAX, UNSUPPORTED_REASON } from '../src/grpc/egress-status.js';
import { SyncService, type SyncServiceOptions } from '../src/grpc/sync-service.js';
import type { SyncLogger } from '../src/grpc/sync-logger.js';
import { deltaFromMessage, stateFromSnapshot } from '../src/grpc/wire-state.js';
import { openRawStream, startServer, stopServer, waitFor, type RawStream } from './support/grpc-harness.js';
import { MemoryStateSource, PatchingSource, makeState } from './support/memory-state-source.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function controller(source: MemoryStateSource, options: SyncServiceOptions = {}): Promise<{ service: SyncService; target: string }> {
  const service = new SyncService(source, { insecure: true, ...options });
  const running = await startServer((server) => service.addToServer(server));
  cleanups.push(() => service.close(), () => stopServer(running));
  return { service, target: running.target };
}

function raw(target: string): RawStream {
  const stream = openRawStream(target);
  cleanups.push(() => stream.close());
  return stream;
}

const hello = (hostId: string, over: Partial<NonNullable<AgentMessage['hello']>> = {}): AgentMessage => ({
  hello: { hostId, addresses: [], agentVersion: 'raw', appliedVersion: '', ...over },
});
const states = (s: RawStream) => s.messages.filter((m) => m.msg === 'snapshot' || m.msg === 'delta');

/** The n-th state of host-a with egress members (n ≥ 0): both sides change with n. */
function egressState(n: number, egress = true): DesiredState {
  const port = String(31000 + n);
  return makeState('host-a', {
    'managed-tcp': [port],
    'failsafe-tcp': ['22'],
    'allow-ip4': [`10.0.0.9,tcp:${port}`],
    ...(egress
      ? {
          'egress-task': [`/shop/web|shop_web.${n}`],
          'egress-managed4': [`10.0.0.2,tcp:${port}`, '10.0.0.3,tcp:5432'],
          'egress-ip4': [`/shop/web|10.0.0.2,tcp:${port}`],
        }
      : {}),
  });
}

/** What an agent without egress support must be sent: the state with its egress lists emptied, versioned so. */
function strippedOf(state: DesiredState): DesiredState {
  const sets = emptySets();
  for (const kind of INGRESS_KINDS) sets[kind] = [...state.sets[kind]];
  return { hostId: state.hostId, mode: state.mode, sets, version: stateVersion(state.mode, sets) };
}

const kindsOf = (sets: readonly { kind: string }[]): string[] => sets.map((s) => s.kind);
const isEgressKind = (kind: string): boolean => (EGRESS_KINDS as readonly string[]).includes(kind);


describe('an agent without egress support (Hello without egress)', () => {
  it('gets snapshots and deltas without the egress kinds, versioned as the stripped sets, and is in sync on them', async () => {
    const source = new MemoryStateSource();
    const [s1, s2] = [egressState(1), egressState(2)];
    const [v1, v2] = [strippedOf(s1), strippedOf(s2)];
    expect(v1.version).not.toBe(s1.version); // the egress members are in the full version
    source.set(s1);
    const { service, target } = await controller(source);
    const stream = raw(target);
    stream.send(hello('host-a'));

    await waitFor('snapshot', () => states(stream).length === 1);
    const snapshot = states(stream)[0]!.snapshot!;
    expect(kindsOf(snapshot.sets)).toEqual([...INGRESS_KINDS]);
    expect(snapshot.version).toBe(v1.version);
    expect(stateFromSnapshot('host-a', snapshot)).toEqual(v1);
    expect(service.agent('host-a')?.desiredVersion).toBe(v1.version);
    stream.send({ ack: { version: v1.version, seq: 1 } });
    await waitFor('in sync on the stripped view', () => service.agent('host-a')?.inSync === true);

    source.set(s2);
    await waitFor('delta', () => states(stream).length === 2);
    const delta = states(stream)[1]!.delta!;
    expect([...kindsOf(delta.adds), ...kindsOf(delta.removes)].filter(isEgressKind)).toEqual([]);
    expect(delta).toMatchObject({ seq: 2, baseVersion: v1.version, version: v2.version });
    expect(delta.adds.length).toBeGreaterThan(0);
    expect(applyDelta(v1, deltaFromMessage('host-a', delta))).toEqual(v2);
    stream.send({ ack: { version: v2.version, seq: 2 } });
    await waitFor('in sync again', () => service.agent('host-a')?.inSync === true);
    expect(service.agent('host-a')?.egress).toEqual({ supported: false, enforcing: false, reason: UNSUPPORTED_REASON, mappedTasks: 0, unmappedTasks: 0 });
  });

  it('a change of egress members only sends it nothing (its view did not change)', async () => {
    const source = new MemoryStateSource();
    const s1 = egressState(1);
    source.set(s1);
    const { service, target } = await controller(source);
    const stream = raw(target);
    stream.send(hello('host-a'));
    await waitFor('snapshot', () => states(stream).length === 1);
    stream.send({ ack: { version: strippedOf(s1).version, seq: 1 } });
    await waitFor('in sync', () => service.agent('host-a')?.inSync === true);
    const sets: Record<SetKind, string[]> = { ...emptySets(), ...Object.fromEntries(SET_KINDS.map((k) => [k, [...s1.sets[k]]])) };
    sets['egress-ip4'] = [];
    const onlyEgress = { ...s1, sets, version: stateVersion(s1.mode, sets) };
    source.set(onlyEgress);
    expect(service.agent('host-a')?.inSync).toBe(true); // its view is the one it has
    // The next change is sent with seq 2: nothing was sent for the egress-only change.
    const s3 = egressState(3);
    source.set(s3);
    await waitFor('a second state', () => states(stream).length === 2);
    expect(states(stream)[1]!.delta).toMatchObject({ seq: 2, baseVersion: strippedOf(s1).version, version: strippedOf(s3).version });
  });

  it("a delta from the source's own patch is cut to the view (egress added to a state that had none)", async () => {
    const source = new PatchingSource();
    const [s0, s1] = [egressState(0, false), egressState(1)];
    source.set(s0);
    const { service, target } = await controller(source);
    const stream = raw(target);
    stream.send(hello('host-a'));
    await waitFor('snapshot', () => states(stream).length === 1);
    expect(states(stream)[0]!.snapshot!.version).toBe(s0.version); // no egress member: its own view
    stream.send({ ack: { version: s0.version, seq: 1 } });
    await waitFor('in sync', () => service.agent('host-a')?.inSync === true);

    source.set(s1);
    await waitFor('delta', () => states(stream).length === 2);
    expect(source.patches).toBe(1);
    const delta = states(stream)[1]!.delta!;
    expect([...kindsOf(delta.adds), ...kindsOf(delta.removes)].filter(isEgressKind)).toEqual([]);
    expect(delta).toMatchObject({ baseVersion: s0.version, version: strippedOf(s1).version });
    expect(applyDelta(s0, deltaFromMessage('host-a', delta))).toEqual(strippedOf(s1));
  });

  it('announcing a full state it cannot hold (a downgraded agent) gets a stripped snapshot, not a delta', async () => {
    const source = new MemoryStateSource();
    const [s1, s2] = [egressState(1), egressState(2)];
    source.set(s1);
    const { service, target } = await controller(source);
    const upgraded = raw(target);
    upgraded.send(hello('host-a', { egress: { supported: true, enforcing: true } }));
    await waitFor('full snapshot', () => states(upgraded).length === 1);
    upgraded.send({ ack: { version: s1.version, seq: 1 } });
    await waitFor('acked', () => service.agent('host-a')?.appliedVersion === s1.version);
    upgraded.close();
    await waitFor('disconnected', () => service.agent('host-a')?.connected === false);

    source.set(s2);
    const downgraded = raw(target);
    downgraded.send(hello('host-a', { appliedVersion: s1.version }));
    await waitFor('a state', () => states(downgraded).length === 1);
    const first = states(downgraded)[0]!;
    expect(first.msg).toBe('snapshot');
    expect(kindsOf(first.snapshot!.sets)).toEqual([...INGRESS_KINDS]);
    expect(stateFromSnapshot('host-a', first.snapshot!)).toEqual(strippedOf(s2));
  });
});

describe('an agent with egress support', () => {
  it('upgraded in place, it gets the egress sets as a delta on the stripped state it has', async () => {
    const source = new MemoryStateSource();
    const s1 = egressState(1);
    source.set(s1);
    const { service, target } = await controller(source);
    const old = raw(target);
    old.send(hello('host-a'));
    await waitFor('stripped snapshot', () => states(old).length === 1);
    old.send({ ack: { version: strippedOf(s1).version, seq: 1 } });
    await waitFor('in sync', () => service.agent('host-a')?.inSync === true);
    old.close();
    await waitFor('disconnected', () => service.agent('host-a')?.connected === false);

    const upgraded = raw(target);
    upgraded.send(hello('host-a', { appliedVersion: strippedOf(s1).version, egress: { supported: true, enforcing: true } }));
    await waitFor('a state', () => states(upgraded).length === 1);
    const delta = states(upgraded)[0]!.delta!;
    expect(delta).toMatchObject({ baseVersion: strippedOf(s1).version, version: s1.version });
    expect(kindsOf(delta.adds).filter(isEgressKind)).toEqual(['egress-task', 'egress-managed4', 'egress-ip4']);
    expect(applyDelta(strippedOf(s1), deltaFromMessage('host-a', delta))).toEqual(s1);
    expect(service.agent('host-a')?.desiredVersion).toBe(s1.version);
  });

  it('gets the full states, egress kinds and version included', async () => {
    const source = new MemoryStateSource();
    const [s1, s2] = [egressState(1), egressState(2)];
    source.set(s1);
    const { service, target } = await controller(source);
    const stream = raw(target);
    stream.send(hello('host-a', { egress: { supported: true, enforcing: true, mappedTasks: 1 } }));
    await waitFor('snapshot', () => states(stream).length === 1);
    const snapshot = states(stream)[0]!.snapshot!;
    // Every kind but the per-group mode ones, which this Hello does not announce (grpc-group-modes.test.ts).
    expect(kindsOf(snapshot.sets)).toEqual(SET_KINDS.filter((k) => !(AUDIT_KINDS as readonly string[]).includes(k)));
    expect(stateFromSnapshot('host-a', snapshot)).toEqual(s1);
    stream.send({ ack: { version: s1.version, seq: 1 } });
    await waitFor('in sync', () => service.agent('host-a')?.inSync === true);

    source.set(s2);
    await waitFor('delta', () => states(stream).length === 2);
    const delta = states(stream)[1]!.delta!;
    expect(kindsOf(delta.adds)).toEqual(expect.arrayContaining(['egress-task', 'egress-managed4', 'egress-ip4']));
    expect(applyDelta(s1, deltaFromMessage('host-a', delta))).toEqual(s2);
    expect(service.agent('host-a')?.egress).toEqual({ supported: true, enforcing: true, reason: '', mappedTasks: 1, unmappedTasks: 0 });
  });
});

describe('egress status from the agent', () => {
  function recordingLogger(): { logger: SyncLogger; warnings: { fields: Record<string, unknown>; message: string }[]; infos: string[] } {
    const warnings: { fields: Record<string, unknown>; message: string }[] = [];
    const infos: string[] = [];
    return {
      warnings,
      infos,
      logger: {
        debug: () => undefined,
        info: (_fields, message) => void infos.push(message),
        warn: (fields, message) => void warnings.push({ fields: fields as Record<string, unknown>, message }),
      },
    };
  }

  it('is kept from Hello, Ack and Pong, cleaned and bounded, with one warn line per reason per host', async () => {
    const log = recordingLogger();
    const source = new MemoryStateSource();
    const s1 = egressState(1);
    source.set(s1);
    const { service, target } = await controller(source, { logger: log.logger, pingIntervalMs: 20 });
    const hostile = `no cgroup2 mount\u001b[2J\n\u202eforged line ${'x'.repeat(5000)}`;
    const stream = raw(target);
    stream.send(hello('host-a', { egress: { supported: true, enforcing: false, reason: hostile, mappedTasks: 0, unmappedTasks: 3 } }));
    await waitFor('snapshot', () => states(stream).length === 1);
    const first = service.agent('host-a')!.egress!;
    expect(first).toMatchObject({ supported: true, enforcing: false, mappedTasks: 0, unmappedTasks: 3 });
    expect(first.reason, first.reason).toMatch(/^no cgroup2 mount \[2J {2}forged line x+…$/);
    expect(first.reason).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/);
    expect(first.reason.length).toBeLessThanOrEqual(REASON_MAX);
    const cannot = log.warnings.filter((w) => w.message.includes('cannot enforce egress'));
    expect(cannot).toHaveLength(1);
    expect(cannot[0]!.fields).toMatchObject({ hostId: 'host-a', reason: first.reason, egressSupported: true });

    // Pongs repeat the agent's current status: the same one logs no new warn line.
    let now: NonNullable<AgentMessage['pong']>['egress'] = { supported: true, enforcing: false, reason: hostile, unmappedTasks: 3 };
    let pongs = 0;
    stream.call.on('data', (m) => {
      if (!m.ping) return;
      pongs++;
      stream.send({ pong: { nonce: m.ping.nonce, egress: now } });
    });
    await waitFor('a few pongs', () => pongs >= 3);
    expect(log.warnings.filter((w) => w.message.includes('cannot enforce egress'))).toHaveLength(1);

    // The Ack says it enforces now (and so do the pongs after it): recorded, and one info line.
    now = { supported: true, enforcing: true, reason: 'ignored while enforcing', mappedTasks: 3 };
    stream.send({ ack: { version: s1.version, seq: 1, egress: now } });
    await waitFor('enforcing', () => service.agent('host-a')?.egress?.enforcing === true);
    expect(service.agent('host-a')?.egress).toEqual({ supported: true, enforcing: true, reason: '', mappedTasks: 3, unmappedTasks: 0 });
    const pongsThen = pongs;
    await waitFor('more pongs', () => pongs >= pongsThen + 3);
    expect(service.agent('host-a')?.egress?.enforcing).toBe(true);
    expect(log.infos.filter((m) => m.includes('enforces egress'))).toHaveLength(1);
  });

  it('a reconnect with the same reason logs no second warn line; another reason does; an agent without egress support is one too', async () => {
    const log = recordingLogger();
    const source = new MemoryStateSource();
    source.set(egressState(1));
    const { service, target } = await controller(source, { logger: log.logger });
    const cannot = () => log.warnings.filter((w) => w.message.includes('cannot enforce egress')).map((w) => `${String(w.fields['hostId'])}: ${String(w.fields['reason'])}`);
    for (const reason of ['Mesos agent API unreachable', 'Mesos agent API unreachable', 'xt_cgroup missing']) {
      const stream = raw(target);
      stream.send(hello('host-a', { egress: { supported: true, enforcing: false, reason } }));
      await waitFor('snapshot', () => states(stream).length === 1);
      await waitFor('recorded', () => service.agent('host-a')?.egress?.reason === reason);
      stream.close();
      await waitFor('disconnected', () => service.agent('host-a')?.connected === false);
    }
    const old = raw(target);
    old.send(hello('host-b'));
    await waitFor('host-b recorded', () => service.agent('host-b')?.egress !== undefined);
    expect(cannot()).toEqual(['host-a: Mesos agent API unreachable', 'host-a: xt_cgroup missing', `host-b: ${UNSUPPORTED_REASON}`]);
    // "Enforcing" without "supported" is not believed.
    const odd = raw(target);
    odd.send(hello('host-c', { egress: { supported: false, enforcing: true, mappedTasks: 2 } }));
    await waitFor('host-c recorded', () => service.agent('host-c')?.egress !== undefined);
    expect(service.agent('host-c')?.egress).toEqual({ supported: false, enforcing: false, reason: UNSUPPORTED_REASON, mappedTasks: 2, unmappedTasks: 0 });
  });
});
