/**
 * Handshake admission for the controller's mTLS listener (issue 12: a replica that cannot keep up
 * says "later" cheaply). A connection storm (thousands of agents dialling at once after a restart
 * or a lost replica) must not turn into thousands of TLS handshakes in flight at once: they share
 * the CPU, so none finishes early, the agents' connect deadlines fire, and grpc-js does not cancel
 * a handshake its agent gave up, so the replica completes every abandoned one anyway while its
 * established streams miss their pings. This admits the sockets in order instead.
 *
 * Contract
 * - TCP connections are accepted as they come; at most `maxInFlight` of them are in a TLS
 *   handshake at once (0: no limit, every socket is handshaked at once as before). A handshake
 *   ends when it succeeds, fails, or times out (the TLS server's `handshakeTimeout`, so a
 *   slowloris client cannot hold a slot); then the oldest waiting socket is handshaked.
 * - A waiting socket costs no crypto and no grpc-js state: its first bytes (the ClientHello) are
 *   kept, at most `MAX_BUFFERED` bytes (beyond, it is paused), and handed to the TLS server with
 *   the socket when its turn comes. A waiting socket whose peer closes is dropped, never
 *   handshaked (`abandoned`).
 * - A socket is closed unhandshaked, at once, when `maxQueued` sockets already wait
 *   (`queue_full`), or when it has waited `maxWaitMs` (`waited_too_long`). The agent fails fast,
 *   backs off and dials its next replica. Both are counted as `busy` and logged at warn at most
 *   once per `logEveryMs` with the count since the last line.
 * - Who leaves the queue: an agent of this release keeps a queued connection (its TLS handshake
 *   under way) past its connect deadline, up to its queued wait (60 s, agent/connect-deadline.ts),
 *   so it keeps its place, and closes the connection it gives up on
 *   (src/tls/agent-channel-credentials.ts), so the queue sheds the connections nobody waits for
 *   by itself, at no cost. `maxWaitMs` (default 60 s, the agent's queued wait) bounds the wait of
 *   a client that never closes (an agent of an earlier release, a stray client), whose handshake
 *   would otherwise be done for nothing. Closing at a short wait instead was measured worse: with
 *   2 s, 1,000 agents on 3 replicas were closed 6,513 times in the cold start and 16,455 times
 *   in the reconnect storm (each close is a new connection attempt for the agent, and the replica
 *   idles while its agents back off; BENCHMARKS.md).
 *
 * Why here and not after Hello: the handshake is the first expensive step, and the only one whose
 * work grpc-js will not cancel; once a stream is open the agent's Hello is answered by the
 * SyncService as before.
 */
import type net from 'node:net';
import type { SyncLogger } from '../grpc/sync-logger.js';

/** First bytes of a waiting socket kept before it is paused (a ClientHello is well under this). */
const MAX_BUFFERED = 16 * 1024;

/** `--max-handshakes` default: enough to keep a small box's cores busy, few enough to finish in order. */
export const DEFAULT_MAX_HANDSHAKES = 64;
/** `--handshake-queue-wait` default: as long as an agent keeps a queued connection (agent/connect-deadline.ts); see the header. */
export const DEFAULT_HANDSHAKE_QUEUE_WAIT_MS = 60_000;

export const BUSY_REASONS = ['queue_full', 'waited_too_long'] as const;
export type BusyReason = (typeof BUSY_REASONS)[number];

export interface HandshakeAdmissionOptions {
  /** Handshakes in flight at once; 0: no limit. */
  readonly maxInFlight: number;
  /** Sockets waiting for a slot; beyond, the newcomer is closed (busy). Ignored when `maxInFlight` is 0. */
  readonly maxQueued: number;
  /** How long a socket may wait for a slot before it is closed (busy). */
  readonly maxWaitMs?: number;
  readonly logger?: SyncLogger;
  readonly logEveryMs?: number;
  readonly now?: () => number;
}

export interface HandshakeAdmissionStatus {
  readonly inFlight: number;
  readonly queued: number;
  readonly busy: Readonly<Record<BusyReason, number>>;
  readonly abandoned: number;
}

interface Waiting {
  readonly socket: net.Socket;
  readonly at: number;
  readonly chunks: Buffer[];
  bytes: number;
  readonly onData: (chunk: Buffer) => void;
  readonly onClose: () => void;
}

export class HandshakeAdmission {
  private inFlight = 0;
  private readonly waiting: Waiting[] = [];
  private readonly busy = Object.fromEntries(BUSY_REASONS.map((r) => [r, 0])) as Record<BusyReason, number>;
  private abandoned = 0;
  private unlogged = 0;
  private lastLogAt: number | undefined;
  private expiry: NodeJS.Timeout | undefined;
  private start: ((socket: net.Socket) => void) | undefined;
  private readonly now: () => number;
  private readonly maxWaitMs: number;

  constructor(private readonly options: HandshakeAdmissionOptions) {
    for (const [name, value] of [['maxInFlight', options.maxInFlight], ['maxQueued', options.maxQueued]] as const) {
      if (!Number.isInteger(value) || value < 0) throw new Error(`${name} must be a whole number >= 0, got ${value}`);
    }
    this.maxWaitMs = options.maxWaitMs ?? DEFAULT_HANDSHAKE_QUEUE_WAIT_MS;
    if (!(this.maxWaitMs > 0)) throw new Error(`maxWaitMs must be > 0, got ${this.maxWaitMs}`);
    this.now = options.now ?? Date.now;
  }

  /** The listener that handshakes an admitted socket (it calls `handshakeEnded` once per socket). */
  attach(start: (socket: net.Socket) => void): void {
    this.start = start;
  }

  /** A new TCP connection: handshaked now, queued, or closed busy. */
  offer(socket: net.Socket): void {
    const max = this.options.maxInFlight;
    if (max === 0 || (this.inFlight < max && this.waiting.length === 0)) {
      this.admit(socket);
      return;
    }
    if (this.waiting.length >= this.options.maxQueued) {
      this.refuse(socket, 'queue_full');
      return;
    }
    const entry: Waiting = {
      socket,
      at: this.now(),
      chunks: [],
      bytes: 0,
      onData: (chunk) => {
        entry.chunks.push(chunk);
        entry.bytes += chunk.length;
        if (entry.bytes >= MAX_BUFFERED) socket.pause();
      },
      onClose: () => {
        this.remove(entry);
        this.abandoned += 1;
      },
    };
    socket.on('error', ignore);
    socket.on('data', entry.onData);
    socket.once('close', entry.onClose);
    this.waiting.push(entry);
    this.armExpiry();
  }

  /** One admitted socket's handshake is over (succeeded, failed, timed out, or its peer left). */
  handshakeEnded(): void {
    this.inFlight = Math.max(0, this.inFlight - 1);
    this.drain();
  }

  /** Closes every waiting socket (the listener closes). */
  close(): void {
    if (this.expiry) clearTimeout(this.expiry);
    this.expiry = undefined;
    for (const entry of this.waiting.splice(0)) {
      entry.socket.off('close', entry.onClose);
      entry.socket.destroy();
    }
  }

  status(): HandshakeAdmissionStatus {
    return { inFlight: this.inFlight, queued: this.waiting.length, busy: { ...this.busy }, abandoned: this.abandoned };
  }

  /** Prometheus text (names next to portcullis_tls_refusals_total). */
  metrics(): string {
    const lines = [
      '# HELP portcullis_tls_handshakes_in_flight TLS handshakes of agent connections running now (at most --max-handshakes).',
      '# TYPE portcullis_tls_handshakes_in_flight gauge',
      `portcullis_tls_handshakes_in_flight ${this.inFlight}`,
      '# HELP portcullis_tls_handshakes_queued Agent connections accepted and waiting for a handshake slot (not handshaked yet).',
      '# TYPE portcullis_tls_handshakes_queued gauge',
      `portcullis_tls_handshakes_queued ${this.waiting.length}`,
      '# HELP portcullis_tls_busy_total Agent connections closed before their handshake because this replica was busy (the agent retries later or elsewhere).',
      '# TYPE portcullis_tls_busy_total counter',
      ...BUSY_REASONS.map((r) => `portcullis_tls_busy_total{reason="${r}"} ${this.busy[r]}`),
      '# HELP portcullis_tls_abandoned_total Agent connections closed by their peer while waiting for a handshake slot (never handshaked).',
      '# TYPE portcullis_tls_abandoned_total counter',
      `portcullis_tls_abandoned_total ${this.abandoned}`,
    ];
    return `${lines.join('\n')}\n`;
  }

  private admit(socket: net.Socket): void {
    if (!this.start) throw new Error('HandshakeAdmission: no listener attached');
    this.inFlight += 1;
    this.start(socket);
  }

  private drain(): void {
    const max = this.options.maxInFlight;
    this.expire();
    while (this.waiting.length > 0 && (max === 0 || this.inFlight < max)) {
      const entry = this.waiting.shift() as Waiting;
      const { socket } = entry;
      socket.off('data', entry.onData);
      socket.off('close', entry.onClose);
      socket.off('error', ignore);
      socket.pause();
      if (entry.bytes > 0) socket.unshift(Buffer.concat(entry.chunks));
      this.admit(socket);
    }
    this.armExpiry();
  }

  /** Closes the waiting sockets that waited `maxWaitMs` (the oldest are first). */
  private expire(): void {
    const limit = this.now() - this.maxWaitMs;
    while (this.waiting.length > 0 && (this.waiting[0] as Waiting).at <= limit) {
      const entry = this.waiting.shift() as Waiting;
      entry.socket.off('close', entry.onClose);
      this.refuse(entry.socket, 'waited_too_long');
    }
  }

  private armExpiry(): void {
    if (this.expiry) clearTimeout(this.expiry);
    this.expiry = undefined;
    const head = this.waiting[0];
    if (!head) return;
    this.expiry = setTimeout(() => {
      this.expiry = undefined;
      this.expire();
      this.armExpiry();
    }, Math.max(1, head.at + this.maxWaitMs - this.now()));
    this.expiry.unref();
  }

  private remove(entry: Waiting): void {
    const i = this.waiting.indexOf(entry);
    if (i >= 0) this.waiting.splice(i, 1);
    if (i === 0) this.armExpiry();
  }

  private refuse(socket: net.Socket, reason: BusyReason): void {
    socket.on('error', ignore);
    socket.destroy();
    this.busy[reason] += 1;
    this.unlogged += 1;
    const logger = this.options.logger;
    const now = this.now();
    if (!logger || (this.lastLogAt !== undefined && now - this.lastLogAt < (this.options.logEveryMs ?? 10_000))) return;
    logger.warn(
      { reason, closed: this.unlogged, busyTotal: this.busy.queue_full + this.busy.waited_too_long, inFlight: this.inFlight, queued: this.waiting.length, maxHandshakes: this.options.maxInFlight },
      'tls: busy, agent connections closed before their handshake (they retry later or at another replica)',
    );
    this.lastLogAt = now;
    this.unlogged = 0;
  }
}

function ignore(): void {}

/**
 * The controller's admission from its flags: `maxHandshakes` in flight (default
 * DEFAULT_MAX_HANDSHAKES, 0 none), as many waiting as `--max-agents` when set (a replica never
 * needs more of its agents waiting than it serves), else 64 per slot.
 */
export function handshakeAdmission(maxHandshakes: number | undefined, maxAgents: number | undefined, maxWaitMs: number | undefined, logger: SyncLogger): HandshakeAdmission {
  const maxInFlight = maxHandshakes ?? DEFAULT_MAX_HANDSHAKES;
  const maxQueued = maxAgents !== undefined && maxAgents > 0 ? maxAgents : 64 * maxInFlight;
  return new HandshakeAdmission({ maxInFlight, maxQueued, ...(maxWaitMs !== undefined ? { maxWaitMs } : {}), logger });
}
