/**
 * The hub behind `GET /flows/events`: it drains the flow store's changes at most once per
 * `intervalMs` (default 1 s) after an ingest and sends each subscriber the changed flows its
 * filters match, as `event: flows` with `data: {"flows":[...]}`; every `keepAliveMs` (default
 * 15 s) a comment line keeps idle streams open through proxies.
 *
 * An event's flows are the changed aggregates with their totals over every window the store
 * keeps (what `/flows` without since/until says of them now): a consumer replaces the flow of
 * the same key. At most `maxSubscribers` streams (default 64) at once.
 */
import type { FlowQuery } from '../flows/flow-query.js';
import { FlowStore } from '../flows/flow-store.js';

interface Subscriber {
  readonly query: FlowQuery;
  readonly send: (chunk: string) => void;
}

export interface FlowEventHubOptions {
  readonly intervalMs?: number;
  readonly keepAliveMs?: number;
  readonly maxSubscribers?: number;
}

export class FlowEventHub {
  private readonly subscribers = new Set<Subscriber>();
  private flushTimer: NodeJS.Timeout | undefined;
  private keepAlive: NodeJS.Timeout | undefined;
  private lastFlush = 0;
  private readonly intervalMs: number;
  private readonly keepAliveMs: number;
  readonly maxSubscribers: number;

  constructor(
    private readonly store: FlowStore,
    options: FlowEventHubOptions = {},
  ) {
    this.intervalMs = options.intervalMs ?? 1000;
    this.keepAliveMs = options.keepAliveMs ?? 15_000;
    this.maxSubscribers = options.maxSubscribers ?? 64;
    store.onChange = () => this.schedule();
  }

  /** Whether one more stream may open. */
  full(): boolean {
    return this.subscribers.size >= this.maxSubscribers;
  }

  subscribe(query: FlowQuery, send: (chunk: string) => void): { close(): void } {
    const sub: Subscriber = { query, send };
    this.subscribers.add(sub);
    this.keepAlive ??= setInterval(() => {
      for (const s of this.subscribers) s.send(': keep-alive\n\n');
    }, this.keepAliveMs);
    this.keepAlive.unref();
    return {
      close: () => {
        this.subscribers.delete(sub);
        if (this.subscribers.size === 0 && this.keepAlive) {
          clearInterval(this.keepAlive);
          this.keepAlive = undefined;
        }
      },
    };
  }

  private schedule(): void {
    if (this.flushTimer) return;
    const wait = Math.max(0, this.lastFlush + this.intervalMs - Date.now());
    this.flushTimer = setTimeout(() => this.flush(), wait);
    this.flushTimer.unref();
  }

  /** Sends what changed since the last flush (also drains it when nobody listens). */
  flush(): void {
    this.flushTimer = undefined;
    this.lastFlush = Date.now();
    const changes = this.store.takeChanges();
    if (changes.length === 0) return;
    for (const s of this.subscribers) {
      const flows = FlowStore.changedFlows(changes, s.query);
      if (flows.length > 0) s.send(`event: flows\ndata: ${JSON.stringify({ flows })}\n\n`);
    }
  }

  close(): void {
    if (this.flushTimer) clearTimeout(this.flushTimer);
    if (this.keepAlive) clearInterval(this.keepAlive);
    this.flushTimer = undefined;
    this.keepAlive = undefined;
    this.subscribers.clear();
    this.store.onChange = undefined;
  }
}
