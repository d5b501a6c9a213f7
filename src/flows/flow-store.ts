/**
 * The controller's flow store (flows design section 5): what agents report, resolved once at
 * ingest, aggregated by key in time windows, bounded, queried with the /flows filters. Pure:
 * every time is passed in, nothing is read or written outside; flow-persistence.ts saves it.
 *
 * Contract
 * - Windows: an aggregate belongs to the window of the controller's clock when its record was
 *   received (`floor(receivedAtMs / windowMs)`), so windows are created in order and the oldest
 *   is always first. The record's own first/last seen (the agent's clock) are kept as reported.
 * - Retention: a window ending `retentionMs` or more before now is dropped, at ingest and query.
 * - Bound: at most `maxRecords` aggregates in all; beyond, whole windows go, oldest first, and
 *   their aggregates count as dropped. When the current window alone is full, a record for a
 *   new key is dropped (counted); known keys keep counting.
 * - A record is resolved once, by the resolver of the policy and cluster in force (FlowResolver,
 *   one per pair); with none yet (no policy or no cluster), it is dropped and counted.
 * - Changes (for /flows/events): the keys changed since the last `takeChanges` (bounded by
 *   `maxChanges`, the rest counted as `changesTruncated`), given as their totals over every window
 *   kept: one running total per key, updated at ingest and when a window goes (its counts are
 *   taken off; first/last seen stay those of the oldest and newest records it ever had).
 * - Only the newest window is ever written to (its `rev` says when last), so an older one does
 *   not change any more: persistence writes a window again only when its `rev` moved.
 * - Memory: an aggregate is one small object (resolution reference, verdict index, four
 *   numbers) in one Map per window under its 16-hex key, shared with the resolution.
 */
import type { FlowEntry, FlowOverflow, FlowSink, FlowVerdict } from './flow-types.js';
import { FLOW_VERDICTS } from './flow-types.js';
import type { ObservedFlow } from './observed-flow.js';
import { resolutionMatcher, type FlowQuery } from './flow-query.js';
import { keyOf, observedFlow, VERDICT_INDEX, type FlowResolution, type FlowResolver } from './resolve-flow.js';

export const DEFAULT_FLOW_WINDOW_MS = 60_000;
export const DEFAULT_FLOW_RETENTION_MS = 24 * 3_600_000;
export const DEFAULT_FLOW_MAX_RECORDS = 1_000_000;

export interface FlowStoreOptions {
  readonly windowMs?: number;
  readonly retentionMs?: number;
  readonly maxRecords?: number;
  /** Changed keys kept for /flows/events between two takes. Default 100,000. */
  readonly maxChanges?: number;
}

/** One aggregate: counts of one key in one window. */
export interface Aggregate {
  r: FlowResolution;
  readonly v: number;
  p: number;
  b: number;
  f: number;
  l: number;
}

export interface LostCount {
  readonly reportedBy: string;
  readonly direction: FlowOverflow['direction'];
  readonly verdict: FlowVerdict;
  readonly family: 4 | 6;
  packets: number;
}

export interface FlowWindow {
  readonly start: number;
  readonly aggs: Map<string, Aggregate>;
  readonly lost: Map<string, LostCount>;
  /** The store's revision at the last ingest into this window (none: not written since it was restored), for persistence. */
  rev?: number;
}

export interface FlowAnswer {
  readonly flows: ObservedFlow[];
  readonly lost: LostCount[];
  readonly now: string;
}

export interface FlowSummary {
  readonly records: number;
  readonly windows: number;
  readonly oldest: string | null;
  readonly newest: string | null;
  readonly lost: number;
}

export interface FlowCounters {
  /** Records ingested (each a FlowEntry). */
  records: number;
  /** Aggregates evicted by the bound, records refused by it, and records with no resolver. */
  dropped: number;
  /** Records dropped because no policy and cluster were in force. */
  unresolved: number;
  changesTruncated: number;
}

/** The key of a lost count in its window: reporter, direction, verdict, family. */
export function lostKey(hostId: string, o: Pick<FlowOverflow, 'direction' | 'verdict' | 'family'>): string {
  return `${hostId}\u0000${o.direction}\u0000${o.verdict}\u0000${o.family}`;
}

function aggregateFlow(a: Aggregate): ObservedFlow {
  return observedFlow(a.r, FLOW_VERDICTS[a.v]!, a.p, a.b, a.f, a.l);
}

/** Packets descending, then key: the order of /flows, on [key, aggregate] (materialised after the cut). */
function byCount(x: readonly [string, Aggregate], y: readonly [string, Aggregate]): number {
  const d = y[1].p - x[1].p;
  if (d !== 0) return d;
  return x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0;
}

/**
 * The first `k` entries of `all` in byCount order, sorted: a bounded max-heap of the k best so
 * far (its root the worst of them), O(n log k) instead of sorting all n (a page of 1,000 out of
 * a million aggregates).
 */
export function firstOf(all: Iterable<[string, Aggregate]>, k: number): [string, Aggregate][] {
  const heap: [string, Aggregate][] = [];
  const worse = (i: number, j: number): boolean => byCount(heap[i]!, heap[j]!) > 0;
  const swap = (i: number, j: number): void => {
    const t = heap[i]!;
    heap[i] = heap[j]!;
    heap[j] = t;
  };
  for (const e of all) {
    if (heap.length < k) {
      heap.push(e);
      for (let i = heap.length - 1; i > 0; ) {
        const parent = (i - 1) >> 1;
        if (!worse(i, parent)) break;
        swap(i, parent);
        i = parent;
      }
    } else if (k > 0 && byCount(e, heap[0]!) < 0) {
      heap[0] = e;
      for (let i = 0; ; ) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < heap.length && worse(l, m)) m = l;
        if (r < heap.length && worse(r, m)) m = r;
        if (m === i) break;
        swap(i, m);
        i = m;
      }
    }
  }
  return heap.sort(byCount);
}

/** The order of /flows on ObservedFlows: packets descending, then key. */
export function byPackets(a: ObservedFlow, b: ObservedFlow): number {
  return b.packets - a.packets || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);
}

/** The order of the lost rows of /flows: packets descending, then reporter. */
export function byLostPackets(a: { packets: number; reportedBy: string }, b: { packets: number; reportedBy: string }): number {
  return b.packets - a.packets || (a.reportedBy < b.reportedBy ? -1 : a.reportedBy > b.reportedBy ? 1 : 0);
}

export class FlowStore implements FlowSink {
  readonly windowMs: number;
  readonly retentionMs: number;
  readonly maxRecords: number;
  private readonly maxChanges: number;
  private windows: FlowWindow[] = [];
  private total = 0;
  private changed = new Set<string>();
  /** Per key, its counts over every window kept and how many windows hold it. */
  private totals = new Map<string, Aggregate & { n: number }>();
  private lastIngestMs: number | undefined;
  readonly counters: FlowCounters = { records: 0, dropped: 0, unresolved: 0, changesTruncated: 0 };
  /** New connections per `direction\0verdict\0app\0port` since start (portcullis_flows_total). */
  readonly flowsTotal = new Map<string, number>();
  /** Lost new connections per `verdict\0direction` since start (portcullis_flow_lost_total). */
  readonly lostTotal = new Map<string, number>();
  /** Increases with every ingest that changed something, and with a restore (persistence saves on change). */
  revision = 0;
  /** Called after an ingest that changed something (the SSE hub batches). */
  onChange: (() => void) | undefined;

  constructor(
    private readonly resolver: () => FlowResolver | undefined,
    options: FlowStoreOptions = {},
  ) {
    this.windowMs = Math.max(1000, options.windowMs ?? DEFAULT_FLOW_WINDOW_MS);
    this.retentionMs = Math.max(this.windowMs, options.retentionMs ?? DEFAULT_FLOW_RETENTION_MS);
    this.maxRecords = Math.max(1, options.maxRecords ?? DEFAULT_FLOW_MAX_RECORDS);
    this.maxChanges = Math.max(1, options.maxChanges ?? 100_000);
  }

  ingest(hostId: string, entries: readonly FlowEntry[], lost: readonly FlowOverflow[], receivedAtMs: number): void {
    this.prune(receivedAtMs);
    const resolver = entries.length > 0 ? this.resolver() : undefined;
    if (entries.length > 0 && resolver === undefined) {
      this.counters.unresolved += entries.length;
      this.counters.dropped += entries.length;
    }
    const w = entries.length + lost.length > 0 ? this.windowAt(receivedAtMs) : undefined;
    if (w && resolver) for (const e of entries) this.add(w, resolver.resolve(hostId, e), e);
    if (w) for (const o of lost) this.addLost(w, hostId, o);
    if (w) {
      this.lastIngestMs = receivedAtMs;
      this.revision++;
      w.rev = this.revision;
      this.onChange?.();
    }
  }

  private add(w: FlowWindow, r: FlowResolution, e: FlowEntry): void {
    const v = VERDICT_INDEX[e.verdict];
    const key = keyOf(r, e.verdict);
    let a = w.aggs.get(key);
    if (a === undefined) {
      if (this.total >= this.maxRecords) this.evictFor(w);
      if (this.total >= this.maxRecords) {
        this.counters.dropped++;
        return;
      }
      a = { r, v, p: 0, b: 0, f: e.firstSeenMs, l: e.lastSeenMs };
      w.aggs.set(key, a);
      this.total++;
      this.totalOf(key, a).n++;
    }
    const t = this.totals.get(key)!;
    t.r = r;
    t.p += e.packets;
    t.b += e.bytes;
    if (e.firstSeenMs < t.f) t.f = e.firstSeenMs;
    if (e.lastSeenMs > t.l) t.l = e.lastSeenMs;
    a.r = r;
    a.p += e.packets;
    a.b += e.bytes;
    if (e.firstSeenMs < a.f) a.f = e.firstSeenMs;
    if (e.lastSeenMs > a.l) a.l = e.lastSeenMs;
    this.counters.records++;
    this.countFlows(r, e);
    if (this.changed.size < this.maxChanges || this.changed.has(key)) this.changed.add(key);
    else this.counters.changesTruncated++;
  }

  private totalOf(key: string, a: Aggregate): Aggregate & { n: number } {
    let t = this.totals.get(key);
    if (t === undefined) {
      t = { r: a.r, v: a.v, p: 0, b: 0, f: a.f, l: a.l, n: 0 };
      this.totals.set(key, t);
    }
    return t;
  }

  /** Takes the oldest window out, and its counts off the totals. */
  private dropOldest(): FlowWindow {
    const old = this.windows.shift()!;
    this.total -= old.aggs.size;
    for (const [key, a] of old.aggs) {
      const t = this.totals.get(key);
      if (!t) continue;
      t.p -= a.p;
      t.b -= a.b;
      if (--t.n <= 0) this.totals.delete(key);
    }
    return old;
  }

  private countFlows(r: FlowResolution, e: FlowEntry): void {
    const port = r.destination.portName ?? String(r.destination.port);
    for (const app of r.destination.apps) {
      const k = `${r.direction}\u0000${e.verdict}\u0000${app.appId}\u0000${port}`;
      this.flowsTotal.set(k, (this.flowsTotal.get(k) ?? 0) + e.packets);
    }
  }

  private addLost(w: FlowWindow, hostId: string, o: FlowOverflow): void {
    const k = lostKey(hostId, o);
    const known = w.lost.get(k);
    if (known) known.packets += o.packets;
    else w.lost.set(k, { reportedBy: hostId, direction: o.direction, verdict: o.verdict, family: o.family, packets: o.packets });
    const t = `${o.verdict}\u0000${o.direction}`;
    this.lostTotal.set(t, (this.lostTotal.get(t) ?? 0) + o.packets);
  }

  /** Evicts whole windows, oldest first, never `keep` (the one being written). */
  private evictFor(keep: FlowWindow): void {
    while (this.total >= this.maxRecords && this.windows.length > 1 && this.windows[0] !== keep) {
      this.counters.dropped += this.dropOldest().aggs.size;
    }
  }

  private windowAt(nowMs: number): FlowWindow {
    const start = Math.floor(nowMs / this.windowMs) * this.windowMs;
    const last = this.windows[this.windows.length - 1];
    // A clock that went back writes into the newest window: windows stay in order.
    if (last && last.start >= start) return last;
    const w: FlowWindow = { start, aggs: new Map(), lost: new Map() };
    this.windows.push(w);
    return w;
  }

  /** Drops the windows that ended `retentionMs` or more before `nowMs`. */
  prune(nowMs: number): void {
    while (this.windows.length > 0 && this.windows[0]!.start + this.windowMs <= nowMs - this.retentionMs) this.dropOldest();
  }

  /** `/flows`: aggregates merged by key over the windows in range, filtered, by packets then key. */
  query(q: FlowQuery, nowMs: number): FlowAnswer {
    this.prune(nowMs);
    const since = q.sinceMs ?? -Infinity;
    const until = q.untilMs ?? Infinity;
    const verdicts = q.verdicts ? new Set(q.verdicts.map((v) => VERDICT_INDEX[v])) : undefined;
    const filtered = q.from !== undefined || q.to !== undefined || q.port !== undefined || q.direction !== undefined;
    const matches = filtered ? cached(resolutionMatcher(q)) : () => true;
    const keep = (a: Aggregate): boolean => a.l >= since && a.f <= until && (!verdicts || verdicts.has(a.v)) && matches(a.r);
    // Received before `since` means last seen before it; a later window may still hold records
    // first seen before `until` (the agent reports after it counts), so only `since` skips windows.
    const inRange = this.windows.filter((w) => w.start + this.windowMs > since);
    const lost = new Map<string, LostCount>();
    for (const w of inRange) {
      for (const [k, l] of w.lost) {
        if (q.direction !== undefined && l.direction !== q.direction) continue;
        if (q.verdicts && !q.verdicts.includes(l.verdict)) continue;
        const m = lost.get(k);
        if (m) m.packets += l.packets;
        else lost.set(k, { ...l });
      }
    }
    const merged = inRange.length === 1 ? only(inRange[0]!.aggs, keep) : mergeWindows(inRange, keep);
    const flows = firstOf(q.keys ? withKeys(merged, q.keys) : merged, q.limit).map(([, a]) => aggregateFlow(a));
    const lostList = [...lost.values()].sort(byLostPackets);
    return { flows, lost: lostList.map((l) => ({ ...l })), now: new Date(nowMs).toISOString() };
  }

  /** The totals (over every window kept) of the keys changed since the previous call. */
  takeChanges(): Aggregate[] {
    const out: Aggregate[] = [];
    for (const key of this.changed) {
      const t = this.totals.get(key);
      if (t) out.push({ r: t.r, v: t.v, p: t.p, b: t.b, f: t.f, l: t.l });
    }
    this.changed = new Set();
    return out;
  }

  /** The ObservedFlows of `changes` that match `q` (verdict and filters; time ranges read last seen). */
  static changedFlows(changes: readonly Aggregate[], q: FlowQuery): ObservedFlow[] {
    const matches = cached(resolutionMatcher(q));
    const since = q.sinceMs ?? -Infinity;
    const until = q.untilMs ?? Infinity;
    return changes
      .filter((a) => (!q.verdicts || q.verdicts.includes(FLOW_VERDICTS[a.v]!)) && a.l >= since && a.f <= until && matches(a.r))
      .map(aggregateFlow)
      .sort(byPackets)
      .slice(0, q.limit);
  }

  summary(nowMs: number): FlowSummary {
    this.prune(nowMs);
    let lost = 0;
    for (const w of this.windows) for (const l of w.lost.values()) lost += l.packets;
    return {
      records: this.total,
      windows: this.windows.length,
      oldest: this.windows.length === 0 ? null : new Date(this.windows[0]!.start).toISOString(),
      newest: this.lastIngestMs === undefined ? null : new Date(this.lastIngestMs).toISOString(),
      lost,
    };
  }

  /** The windows, oldest first (persistence reads them; do not modify). */
  allWindows(): readonly FlowWindow[] {
    return this.windows;
  }

  /** Replaces the content with `windows` (read back from disk), pruned and bounded. */
  restore(windows: FlowWindow[], nowMs: number): void {
    this.windows = [...windows].sort((a, b) => a.start - b.start);
    this.total = this.windows.reduce((n, w) => n + w.aggs.size, 0);
    this.totals = new Map();
    for (const w of this.windows) {
      for (const [key, a] of w.aggs) {
        const t = this.totalOf(key, a);
        t.n++;
        t.r = a.r;
        t.p += a.p;
        t.b += a.b;
        t.f = Math.min(t.f, a.f);
        t.l = Math.max(t.l, a.l);
      }
    }
    this.prune(nowMs);
    while (this.total > this.maxRecords && this.windows.length > 0) this.counters.dropped += this.dropOldest().aggs.size;
    const last = this.windows[this.windows.length - 1];
    if (last) this.lastIngestMs = last.start;
  }
}

/** The entries of `entries` whose key is one of `keys`. */
function* withKeys(entries: Iterable<[string, Aggregate]>, keys: ReadonlySet<string>): Generator<[string, Aggregate]> {
  for (const e of entries) if (keys.has(e[0])) yield e;
}

/** The aggregates of one window that `keep` keeps (no copies). */
function* only(aggs: Map<string, Aggregate>, keep: (a: Aggregate) => boolean): Generator<[string, Aggregate]> {
  for (const e of aggs) if (keep(e[1])) yield e;
}

/** The kept aggregates of `windows` merged by key; an aggregate seen in one window only is not copied. */
function mergeWindows(windows: readonly FlowWindow[], keep: (a: Aggregate) => boolean): Map<string, Aggregate> {
  const merged = new Map<string, Aggregate>();
  const copies = new WeakSet<Aggregate>();
  for (const w of windows) {
    for (const [key, a] of w.aggs) {
      if (!keep(a)) continue;
      let m = merged.get(key);
      if (m === undefined) {
        merged.set(key, a);
        continue;
      }
      if (!copies.has(m)) {
        m = { ...m };
        copies.add(m);
        merged.set(key, m);
      }
      m.r = a.r;
      m.p += a.p;
      m.b += a.b;
      m.f = Math.min(m.f, a.f);
      m.l = Math.max(m.l, a.l);
    }
  }
  return merged;
}

/** A matcher memoised per resolution object (aggregates of one flow share it). */
function cached(match: (r: FlowResolution) => boolean): (r: FlowResolution) => boolean {
  const seen = new Map<FlowResolution, boolean>();
  return (r) => {
    let hit = seen.get(r);
    if (hit === undefined) {
      hit = match(r);
      seen.set(r, hit);
    }
    return hit;
  };
}
