/**
 * Turning resolved source sets into the sorted `allow-*` members of every host, fast.
 *
 * Contract: `emit(claims)` returns, for one host, the members "<source>,<proto>:<port>" of each
 * allow set, sorted by plain string order and without duplicates (claims have distinct
 * "<proto>:<port>"). A /32 or /128 source is an address (allow-ip*), anything else a CIDR
 * (allow-net*); a /0 becomes the two /1 halves of src/net/member.ts (ipset hash:net cannot hold a
 * /0), so the states this compiler writes never hold a /0.
 *
 * How: a member's order is (source, suffix) order, because the suffix starts with ',' which sorts
 * before every character a source can contain. So every distinct source text gets one global
 * rank (one sort for the whole compile), each host's claims are visited in suffix order, and a
 * stable counting sort by rank yields the sorted list in linear time, with no string comparison
 * per member.
 */
import { formatSource } from '../net/cidr.js';
import { ADDRESS_BITS } from '../net/family.js';
import { memberSuffix, pairMember, ZERO_PREFIX_HALVES } from '../net/member.js';
import type { Protocol } from '../policy/policy-model.js';
import { AddressSet, MAX4, MAX6 } from './address-set.js';
import { ALLOW_KINDS, type AllowKind } from './desired-state.js';

export interface PortClaim {
  readonly protocol: Protocol;
  readonly port: number;
  readonly set: AddressSet;
}

/**
 * The source texts and member counts of sets, formatted once per set by whoever owns the
 * instance (a compile, or an incremental compiler for its lifetime). Sets are immutable and
 * shared, so hosts using one resolution format it once; entries are weak, so sets no longer
 * used are not kept alive.
 */
export class SourceTexts {
  private readonly texts = new WeakMap<AddressSet, readonly (readonly string[])[]>();
  private readonly counts = new WeakMap<AddressSet, number>();

  /** Source texts of a set per allow kind (index = ALLOW_KINDS index), in address order. */
  of(set: AddressSet): readonly (readonly string[])[] {
    let lists = this.texts.get(set);
    if (!lists) this.texts.set(set, (lists = formatSourceTexts(set)));
    return lists;
  }

  /** How many members a claim with this set emits (a /0 counts twice, see the header). */
  count(set: AddressSet): number {
    let n = this.counts.get(set);
    if (n === undefined) {
      const texts = this.texts.get(set);
      if (texts) n = texts.reduce((sum, list) => sum + list.length, 0);
      else n = set.cidrCount() + (set.v4.length > 0 && set.v4[0] === 0n && set.v4[1] === MAX4 ? 1 : 0) + (set.v6.length > 0 && set.v6[0] === 0n && set.v6[1] === MAX6 ? 1 : 0);
      this.counts.set(set, n);
    }
    return n;
  }

  /** Members of all of a host's claims. */
  claimsCount(claims: readonly PortClaim[]): number {
    let n = 0;
    for (const c of claims) n += this.count(c.set);
    return n;
  }
}

function formatSourceTexts(set: AddressSet): string[][] {
  const lists: string[][] = [[], [], [], []];
  for (const b of set.toCidrBlocks()) {
    const list = lists[(b.family === 4 ? 0 : 2) + (b.prefix === ADDRESS_BITS[b.family] ? 0 : 1)]!;
    if (b.prefix === 0) list.push(...ZERO_PREFIX_HALVES[b.family]);
    else list.push(formatSource(b));
  }
  return lists;
}

/**
 * How the source texts of a claim change when its set goes from `before` to `after`, per allow
 * kind (index = ALLOW_KINDS index): texts to remove and texts to add. Only the intervals that
 * differ are formatted (see AddressSet.intervalDiff).
 */
export function sourceTextDiff(before: AddressSet, after: AddressSet): { removed: string[][]; added: string[][] } {
  const { onlyA, onlyB } = AddressSet.intervalDiff(before, after);
  const removed = formatSourceTexts(onlyA);
  const added = formatSourceTexts(onlyB);
  for (let k = 0; k < removed.length; k++) {
    const r = removed[k]!;
    const a = added[k]!;
    if (r.length === 0 || a.length === 0) continue;
    const inR = new Set(r);
    const common = new Set(a.filter((t) => inR.has(t)));
    if (common.size === 0) continue;
    removed[k] = r.filter((t) => !common.has(t));
    added[k] = a.filter((t) => !common.has(t));
  }
  return { removed, added };
}

export class MemberEmitter {
  private readonly texts: string[];
  private readonly ranks = new Map<AddressSet, Int32Array[]>();
  private readonly count: Int32Array;

  /** `sets`: every set any host will emit (one ranking for all of them), formatted by `sourceTexts`. */
  constructor(sets: Iterable<AddressSet>, sourceTexts: SourceTexts) {
    const perSet = new Map<AddressSet, readonly (readonly string[])[]>();
    const all = new Set<string>();
    for (const set of sets) {
      if (perSet.has(set)) continue;
      const lists = sourceTexts.of(set);
      perSet.set(set, lists);
      for (const list of lists) for (const t of list) all.add(t);
    }
    this.texts = [...all].sort();
    const rankOf = new Map(this.texts.map((t, i) => [t, i]));
    for (const [set, lists] of perSet) {
      this.ranks.set(set, lists.map((list) => Int32Array.from(list, (t) => rankOf.get(t)!)));
    }
    this.count = new Int32Array(this.texts.length + 1);
  }

  emit(claims: readonly PortClaim[]): Record<AllowKind, string[]> {
    const ordered = claims
      .map((c) => ({ suffix: memberSuffix(c.protocol, c.port), ranks: this.ranks.get(c.set)! }))
      .sort((a, b) => (a.suffix < b.suffix ? -1 : a.suffix > b.suffix ? 1 : 0));
    const out = {} as Record<AllowKind, string[]>;
    ALLOW_KINDS.forEach((kind, k) => {
      out[kind] = this.sortedMembers(ordered, k);
    });
    return out;
  }

  private sortedMembers(ordered: readonly { suffix: string; ranks: Int32Array[] }[], k: number): string[] {
    const count = this.count;
    let total = 0;
    let lo = count.length;
    let hi = -1;
    for (const c of ordered) {
      const ranks = c.ranks[k]!;
      total += ranks.length;
      for (let i = 0; i < ranks.length; i++) {
        const r = ranks[i]!;
        count[r + 1]!++;
        if (r < lo) lo = r;
        if (r > hi) hi = r;
      }
    }
    if (total === 0) return [];
    // count[r + 1] holds how many members have rank r; turn it into start positions in place.
    count[lo] = 0;
    for (let r = lo + 1; r <= hi + 1; r++) count[r]! += count[r - 1]!;
    const out = new Array<string>(total);
    for (const c of ordered) {
      const ranks = c.ranks[k]!;
      for (let i = 0; i < ranks.length; i++) {
        const r = ranks[i]!;
        out[count[r]!++] = pairMember(this.texts[r]!, c.suffix);
      }
    }
    count.fill(0, lo, hi + 2);
    return out;
  }
}
