/**
 * The per-replica connection cap (issue 12, in the manner of Calico Typha's max connections):
 * a replica serving `maxAgents` open streams answers the next Hello with Rejected
 * "at capacity (N agents): try another replica" (gRPC RESOURCE_EXHAUSTED), so the agent moves to
 * its next replica. A host that already has a stream here is always let in (its new stream
 * supersedes the old one: the count does not grow). Refusals are counted
 * (`portcullis_agents_refused_at_capacity_total`) and logged at info at most once per
 * `logEveryMs` with the count since the last line, so a mass reconnect does not flood the log.
 * `maxAgents` 0 means no cap.
 *
 * The agent recognises the refusal by its reason (`isAtCapacity`): not a certificate problem.
 */
import type { SyncLogger } from './sync-logger.js';

const AT_CAPACITY = 'at capacity';

/** The Rejected reason of a replica at its cap. */
export function atCapacityReason(maxAgents: number): string {
  return `${AT_CAPACITY} (${maxAgents} agents): try another replica`;
}

/** Whether a Rejected reason says the replica is at its cap (move on, nothing is wrong with this agent). */
export function isAtCapacity(reason: string): boolean {
  return reason.startsWith(AT_CAPACITY);
}

export class AgentCap {
  private refused = 0;
  private unlogged = 0;
  private lastLogAt: number | undefined;

  constructor(
    private readonly maxAgents: number,
    private readonly logger: SyncLogger,
    private readonly now: () => number,
    private readonly logEveryMs = 10_000,
  ) {
    if (!Number.isInteger(maxAgents) || maxAgents < 0) throw new Error(`maxAgents must be a whole number >= 0, got ${maxAgents}`);
  }

  /** Agents refused since start (the metric). */
  get refusedTotal(): number {
    return this.refused;
  }

  /**
   * May `hostId` open a stream, with `open` streams attached now and `hasStream` telling whether
   * this host is one of them? Undefined when yes, else the Rejected reason (counted and logged).
   */
  admit(hostId: string, open: number, hasStream: boolean): string | undefined {
    if (this.maxAgents === 0 || hasStream || open < this.maxAgents) return undefined;
    this.refused += 1;
    this.unlogged += 1;
    const now = this.now();
    if (this.lastLogAt === undefined || now - this.lastLogAt >= this.logEveryMs) {
      this.logger.info({ hostId, maxAgents: this.maxAgents, refused: this.unlogged, refusedTotal: this.refused }, 'sync: at capacity, agents refused (they try another replica)');
      this.lastLogAt = now;
      this.unlogged = 0;
    }
    return atCapacityReason(this.maxAgents);
  }
}
