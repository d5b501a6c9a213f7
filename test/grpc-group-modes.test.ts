/**
 * Per-group mode over the real Sync stream (loopback gRPC, port 0, plaintext), the test playing
 * the agent by hand: an agent whose Hello does not announce `group_modes` (a release before
 * per-group mode) is sent states without the kinds audit-tcp, audit-udp and egress-audit and, when
 * one had a member, in mode audit (so a staged group is never enforced by an agent that cannot
 * tell), versioned as those sets and that mode; an agent that announces them gets the full state.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { AUDIT_KINDS, SET_KINDS, type DesiredState } from '../src/compile/desired-state.js';
import { applyDelta } from '../src/compile/state-delta.js';
import { stateVersion } from '../src/compile/state-version.js';
import { agentView, wireKinds } from '../src/grpc/agent-view.js';
import type { AgentMessage } from '../src/grpc/proto.js';
import { SyncService } from '../src/grpc/sync-service.js';
import { deltaFromMessage, stateFromSnapshot } from '../src/grpc/wire-state.js';
import { openRawStream, startServer, stopServer, waitFor, type RawStream } from './support/grpc-harness.js';
import { MemoryStateSource, PatchingSource, makeState } from './support/memory-state-source.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function controller(source: MemoryStateSource): Promise<{ service: SyncService; target: string }> {
  const service = new SyncService(source, { insecure: true });
  const running = await startServer((server) => service.addToServer(server));
  cleanups.push(() => service.close(), () => stopServer(running));
  return { service, target: running.target };
}

function raw(target: string, groupModes: boolean): RawStream {
  const stream = openRawStream(target);
  cleanups.push(() => stream.close());
  const hello: AgentMessage = { hello: { hostId: 'host-a', addresses: [], agentVersion: 'raw', appliedVersion: '', egress: { supported: true, enforcing: true }, groupModes } };
  stream.send(hello);
  return stream;
}

const states = (s: RawStream) => s.messages.filter((m) => m.msg === 'snapshot' || m.msg === 'delta');
const kindsOf = (sets: readonly { kind: string }[]): string[] => sets.map((s) => s.kind);
const isAuditKind = (kind: string): boolean => (AUDIT_KINDS as readonly string[]).includes(kind);

/** The n-th state of host-a; with `staged`, port 31000+n's app is audited while the rest enforces. */
function stagedState(n: number, staged = true): DesiredState {
  const port = String(31000 + n);
  return makeState('host-a', {
    'managed-tcp': [port, '5432'],
    'allow-ip4': [`10.0.0.9,tcp:${port}`],
    'egress-task': [`/shop/web|shop_web.${n}`],
    'egress-managed4': [`10.0.0.2,tcp:${port}`],
    ...(staged ? { 'audit-tcp': [port], 'egress-audit': ['/shop/web'] } : {}),
  });
}

/** What an agent without per-group mode must be sent: the audit kinds emptied, mode audit when one had a member. */
function oldView(state: DesiredState): DesiredState {
  const sets = Object.fromEntries(SET_KINDS.map((k) => [k, isAuditKind(k) ? [] : [...state.sets[k]]])) as unknown as DesiredState['sets'];
  const mode = AUDIT_KINDS.some((k) => state.sets[k].length > 0) ? 'audit' : state.mode;
  return { hostId: state.hostId, mode, sets, version: stateVersion(mode, sets) };
}


describe('the version of a state with per-group mode members', () => {
  it('changes with each audit member, and a state without them keeps its version', () => {
    const plain = stagedState(1, false);
    const staged = stagedState(1);
    expect(staged.version).not.toBe(plain.version);
    const onlyPort = makeState('host-a', { ...plain.sets, 'audit-tcp': ['31001'] });
    expect(new Set([plain.version, staged.version, onlyPort.version]).size).toBe(3);
    // The same members in another kind are another state.
    const udp = makeState('host-a', { ...plain.sets, 'audit-udp': ['31001'] });
    expect(udp.version).not.toBe(onlyPort.version);
  });

  it('the view of an agent without group modes is the state itself when nothing is staged', () => {
    const plain = stagedState(1, false);
    expect(agentView(plain, { egress: true, groupModes: false })).toBe(plain);
    expect(wireKinds({ egress: true, groupModes: false }).filter(isAuditKind)).toEqual([]);
    expect(wireKinds({ egress: true, groupModes: true })).toEqual(SET_KINDS);
  });
});

describe('an agent without per-group mode (Hello without group_modes)', () => {
  it('is sent the state without the audit kinds, in mode audit, and deltas between those views', async () => {
    const source = new MemoryStateSource();
    const [s1, s2] = [stagedState(1), stagedState(2)];
    source.set(s1);
    const { service, target } = await controller(source);
    const stream = raw(target, false);
    await waitFor('snapshot', () => states(stream).length === 1);
    const snapshot = states(stream)[0]!.snapshot!;
    expect(kindsOf(snapshot.sets).filter(isAuditKind)).toEqual([]);
    expect(snapshot.mode).toBe('audit');
    expect(stateFromSnapshot('host-a', snapshot)).toEqual(oldView(s1));
    stream.send({ ack: { version: oldView(s1).version, seq: 1 } });
    await waitFor('in sync on its view', () => service.agent('host-a')?.inSync === true);

    source.set(s2);
    await waitFor('delta', () => states(stream).length === 2);
    const delta = states(stream)[1]!.delta!;
    expect([...kindsOf(delta.adds), ...kindsOf(delta.removes)].filter(isAuditKind)).toEqual([]);
    expect(delta).toMatchObject({ baseVersion: oldView(s1).version, version: oldView(s2).version, mode: 'audit' });
    expect(applyDelta(oldView(s1), deltaFromMessage('host-a', delta))).toEqual(oldView(s2));
  });

  it("a delta from the source's own patch is cut to the view when a group starts being staged", async () => {
    const source = new PatchingSource();
    const [s0, s1] = [stagedState(0, false), stagedState(1)];
    source.set(s0);
    const { service, target } = await controller(source);
    const stream = raw(target, false);
    await waitFor('snapshot', () => states(stream).length === 1);
    expect(states(stream)[0]!.snapshot!).toMatchObject({ version: s0.version, mode: 'enforce' });
    stream.send({ ack: { version: s0.version, seq: 1 } });
    await waitFor('in sync', () => service.agent('host-a')?.inSync === true);

    source.set(s1);
    await waitFor('delta', () => states(stream).length === 2);
    expect(source.patches).toBe(1);
    const delta = states(stream)[1]!.delta!;
    expect([...kindsOf(delta.adds), ...kindsOf(delta.removes)].filter(isAuditKind)).toEqual([]);
    expect(delta).toMatchObject({ baseVersion: s0.version, version: oldView(s1).version, mode: 'audit' });
    expect(applyDelta(s0, deltaFromMessage('host-a', delta))).toEqual(oldView(s1));
  });
});

describe('an agent with per-group mode', () => {
  it('gets the full state, audit kinds, mode and version included', async () => {
    const source = new MemoryStateSource();
    const s1 = stagedState(1);
    source.set(s1);
    const { service, target } = await controller(source);
    const stream = raw(target, true);
    await waitFor('snapshot', () => states(stream).length === 1);
    const snapshot = states(stream)[0]!.snapshot!;
    expect(kindsOf(snapshot.sets)).toEqual([...SET_KINDS]);
    expect(stateFromSnapshot('host-a', snapshot)).toEqual(s1);
    expect(snapshot.mode).toBe('enforce');
    stream.send({ ack: { version: s1.version, seq: 1 } });
    await waitFor('in sync', () => service.agent('host-a')?.inSync === true);
  });
});
