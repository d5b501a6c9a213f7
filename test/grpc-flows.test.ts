/**
 * Flows on the Sync stream over real gRPC (loopback, port 0): the agent's SyncClient sends
 * FlowReports from a FlowSource only where the controller accepts them, split when large; the
 * controller's SyncService validates every record, skips and counts the bad ones without ending
 * the stream, hands the good ones to its FlowSink, and keeps each agent's FlowStatus. Both
 * directions of compatibility with the previous release are played: a controller double that
 * never says accepts_flow_reports, and a raw agent whose Hello has no FlowStatus.
 */
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { SyncClient } from '../agent/sync-client.js';
import type { FlowEntry, FlowOverflow, FlowSink, FlowSource, FlowStatusInfo } from '../src/flows/flow-types.js';
import { FLOW_REPORT_MAX_RECORDS, flowRecordMessage } from '../src/grpc/flow-wire.js';
import { loadSyncProto, type AgentMessage__Output, type ControllerMessage } from '../src/grpc/proto.js';
import { SyncService, type SyncServiceOptions } from '../src/grpc/sync-service.js';
import { snapshotMessage } from '../src/grpc/wire-state.js';
import { openRawStream, startServer, stopServer, waitFor, type RawStream } from './support/grpc-harness.js';
import { logCapture } from './support/log-capture.js';
import { MemoryStateSource, nthState } from './support/memory-state-source.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const RECORDING: FlowStatusInfo = { recording: true, reason: '', intervalSeconds: 10, maxEntries: 65_536 };

/** A FlowSource whose records are queued by the test; `take` hands out at most `max` of them. */
class FakeFlowSource implements FlowSource {
  readonly queued: FlowEntry[] = [];
  overflow: FlowOverflow[] = [];
  readonly takes: number[] = [];
  info: FlowStatusInfo = RECORDING;

  take(max: number): { entries: FlowEntry[]; overflow: FlowOverflow[]; more: boolean } {
    const entries = this.queued.splice(0, max);
    this.takes.push(entries.length);
    const overflow = this.overflow;
    this.overflow = [];
    return { entries, overflow, more: this.queued.length > 0 };
  }

  status(): FlowStatusInfo {
    return this.info;
  }
}

/** A FlowSink that keeps every call. */
class RecordingSink implements FlowSink {
  readonly calls: { hostId: string; entries: FlowEntry[]; lost: FlowOverflow[]; receivedAtMs: number }[] = [];
  ingest(hostId: string, entries: readonly FlowEntry[], lost: readonly FlowOverflow[], receivedAtMs: number): void {
    this.calls.push({ hostId, entries: [...entries], lost: [...lost], receivedAtMs });
  }
  get entries(): FlowEntry[] {
    return this.calls.flatMap((c) => c.entries);
  }
}

function flow(i: number, over: Partial<FlowEntry> = {}): FlowEntry {
  const now = Date.now();
  return {
    direction: 'ingress',
    verdict: 'audit',
    source: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`,
    destination: '',
    protocol: 'tcp',
    port: 31000,
    packets: 1 + (i % 7),
    bytes: 60 * (1 + (i % 7)),
    firstSeenMs: now - 5000,
    lastSeenMs: now,
    ...over,
  };
}

async function controller(options: SyncServiceOptions = {}) {
  const source = new MemoryStateSource();
  source.set(nthState('h1', 1));
  const service = new SyncService(source, { insecure: true, ...options });
  const running = await startServer((server) => service.addToServer(server));
  cleanups.push(() => service.close(), () => stopServer(running));
  return { service, running, source };
}

function agent(target: string, flows: FlowSource | undefined, extra: Partial<ConstructorParameters<typeof SyncClient>[0]> = {}): SyncClient {
  const client = new SyncClient({
    target,
    credentials: grpc.credentials.createInsecure(),
    hostId: 'h1',
    agentVersion: 'test',
    apply: async () => undefined,
    backoff: { initialMs: 20, maxMs: 200 },
    ...(flows ? { flows, flowIntervalMs: 20 } : {}),
    ...extra,
  });
  cleanups.push(() => client.close());
  client.start();
  return client;
}

function raw(target: string): RawStream {
  const stream = openRawStream(target);
  cleanups.push(() => stream.close());
  return stream;
}

/**
 * A controller of the previous release, as far as flows go: it answers Hello with a Snapshot that
 * has no accepts_flow_reports (or one that has, with `accepts`), and pings every 50 ms; it records
 * every agent message.
 */
async function controllerDouble(accepts: boolean) {
  const received: AgentMessage__Output[] = [];
  const state = nthState('h1', 2);
  const timers: NodeJS.Timeout[] = [];
  const running = await startServer((server) => {
    server.addService(loadSyncProto().service, {
      Sync: (call: grpc.ServerDuplexStream<AgentMessage__Output, ControllerMessage>) => {
        let nonce = 0;
        call.on('data', (m: AgentMessage__Output) => {
          received.push(m);
          if (m.msg === 'hello') call.write({ snapshot: { ...snapshotMessage(state, 1), ...(accepts ? { acceptsFlowReports: true } : {}) } });
          if (m.msg === 'ack') timers.push(setInterval(() => call.write({ ping: { nonce: ++nonce } }), 50));
        });
        call.on('error', () => undefined);
      },
    });
  });
  cleanups.push(() => timers.forEach((t) => clearInterval(t)), () => stopServer(running));
  return { running, received, of: (kind: string) => received.filter((m) => m.msg === kind) };
}

describe('the new agent against a controller double (of the previous release, or one that accepts reports)', () => {
  it('sends no FlowReport where no Snapshot said accepts_flow_reports, and takes nothing from its source', async () => {
    const double = await controllerDouble(false);
    const source = new FakeFlowSource();
    source.queued.push(flow(1), flow(2));
    agent(double.running.target, source);
    // 8 pongs at a 50 ms ping interval: at least 350 ms, some 17 report intervals of 20 ms.
    await waitFor('eight pongs', () => double.of('pong').length >= 8);
    expect(double.of('flowReport')).toEqual([]);
    expect(source.takes).toEqual([]);
    expect(source.queued).toHaveLength(2);
    const hello = double.of('hello')[0]?.hello;
    expect(hello?.flows).toEqual(RECORDING);
    expect(hello?.groupModes).toBe(false);
    expect(double.of('ack')[0]?.ack?.flows).toEqual(RECORDING);
    expect(double.of('pong')[0]?.pong?.flows).toEqual(RECORDING);
  });

  it('an agent without a flow source says nothing of flows (as the previous release), and groupModes when told', async () => {
    const double = await controllerDouble(true);
    agent(double.running.target, undefined, { groupModes: true });
    await waitFor('a pong', () => double.of('pong').length >= 1);
    const hello = double.of('hello')[0]?.hello;
    expect(hello?.flows).toBeNull();
    expect(hello?.groupModes).toBe(true);
    expect(double.of('pong')[0]?.pong?.flows).toBeNull();
  });

  it('reports once a Snapshot said accepts_flow_reports: the records as taken, lost counts included', async () => {
    const double = await controllerDouble(true);
    const source = new FakeFlowSource();
    const entries = [flow(1), flow(2, { direction: 'egress', source: '/team/web', destination: 'fd00::2', verdict: 'denied', protocol: 'udp', port: 53 })];
    source.queued.push(...entries);
    source.overflow = [{ direction: 'ingress', verdict: 'denied', family: 4, packets: 9 }];
    agent(double.running.target, source);
    await waitFor('a flow report', () => double.of('flowReport').length >= 1);
    const report = double.of('flowReport')[0]?.flowReport;
    expect(report?.records).toEqual(entries.map((e) => flowRecordMessage(e)));
    expect(report?.lost).toEqual([{ direction: 'ingress', verdict: 'denied', family: 4, packets: 9 }]);
    expect(report?.more).toBe(false);
    expect(source.takes[0]).toBe(2);
    // Further intervals with nothing new send nothing.
    await waitFor('five pongs', () => double.of('pong').length >= 5);
    expect(double.of('flowReport')).toHaveLength(1);
  });
  it('a source that throws once is logged and read again at the next interval', async () => {
    const double = await controllerDouble(true);
    const { lines, logger } = logCapture();
    const source = new FakeFlowSource();
    source.queued.push(flow(1));
    const take = source.take.bind(source);
    let calls = 0;
    source.take = (max) => {
      calls += 1;
      if (calls === 1) throw new Error('ipset: command failed');
      return take(max);
    };
    agent(double.running.target, source, { logger });
    await waitFor('a flow report', () => double.of('flowReport').length >= 1);
    expect(double.of('flowReport')[0]?.flowReport?.records.map((r) => r.source)).toEqual([flow(1).source]);
    expect(lines.find((l) => l['msg'] === 'sync: cannot read the recorded flows')).toMatchObject({ level: 40, hostId: 'h1', error: 'ipset: command failed' });
  });
});

describe('an agent of the previous release and the new controller', () => {
  it('is recorded with flows null, is told the controller accepts reports, and works as before', async () => {
    const sink = new RecordingSink();
    const { service, running } = await controller({ flowSink: sink });
    const stream = raw(running.target);
    stream.send({ hello: { hostId: 'h1', agentVersion: 'old', appliedVersion: '' } });
    await waitFor('a snapshot', () => stream.of('snapshot').length === 1);
    const snapshot = stream.of('snapshot')[0]?.snapshot;
    expect(snapshot?.acceptsFlowReports).toBe(true);
    stream.send({ ack: { version: snapshot?.version ?? '', seq: snapshot?.seq ?? 0 } });
    await waitFor('in sync', () => service.agent('h1')?.inSync === true);
    expect(service.agent('h1')?.flows).toBeNull();
    expect(sink.calls).toEqual([]);
  });

  it('a controller without a sink says accepts_flow_reports false and drops a report it gets, stream intact', async () => {
    const { lines, logger } = logCapture();
    const { service, running, source } = await controller({ logger });
    const stream = raw(running.target);
    stream.send({ hello: { hostId: 'h1', agentVersion: 'new', appliedVersion: '', flows: RECORDING } });
    await waitFor('a snapshot', () => stream.of('snapshot').length === 1);
    expect(stream.of('snapshot')[0]?.snapshot?.acceptsFlowReports).toBe(false);
    const first = stream.of('snapshot')[0]?.snapshot;
    stream.send({ ack: { version: first?.version ?? '', seq: first?.seq ?? 0 } });
    stream.send({ flowReport: { records: [flowRecordMessage(flow(1))] } });
    source.set(nthState('h1', 3));
    await waitFor('a delta after the report', () => stream.of('delta').length === 1);
    expect(stream.of('delta')[0]?.delta?.acceptsFlowReports).toBe(false);
    expect(service.agent('h1')).toMatchObject({ connected: true, flows: RECORDING });
    expect(lines.filter((l) => /unexpected|rejected/.test(String(l['msg'])))).toEqual([]);
  });
});

describe('the new agent and the new controller', () => {
  it('delivers the records to the sink under the host id, with the agent status in /status and its changes', async () => {
    const sink = new RecordingSink();
    const { service, running } = await controller({ flowSink: sink, pingIntervalMs: 50 });
    const source = new FakeFlowSource();
    source.queued.push(flow(1), flow(2));
    agent(running.target, source);
    await waitFor('two records at the sink', () => sink.entries.length === 2);
    expect(sink.calls[0]?.hostId).toBe('h1');
    expect(sink.entries).toEqual([flow(1, { firstSeenMs: sink.entries[0]?.firstSeenMs, lastSeenMs: sink.entries[0]?.lastSeenMs }), flow(2, { firstSeenMs: sink.entries[1]?.firstSeenMs, lastSeenMs: sink.entries[1]?.lastSeenMs })]);
    expect(service.agent('h1')?.flows).toEqual(RECORDING);
    source.info = { recording: false, reason: 'the kernel refused the recording rules', intervalSeconds: 10, maxEntries: 65_536 };
    await waitFor('the new status from a pong', () => service.agent('h1')?.flows?.recording === false);
    expect(service.agent('h1')?.flows?.reason).toBe('the kernel refused the recording rules');
  });

  it('an agent already holding the desired version gets one empty Delta saying reports are taken, acks it without a kernel write, and reports', async () => {
    const sink = new RecordingSink();
    const { service, running, source: states } = await controller({ flowSink: sink });
    const held = states.current('h1');
    const source = new FakeFlowSource();
    source.queued.push(flow(1));
    const applied: string[] = [];
    const events: string[] = [];
    agent(running.target, source, { held: () => held, apply: async (s, d) => void applied.push(`${d ? 'delta' : 'snapshot'} ${s.version}`), onEvent: (e) => void events.push(e.type) });
    await waitFor('the record at the sink', () => sink.entries.length === 1);
    expect(applied).toEqual([]);
    await waitFor('in sync', () => service.agent('h1')?.inSync === true);
    expect(events).not.toContain('applied');
    // The next change is a Delta on the version the agent held (it was remembered), applied.
    states.set(nthState('h1', 5));
    await waitFor('the change applied', () => applied.length === 1);
    expect(applied).toEqual([`delta ${nthState('h1', 5).version}`]);
  });

  it('an agent of the previous release already in sync is sent no empty Delta', async () => {
    const sink = new RecordingSink();
    const { service, running, source: states } = await controller({ flowSink: sink, pingIntervalMs: 50, maxMissedPongs: 100 });
    const stream = raw(running.target);
    stream.send({ hello: { hostId: 'h1', agentVersion: 'old', appliedVersion: states.current('h1')?.version ?? '' } });
    await waitFor('three pings', () => stream.of('ping').length >= 3);
    expect(stream.messages.filter((m) => m.msg !== 'ping')).toEqual([]);
    expect(service.agent('h1')?.inSync).toBe(true);
  });

  it('an empty Delta the agent refuses (it does not hold that version) is followed by a Snapshot', async () => {
    const { running, source: states } = await controller({ flowSink: new RecordingSink() });
    const stream = raw(running.target);
    const version = states.current('h1')?.version ?? '';
    stream.send({ hello: { hostId: 'h1', agentVersion: 'x', appliedVersion: version, flows: RECORDING } });
    await waitFor('the empty delta', () => stream.of('delta').length === 1);
    const delta = stream.of('delta')[0]?.delta;
    expect(delta).toMatchObject({ baseVersion: version, version, adds: [], removes: [], acceptsFlowReports: true });
    stream.send({ applyError: { version, seq: delta?.seq ?? 0, message: 'no such base' } });
    await waitFor('a snapshot', () => stream.of('snapshot').length === 1);
    expect(stream.of('snapshot')[0]?.snapshot).toMatchObject({ version, acceptsFlowReports: true });
  });

  it('splits a read larger than one message (~4 MiB) and it arrives whole', async () => {
    const sink = new RecordingSink();
    const source = new FakeFlowSource();
    const app = `/${'team-'.repeat(60)}web`; // 304 characters: 20,000 records are some 8 MB
    const entries = Array.from({ length: 20_000 }, (_, i) => flow(i, { direction: 'egress', source: app, destination: '10.9.0.1', port: 1 + (i % 65_535) }));
    source.queued.push(...entries);
    const { running } = await controller({ flowSink: sink });
    agent(running.target, source);
    await waitFor('20,000 records at the sink', () => sink.entries.length >= 20_000, 30_000);
    expect(source.takes[0]).toBe(20_000);
    expect(sink.calls.length).toBeGreaterThanOrEqual(2);
    expect(sink.entries.map((e) => e.port)).toEqual(entries.map((e) => e.port));
    expect(sink.entries.every((e) => e.source === app)).toBe(true);
  }, 60_000);

  it('sends at most 65,536 records an interval; the rest goes in the next', async () => {
    const sink = new RecordingSink();
    const { running } = await controller({ flowSink: sink });
    const source = new FakeFlowSource();
    source.queued.push(...Array.from({ length: FLOW_REPORT_MAX_RECORDS + 1000 }, (_, i) => flow(i)));
    agent(running.target, source, { flowIntervalMs: 200 });
    await waitFor('every record at the sink', () => sink.entries.length === FLOW_REPORT_MAX_RECORDS + 1000, 30_000);
    expect(source.takes.slice(0, 2)).toEqual([FLOW_REPORT_MAX_RECORDS, 1000]);
    expect(new Set(sink.entries.map((e) => e.source)).size).toBe(FLOW_REPORT_MAX_RECORDS + 1000);
  }, 60_000);
});

describe('malformed flow records', () => {
  it('are skipped, counted and logged (rate-limited, with host id and reason); the good ones go on, the stream survives', async () => {
    const sink = new RecordingSink();
    const { lines, logger } = logCapture();
    const { service, running, source } = await controller({ flowSink: sink, logger });
    const stream = raw(running.target);
    stream.send({ hello: { hostId: 'h1', agentVersion: 'x', appliedVersion: '', flows: RECORDING } });
    await waitFor('a snapshot', () => stream.of('snapshot').length === 1);
    const snapshot = stream.of('snapshot')[0]?.snapshot;
    stream.send({ ack: { version: snapshot?.version ?? '', seq: snapshot?.seq ?? 0 } });
    const hostile = `<img src=x onerror=alert(1)>\u001b[2J${'A'.repeat(3000)}`;
    stream.send({
      flowReport: {
        records: [
          flowRecordMessage(flow(1)),
          { ...flowRecordMessage(flow(2)), port: 70_000 },
          { ...flowRecordMessage(flow(3)), direction: 'egress', source: hostile, destination: '10.0.0.1' },
          { ...flowRecordMessage(flow(4)), packets: 2 ** 60 },
          flowRecordMessage(flow(5)),
        ],
        lost: [{ direction: 'ingress', verdict: 'denied', family: 4, packets: 3 }, { direction: 'up', verdict: 'denied', family: 4, packets: 3 }],
      },
    });
    await waitFor('the good records at the sink', () => sink.entries.length === 2);
    expect(sink.entries.map((e) => e.source)).toEqual([flow(1).source, flow(5).source]);
    expect(sink.calls[0]?.lost).toEqual([{ direction: 'ingress', verdict: 'denied', family: 4, packets: 3 }]);
    expect(service.flowRecordsRejected()).toBe(4);
    // A second bad report within the minute is counted, not logged again.
    stream.send({ flowReport: { records: [{ ...flowRecordMessage(flow(6)), verdict: 'nope' }, flowRecordMessage(flow(7))] } });
    await waitFor('the next good record', () => sink.entries.length === 3);
    expect(service.flowRecordsRejected()).toBe(5);
    const warned = lines.filter((l) => l['msg'] === 'sync: flow records rejected');
    expect(warned).toHaveLength(1);
    expect(warned[0]).toMatchObject({ level: 40, hostId: 'h1', rejected: 4, record: 1, reason: 'port 70000 is not 1-65535' });
    const text = JSON.stringify(lines);
    expect(text).not.toContain('<img');
    // The stream is alive: a new state still arrives, the host is connected.
    source.set(nthState('h1', 4));
    await waitFor('a delta', () => stream.of('delta').length === 1);
    expect(stream.of('delta')[0]?.delta?.acceptsFlowReports).toBe(true);
    expect(service.agent('h1')?.connected).toBe(true);
    expect(stream.status).toBeUndefined();
  });

  it('a sink that throws costs that report only', async () => {
    const { lines, logger } = logCapture();
    let calls = 0;
    const sink: FlowSink = {
      ingest: () => {
        calls += 1;
        if (calls === 1) throw new Error('disk full');
      },
    };
    const { service, running } = await controller({ flowSink: sink, logger });
    const stream = raw(running.target);
    stream.send({ hello: { hostId: 'h1', agentVersion: 'x', appliedVersion: '', flows: RECORDING } });
    await waitFor('a snapshot', () => stream.of('snapshot').length === 1);
    stream.send({ flowReport: { records: [flowRecordMessage(flow(1))] } });
    stream.send({ flowReport: { records: [flowRecordMessage(flow(2))] } });
    await waitFor('two ingest calls', () => calls === 2);
    expect(lines.find((l) => l['msg'] === 'sync: flow records could not be kept')).toMatchObject({ hostId: 'h1', error: 'disk full' });
    expect(service.agent('h1')?.connected).toBe(true);
  });
});
