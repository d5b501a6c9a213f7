/**
 * The evidence records of suggest's aggregation, per bucket (suggest-aggregate.ts collects them,
 * suggest-lists.ts adds them to the rules), kept one of two ways:
 *  - SUMMED (SummedEvidence): per (bucket, destination set), the sums of its records as they
 *    come: connections, bytes, records, first and last seen (the text of the earliest record at
 *    the least first seen, and at the greatest last seen), hosts, verdict and protocol bits; a
 *    rule adds the sums of its buckets. That is adding record by record in the order of the
 *    per-record walk as long as no two evidence records share a key (the walk counts a key once
 *    per rule), every time reads as a number and every count is a safe integer whose total
 *    stays one (sums are then exact in any order): the earliest record at the least time is
 *    the one the walk keeps. Nothing per record is kept but its key (to see a repeat).
 *  - PER RECORD (ItemEvidence): each record's numbers in typed arrays, a linked list per bucket,
 *    added to a rule record by record, a key once per rule. aggregate() starts again this way
 *    when the summed way meets a record it cannot take.
 */
import type { ObservedFlow } from './observed-flow.js';

/** The tally of one rule (Evidence once finished). */
export interface RuleTally {
  readonly from: string;
  readonly to: string;
  readonly port: string | number;
  connections: number;
  bytes: number;
  flows: number;
  first: string;
  firstMs: number;
  last: string;
  lastMs: number;
  /** Host ids (interned). */
  readonly hosts: Set<number>;
  /** Bits: 1 allowed, 2 denied, 4 audit. */
  verdicts: number;
  /** Bits: 1 tcp, 2 udp. */
  protocols: number;
  seen?: Set<string>;
}

export interface EvidenceStore {
  /**
   * Adds evidence record `f` of bucket `b`, destination set `dest`, with its times read, its
   * hosts (reporter, source, destination: numbers, -1 for none) and bits (verdict bit |
   * protocol bits << 3). False: the summed way cannot take it.
   */
  add(f: ObservedFlow, b: number, dest: number, firstMs: number, lastMs: number, rep: number, src: number, dst: number, bits: number): boolean;
  /** Adds the records of bucket `b` whose destination set `takes` (all when undefined) to the rule or rules `into`. */
  tally(b: number, takes: ((dest: number) => boolean) | undefined, into: readonly RuleTally[] | RuleTally): void;
}

/** The sums of one bucket's records of one destination set (`at`: the record's order). */
interface Sum {
  readonly dest: number;
  connections: number;
  bytes: number;
  flows: number;
  first: string;
  firstMs: number;
  firstAt: number;
  last: string;
  lastMs: number;
  lastAt: number;
  /** The hosts seen: a few in a list, more in a Set (one object per sum, not a Set each). */
  readonly hosts: number[];
  many?: Set<number>;
  bits: number;
}

const HOSTS_LISTED = 8;

function addHost(s: Sum, h: number): void {
  if (h < 0) return;
  if (s.many) s.many.add(h);
  else if (!s.hosts.includes(h)) {
    s.hosts.push(h);
    if (s.hosts.length > HOSTS_LISTED) s.many = new Set(s.hosts);
  }
}

const each = (into: readonly RuleTally[] | RuleTally, add: (r: RuleTally) => void) => (Array.isArray(into) ? into.forEach(add) : add(into as RuleTally));

export class SummedEvidence implements EvidenceStore {
  private readonly sums: Sum[][] = [];
  /** The evidence keys seen: open addressing on a string hash. */
  private readonly keys: (string | undefined)[];
  private readonly mask: number;
  private count = 0;
  private total = 0;

  constructor(records: number) {
    let size = 16;
    while (size < records * 2) size *= 2;
    this.keys = new Array<string | undefined>(size);
    this.mask = size - 1;
  }

  /** Whether `key` is a string not seen before (then it is now). */
  private fresh(key: unknown): boolean {
    if (typeof key !== 'string') return false;
    let h = 0x811c9dc5;
    for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 16777619);
    for (h &= this.mask; ; h = (h + 1) & this.mask) {
      const at = this.keys[h];
      if (at === undefined) {
        this.keys[h] = key;
        return true;
      }
      if (at === key) return false;
    }
  }

  add(f: ObservedFlow, b: number, dest: number, firstMs: number, lastMs: number, rep: number, src: number, dst: number, bits: number): boolean {
    const { packets, bytes } = f;
    if (!Number.isSafeInteger(packets) || !Number.isSafeInteger(bytes) || Number.isNaN(firstMs) || Number.isNaN(lastMs) || f.firstSeen === '' || f.lastSeen === '') return false;
    this.total += Math.abs(packets) + Math.abs(bytes);
    if (this.total > Number.MAX_SAFE_INTEGER || !this.fresh(f.key)) return false;
    const at = this.count++;
    const list = (this.sums[b] ??= []);
    let s: Sum | undefined;
    for (const x of list) if (x.dest === dest) s = x;
    if (!s) list.push((s = { dest, connections: 0, bytes: 0, flows: 0, first: f.firstSeen, firstMs, firstAt: at, last: f.lastSeen, lastMs, lastAt: at, hosts: [], bits: 0 }));
    if (firstMs < s.firstMs) {
      s.first = f.firstSeen;
      s.firstMs = firstMs;
      s.firstAt = at;
    }
    if (lastMs > s.lastMs) {
      s.last = f.lastSeen;
      s.lastMs = lastMs;
      s.lastAt = at;
    }
    s.connections += packets;
    s.bytes += bytes;
    s.flows++;
    addHost(s, rep);
    addHost(s, src);
    addHost(s, dst);
    s.bits |= bits;
    return true;
  }

  tally(b: number, takes: ((dest: number) => boolean) | undefined, into: readonly RuleTally[] | RuleTally): void {
    const all = this.sums[b] ?? [];
    const sums = takes ? all.filter((s) => takes(s.dest)) : all;
    if (sums.length === 0) return;
    // The bucket's sums as one: the earlier record wins a tie of times.
    let first = sums[0]!;
    let last = first;
    let connections = 0;
    let bytes = 0;
    let flows = 0;
    let bits = 0;
    for (const s of sums) {
      if (s.firstMs < first.firstMs || (s.firstMs === first.firstMs && s.firstAt < first.firstAt)) first = s;
      if (s.lastMs > last.lastMs || (s.lastMs === last.lastMs && s.lastAt < last.lastAt)) last = s;
      connections += s.connections;
      bytes += s.bytes;
      flows += s.flows;
      bits |= s.bits;
    }
    each(into, (r) => {
      r.connections += connections;
      r.bytes += bytes;
      r.flows += flows;
      if (r.first === '' || first.firstMs < r.firstMs) {
        r.first = first.first;
        r.firstMs = first.firstMs;
      }
      if (r.last === '' || last.lastMs > r.lastMs) {
        r.last = last.last;
        r.lastMs = last.lastMs;
      }
      for (const s of sums) for (const h of s.many ?? s.hosts) r.hosts.add(h);
      r.verdicts |= bits & 7;
      r.protocols |= bits >> 3;
    });
  }
}

/** Which keys occur more than once among `records` (open addressing on a string hash; exact). */
function duplicatedKeys(records: readonly ObservedFlow[]): Uint8Array | undefined {
  let size = 16;
  while (size < records.length * 2) size *= 2;
  const mask = size - 1;
  const table = new Int32Array(size).fill(-1);
  let dup: Uint8Array | undefined;
  for (let j = 0; j < records.length; j++) {
    const key = records[j]!.key;
    let h = 0x811c9dc5;
    for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 16777619);
    h &= mask;
    for (;;) {
      const at = table[h]!;
      if (at === -1) {
        table[h] = j;
        break;
      }
      if (records[at]!.key === key) {
        dup ??= new Uint8Array(records.length);
        dup[at] = 1;
        dup[j] = 1;
        break;
      }
      h = (h + 1) & mask;
    }
  }
  return dup;
}

export class ItemEvidence implements EvidenceStore {
  private readonly items: ObservedFlow[] = [];
  // Per item, numbers in typed arrays sized for every record: no growth, nothing for the GC to copy.
  private readonly dest: Int32Array;
  /** The next item of the same bucket (-1: none). */
  private readonly next: Int32Array;
  private readonly first: Float64Array;
  private readonly last: Float64Array;
  private readonly hosts: Int32Array;
  private readonly bits: Uint8Array;
  /** Per bucket, its first and last item. */
  private readonly head: number[] = [];
  private readonly tail: number[] = [];
  private dup: Uint8Array | undefined | null = null;

  constructor(records: number) {
    this.dest = new Int32Array(records);
    this.next = new Int32Array(records);
    this.first = new Float64Array(records);
    this.last = new Float64Array(records);
    this.hosts = new Int32Array(3 * records);
    this.bits = new Uint8Array(records);
  }

  add(f: ObservedFlow, b: number, dest: number, firstMs: number, lastMs: number, rep: number, src: number, dst: number, bits: number): boolean {
    const j = this.items.length;
    this.items.push(f);
    if (this.head[b] === undefined) this.head[b] = j;
    else this.next[this.tail[b]!] = j;
    this.tail[b] = j;
    this.next[j] = -1;
    this.dest[j] = dest;
    this.first[j] = firstMs;
    this.last[j] = lastMs;
    this.hosts[3 * j] = rep;
    this.hosts[3 * j + 1] = src;
    this.hosts[3 * j + 2] = dst;
    this.bits[j] = bits;
    return true;
  }

  private addItem(r: RuleTally, j: number): void {
    const f = this.items[j]!;
    if (this.dup?.[j] === 1) {
      r.seen ??= new Set();
      if (r.seen.has(f.key)) return;
      r.seen.add(f.key);
    }
    r.connections += f.packets;
    r.bytes += f.bytes;
    r.flows++;
    const first = this.first[j]!;
    const last = this.last[j]!;
    if (r.first === '' || first < r.firstMs) {
      r.first = f.firstSeen;
      r.firstMs = first;
    }
    if (r.last === '' || last > r.lastMs) {
      r.last = f.lastSeen;
      r.lastMs = last;
    }
    for (let k = 3 * j; k < 3 * j + 3; k++) {
      const h = this.hosts[k]!;
      if (h >= 0) r.hosts.add(h);
    }
    const bits = this.bits[j]!;
    r.verdicts |= bits & 7;
    r.protocols |= bits >> 3;
  }

  tally(b: number, takes: ((dest: number) => boolean) | undefined, into: readonly RuleTally[] | RuleTally): void {
    if (this.dup === null) this.dup = duplicatedKeys(this.items);
    for (let j = this.head[b] ?? -1; j !== -1; j = this.next[j]!) {
      if (takes && !takes(this.dest[j]!)) continue;
      if (!Array.isArray(into)) this.addItem(into as RuleTally, j);
      else for (const r of into) this.addItem(r, j);
    }
  }
}
