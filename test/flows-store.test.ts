import { describe, expect, it } from 'vitest';
import type { FlowEntry } from '../src/flows/flow-types.js';
import { FlowStore, firstOf, type Aggregate } from '../src/flows/flow-store.js';
import { FlowResolver } from '../src/flows/resolve-flow.js';
import { globMatch, parseFlowQuery, type FlowQuery } from '../src/flows/flow-query.js';
import { FlowDictWriter, FlowFileError, FlowFileReader, newFlowDict, windowFileLines } from '../src/flows/flow-file.js';
import { flowMetrics } from '../src/flows/flow-metrics.js';
import { app, cluster, group, host, network, policy, task } from './support/policy-builder.js';

const HOSTILE = '/x/"quoted"\\back\nline';
const T0 = Date.parse('2026-12-01T10:00:00Z');
const MIN = 60_000;
const cl = cluster(
  [host('h-web', '10.0.1.1'), host('h-api', '10.0.2.1'), host('h-db', '10.0.3.1')],
  [app('/shop/web', [{ name: 'http' }]), app('/shop/api', [{ name: 'http' }, { name: 'grpc' }]), app('/shop/db', [{ name: 'pg' }]), app(HOSTILE, [{}])],
  [task('web.1', '/shop/web', 'h-web', [31000]), task('api.1', '/shop/api', 'h-api', [31001, 31002]), task('db.1', '/shop/db', 'h-db', [31003]), task('x.1', HOSTILE, 'h-db', [31004])],
);
const pol = policy({ groups: [group('web', ['/shop/web'])], networks: [network('office', ['192.168.0.0/16'])], rules: [{ name: 'web-api', action: 'allow', from: ['web'], to: ['web'] }] });
const resolver = new FlowResolver(pol, cl);

function entry(e: Partial<FlowEntry>): FlowEntry {
  return { direction: 'ingress', verdict: 'allowed', source: '10.0.1.1', destination: '', protocol: 'tcp', port: 31001, packets: 1, bytes: 60, firstSeenMs: T0, lastSeenMs: T0, ...e };
}

function query(text: string, now: number): FlowQuery {
  const q = parseFlowQuery(new URLSearchParams(text), now);
  if (!q.ok) throw new Error(q.error);
  return q.query;
}

describe('FlowStore windows, retention and bound', () => {
  it('aggregates a key within a window and merges windows in a query', () => {
    const s = new FlowStore(() => resolver);
    s.ingest('h-api', [entry({ packets: 2, bytes: 120, firstSeenMs: T0 + 5, lastSeenMs: T0 + 10 })], [], T0 + 1000);
    s.ingest('h-api', [entry({ packets: 3, bytes: 180, firstSeenMs: T0 + 2, lastSeenMs: T0 + 8 })], [], T0 + 2000);
    expect(s.summary(T0 + 2000)).toMatchObject({ records: 1, windows: 1 });
    s.ingest('h-api', [entry({ packets: 4, bytes: 240, firstSeenMs: T0 + MIN, lastSeenMs: T0 + MIN + 1 })], [], T0 + MIN + 1000);
    expect(s.summary(T0 + MIN + 1000)).toMatchObject({ records: 2, windows: 2, oldest: new Date(T0).toISOString(), newest: new Date(T0 + MIN + 1000).toISOString() });
    const a = s.query(query('', T0 + MIN + 1000), T0 + MIN + 1000);
    expect(a.flows).toHaveLength(1);
    expect(a.flows[0]).toMatchObject({ packets: 9, bytes: 540, firstSeen: new Date(T0 + 2).toISOString(), lastSeen: new Date(T0 + MIN + 1).toISOString(), verdict: 'allowed', reportedBy: 'h-api' });
    expect(s.counters.records).toBe(3);
  });

  it('drops windows past the retention', () => {
    const s = new FlowStore(() => resolver, { retentionMs: 10 * MIN });
    s.ingest('h-api', [entry({})], [], T0);
    s.ingest('h-api', [entry({ port: 31002 })], [], T0 + 5 * MIN);
    expect(s.query(query('', T0 + 10 * MIN), T0 + 10 * MIN).flows).toHaveLength(2);
    expect(s.query(query('', T0 + 11 * MIN), T0 + 11 * MIN).flows.map((f) => f.destination.port)).toEqual([31002]);
    expect(s.summary(T0 + 20 * MIN)).toMatchObject({ records: 0, windows: 0 });
  });

  it('keeps at most maxRecords aggregates: the oldest window goes first, then new keys of a full window are dropped', () => {
    const s = new FlowStore(() => resolver, { maxRecords: 3 });
    s.ingest('h-api', [entry({ port: 31001 }), entry({ port: 31002 })], [], T0);
    s.ingest('h-api', [entry({ port: 31001, source: '10.0.3.1' }), entry({ port: 31002, source: '10.0.3.1' })], [], T0 + MIN);
    expect(s.summary(T0 + MIN)).toMatchObject({ records: 2, windows: 1 });
    expect(s.counters.dropped).toBe(2);
    s.ingest('h-api', [entry({ port: 31001, source: '8.8.8.8' }), entry({ port: 31002, source: '8.8.8.8' }), entry({ port: 31001, source: '10.0.3.1', packets: 5 })], [], T0 + MIN + 1);
    expect(s.summary(T0 + MIN + 1).records).toBe(3);
    expect(s.counters.dropped).toBe(3);
    const flows = s.query(query('', T0 + MIN + 1), T0 + MIN + 1).flows;
    expect(flows.map((f) => `${f.source.address}:${f.destination.port}=${f.packets}`).slice(0, 1)).toEqual(['10.0.3.1:31001=6']);
    expect(flows.slice(1).map((f) => `${f.source.address}:${f.destination.port}=${f.packets}`).sort()).toEqual(['10.0.3.1:31002=1', '8.8.8.8:31001=1']);
    expect(flows.some((f) => f.source.address === '8.8.8.8' && f.destination.port === 31002)).toBe(false);
  });

  it('drops and counts records while no policy and cluster are in force', () => {
    const s = new FlowStore(() => undefined);
    s.ingest('h-api', [entry({}), entry({ port: 31002 })], [], T0);
    expect(s.counters).toMatchObject({ dropped: 2, unresolved: 2, records: 0 });
    expect(s.summary(T0).records).toBe(0);
  });

  it('keeps lost counts per reporter, direction, verdict and family, merged over windows', () => {
    const s = new FlowStore(() => resolver);
    s.ingest('h-api', [], [{ direction: 'ingress', verdict: 'denied', family: 4, packets: 7 }], T0);
    s.ingest('h-api', [], [{ direction: 'ingress', verdict: 'denied', family: 4, packets: 5 }], T0 + MIN);
    s.ingest('h-db', [], [{ direction: 'egress', verdict: 'allowed', family: 6, packets: 1 }], T0 + MIN);
    const a = s.query(query('', T0 + MIN), T0 + MIN);
    expect(a.lost).toEqual([
      { reportedBy: 'h-api', direction: 'ingress', verdict: 'denied', family: 4, packets: 12 },
      { reportedBy: 'h-db', direction: 'egress', verdict: 'allowed', family: 6, packets: 1 },
    ]);
    expect(s.query(query('verdict=denied', T0 + MIN), T0 + MIN).lost).toHaveLength(1);
    expect(s.summary(T0 + MIN).lost).toBe(13);
  });

  it('gives the changed keys with their totals over the windows kept', () => {
    const s = new FlowStore(() => resolver, { retentionMs: 2 * MIN });
    s.ingest('h-api', [entry({ packets: 2 })], [], T0);
    s.ingest('h-api', [entry({ packets: 3 })], [], T0 + 1);
    expect(FlowStore.changedFlows(s.takeChanges(), query('', T0)).map((f) => f.packets)).toEqual([5]);
    expect(s.takeChanges()).toEqual([]);
    s.ingest('h-api', [entry({ packets: 1 }), entry({ port: 31003, verdict: 'denied', packets: 4 })], [], T0 + MIN);
    const second = s.takeChanges();
    expect(FlowStore.changedFlows(second, query('', T0)).map((f) => f.packets)).toEqual([6, 4]);
    expect(FlowStore.changedFlows(second, query('verdict=allowed', T0)).map((f) => f.packets)).toEqual([6]);
    // The first window goes: its 5 leave the total of the key.
    s.ingest('h-api', [entry({ packets: 1 })], [], T0 + 3 * MIN);
    expect(FlowStore.changedFlows(s.takeChanges(), query('', T0)).map((f) => f.packets)).toEqual([2]);
    expect(s.query(query('', T0 + 3 * MIN), T0 + 3 * MIN).flows.find((f) => f.destination.port === 31001)!.packets).toBe(2);
  });
});

describe('FlowStore queries', () => {
  const s = new FlowStore(() => resolver);
  s.ingest('h-api', [entry({ packets: 10 }), entry({ port: 31002, verdict: 'denied', source: '192.168.1.9', packets: 4, lastSeenMs: T0 + 30 * MIN })], [], T0 + 30 * MIN);
  const late = { firstSeenMs: T0 + 58 * MIN, lastSeenMs: T0 + 59 * MIN };
  s.ingest('h-db', [entry({ port: 31003, verdict: 'audit', source: '10.0.1.1', packets: 4, ...late }), entry({ port: 31004, verdict: 'denied', source: '8.8.8.8', packets: 1, ...late })], [], T0 + 59 * MIN);
  s.ingest('h-web', [entry({ direction: 'egress', source: '/shop/web', destination: '10.0.3.1', port: 31003, verdict: 'denied', packets: 2, ...late })], [], T0 + 59 * MIN);
  const now = T0 + 60 * MIN;
  const ports = (text: string): number[] => s.query(query(text, now), now).flows.map((f) => f.destination.port);

  it('sorts by packets descending, then key, and cuts at limit', () => {
    const all = s.query(query('', now), now).flows;
    expect(all.map((f) => f.packets)).toEqual([10, 4, 4, 2, 1]);
    const fours = all.filter((f) => f.packets === 4).map((f) => f.key);
    expect(fours).toEqual([...fours].sort());
    expect(ports('limit=2')).toEqual([31001, all[1]!.destination.port]);
  });

  it('filters from: app id (exact, glob), network, address, host id', () => {
    expect(ports('from=/shop/web')).toEqual([31001, 31003, 31003]);
    expect(ports('from=/shop/w*')).toEqual([31001, 31003, 31003]);
    expect(ports('from=/shop/')).toEqual([]);
    expect(ports('from=office')).toEqual([31002]);
    expect(ports('from=8.8.8.8')).toEqual([31004]);
    expect(ports('from=h-web')).toEqual([31001, 31003, 31003]);
  });

  it('filters to: app id (exact, glob) or host id; port by name or number', () => {
    expect(ports('to=/shop/api')).toEqual([31001, 31002]);
    expect(ports('to=*db')).toEqual([31003, 31003]);
    expect(ports('to=h-db')).toEqual([31003, 31003, 31004]);
    expect(ports('port=grpc')).toEqual([31002]);
    expect(ports('port=31003')).toEqual([31003, 31003]);
    expect(ports('to=/shop/api&port=http')).toEqual([31001]);
  });

  it('filters verdicts (comma list and repeated), direction, since and until', () => {
    expect(ports('verdict=denied,audit')).toEqual([31002, 31003, 31003, 31004]);
    expect(ports('verdict=denied&verdict=audit')).toEqual([31002, 31003, 31003, 31004]);
    expect(ports('direction=egress')).toEqual([31003]);
    expect(ports('since=5m')).toEqual([31003, 31003, 31004]);
    expect(ports(`until=${new Date(T0 + 40 * MIN).toISOString()}`)).toEqual([31001, 31002]);
    expect(ports(`since=${new Date(T0 + 20 * MIN).toISOString()}&until=30m`)).toEqual([31002]);
  });

  it('refuses a bad parameter with a clear error that repeats at most 100 characters', () => {
    const bad = (text: string): string => {
      const q = parseFlowQuery(new URLSearchParams(text), now);
      if (q.ok) throw new Error(`accepted ${text}`);
      return q.error;
    };
    expect(bad('verdict=maybe')).toMatch(/verdict "maybe" is not one of allowed, denied, audit/);
    expect(bad('since=yesterday')).toMatch(/neither an ISO 8601 time nor a duration/);
    expect(bad('limit=0')).toMatch(/limit "0" is not 1-100000/);
    expect(bad('limit=100001')).toMatch(/limit/);
    expect(bad('direction=up')).toMatch(/direction/);
    expect(bad('port=70000')).toMatch(/port "70000" is not 1-65535/);
    const long = bad(`nope${'<script>'.repeat(100)}=1`);
    expect(long).toMatch(/^unknown parameter/);
    expect(long.length).toBeLessThan(220);
  });
});

describe('globMatch', () => {
  it.each([
    ['/shop/*', '/shop/web', true],
    ['*', '', true],
    ['*web', '/shop/web', true],
    ['/s*p/*b', '/shop/web', true],
    ['/shop/*', '/shopx', false],
    ['a*a*a*a*a*a*b', 'a'.repeat(5000), false],
    ['exact', 'exact', true],
    ['exact', 'exactly', false],
  ])('%s against %s is %s', (pattern, text, expected) => {
    expect(globMatch(pattern, text)).toBe(expected);
  });
});

describe('flow file and metrics', () => {
  /** `windows` read back from the v2 lines `files` (the resolutions file first) with one dict. */
  const readBack = (resolutions: readonly string[], windows: readonly (readonly string[])[]) => {
    const dict = newFlowDict();
    const r = new FlowFileReader('resolutions', dict);
    for (const l of resolutions) r.line(l);
    r.finish();
    return windows.flatMap((lines) => {
      const w = new FlowFileReader('window', dict);
      for (const l of lines) w.line(l);
      return w.finish();
    });
  };

  it('writes and reads back the same flows (v2: resolutions once, a file per window, appended as they come)', () => {
    const s = new FlowStore(() => resolver);
    s.ingest('h-api', [entry({ packets: 3 }), entry({ port: 31002, verdict: 'denied' })], [{ direction: 'ingress', verdict: 'denied', family: 4, packets: 2 }], T0);
    const first = new FlowDictWriter().compacted(s.allWindows(), s.windowMs);
    const resolutions = [...first.lines];
    const writer = first.writer;
    const files = s.allWindows().map((w) => [...windowFileLines(w, writer, T0)]);
    // A later window with one new resolution and a known one: only the new one is appended.
    s.ingest('h-db', [entry({ port: 31004, packets: 2 })], [], T0 + MIN);
    s.ingest('h-api', [entry({ packets: 1 })], [], T0 + MIN);
    const appended = [...writer.linesFor([s.allWindows()[1]!])];
    expect(appended.filter((l) => l.startsWith('{"r":'))).toHaveLength(1);
    files.push([...windowFileLines(s.allWindows()[1]!, writer, T0 + MIN)]);
    const back = new FlowStore(() => undefined);
    back.restore(readBack([...resolutions, ...appended], files), T0 + MIN);
    expect(back.query(query('', T0 + MIN), T0 + MIN)).toEqual(s.query(query('', T0 + MIN), T0 + MIN));
    // A compaction of the second window alone keeps the ids its file names.
    const compact = writer.compacted([s.allWindows()[1]!], s.windowMs);
    const again = new FlowStore(() => undefined);
    again.restore(readBack([...compact.lines], [files[1]!]), T0 + MIN);
    const byKey = (pairs: [string, number][]) => pairs.sort(([a], [b]) => (a < b ? -1 : 1));
    expect(byKey(again.query(query('', T0 + MIN), T0 + MIN).flows.map((f) => [f.key, f.packets]))).toEqual(byKey([...s.allWindows()[1]!.aggs].map(([k, a]) => [k, a.p])));
  });

  it('refuses a corrupt line, a line in the wrong file and an id defined twice', () => {
    const s = new FlowStore(() => resolver);
    s.ingest('h-api', [entry({ packets: 3 })], [], T0);
    const { writer, lines } = new FlowDictWriter().compacted(s.allWindows(), s.windowMs);
    const resolutions = [...lines];
    const windowLines = [...windowFileLines(s.allWindows()[0]!, writer, T0)];
    const dict = newFlowDict();
    const r = new FlowFileReader('resolutions', dict);
    for (const l of resolutions) r.line(l);
    expect(() => r.line(resolutions[resolutions.length - 1]!)).toThrow(/line \d+ has a resolution id that is not new/);
    expect(() => r.line(windowLines[1]!)).toThrow(/has counts in the resolutions file/);
    const w = new FlowFileReader('window', dict);
    w.line(windowLines[0]!);
    expect(() => w.line(resolutions[1]!)).toThrow(/defines a resolution in a window file/);
    expect(() => w.line('{"a":7,"v":0,"p":1,"b":1,"f":1,"l":1}')).toThrow(/names an unknown resolution/);
    expect(() => new FlowFileReader('window', dict).line(resolutions[0]!)).toThrow(/line 1 does not name the format portcullis-flows-v2 and the part 'window'/);
    expect(() => new FlowFileReader().line('{"format":"other"}')).toThrow(/line 1 does not name the format portcullis-flows-v1/);
    expect(() => new FlowFileReader().finish()).toThrow(FlowFileError);
  });

  it('reads a v1 flows.json of an older release (ids in sequence)', () => {
    const s = new FlowStore(() => resolver);
    s.ingest('h-api', [entry({ packets: 3 })], [], T0);
    const { writer, lines } = new FlowDictWriter().compacted(s.allWindows(), s.windowMs);
    const defs = [...lines].slice(1);
    const a = windowFileLines(s.allWindows()[0]!, writer, T0);
    const v1 = ['{"format":"portcullis-flows-v1","savedAt":"2026-12-01T00:00:00.000Z","windowMs":60000}', ...defs, `{"w":${s.allWindows()[0]!.start}}`, ...[...a].slice(1)];
    const reader = new FlowFileReader('v1');
    for (const l of v1) reader.line(l);
    const back = new FlowStore(() => undefined);
    back.restore(reader.finish(), T0);
    expect(back.query(query('', T0), T0)).toEqual(s.query(query('', T0), T0));
    const gap = new FlowFileReader('v1');
    gap.line(v1[0]!);
    expect(() => gap.line(defs[0]!.replace('{"D":0,', '{"D":5,'))).toThrow(/line 2 has a destination id out of sequence/);
  });

  it('counts new connections per destination app, port name and verdict, with label values escaped', () => {
    const s = new FlowStore(() => resolver);
    s.ingest('h-api', [entry({ packets: 3 }), entry({ packets: 2 })], [{ direction: 'ingress', verdict: 'denied', family: 4, packets: 9 }], T0);
    s.ingest('h-db', [entry({ port: 31004, verdict: 'denied', packets: 1 }), entry({ port: 40000, verdict: 'denied', packets: 1 })], [], T0);
    const text = flowMetrics(s, T0);
    expect(text).toContain('portcullis_flows_total{app="/shop/api",port="http",verdict="allowed",direction="ingress"} 5');
    expect(text).toContain('portcullis_flows_total{app="/x/\\"quoted\\"\\\\back\\nline",port="31004",verdict="denied",direction="ingress"} 1');
    expect(text).toContain('portcullis_flows_total{app="",port="40000",verdict="denied",direction="ingress"} 1');
    expect(text).toContain('portcullis_flow_records_total 4');
    expect(text).toContain('portcullis_flow_lost_total{verdict="denied",direction="ingress"} 9');
    expect(text).toContain('portcullis_flow_records_dropped_total 0');
    for (const line of text.split('\n').filter((l) => l.startsWith('portcullis_flows_total'))) expect(line).toMatch(/^portcullis_flows_total\{app="(?:[^"\\\n]|\\.)*",port="[^"]*",verdict="\w+",direction="\w+"\} \d+$/);
  });
});

describe('firstOf', () => {
  it('gives the first k in packets-then-key order, as a full sort would', () => {
    let seed = 7;
    const rnd = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const all = Array.from({ length: 2000 }, (_, i) => [`k${String(Math.floor(rnd() * 1e6)).padStart(7, '0')}-${i}`, { p: Math.floor(rnd() * 20) }] as [string, Aggregate]);
    const sorted = [...all].sort((x, y) => y[1].p - x[1].p || (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0));
    for (const k of [0, 1, 7, 1000, 2000, 5000]) expect(firstOf(all, k).map((e) => e[0])).toEqual(sorted.slice(0, k).map((e) => e[0]));
  });
});
