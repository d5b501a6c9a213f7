/**
 * The two evidence stores of suggest's aggregation (src/flows/suggest-evidence.ts) add up to the
 * same rule tallies: the sums per (bucket, destination set) and the records kept one by one, on
 * random records (buckets, destination sets, times that tie in different spellings, up to 30
 * hosts so that a sum's host list turns into a Set) and random tallies (a bucket, some of its
 * destination sets, into one rule or several).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { ObservedFlow } from '../src/flows/observed-flow.js';
import { ItemEvidence, SummedEvidence, type EvidenceStore, type RuleTally } from '../src/flows/suggest-evidence.js';
import { isoMs } from '../src/flows/iso-time.js';

const TIMES = ['2026-12-01T10:00:00.000Z', '2026-12-01T10:00:00Z', '2026-12-01T10:00:00.000+00:00', '2026-12-01T09:59:59.999Z', '2026-12-01T11:30:00.000Z'];

const recordArb = fc.record({
  b: fc.nat(3),
  dest: fc.nat(2),
  first: fc.nat(TIMES.length - 1),
  last: fc.nat(TIMES.length - 1),
  hosts: fc.tuple(fc.integer({ min: -1, max: 30 }), fc.integer({ min: -1, max: 30 }), fc.integer({ min: -1, max: 30 })),
  packets: fc.integer({ min: 1, max: 9 }),
  bits: fc.integer({ min: 0, max: 31 }),
});
const tallyArb = fc.record({ b: fc.nat(3), dests: fc.option(fc.subarray([0, 1, 2]), { nil: undefined }), into: fc.subarray([0, 1, 2], { minLength: 1 }) });

const newRule = (): RuleTally => ({ from: 'a', to: 'b', port: 'http', connections: 0, bytes: 0, flows: 0, first: '', firstMs: 0, last: '', lastMs: 0, hosts: new Set(), verdicts: 0, protocols: 0 });

describe('suggest evidence: summed and per record', () => {
  it('give the same rule tallies', () => {
    fc.assert(
      fc.property(fc.array(recordArb, { maxLength: 60 }), fc.array(tallyArb, { minLength: 1, maxLength: 12 }), (records, tallies) => {
        const run = (store: EvidenceStore) => {
          records.forEach((r, i) => {
            const f = { key: `k${i}`, packets: r.packets, bytes: r.packets * 40, firstSeen: TIMES[r.first]!, lastSeen: TIMES[r.last]! } as ObservedFlow;
            expect(store.add(f, r.b, r.dest, isoMs(f.firstSeen), isoMs(f.lastSeen), ...r.hosts, r.bits)).toBe(true);
          });
          const rules = [newRule(), newRule(), newRule()];
          for (const t of tallies) {
            const into = t.into.map((i) => rules[i]!);
            store.tally(t.b, t.dests ? (d) => t.dests!.includes(d) : undefined, into.length === 1 ? into[0]! : into);
          }
          return rules.map((r) => ({ ...r, hosts: [...r.hosts].sort((x, y) => x - y) }));
        };
        expect(run(new SummedEvidence(records.length))).toEqual(run(new ItemEvidence(records.length)));
      }),
      { numRuns: 2000 },
    );
  });

  it('the summed store refuses a repeated key, an unreadable time and a count that is no safe integer', () => {
    const f = { key: 'k', packets: 1, bytes: 1, firstSeen: TIMES[0]!, lastSeen: TIMES[0]! } as ObservedFlow;
    const ms = isoMs(TIMES[0]!);
    const store = new SummedEvidence(4);
    expect(store.add(f, 0, 0, ms, ms, -1, -1, -1, 0)).toBe(true);
    expect(store.add(f, 0, 0, ms, ms, -1, -1, -1, 0)).toBe(false);
    expect(store.add({ ...f, key: 'k2', firstSeen: 'then' }, 0, 0, NaN, ms, -1, -1, -1, 0)).toBe(false);
    expect(store.add({ ...f, key: 'k3', packets: 0.5 }, 0, 0, ms, ms, -1, -1, -1, 0)).toBe(false);
  });
});
