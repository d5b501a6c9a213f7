/**
 * The aggregation of `suggest` (src/flows/suggest-aggregate.ts: records interned to numbers,
 * judged once per (claim, source class), bucketed without a string or Set per record) gives what
 * the per-record walk gives (test/support/suggest-oracle.ts, suggest as it was): the same
 * Suggestion, deep-equal (so the same YAML and JSON), on random policies and clusters
 * (test/support/random-cluster.ts) with random recorded flows, each altered at random the ways
 * a /flows answer or a saved file can differ: verdicts, counts, times (including spellings of
 * one instant that Date.parse reads alike, and times that tie), a record repeated under its key
 * or another record's key, the order, `--since` and `--verdict`. And on a slice of the
 * benchmark's records (test/bench/suggest-records.ts). The time reader (src/flows/iso-time.ts)
 * is compared with Date.parse on random texts.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { suggestRules } from '../src/flows/suggest.js';
import { suggestionYaml } from '../src/flows/suggest-yaml.js';
import { isoMs } from '../src/flows/iso-time.js';
import type { ClusterState } from '../src/inventory/cluster-state.js';
import type { ObservedFlow } from '../src/flows/observed-flow.js';
import type { FlowVerdict } from '../src/flows/flow-types.js';
import { scenarioArb } from './support/random-cluster.js';
import { randomFlows } from './support/random-flows.js';
import { suggestRulesPerRecord } from './support/suggest-oracle.js';
import { suggestGraphInput, suggestInput } from './bench/suggest-records.js';

const OUTSIDE = ['203.0.113.1', '203.0.113.2', '10.0.0.200', '2001:db8::9', 'fd00::1:7', '2001:DB8::9', '::ffff:203.0.113.1', 'not-an-address'];
const TIMES = ['2026-12-01T10:00:00.000Z', '2026-12-01T10:00:00Z', '2026-12-01T10:00:00.000+00:00', '2026-12-01T09:59:59.999Z', '2026-12-01T11:30:00.000Z', '2026-12-02T00:00:00.000Z'];
const VERDICTS: readonly FlowVerdict[] = ['allowed', 'denied', 'audit'];

/** One alteration of a record: [verdict, packets, first, last, repeat (0 none, 1 same record, 2 another's key)]. */
const alterArb = fc.tuple(fc.nat(2), fc.integer({ min: 1, max: 5 }), fc.nat(TIMES.length - 1), fc.nat(TIMES.length - 1), fc.nat(6));

/** Records picked (randomFlows) and their alterations. */
const picksArb = fc.array(fc.tuple(fc.integer({ min: 0, max: 1 }), fc.nat(30), fc.nat(30)), { minLength: 1, maxLength: 40 });
const altersArb = fc.array(alterArb, { minLength: 1, maxLength: 10 });

function altered(cluster: ClusterState, picks: readonly (readonly [number, number, number])[], alters: readonly (readonly [number, number, number, number, number])[]): ObservedFlow[] {
  const base = randomFlows(cluster, [...cluster.hosts.flatMap((h) => h.addresses), ...OUTSIDE], picks);
  const out: ObservedFlow[] = [];
  base.forEach((f, n) => {
    const [v, packets, first, last, repeat] = alters[n % alters.length] ?? [1, 1, 0, 0, 0];
    const g: ObservedFlow = { ...f, verdict: VERDICTS[v]!, packets, bytes: packets * 70, firstSeen: TIMES[first]!, lastSeen: TIMES[last]! };
    out.push(g);
    if (repeat === 1) out.push(g);
    if (repeat === 2 && out.length > 1) out.push({ ...g, key: out[0]!.key, packets: packets + 1 });
  });
  return out;
}

describe('suggest: the aggregation equals the per-record walk', () => {
  it('on random policies, clusters and recorded flows', () => {
    let evidence = 0;
    fc.assert(
      fc.property(
        scenarioArb,
        picksArb,
        altersArb,
        fc.boolean(),
        fc.option(fc.subarray([...VERDICTS], { minLength: 1 }), { nil: undefined }),
        fc.option(fc.nat(TIMES.length - 1), { nil: undefined }),
        ({ policy, cluster }, picks, alters, reverse, verdicts, since) => {
          const flows = altered(cluster, picks, alters);
          if (reverse) flows.reverse();
          const options = { ...(verdicts ? { verdicts } : {}), ...(since !== undefined ? { sinceMs: Date.parse(TIMES[since]!) } : {}) };
          const want = suggestRulesPerRecord(policy, cluster, flows, options);
          const got = suggestRules(policy, cluster, flows, options);
          expect(got).toEqual(want);
          expect(suggestionYaml(got)).toBe(suggestionYaml(want));
          evidence += want.rules.length;
        },
      ),
      { numRuns: 300 },
    );
    // Not vacuous: rules were suggested.
    expect(evidence).toBeGreaterThan(100);
  });

  // The aggregation sums each bucket's records as they come when it can add them up exactly
  // (src/flows/suggest-evidence.ts): every key distinct, every time readable, every count a safe
  // integer; else it starts again keeping every record. Both ways, on purpose.
  it('with every key distinct (summed), and with one record the sums cannot take (per record)', () => {
    // One record altered; the last: every record's bytes so large that their sum depends on the order of adding.
    const ODD: readonly ((flows: ObservedFlow[], at: number) => void)[] = [
      (flows, at) => (flows[at] = { ...flows[at]!, firstSeen: 'yesterday' }),
      (flows, at) => (flows[at] = { ...flows[at]!, lastSeen: '' }),
      (flows, at) => (flows[at] = { ...flows[at]!, packets: 2.5 }),
      (flows) => flows.forEach((f, i) => (flows[i] = { ...f, bytes: 2 ** 52 + 2 * i + 1 })),
    ];
    let evidence = 0;
    const oddArb = fc.option(fc.tuple(fc.nat(ODD.length - 1), fc.nat()), { nil: undefined });
    fc.assert(
      fc.property(fc.tuple(scenarioArb, picksArb, altersArb), oddArb, ([{ policy, cluster }, picks, alters], odd) => {
        const flows = altered(cluster, picks, alters).map((f, i) => ({ ...f, key: `${f.key}-${i}` }));
        if (odd) ODD[odd[0]]!(flows, odd[1] % flows.length);
        const want = suggestRulesPerRecord(policy, cluster, flows);
        expect(suggestRules(policy, cluster, flows)).toEqual(want);
        evidence += want.rules.length;
      }),
      { numRuns: 300 },
    );
    expect(evidence).toBeGreaterThan(100);
  });

  it('on 10,000 records of the dependency-graph mix', () => {
    const { policy, cluster, flows } = suggestGraphInput(10_000, 3);
    const want = suggestRulesPerRecord(policy, cluster, flows);
    expect(want.rules.length).toBeGreaterThan(50);
    expect(want.coveredByEgress).toBeGreaterThan(0);
    expect(suggestRules(policy, cluster, flows)).toEqual(want);
    // Counts whose sums round (past 2^53): added in the walk's order, record by record.
    const huge = flows.map((f, i) => ({ ...f, bytes: 2 ** 52 + 2 * i + 1 }));
    expect(suggestRules(policy, cluster, huge)).toEqual(suggestRulesPerRecord(policy, cluster, huge));
  });

  it('on 4,000 records of the benchmark scenario', () => {
    const { policy, cluster, flows } = suggestInput(4000, 7);
    const want = suggestRulesPerRecord(policy, cluster, flows);
    expect(want.rules.length).toBeGreaterThan(100);
    expect(want.networks.length).toBeGreaterThan(10);
    expect(suggestRules(policy, cluster, flows)).toEqual(want);
  });
});

describe('isoMs', () => {
  it('is Date.parse on random texts of the ISO shape and near it', () => {
    const two = (max: number) => fc.integer({ min: 0, max }).map((n) => String(n).padStart(2, '0'));
    const iso = fc
      .tuple(fc.integer({ min: 0, max: 9999 }), two(14), two(33), two(25), two(61), two(61), fc.integer({ min: 0, max: 999 }), fc.constantFrom('Z', 'z', '+00:00', ''), fc.constantFrom('T', ' ', 't'))
      .map(([y, mo, d, h, mi, s, ms, zone, t]) => `${String(y).padStart(4, '0')}-${mo}-${d}${t}${h}:${mi}:${s}.${String(ms).padStart(3, '0')}${zone}`);
    fc.assert(
      fc.property(fc.oneof(iso, fc.string({ maxLength: 26 })), (text) => {
        expect(Object.is(isoMs(text), Date.parse(text))).toBe(true);
      }),
      { numRuns: 20_000 },
    );
    for (const t of ['2026-12-01T10:00:00.000Z', '2024-02-29T23:59:59.999Z', '2026-02-30T00:00:00.000Z', '0000-01-01T00:00:00.000Z', '1969-12-31T23:59:59.999Z']) expect(isoMs(t)).toBe(Date.parse(t));
  });
});
