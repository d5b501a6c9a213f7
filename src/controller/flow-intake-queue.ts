/**
 * The controller's flow sink in front of the FlowStore: reports are queued as they arrive and
 * ingested in slices of at most `sliceMs` (default 10 ms) of work, each slice in its own turn
 * of the event loop (setImmediate), so a burst of new flows (65,536 records from each of many
 * agents, each record's first resolution running the reference evaluator) never stalls the
 * agent streams, pings or /status for long. Bounded: at most `maxQueued` records wait (default
 * 1,000,000); a report beyond is dropped and counted in the store's `dropped` (its lost counts
 * are still kept). `flush()` ingests everything queued at once (a clean stop, before the save).
 */
import type { FlowEntry, FlowOverflow, FlowSink } from '../flows/flow-types.js';
import type { FlowStore } from '../flows/flow-store.js';

interface Pending {
  readonly hostId: string;
  readonly entries: readonly FlowEntry[];
  readonly receivedAtMs: number;
  offset: number;
}

const CHUNK = 256;

export class FlowIntakeQueue implements FlowSink {
  private readonly pending: Pending[] = [];
  private queued = 0;
  private timer: NodeJS.Immediate | undefined;
  private readonly sliceMs: number;
  private readonly maxQueued: number;

  constructor(
    private readonly store: FlowStore,
    options: { sliceMs?: number; maxQueued?: number } = {},
  ) {
    this.sliceMs = options.sliceMs ?? 10;
    this.maxQueued = options.maxQueued ?? 1_000_000;
  }

  ingest(hostId: string, entries: readonly FlowEntry[], lost: readonly FlowOverflow[], receivedAtMs: number): void {
    if (lost.length > 0) this.store.ingest(hostId, [], lost, receivedAtMs);
    if (entries.length === 0) return;
    if (this.queued + entries.length > this.maxQueued) {
      this.store.counters.dropped += entries.length;
      return;
    }
    this.pending.push({ hostId, entries, receivedAtMs, offset: 0 });
    this.queued += entries.length;
    this.timer ??= setImmediate(() => this.slice());
  }

  /** Records waiting to be ingested. */
  size(): number {
    return this.queued;
  }

  /** Ingests everything queued now. */
  flush(): void {
    if (this.timer) clearImmediate(this.timer);
    this.timer = undefined;
    this.work(Infinity);
  }

  close(): void {
    if (this.timer) clearImmediate(this.timer);
    this.timer = undefined;
  }

  private slice(): void {
    this.timer = undefined;
    this.work(this.sliceMs);
    if (this.pending.length > 0) this.timer = setImmediate(() => this.slice());
  }

  private work(budgetMs: number): void {
    const start = performance.now();
    while (this.pending.length > 0 && performance.now() - start < budgetMs) {
      const p = this.pending[0]!;
      const end = Math.min(p.entries.length, p.offset + CHUNK);
      this.store.ingest(p.hostId, p.entries.slice(p.offset, end), [], p.receivedAtMs);
      this.queued -= end - p.offset;
      p.offset = end;
      if (end === p.entries.length) this.pending.shift();
    }
  }
}
