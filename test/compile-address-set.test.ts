import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AddressSet, MAX4, MAX6 } from '../src/compile/address-set.js';
import { canonicalAddress } from '../src/net/address.js';
import { cidrBlockOf } from '../src/net/cidr.js';

describe('AddressSet basics', () => {
  it('parses addresses and CIDRs and prints canonical minimal covers', () => {
    expect(AddressSet.fromStrings(['10.0.0.1']).toCidrs()).toEqual(['10.0.0.1/32']);
    expect(AddressSet.fromStrings(['10.0.0.0/24', '10.0.1.0/24']).toCidrs()).toEqual(['10.0.0.0/23']);
    expect(AddressSet.fromStrings(['10.0.0.0/24', '10.0.2.0/24']).toCidrs()).toEqual(['10.0.0.0/24', '10.0.2.0/24']);
    expect(AddressSet.fromStrings(['FD00:0:0::1']).toCidrs()).toEqual(['fd00::1/128']);
    expect(AddressSet.fromStrings(['::/0']).toCidrs()).toEqual(['::/0']);
    expect(AddressSet.fromStrings(['0.0.0.0/0']).toCidrs()).toEqual(['0.0.0.0/0']);
    expect(AddressSet.ALL.toCidrs()).toEqual(['0.0.0.0/0', '::/0']);
    expect(AddressSet.EMPTY.toCidrs()).toEqual([]);
    expect(AddressSet.fromStrings(['10.1.2.3/8']).toCidrs()).toEqual(['10.0.0.0/8']);
  });

  it('formats IPv6 per RFC 5952', () => {
    expect(canonicalAddress('2001:db8:0:0:1:0:0:1')).toBe('2001:db8::1:0:0:1');
    expect(canonicalAddress('0:0:0:0:0:0:0:0')).toBe('::');
    expect(canonicalAddress('1:0:1:1:1:1:1:1')).toBe('1:0:1:1:1:1:1:1');
    expect(canonicalAddress('fd00:0:0:0:0:0:0:0')).toBe('fd00::');
    expect(canonicalAddress('::ffff:1.2.3.4')).toBe('::ffff:102:304');
  });

  it('rejects bad text', () => {
    expect(() => cidrBlockOf('10.0.0.256')).toThrow(/not an IPv4 or IPv6 address/);
    expect(() => cidrBlockOf('10.0.0.0/33')).toThrow(/prefix length/);
    expect(() => cidrBlockOf('fd00::/129')).toThrow(/prefix length/);
    expect(() => cidrBlockOf('web')).toThrow();
    expect(AddressSet.ALL.contains('nonsense')).toBe(false);
  });

  it('handles /0, /32, /128 and the ends of the address spaces', () => {
    const all4 = AddressSet.fromStrings(['0.0.0.0/0']);
    expect(all4.contains('0.0.0.0')).toBe(true);
    expect(all4.contains('255.255.255.255')).toBe(true);
    expect(all4.contains('::1')).toBe(false);
    expect(all4.complement().toCidrs()).toEqual(['::/0']);
    const ends = AddressSet.fromStrings(['0.0.0.0', '255.255.255.255', '::', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff']);
    expect(ends.toCidrs()).toEqual(['0.0.0.0/32', '255.255.255.255/32', '::/128', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128']);
    expect(ends.complement().toCidrs()).toHaveLength(31 * 2 + 127 * 2);
    expect(ends.complement().complement().equals(ends)).toBe(true);
    expect(AddressSet.ALL.subtract(AddressSet.fromStrings(['10.0.0.1'])).contains('10.0.0.1')).toBe(false);
    expect(AddressSet.ALL.subtract(AddressSet.fromStrings(['10.0.0.1'])).contains('10.0.0.2')).toBe(true);
    const split = AddressSet.fromStrings(['0.0.0.0/0']).subtract(AddressSet.fromStrings(['128.0.0.0/1']));
    expect(split.toCidrs()).toEqual(['0.0.0.0/1']);
    expect(AddressSet.fromRanges([0n, MAX4], [0n, MAX6]).equals(AddressSet.ALL)).toBe(true);
  });

  it('merges adjacent intervals into one', () => {
    const s = AddressSet.fromStrings(['10.0.0.0/25', '10.0.0.128/25', '10.0.1.0']);
    expect(s.intervalCount()).toBe(1);
    expect(s.toCidrs()).toEqual(['10.0.0.0/24', '10.0.1.0/32']);
  });
});

// ---- random cross-check against a naive bitmap model over a small universe ----

const V4_BASE = 0x0a000000n; // 10.0.0.0/24
const V6_BASE = 0xfd00n << 112n; // fd00::/120
const SIZE = 256;

interface Naive {
  v4: boolean[];
  v6: boolean[];
}

const cidrArb = fc.record({
  v6: fc.boolean(),
  offset: fc.integer({ min: 0, max: SIZE - 1 }),
  len: fc.integer({ min: 0, max: 8 }), // host bits
});
type CidrIn = { v6: boolean; offset: number; len: number };

function cidrText(c: CidrIn): string {
  const block = 1 << c.len;
  const start = BigInt(c.offset & ~(block - 1));
  if (c.v6) return `fd00::${(start).toString(16)}/${128 - c.len}`;
  const n = Number(V4_BASE + start);
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}/${32 - c.len}`;
}

function naiveOf(cidrs: CidrIn[]): Naive {
  const out: Naive = { v4: new Array(SIZE).fill(false), v6: new Array(SIZE).fill(false) };
  for (const c of cidrs) {
    const block = 1 << c.len;
    const start = c.offset & ~(block - 1);
    for (let i = start; i < start + block; i++) (c.v6 ? out.v6 : out.v4)[i] = true;
  }
  return out;
}

/** Minimal cover size by recursive halving (unique minimal decomposition over aligned blocks). */
function naiveCoverSize(bits: boolean[], start = 0, size = SIZE): number {
  const slice = bits.slice(start, start + size);
  if (slice.every(Boolean)) return 1;
  if (!slice.some(Boolean)) return 0;
  return naiveCoverSize(bits, start, size / 2) + naiveCoverSize(bits, start + size / 2, size / 2);
}

function checkAgainst(set: AddressSet, naive: Naive): void {
  // Parsed values here: parsing text 768k times would only test ip-num's speed.
  const got = {
    v4: naive.v4.map((_, i) => set.contains({ family: 4, value: V4_BASE + BigInt(i) })),
    v6: naive.v6.map((_, i) => set.contains({ family: 6, value: V6_BASE + BigInt(i) })),
  };
  expect(got).toEqual(naive);
  // The universe is a subset of the address space: the cover of the in-universe part is exact.
  const cidrs = set.toCidrs();
  const blocks = cidrs.map((c) => cidrBlockOf(c));
  const expectedSize = naiveCoverSize(naive.v4) + naiveCoverSize(naive.v6);
  expect(blocks.length).toBe(expectedSize);
  for (const c of cidrs) expect(AddressSet.fromStrings([c]).toCidrs()).toEqual([c]);
}

function combine(a: Naive, b: Naive, f: (x: boolean, y: boolean) => boolean): Naive {
  return { v4: a.v4.map((x, i) => f(x, b.v4[i]!)), v6: a.v6.map((x, i) => f(x, b.v6[i]!)) };
}

describe('AddressSet against a naive bitmap model', () => {
  it('contains() on text agrees with parsed values', () => {
    const s = AddressSet.fromStrings(['10.0.0.0/28', 'fd00::/124']);
    expect(s.contains('10.0.0.15')).toBe(true);
    expect(s.contains('10.0.0.16')).toBe(false);
    expect(s.contains({ family: 4, value: V4_BASE + 15n })).toBe(true);
    expect(s.contains('fd00::f')).toBe(true);
    expect(s.contains('fd00::10')).toBe(false);
  });

  it('union, intersect, subtract, complement agree with the model and covers are minimal', () => {
    const universe = AddressSet.fromStrings(['10.0.0.0/24', 'fd00::/120']);
    fc.assert(
      fc.property(fc.array(cidrArb, { maxLength: 8 }), fc.array(cidrArb, { maxLength: 8 }), (xs, ys) => {
        const a = AddressSet.fromStrings(xs.map(cidrText));
        const b = AddressSet.fromStrings(ys.map(cidrText));
        const na = naiveOf(xs);
        const nb = naiveOf(ys);
        checkAgainst(a, na);
        checkAgainst(a.union(b), combine(na, nb, (x, y) => x || y));
        checkAgainst(a.intersect(b), combine(na, nb, (x, y) => x && y));
        checkAgainst(a.subtract(b), combine(na, nb, (x, y) => x && !y));
        checkAgainst(universe.intersect(a.complement()), combine(na, nb, (x) => !x));
        expect(a.complement().complement().equals(a)).toBe(true);
        expect(a.union(b).equals(b.union(a))).toBe(true);
        expect(AddressSet.unionAll([a, b]).equals(a.union(b))).toBe(true);
        expect(a.subtract(b).equals(a.intersect(b.complement()))).toBe(true);
      }),
      { numRuns: 300 },
    );
  });
});
