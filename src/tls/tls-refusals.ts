/**
 * Agents the controller refused for their certificate: counted by reason (a bounded set of
 * labels, for /metrics), the last one kept with its peer and time (for /status), and each logged
 * at warn, at most once a minute per peer address and reason (a refused agent retries forever;
 * the repeats in between are counted in the next line's `repeated` and logged at debug).
 *
 * Refusals come from two places: the TLS handshake (src/tls/mtls-listener.ts: another CA, no
 * certificate, expired, wrong key usage, not TLS) and the Hello of a verified certificate that
 * names another host (src/grpc/agent-session.ts, reason `host_mismatch`, logged there), and the
 * peer flow query of a verified certificate that is not a peer replica's (src/grpc/peers-service.ts,
 * reason `not_a_peer`, logged there).
 */
import type { SyncLogger } from '../grpc/sync-logger.js';

export const REFUSAL_REASONS = [
  'unknown_ca',
  'no_client_certificate',
  'expired',
  'wrong_purpose',
  'invalid_certificate',
  'handshake_failed',
  'host_mismatch',
  'not_a_peer',
] as const;
export type RefusalReason = (typeof REFUSAL_REASONS)[number];

export interface Refusal {
  /** `address:port` of the agent. */
  readonly peer: string;
  readonly reason: RefusalReason;
  /** What was wrong, for a person: the TLS error, or which names the certificate holds. */
  readonly detail: string;
  /** ISO time. */
  readonly at: string;
}

export interface TlsRefusalsStatus {
  readonly refusals: number;
  readonly byReason: Readonly<Record<RefusalReason, number>>;
  readonly lastRefusal: Refusal | null;
}

export interface TlsRefusalsOptions {
  readonly logger?: SyncLogger;
  /** One warn line per peer address and reason per this period. Default 60 s. */
  readonly warnEveryMs?: number;
  readonly now?: () => number;
}

/** Distinct (address, reason) pairs remembered for rate limiting before the memory is reset. */
const MAX_TRACKED = 4096;

export class TlsRefusals {
  private readonly counts = Object.fromEntries(REFUSAL_REASONS.map((r) => [r, 0])) as Record<RefusalReason, number>;
  private last: Refusal | null = null;
  private readonly lastWarned = new Map<string, { at: number; repeated: number }>();
  private readonly now: () => number;

  constructor(private readonly options: TlsRefusalsOptions = {}) {
    this.now = options.now ?? Date.now;
  }

  /** Counts a refusal; `log` false when the caller logs it itself (Hello rejections). */
  record(refusal: Omit<Refusal, 'at'>, fields: Record<string, unknown> = {}, log = true): void {
    const now = this.now();
    this.counts[refusal.reason] += 1;
    this.last = { ...refusal, at: new Date(now).toISOString() };
    if (!log) return;
    const logger = this.options.logger;
    if (!logger) return;
    const key = `${addressOf(refusal.peer)}|${refusal.reason}`;
    const seen = this.lastWarned.get(key);
    const line = { peer: refusal.peer, reason: refusal.reason, error: refusal.detail, ...fields };
    if (seen && now - seen.at < (this.options.warnEveryMs ?? 60_000)) {
      seen.repeated += 1;
      logger.debug(line, 'tls: agent refused (repeat)');
      return;
    }
    if (this.lastWarned.size >= MAX_TRACKED) this.lastWarned.clear();
    this.lastWarned.set(key, { at: now, repeated: 0 });
    logger.warn({ ...line, ...(seen ? { repeated: seen.repeated } : {}) }, 'tls: agent refused');
  }

  status(): TlsRefusalsStatus {
    return { refusals: REFUSAL_REASONS.reduce((n, r) => n + this.counts[r], 0), byReason: { ...this.counts }, lastRefusal: this.last };
  }

  /** Prometheus text: one counter with a sample per reason (0 included). */
  metrics(): string {
    const name = 'portcullis_tls_refusals_total';
    const lines = [
      `# HELP ${name} Agent connections refused for their certificate, at the TLS handshake, (host_mismatch) at Hello, or (not_a_peer) at a peer flow query.`,
      `# TYPE ${name} counter`,
      ...REFUSAL_REASONS.map((r) => `${name}{reason="${r}"} ${this.counts[r]}`),
    ];
    return `${lines.join('\n')}\n`;
  }
}

/** `10.0.0.1:5000` → `10.0.0.1`, `[::1]:5000` / `ipv6:[::1]:5000` → `::1`. */
function addressOf(peer: string): string {
  const bare = peer.replace(/^ipv[46]:/, '');
  const v6 = /^\[([^\]]*)\]/.exec(bare);
  if (v6) return v6[1] ?? bare;
  const colon = bare.lastIndexOf(':');
  return colon > 0 && bare.indexOf(':') === colon ? bare.slice(0, colon) : bare;
}
