/**
 * Streams of one host id that keep superseding each other (sync-service.ts: a newer stream from
 * a host ends the older one). One agent reconnecting supersedes its old stream now and then; two
 * agents started with the same --host-id and certificate (a cloned machine image, a copied key)
 * supersede each other on every reconnect, and each host's rules flap between them. Counted
 * (`portcullis_streams_superseded_total`), and when one host id is superseded FLAP_COUNT times
 * within FLAP_WINDOW_MS, logged at warn with the last two peers, at most once per
 * WARN_EVERY_MS per host id.
 */
import type { SyncLogger } from './sync-logger.js';

export const FLAP_COUNT = 4;
export const FLAP_WINDOW_MS = 60_000;
const WARN_EVERY_MS = 300_000;

export class SupersedeWatch {
  private total = 0;
  /** Per host id: the times of its recent supersedes (at most FLAP_COUNT), and when it was last warned about. */
  private readonly recent = new Map<string, { times: number[]; warnedAt?: number }>();
  private prunedAt = 0;

  constructor(
    private readonly logger: SyncLogger,
    private readonly now: () => number,
  ) {}

  /** Streams superseded since start. */
  get superseded(): number {
    return this.total;
  }

  /** `hostId`'s stream from `oldPeer` was superseded by one from `newPeer`. */
  superseding(hostId: string, oldPeer: string, newPeer: string): void {
    this.total++;
    const now = this.now();
    if (now - this.prunedAt > FLAP_WINDOW_MS) {
      // At most once a window: a reconnect storm supersedes every host once.
      this.prunedAt = now;
      for (const [id, r] of this.recent) if (now - r.times[r.times.length - 1]! > FLAP_WINDOW_MS && (r.warnedAt === undefined || now - r.warnedAt > WARN_EVERY_MS)) this.recent.delete(id);
    }
    let r = this.recent.get(hostId);
    if (!r) this.recent.set(hostId, (r = { times: [] }));
    r.times.push(now);
    if (r.times.length > FLAP_COUNT) r.times.shift();
    if (r.times.length < FLAP_COUNT || now - r.times[0]! > FLAP_WINDOW_MS) return;
    if (r.warnedAt !== undefined && now - r.warnedAt < WARN_EVERY_MS) return;
    r.warnedAt = now;
    this.logger.warn(
      { hostId, peers: [oldPeer, newPeer], supersededWithinMs: now - r.times[0]!, times: FLAP_COUNT },
      'sync: streams of one host id keep superseding each other: two agents with the same --host-id and certificate?',
    );
  }
}
