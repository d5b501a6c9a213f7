/**
 * A Consul session lock on one KV key (issue 12 item 5: what must happen once takes a lock),
 * following Consul's documented leader-election pattern (kv.mdx `acquire`/`release`,
 * session.mdx):
 *
 *  - a session (Name, TTL, Behavior release, LockDelay) is created on the local agent and renewed
 *    every TTL/2; `PUT kv/<key>?acquire=<session>` takes the lock (false: another session holds
 *    it, or its lock delay runs);
 *  - between renewals the holder (and a waiting contender) blocks on the key, so a contender
 *    tries again as soon as the key changes (e.g. the holder released it or its session died);
 *  - the lock is **lost** when a renewal says the session is gone, when the key's Session is no
 *    longer ours, or when no renewal succeeded for a whole TTL (Consul unreachable: Consul may
 *    already have invalidated the session, so the holder must not act as the holder any longer).
 *    `onLost` is called, and the loop goes back to contending with a new session. The TTL counts
 *    from when the last create or renewal was *sent* (Consul's TTL is a lower bound from when it
 *    handled it); once it ran out the lock is lost (`held` false, `onLost`) even while a call hangs (a
 *    partition: the blocked read or renewal fails only at its own timeout, after the TTL);
 *  - the key is read with blocking queries; an X-Consul-Index below 1 is taken as 1 (blocking.mdx),
 *    so a Consul answering 0 never turns the wait into a loop of immediate reads;
 *  - `stop()` releases the lock and destroys the session (bounded; failures reported).
 *
 * Safety note for users: a lock in Consul is advisory and time-bounded; work done under it
 * should be idempotent or fenced with the key's LockIndex.
 */
import { Backoff, sleep, type BackoffOptions } from '../retry/backoff.js';
import type { ConsulClient } from './consul-client.js';
import { ConsulCallError } from './consul-http.js';
import { goDurationMs } from './go-duration.js';

export interface SessionLockOptions {
  readonly client: ConsulClient;
  readonly key: string;
  /** Written to the key while held (who holds it, for people and logs). */
  readonly value: string;
  readonly sessionName: string;
  /** Go duration, 10s..24h as Consul requires. Default 15s. */
  readonly ttl?: string;
  /** Go duration. Default Consul's 15s. */
  readonly lockDelay?: string;
  readonly backoff?: BackoffOptions;
  readonly onAcquired?: (info: { readonly session: string; readonly lockIndex: number }) => void;
  readonly onLost?: (reason: string) => void;
  readonly onError?: (error: Error) => void;
}

const UNREACHABLE = 'no renewal for a whole TTL (Consul unreachable)';

export interface SessionLockStats {
  sessions: number;
  acquireAttempts: number;
  acquired: number;
  lost: number;
  errors: number;
}

export class SessionLock {
  readonly stats: SessionLockStats = { sessions: 0, acquireAttempts: 0, acquired: 0, lost: 0, errors: 0 };
  private readonly stopper = new AbortController();
  private loop: Promise<void> | undefined;
  private session: string | undefined;
  private holding = false;
  /** When the session's last create or successful renewal was sent (epoch ms). */
  private renewedAt = 0;
  /** While held: fires when the TTL from `renewedAt` runs out before the next renewal (a hanging call). */
  private expiry: NodeJS.Timeout | undefined;
  private readonly ttlMs: number;

  constructor(private readonly o: SessionLockOptions) {
    const ttl = goDurationMs(o.ttl ?? '15s');
    if (ttl === undefined || ttl < 10_000 || ttl > 86_400_000) throw new Error(`session TTL must be a duration between 10s and 24h, not ${o.ttl}`);
    this.ttlMs = ttl;
  }

  /** True while this process holds the lock (and its session's TTL, counted from the last renewal sent, has not run out). */
  get held(): boolean {
    return this.holding && Date.now() - this.renewedAt < this.ttlMs;
  }

  start(): void {
    this.loop ??= this.run();
  }

  async stop(): Promise<void> {
    this.stopper.abort();
    await this.loop;
    clearTimeout(this.expiry);
    const session = this.session;
    this.session = undefined;
    if (session === undefined) return;
    try {
      if (this.holding) await this.o.client.kvPut(this.o.key, this.o.value, { release: session });
    } catch (e) {
      this.o.onError?.(e as Error);
    } finally {
      this.holding = false;
    }
    try {
      await this.o.client.sessionDestroy(session);
    } catch (e) {
      this.o.onError?.(e as Error);
    }
  }

  /** (Re)arms the TTL deadline of the lock held, from the last renewal sent. */
  private armExpiry(): void {
    clearTimeout(this.expiry);
    if (!this.holding) return;
    this.expiry = setTimeout(() => this.lose(UNREACHABLE), Math.max(0, this.renewedAt + this.ttlMs - Date.now()));
    this.expiry.unref();
  }

  private lose(reason: string): void {
    clearTimeout(this.expiry);
    if (this.holding) {
      this.holding = false;
      this.stats.lost += 1;
      this.o.onLost?.(reason);
    }
  }

  private async run(): Promise<void> {
    const { client, key } = this.o;
    const signal = this.stopper.signal;
    const backoff = new Backoff({ initialMs: 500, maxMs: Math.max(1_000, this.ttlMs / 3), ...this.o.backoff });
    const renewEvery = this.ttlMs / 2;
    let index = 0;
    while (!signal.aborted) {
      try {
        const sentAt = Date.now();
        if (this.session === undefined) {
          this.session = await client.sessionCreate({ name: this.o.sessionName, ttl: `${this.ttlMs}ms`, behavior: 'release', ...(this.o.lockDelay !== undefined ? { lockDelay: this.o.lockDelay } : {}) }, signal);
          this.stats.sessions += 1;
          this.renewedAt = sentAt;
        } else if (sentAt - this.renewedAt >= renewEvery) {
          if (!(await client.sessionRenew(this.session, signal))) {
            this.session = undefined;
            this.lose('session expired (renewal refused)');
            continue;
          }
          this.renewedAt = sentAt;
          this.armExpiry();
        }
        if (!this.holding) {
          this.stats.acquireAttempts += 1;
          if (await client.kvPut(key, this.o.value, { acquire: this.session, signal })) {
            // Held from here; if this read fails, the next acquire by the same session answers true again.
            const entry = (await client.kvGet(key, { signal })).value;
            this.holding = true;
            this.armExpiry();
            this.stats.acquired += 1;
            this.o.onAcquired?.({ session: this.session, lockIndex: entry?.lockIndex ?? 0 });
          }
        }
        const waitMs = Math.max(1, this.renewedAt + renewEvery - Date.now());
        const r = await client.kvGet(key, { index, waitMs, signal });
        // Without an index it cannot block: a failed read (backoff), not a loop of immediate reads.
        if (r.index === undefined) throw new ConsulCallError(`${key}: answer without a usable X-Consul-Index (blocking not possible)`, undefined);
        // Backwards (a restore): read at once next time; below 1: block on 1 (blocking.mdx).
        index = r.index < index ? 0 : Math.max(r.index, 1);
        if (this.holding && r.value?.session !== this.session) this.lose('the key is no longer held by this session');
        backoff.reset();
      } catch (e) {
        if (signal.aborted) break;
        this.stats.errors += 1;
        this.o.onError?.(e as Error);
        if (Date.now() - this.renewedAt >= this.ttlMs) {
          this.lose(UNREACHABLE);
          this.session = undefined;
        }
        await sleep(backoff.next(), signal);
      }
    }
  }
}
