/**
 * Following a Consul read over time with blocking queries, as Consul's docs ask a client to
 * (website/content/api-docs/features/blocking.mdx, "Implementation Details"):
 *
 *  - the first read (and every read after a reset) has no index and answers at once; each next
 *    read passes the last X-Consul-Index and `wait`, and Consul holds it until something changed
 *    or the wait ran out. A return is "no guarantee of a change": a value is delivered only when
 *    its fingerprint differs from the last one delivered (a wait that ran out, or an index bump
 *    without a change, delivers nothing);
 *  - **the index going backwards resets it to 0**: the answer that came with the lower index is
 *    dropped and the loop re-reads everything at once (counted in `resets`; with
 *    `redeliverAfterReset` that read is delivered even when its value equals the last one: its
 *    index is of a new history), so a snapshot restore or a removed highest key can never leave
 *    the follower blocked on a stale index;
 *  - **an index below 1 is taken as 1**, so the loop blocks instead of spinning;
 *  - **rate limit**: a token bucket with a burst of 2 refilled every `minIntervalMs`, so the happy
 *    case never waits and a churning value degrades into polling at that rate;
 *  - a failed read (Consul down, HTTP 5xx, a malformed answer, a missing index) is retried after
 *    a full-jitter exponential backoff (src/retry/backoff.ts), reset by the next good read; the
 *    last delivered value stays the caller's truth meanwhile (nothing is delivered on failure).
 *
 * Bounded: each read is bounded by the client's timeouts, waits and backoff are capped, and the
 * loop ends when `stop()` is called (it cancels the read in flight).
 */
import { Backoff, sleep, type BackoffOptions } from '../retry/backoff.js';
import type { BlockingOptions, IndexedResult } from './consul-client.js';
import { ConsulCallError } from './consul-http.js';
import type { Skipped } from './consul-payloads.js';

export interface FollowOptions<T> {
  /** One read; gets the index to block on (absent: answer at once), the wait and the stop signal. */
  readonly read: (b: BlockingOptions) => Promise<IndexedResult<T>>;
  /** A new value (the first one, then each that differs from the last delivered). */
  readonly onChange: (value: T, info: { readonly index: number; readonly skipped: readonly Skipped[] }) => void;
  /** A failed read, and the delay before the next try. */
  readonly onError?: (error: Error, info: { readonly attempt: number; readonly delayMs: number }) => void;
  /** The index went backwards: the follower reset it and re-reads everything. */
  readonly onReset?: (info: { readonly from: number; readonly to: number }) => void;
  /** After a reset, deliver the re-read value even when its fingerprint is the last one's. Default false. */
  readonly redeliverAfterReset?: boolean;
  /** Identity of a value: equal fingerprints are not delivered twice. Default JSON text. */
  readonly fingerprint?: (value: T) => string;
  /** Blocking wait of each read. Default 60 s. */
  readonly waitMs?: number;
  /** Rate limit: a read token every this many ms, burst 2. Default 1,000 ms. */
  readonly minIntervalMs?: number;
  readonly backoff?: BackoffOptions;
}

export interface FollowStats {
  reads: number;
  changes: number;
  resets: number;
  errors: number;
  /** The index the next read blocks on (0: the next read answers at once). */
  index: number;
  /**
   * The last read that answered: when it was started (epoch ms) and the index it answered, even
   * one that went backwards. A read started after some moment answering an index below one seen
   * before that moment shows Consul's index went backwards (used by the input stamp's reset rule,
   * src/grpc/input-stamp.ts).
   */
  lastAnswer: { readonly startedAt: number; readonly index: number } | undefined;
}

export interface Follower {
  readonly stats: Readonly<FollowStats>;
  /** Resolves when the loop has ended (after stop()). */
  readonly done: Promise<void>;
  stop(): Promise<void>;
}

const BURST = 2;

export function followBlocking<T>(o: FollowOptions<T>): Follower {
  const stop = new AbortController();
  const stats: FollowStats = { reads: 0, changes: 0, resets: 0, errors: 0, index: 0, lastAnswer: undefined };
  const backoff = new Backoff({ initialMs: 250, maxMs: 30_000, ...o.backoff });
  const fingerprint = o.fingerprint ?? ((v: T) => JSON.stringify(v));
  const minInterval = o.minIntervalMs ?? 1_000;
  let tokens = BURST;
  let refilledAt = Date.now();
  let last: string | undefined;

  const takeToken = async (): Promise<void> => {
    const now = Date.now();
    if (minInterval > 0) {
      const earned = Math.floor((now - refilledAt) / minInterval);
      if (earned > 0) {
        tokens = Math.min(BURST, tokens + earned);
        refilledAt = tokens === BURST ? now : refilledAt + earned * minInterval;
      }
      if (tokens === 0) {
        await sleep(refilledAt + minInterval - now, stop.signal);
        tokens = 1;
        refilledAt = Date.now();
      }
    }
    tokens -= 1;
  };

  const loop = async (): Promise<void> => {
    while (!stop.signal.aborted) {
      // Yield to the event loop each round, so a read that answers at once can never starve it.
      await new Promise<void>((resolve) => setImmediate(resolve));
      await takeToken();
      if (stop.signal.aborted) break;
      let r: IndexedResult<T>;
      const startedAt = Date.now();
      try {
        stats.reads += 1;
        r = await o.read({ index: stats.index, waitMs: o.waitMs ?? 60_000, signal: stop.signal });
        // Consul's failing, not the value's: callers tell a Consul problem from a bad value by this type.
        if (r.index === undefined) throw new ConsulCallError('answer without a usable X-Consul-Index (blocking not possible)', undefined);
      } catch (e) {
        if (stop.signal.aborted) break;
        stats.errors += 1;
        const delayMs = backoff.next();
        o.onError?.(e instanceof Error ? e : new Error(String(e)), { attempt: backoff.attempt, delayMs });
        await sleep(delayMs, stop.signal);
        continue;
      }
      backoff.reset();
      stats.lastAnswer = { startedAt, index: r.index };
      const index = Math.max(r.index, 1);
      if (index < stats.index) {
        stats.resets += 1;
        o.onReset?.({ from: stats.index, to: index });
        stats.index = 0;
        if (o.redeliverAfterReset) last = undefined;
        continue;
      }
      stats.index = index;
      const print = fingerprint(r.value);
      if (print !== last) {
        last = print;
        stats.changes += 1;
        try {
          o.onChange(r.value, { index: stats.index, skipped: r.skipped });
        } catch (e) {
          // A throwing consumer must not end the loop (nor reject `done` unhandled).
          o.onError?.(e instanceof Error ? e : new Error(String(e)), { attempt: 0, delayMs: 0 });
        }
      }
    }
  };

  const done = loop();
  return {
    stats,
    done,
    stop: async () => {
      stop.abort();
      await done;
    },
  };
}
