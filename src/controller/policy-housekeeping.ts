/**
 * What must happen once among controller replicas (issue 12 item 5; docs/architecture.md "What
 * happens once"): the garbage collection of old policy bundles in Consul KV. The replica holding
 * the session lock `P/lock/housekeeping` (src/consul/session-lock.ts) runs it when it acquires
 * the lock and then every `intervalMs`; the others wait on the lock and take over when the holder
 * stops (it releases) or dies (its session's TTL runs out, then Consul's lock delay).
 *
 * A push prunes after itself (policy-kv.ts), so this collects what pushes leave behind: the
 * bundle of a push that crashed or lost a race and could not clean up, and old bundles a push's
 * best-effort prune failed to delete. It keeps the current bundle and the `keep` newest others.
 * Safety does not rest on the lock: every round is fenced (src/consul/bundle-gc.ts: never the
 * bundle P/current names, never one written after it, a cas on every delete), so a holder that
 * lost the lock without knowing it yet, or a push running meanwhile, cannot lose a policy. The
 * lock only makes the work happen once instead of on every replica. A round asks the lock
 * before each bundle and ends as soon as it is lost.
 */
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import { collectBundles } from '../consul/bundle-gc.js';
import type { ConsulClient } from '../consul/consul-client.js';
import { SessionLock } from '../consul/session-lock.js';

export interface HousekeepingOptions {
  readonly client: ConsulClient;
  /** The policy's KV prefix P. */
  readonly prefix: string;
  /** Old bundles kept besides the current one (`--policy-bundles-keep`). */
  readonly keep: number;
  /** Between two rounds while holding the lock. Default 10 min. */
  readonly intervalMs?: number;
  /** The lock's session TTL and lock delay (Go durations). Defaults 15s and 15s. */
  readonly ttl?: string;
  readonly lockDelay?: string;
  readonly logger: Logger;
}

export interface HousekeepingStats {
  rounds: number;
  bundlesDeleted: number;
  errors: number;
}

export const HOUSEKEEPING_LOCK = 'lock/housekeeping';

export class PolicyHousekeeping {
  readonly stats: HousekeepingStats = { rounds: 0, bundlesDeleted: 0, errors: 0 };
  private readonly lock: SessionLock;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(private readonly o: HousekeepingOptions) {
    const log = o.logger;
    this.lock = new SessionLock({
      client: o.client,
      key: `${o.prefix}/${HOUSEKEEPING_LOCK}`,
      value: JSON.stringify({ host: hostname(), pid: process.pid, job: 'policy bundle collection' }),
      sessionName: 'portcullis-housekeeping',
      ...(o.ttl !== undefined ? { ttl: o.ttl } : {}),
      ...(o.lockDelay !== undefined ? { lockDelay: o.lockDelay } : {}),
      onAcquired: ({ lockIndex }) => {
        log.info({ event: 'housekeeping.lock_acquired', lockIndex }, 'housekeeping lock acquired: this replica collects old policy bundles');
        this.round();
      },
      onLost: (reason) => log.warn({ event: 'housekeeping.lock_lost', reason }, 'housekeeping lock lost: another replica may take over'),
      onError: (e) => log.debug({ event: 'housekeeping.lock_error', err: e.message }, 'housekeeping lock: Consul call failed (retried)'),
    });
  }

  /** True while this replica holds the lock. */
  get holder(): boolean {
    return this.lock.held;
  }

  start(): void {
    this.lock.start();
    this.timer = setInterval(() => this.round(), this.o.intervalMs ?? 600_000);
    this.timer.unref();
  }

  /** Releases the lock (another replica takes over at once) after the round in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.running;
    await this.lock.stop();
  }

  /** One round now, when this replica holds the lock and no round runs. */
  private round(): void {
    if (this.stopped || this.running || !this.lock.held) return;
    this.running = this.collect().finally(() => {
      this.running = undefined;
    });
  }

  private async collect(): Promise<void> {
    const log = this.o.logger;
    try {
      const r = await collectBundles(this.o.client, this.o.prefix, { keepNewest: this.o.keep, stillAllowed: () => this.lock.held && !this.stopped });
      this.stats.rounds++;
      this.stats.bundlesDeleted += r.deleted.length;
      const fields = { event: 'housekeeping.bundles', deleted: r.deleted, kept: r.kept, ...(r.stopped ? { stopped: r.stopped } : {}) };
      if (r.deleted.length > 0) log.info(fields, 'old policy bundles deleted');
      else log.debug(fields, 'no old policy bundle to delete');
    } catch (e) {
      this.stats.errors++;
      log.warn({ event: 'housekeeping.failed', err: e instanceof Error ? e.message : String(e) }, 'collecting old policy bundles failed: retried at the next round');
    }
  }
}
