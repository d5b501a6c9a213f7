/**
 * Flow records on the wire, as pure conversions (src/grpc/flow-wire.ts): the controller's
 * validation of every field (each bad value skipped with a bounded reason, the rest used), the
 * agent's splitting of one read into messages, the cleaning of an agent's FlowStatus, and the
 * intake's counting and rate-limited logging (flow-intake.ts) on a controlled clock.
 */
import { describe, expect, it } from 'vitest';
import type { FlowEntry, FlowSink } from '../src/flows/flow-types.js';
import { FlowIntake, LOG_EVERY_MS } from '../src/grpc/flow-intake.js';
import {
  FLOW_REPORT_MAX_BYTES,
  FLOW_REPORT_MAX_RECORDS,
  decodeFlowReport,
  decodeRecord,
  flowRecordMessage,
  flowReportMessages,
  flowStatusInfo,
  recordSizeBound,
} from '../src/grpc/flow-wire.js';
import type { FlowRecord__Output } from '../src/grpc/generated/portcullis/v1/FlowRecord.js';

const NOW = 1_790_000_000_000;

function entry(over: Partial<FlowEntry> = {}): FlowEntry {
  return {
    direction: 'ingress',
    verdict: 'denied',
    source: '10.0.0.7',
    destination: '',
    protocol: 'tcp',
    port: 31000,
    packets: 3,
    bytes: 180,
    firstSeenMs: NOW - 5000,
    lastSeenMs: NOW - 1000,
    ...over,
  };
}

/** A record as the controller decodes it off the wire (every field present). */
function wire(over: Partial<FlowRecord__Output> = {}): FlowRecord__Output {
  return { ...(flowRecordMessage(entry()) as FlowRecord__Output), ...over };
}

describe('decodeRecord', () => {
  it('takes a good ingress and egress record, addresses in canonical form', () => {
    expect(decodeRecord(wire(), NOW)).toEqual(entry());
    expect(decodeRecord(wire({ source: 'FD00:0:0::07' }), NOW)).toEqual(entry({ source: 'fd00::7' }));
    const egress = wire({ direction: 'egress', verdict: 'audit', source: '/team-a/web', destination: '10.0.0.9', protocol: 'udp', port: 53 });
    expect(decodeRecord(egress, NOW)).toEqual(entry({ direction: 'egress', verdict: 'audit', source: '/team-a/web', destination: '10.0.0.9', protocol: 'udp', port: 53 }));
    expect(decodeRecord(wire({ packets: 2 ** 53, bytes: 0, firstSeenMs: NOW - 86_400_000, lastSeenMs: NOW + 86_400_000 }), NOW)).toMatchObject({ packets: 2 ** 53, bytes: 0 });
  });

  it.each<[string, Partial<FlowRecord__Output>, RegExp]>([
    ['an unknown direction', { direction: 'sideways' }, /direction 'sideways' is not ingress or egress/],
    ['an unknown verdict', { verdict: 'maybe' }, /verdict 'maybe' is not allowed, denied or audit/],
    ['an unknown protocol', { protocol: 'sctp' }, /protocol 'sctp' is not tcp or udp/],
    ['port 0', { port: 0 }, /port 0 is not 1-65535/],
    ['port 65536', { port: 65_536 }, /port 65536 is not 1-65535/],
    ['an ingress source that is no address', { source: '10.0.0.300' }, /source '10.0.0.300' is not an IP address/],
    ['an ingress source that is a CIDR', { source: '10.0.0.0/8' }, /source '10.0.0.0\/8' is not an IP address/],
    ['an ingress record naming a destination', { destination: '10.0.0.2' }, /must be empty for ingress/],
    ['an egress source that is no app id', { direction: 'egress', source: 'web', destination: '10.0.0.2' }, /source 'web' is not an app id/],
    ['an egress source with a separator', { direction: 'egress', source: '/a|b', destination: '10.0.0.2' }, /is not an app id/],
    ['an egress destination that is no address', { direction: 'egress', source: '/web', destination: 'db.local' }, /destination 'db.local' is not an IP address/],
    ['negative packets', { packets: -1 }, /packets -1 is not a count/],
    ['packets beyond 2^53', { packets: 2 ** 53 + 2 }, /packets \d+ is not a count/],
    ['fractional bytes', { bytes: 1.5 }, /bytes 1.5 is not a count/],
    ['a first-seen time more than a day ago', { firstSeenMs: NOW - 86_400_001 }, /first_seen_ms \d+ is not within a day of now/],
    ['a last-seen time more than a day ahead', { lastSeenMs: NOW + 86_400_001 }, /last_seen_ms \d+ is not within a day of now/],
  ])('refuses %s', (_label, over, reason) => {
    const result = decodeRecord(wire(over), NOW);
    expect(typeof result).toBe('string');
    expect(result).toMatch(reason);
  });

  it('echoes at most 100 cleaned characters of hostile text', () => {
    const hostile = `<script>\u001b[31m${'x'.repeat(5000)}`;
    const reason = decodeRecord(wire({ verdict: hostile }), NOW) as string;
    expect(reason).not.toMatch(/[\u0000-\u001f]/);
    expect(reason.length).toBeLessThan(160);
    expect(decodeRecord(wire({ source: `10.0.0.1${' '.repeat(10_000)}x` }), NOW)).toMatch(/is not an IP address/);
  });
});

describe('decodeFlowReport', () => {
  it('uses the good records and lost counts and names each bad one', () => {
    const report = {
      records: [wire(), wire({ port: 0 }), wire({ source: '10.0.0.8' })],
      lost: [
        { direction: 'ingress', verdict: 'denied', family: 4, packets: 12 },
        { direction: 'ingress', verdict: 'denied', family: 5, packets: 1 },
      ],
      more: true,
    };
    const decoded = decodeFlowReport(report, NOW);
    expect(decoded.entries.map((e) => e.source)).toEqual(['10.0.0.7', '10.0.0.8']);
    expect(decoded.lost).toEqual([{ direction: 'ingress', verdict: 'denied', family: 4, packets: 12 }]);
    expect(decoded.rejected).toEqual([
      { index: 1, reason: 'port 0 is not 1-65535' },
      { index: -2, reason: 'lost: family 5 is not 4 or 6' },
    ]);
    expect(decoded.more).toBe(true);
  });
});

describe('flowReportMessages', () => {
  it('sends nothing for an empty read, and lost counts alone when only those changed', () => {
    expect(flowReportMessages([], [])).toEqual([]);
    expect(flowReportMessages([], [{ direction: 'egress', verdict: 'audit', family: 6, packets: 0 }])).toEqual([]);
    expect(flowReportMessages([], [{ direction: 'egress', verdict: 'audit', family: 6, packets: 4 }])).toEqual([
      { records: [], lost: [{ direction: 'egress', verdict: 'audit', family: 6, packets: 4 }], more: false },
    ]);
  });

  it('splits at the record limit, every message but the last with more, lost in the first', () => {
    const entries = Array.from({ length: 7 }, (_, i) => entry({ port: 1000 + i }));
    const messages = flowReportMessages(entries, [{ direction: 'ingress', verdict: 'allowed', family: 4, packets: 2 }], { maxRecords: 3, maxBytes: 1e9 });
    expect(messages.map((m) => m.records?.length)).toEqual([3, 3, 1]);
    expect(messages.map((m) => m.more)).toEqual([true, true, false]);
    expect(messages.map((m) => m.lost?.length)).toEqual([1, 0, 0]);
    expect(messages.flatMap((m) => m.records ?? []).map((r) => r.port)).toEqual(entries.map((e) => e.port));
  });

  it('splits at the byte budget, never leaving a message empty', () => {
    const long = `/${'a'.repeat(400)}`;
    const entries = Array.from({ length: 10 }, () => entry({ direction: 'egress', source: long, destination: '10.0.0.2' }));
    const size = recordSizeBound(entries[0] as FlowEntry);
    const messages = flowReportMessages(entries, [], { maxRecords: 100, maxBytes: size * 4 });
    expect(messages.map((m) => m.records?.length)).toEqual([4, 4, 2]);
    expect(flowReportMessages(entries.slice(0, 2), [], { maxRecords: 100, maxBytes: 1 }).map((m) => m.records?.length)).toEqual([1, 1]);
  });

  it('keeps the defaults under grpc-js 4 MiB receive limit', () => {
    expect(FLOW_REPORT_MAX_RECORDS).toBe(65_536);
    expect(FLOW_REPORT_MAX_BYTES).toBeLessThan(4 * 1024 * 1024);
  });
});

describe('flowStatusInfo', () => {
  it('is null for an agent that sends none, and cleans what one sends', () => {
    expect(flowStatusInfo(null)).toBeNull();
    expect(flowStatusInfo({ recording: true, reason: 'ignored', intervalSeconds: 10, maxEntries: 65_536 })).toEqual({ recording: true, reason: '', intervalSeconds: 10, maxEntries: 65_536 });
    const off = flowStatusInfo({ recording: false, reason: `--flow-interval off\n\u202e${'z'.repeat(500)}`, intervalSeconds: -3, maxEntries: 1.5 });
    expect(off?.reason).toMatch(/^--flow-interval off /);
    expect(off?.reason).not.toMatch(/[\n\u202e]/);
    expect(off?.reason.length).toBeLessThanOrEqual(200);
    expect(off).toMatchObject({ recording: false, intervalSeconds: 0, maxEntries: 0 });
    expect(flowStatusInfo({ recording: false, reason: '', intervalSeconds: 10, maxEntries: 1 })?.reason).toBe('the agent gave no reason');
  });
});

describe('FlowIntake', () => {
  it('counts every rejected record and logs at most once a minute per host, saying how many went unlogged', () => {
    let now = NOW;
    const warns: Record<string, unknown>[] = [];
    const logger = { debug: () => undefined, info: () => undefined, warn: (fields: object) => void warns.push(fields as Record<string, unknown>) };
    const kept: string[] = [];
    const sink: FlowSink = { ingest: (hostId, entries) => void kept.push(...entries.map((e) => `${hostId} ${e.source}`)) };
    const intake = new FlowIntake(sink, logger, () => now);
    const bad = (n: number) => ({ records: [...Array.from({ length: n }, () => wire({ port: 0 })), wire()], lost: [], more: false });
    intake.receive('h1', bad(2));
    intake.receive('h1', bad(3));
    intake.receive('h2', bad(1));
    now += LOG_EVERY_MS - 1;
    intake.receive('h1', bad(1));
    expect(warns.map((w) => [w['hostId'], w['rejected'], w['unloggedSinceLast']])).toEqual([
      ['h1', 2, 0],
      ['h2', 1, 0],
    ]);
    now += 1;
    intake.receive('h1', bad(4));
    expect(warns[2]).toMatchObject({ hostId: 'h1', rejected: 4, unloggedSinceLast: 4, reason: 'port 0 is not 1-65535' });
    expect(intake.rejected).toBe(2 + 3 + 1 + 1 + 4);
    expect(kept).toEqual(['h1 10.0.0.7', 'h1 10.0.0.7', 'h2 10.0.0.7', 'h1 10.0.0.7', 'h1 10.0.0.7']);
  });
});
