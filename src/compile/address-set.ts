/**
 * Immutable sets of IPv4 and IPv6 addresses: the arithmetic behind the compiler's tiers.
 *
 * Contract:
 * - A set is two independent parts, v4 and v6, each a flat list of inclusive bigint intervals
 *   `[lo0, hi0, lo1, hi1, ...]` that is sorted, disjoint and NON-ADJACENT (hi_k + 1 < lo_k+1).
 *   That normal form makes equal sets structurally equal and every CIDR cover minimal.
 * - union / intersect / subtract / complement are linear two-pointer merges over those lists;
 *   nothing is ever mutated, so sets can be shared and cached freely.
 * - `toCidrs()` returns the minimal CIDR cover (greedy largest aligned block per interval; minimal
 *   because intervals are maximal), v4 first then v6, each in ascending address order, in
 *   canonical text: dotted quad for v4, RFC 5952 (lowercase, longest zero run as `::`) for v6,
 *   always with the prefix length (`10.0.0.1/32`).
 * - Text is parsed and formatted by src/net (cidr.ts, LENIENT: host bits are cleared).
 */
import { tryParseAddress, type ParsedAddress } from '../net/address.js';
import { cidrBlockOf, formatCidr, type ParsedCidr } from '../net/cidr.js';
import { ADDRESS_BITS, type Family } from '../net/family.js';

/** Flat inclusive intervals, see the header. */
export type Ranges = readonly bigint[];

export const MAX4 = (1n << 32n) - 1n;
export const MAX6 = (1n << 128n) - 1n;

// ---- interval primitives (flat lists, see header) ----

function normalize(pairs: bigint[]): bigint[] {
  const n = pairs.length / 2;
  if (n <= 1) return pairs;
  const idx = Array.from({ length: n }, (_, i) => i);
  idx.sort((a, b) => (pairs[2 * a]! < pairs[2 * b]! ? -1 : pairs[2 * a]! > pairs[2 * b]! ? 1 : 0));
  const out: bigint[] = [];
  for (const i of idx) push(out, pairs[2 * i]!, pairs[2 * i + 1]!);
  return out;
}

/** Appends [lo, hi] to a normal-form list whose intervals all start at or before lo. */
function push(out: bigint[], lo: bigint, hi: bigint): void {
  const last = out.length - 1;
  if (last > 0 && lo <= out[last]! + 1n) {
    if (hi > out[last]!) out[last] = hi;
  } else {
    out.push(lo, hi);
  }
}

function unionRanges(a: Ranges, b: Ranges): Ranges {
  if (a.length === 0) return b;
  if (b.length === 0) return a;
  const out: bigint[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    if (j >= b.length || (i < a.length && a[i]! <= b[j]!)) {
      push(out, a[i]!, a[i + 1]!);
      i += 2;
    } else {
      push(out, b[j]!, b[j + 1]!);
      j += 2;
    }
  }
  return out;
}

function intersectRanges(a: Ranges, b: Ranges): Ranges {
  if (a.length === 0 || b.length === 0) return EMPTY_RANGES;
  const out: bigint[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    const lo = a[i]! > b[j]! ? a[i]! : b[j]!;
    const hi = a[i + 1]! < b[j + 1]! ? a[i + 1]! : b[j + 1]!;
    if (lo <= hi) out.push(lo, hi);
    if (a[i + 1]! < b[j + 1]!) i += 2;
    else j += 2;
  }
  return out;
}

function subtractRanges(a: Ranges, b: Ranges): Ranges {
  if (a.length === 0 || b.length === 0) return a;
  const out: bigint[] = [];
  let j = 0;
  for (let i = 0; i < a.length; i += 2) {
    const hi = a[i + 1]!;
    let cur = a[i]!;
    while (j < b.length && b[j + 1]! < cur) j += 2;
    let k = j;
    while (k < b.length && b[k]! <= hi) {
      if (b[k]! > cur) out.push(cur, b[k]! - 1n);
      cur = b[k + 1]! + 1n;
      if (cur > hi) break;
      k += 2;
    }
    if (cur <= hi) out.push(cur, hi);
    j = k;
  }
  return out;
}

function complementRanges(a: Ranges, max: bigint): Ranges {
  const out: bigint[] = [];
  let next = 0n;
  for (let i = 0; i < a.length; i += 2) {
    if (a[i]! > next) out.push(next, a[i]! - 1n);
    next = a[i + 1]! + 1n;
  }
  if (next <= max) out.push(next, max);
  return out;
}

function containsValue(a: Ranges, v: bigint): boolean {
  let lo = 0;
  let hi = a.length / 2 - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (v < a[2 * mid]!) hi = mid - 1;
    else if (v > a[2 * mid + 1]!) lo = mid + 1;
    else return true;
  }
  return false;
}

function trailingZeros(v: bigint, cap: number): number {
  if (v === 0n) return cap;
  let k = 0;
  while (k < cap && ((v >> BigInt(k)) & 1n) === 0n) k++;
  return k;
}

function cidrsOf(a: Ranges, family: Family, out: ParsedCidr[]): void {
  const bits = ADDRESS_BITS[family];
  for (let i = 0; i < a.length; i += 2) {
    let lo = a[i]!;
    const hi = a[i + 1]!;
    while (lo <= hi) {
      const spanBits = (hi - lo + 1n).toString(2).length - 1; // floor(log2(span))
      const k = Math.min(trailingZeros(lo, bits), spanBits);
      out.push({ family, base: lo, prefix: bits - k });
      lo += 1n << BigInt(k);
    }
  }
}

/** How many blocks cidrsOf would give, without building them. */
function cidrCountOf(a: Ranges, family: Family): number {
  const bits = ADDRESS_BITS[family];
  let n = 0;
  for (let i = 0; i < a.length; i += 2) {
    let lo = a[i]!;
    const hi = a[i + 1]!;
    while (lo <= hi) {
      const spanBits = (hi - lo + 1n).toString(2).length - 1;
      lo += 1n << BigInt(Math.min(trailingZeros(lo, bits), spanBits));
      n++;
    }
  }
  return n;
}

/** Intervals of each list that the other does not have (lists in normal form: unique starts). */
function exclusiveIntervals(a: Ranges, b: Ranges): { onlyA: bigint[]; onlyB: bigint[] } {
  const onlyA: bigint[] = [];
  const onlyB: bigint[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    if (a[i]! < b[j]!) {
      onlyA.push(a[i]!, a[i + 1]!);
      i += 2;
    } else if (a[i]! > b[j]!) {
      onlyB.push(b[j]!, b[j + 1]!);
      j += 2;
    } else {
      if (a[i + 1]! !== b[j + 1]!) {
        onlyA.push(a[i]!, a[i + 1]!);
        onlyB.push(b[j]!, b[j + 1]!);
      }
      i += 2;
      j += 2;
    }
  }
  for (; i < a.length; i += 2) onlyA.push(a[i]!, a[i + 1]!);
  for (; j < b.length; j += 2) onlyB.push(b[j]!, b[j + 1]!);
  return { onlyA, onlyB };
}

const EMPTY_RANGES: Ranges = Object.freeze([]) as Ranges;

export class AddressSet {
  static readonly EMPTY = new AddressSet(EMPTY_RANGES, EMPTY_RANGES);
  static readonly ALL = new AddressSet(Object.freeze([0n, MAX4]), Object.freeze([0n, MAX6]));

  private constructor(
    readonly v4: Ranges,
    readonly v6: Ranges,
  ) {}

  /** From intervals in any order, overlapping or not (normalised here). */
  static fromRanges(v4: readonly bigint[], v6: readonly bigint[]): AddressSet {
    const a = normalize([...v4]);
    const b = normalize([...v6]);
    return a.length === 0 && b.length === 0 ? AddressSet.EMPTY : new AddressSet(a, b);
  }

  static fromAddresses(addresses: Iterable<ParsedAddress>): AddressSet {
    const v4: bigint[] = [];
    const v6: bigint[] = [];
    for (const a of addresses) (a.family === 4 ? v4 : v6).push(a.value, a.value);
    return AddressSet.fromRanges(v4, v6);
  }

  static fromCidrBlocks(blocks: Iterable<ParsedCidr>): AddressSet {
    const v4: bigint[] = [];
    const v6: bigint[] = [];
    for (const c of blocks) {
      const size = 1n << BigInt(ADDRESS_BITS[c.family] - c.prefix);
      (c.family === 4 ? v4 : v6).push(c.base, c.base + size - 1n);
    }
    return AddressSet.fromRanges(v4, v6);
  }

  /** From CIDR or address strings, host bits cleared (throws AddressParseError on bad text). */
  static fromStrings(texts: Iterable<string>): AddressSet {
    return AddressSet.fromCidrBlocks(Array.from(texts, (t) => cidrBlockOf(t)));
  }

  /** Union of many sets in one sort: O(n log n) in the total interval count. */
  static unionAll(sets: readonly AddressSet[]): AddressSet {
    if (sets.length === 0) return AddressSet.EMPTY;
    if (sets.length === 1) return sets[0]!;
    return AddressSet.fromRanges(
      sets.flatMap((s) => s.v4),
      sets.flatMap((s) => s.v6),
    );
  }

  /**
   * The intervals of `a` that are not intervals of `b` and vice versa (whole maximal intervals,
   * compared exactly). A CIDR cover is computed interval by interval, so the covers of `a` and `b`
   * differ exactly by the covers of these two sets, minus blocks they have in common.
   */
  static intervalDiff(a: AddressSet, b: AddressSet): { onlyA: AddressSet; onlyB: AddressSet } {
    const v4 = exclusiveIntervals(a.v4, b.v4);
    const v6 = exclusiveIntervals(a.v6, b.v6);
    return { onlyA: AddressSet.of(v4.onlyA, v6.onlyA), onlyB: AddressSet.of(v4.onlyB, v6.onlyB) };
  }

  private static of(v4: Ranges, v6: Ranges): AddressSet {
    return v4.length === 0 && v6.length === 0 ? AddressSet.EMPTY : new AddressSet(v4, v6);
  }

  union(other: AddressSet): AddressSet {
    if (this.isEmpty()) return other;
    if (other.isEmpty()) return this;
    return AddressSet.of(unionRanges(this.v4, other.v4), unionRanges(this.v6, other.v6));
  }

  intersect(other: AddressSet): AddressSet {
    if (other === AddressSet.ALL) return this;
    if (this === AddressSet.ALL) return other;
    return AddressSet.of(intersectRanges(this.v4, other.v4), intersectRanges(this.v6, other.v6));
  }

  subtract(other: AddressSet): AddressSet {
    if (other.isEmpty() || this.isEmpty()) return this;
    return AddressSet.of(subtractRanges(this.v4, other.v4), subtractRanges(this.v6, other.v6));
  }

  complement(): AddressSet {
    return AddressSet.of(complementRanges(this.v4, MAX4), complementRanges(this.v6, MAX6));
  }

  isEmpty(): boolean {
    return this.v4.length === 0 && this.v6.length === 0;
  }

  /** Number of maximal intervals (v4 + v6). */
  intervalCount(): number {
    return (this.v4.length + this.v6.length) / 2;
  }

  equals(other: AddressSet): boolean {
    const same = (a: Ranges, b: Ranges) => a.length === b.length && a.every((v, i) => v === b[i]);
    return same(this.v4, other.v4) && same(this.v6, other.v6);
  }

  /** Address text or a parsed address; false for text that is not an address. */
  contains(address: string | ParsedAddress): boolean {
    const a = typeof address === 'string' ? tryParseAddress(address) : address;
    if (!a) return false;
    return containsValue(a.family === 4 ? this.v4 : this.v6, a.value);
  }

  /** The minimal CIDR cover as blocks: v4 then v6, ascending. */
  toCidrBlocks(): ParsedCidr[] {
    const out: ParsedCidr[] = [];
    cidrsOf(this.v4, 4, out);
    cidrsOf(this.v6, 6, out);
    return out;
  }

  /** The number of blocks of the minimal CIDR cover (toCidrBlocks().length, without building them). */
  cidrCount(): number {
    return cidrCountOf(this.v4, 4) + cidrCountOf(this.v6, 6);
  }

  /** The minimal CIDR cover in canonical text, e.g. ['10.0.0.0/8', '10.1.0.1/32', 'fd00::/8']. */
  toCidrs(): string[] {
    return this.toCidrBlocks().map(formatCidr);
  }
}
