/**
 * How long the sync client waits for a replica's TCP and TLS connection (`--connect-timeout`):
 * the base deadline, doubled after each deadline missed in a row, up to a cap (the first-message
 * deadline), and back to the base once a controller answered. A replica that drops packets is
 * left after the base deadline; replicas slowed by a reconnect storm are waited for longer each
 * round instead of being made busier by agents hopping between them with half-made handshakes.
 *
 * Queued, not missed: when a deadline fires while the replica has the connection and its TLS
 * handshake is under way (TCP up, ClientHello sent, no answer yet: a busy replica's handshake
 * queue, src/tls/handshake-queue.ts, holds it), the wait goes on, a deadline at a time, up to
 * `queuedWaitMs` since the dial, and no deadline counts as missed. Giving up such a connection
 * would give up its place in that queue for the end of another replica's. A replica that accepts
 * connections and never handshakes (a hung process) is left after `queuedWaitMs`.
 */
import { DEFAULT_HANDSHAKE_QUEUE_WAIT_MS } from '../src/tls/handshake-queue.js';

/** Default `queuedWaitMs`: as long as a replica's handshake queue lets a connection wait by default. */
export const DEFAULT_QUEUED_WAIT_MS = DEFAULT_HANDSHAKE_QUEUE_WAIT_MS;

/** One dial, as the deadline sees it. */
export interface DialWatch {
  /** The dial still waits for its channel (the client has not moved on, the replica said nothing). */
  stillWaiting(): boolean;
  /** The replica has our connection and its TLS handshake is in progress. */
  handshaking(): boolean;
  /** The deadline passed: the dial is given up after `waitedMs` (the deadline, or the queued wait's length). */
  missed(waitedMs: number, message: string): void;
}

/** The part of a gRPC client the deadline needs. */
export interface ReadyWaiter {
  waitForReady(deadline: number, callback: (error?: Error) => void): void;
}

export class ConnectDeadline {
  private missed = 0;

  /** `baseMs` ≤ 0: no deadline. */
  constructor(
    private readonly baseMs: number,
    private readonly capMs: number,
    private readonly queuedWaitMs: number = DEFAULT_QUEUED_WAIT_MS,
  ) {}

  /** The deadline for the next connect in ms; 0: none. */
  next(): number {
    if (this.baseMs <= 0) return 0;
    return Math.min(this.baseMs * 2 ** Math.min(this.missed, 30), Math.max(this.baseMs, this.capMs));
  }

  missedOne(): void {
    this.missed += 1;
  }

  /** A controller answered. */
  reset(): void {
    this.missed = 0;
  }

  /** Arms the deadline of one dial on `client` (see the header); nothing when there is no deadline. */
  watch(client: ReadyWaiter, dial: DialWatch): void {
    const first = this.next();
    if (first <= 0) return;
    const dialledAt = Date.now();
    let queued = false;
    const arm = (ms: number): void => {
      client.waitForReady(Date.now() + ms, (err) => {
        if (!err) return;
        // Decided after the event loop's pending I/O: in a busy process the deadline's timer can
        // run before the TCP connection that completed meanwhile is seen (and its handshake begun).
        setImmediate(() => {
          if (!dial.stillWaiting()) return;
          const waited = Date.now() - dialledAt;
          if (waited < this.queuedWaitMs && dial.handshaking()) {
            queued = true;
            arm(Math.min(ms, this.queuedWaitMs - waited));
            return;
          }
          this.missedOne();
          dial.missed(queued ? waited : first, err.message);
        });
      });
    };
    arm(first);
  }
}
