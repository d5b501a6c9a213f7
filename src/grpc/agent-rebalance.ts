/**
 * Active rebalancing (issue 12, "load spreads again when a replica comes back"; Calico Typha's
 * connection rebalancing). Without it a replica that returns after an outage stays nearly empty:
 * the others keep their agents until those reconnect for some other reason.
 *
 * Rule, checked every `intervalMs` with jitter (uniform in 0.5..1.5 × interval):
 * - replicas R = how many replicas serve now (the passing instances of this replica's own Consul
 *   service, or `--replicas N`); agents A = how many agents there are in all (the hosts this
 *   replica compiles a state for, at least the streams it holds);
 * - fair share F = ceil(A / R); limit L = ceil(F × slack), slack 1.2 by default;
 * - when R ≥ 2 and this replica holds E more streams than L, ceil(E / 8) agents in sync (nothing
 *   in flight) are asked to move: Rejected "rebalancing: ..." (gRPC UNAVAILABLE). Each keeps
 *   what it applied and dials its next replica, which answers with nothing or a Delta when it
 *   holds the agent's version (versions are content hashes).
 * So a replica never sheds below L (≥ F), never when it is the only one or R is unknown, and at
 * most an eighth of its excess (one agent when the excess is 8 or less) per 0.5 × interval: a
 * mass move of agents cannot come from shedding, and the excess still falls geometrically (a
 * replica back among 3 after an outage with 5,000 agents: the two others shed ~500 each, in
 * about 40 steps, some 3 minutes at the default interval, where one per step took 40 minutes).
 * The slack keeps replicas from trading agents back and forth over rounding and counts in
 * motion. Shed agents are counted (`portcullis_agents_rebalanced_total`) and each is logged at info.
 */
import type { SyncLogger } from './sync-logger.js';

const REBALANCING = 'rebalancing';

export const DEFAULT_REBALANCE_SLACK = 1.2;
export const DEFAULT_REBALANCE_INTERVAL_MS = 5_000;
/** The share of the excess (streams above the limit) asked to move in one step, at least one agent. */
const SHED_SHARE_PER_STEP = 1 / 8;

/** The Rejected reason of an agent asked to move. */
export function rebalancingReason(open: number, fairShare: number, replicas: number): string {
  return `${REBALANCING}: ${open} agents here, fair share ${fairShare} over ${replicas} replicas: try another replica`;
}

/** Whether a Rejected reason asks the agent to move (nothing is wrong with it or the replica). */
export function isRebalancing(reason: string): boolean {
  return reason.startsWith(REBALANCING);
}

/** Fair share and the count above which a replica sheds (see the header). */
export function shedLimit(agents: number, replicas: number, slack = DEFAULT_REBALANCE_SLACK): { fairShare: number; limit: number } {
  const fairShare = Math.ceil(agents / Math.max(1, replicas));
  return { fairShare, limit: Math.ceil(fairShare * slack) };
}

export interface RebalanceOptions {
  /** How many replicas serve now; undefined when not known (nothing is shed). */
  readonly replicas: () => number | undefined;
  /** How many agents there are in all (over every replica). */
  readonly agents: () => number;
  readonly slack?: number;
  readonly intervalMs?: number;
  /** Uniform in [0, 1). Default Math.random. */
  readonly random?: () => number;
}

/** What the rebalancer needs of the service: the open streams, and shedding one of them. */
export interface Shedder {
  open(): number;
  /** Asks one agent in sync to move with `reason`; its host id, or undefined when none can. */
  shedOne(reason: string, pick: (n: number) => number): string | undefined;
}

export class Rebalancer {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private shed = 0;
  private readonly random: () => number;

  constructor(
    private readonly o: RebalanceOptions,
    private readonly service: Shedder,
    private readonly logger: SyncLogger,
  ) {
    const slack = o.slack ?? DEFAULT_REBALANCE_SLACK;
    if (!(slack >= 1)) throw new Error(`rebalance slack must be at least 1, got ${slack}`);
    if (!((o.intervalMs ?? DEFAULT_REBALANCE_INTERVAL_MS) > 0)) throw new Error('rebalance interval must be positive');
    this.random = o.random ?? Math.random;
  }

  /** Agents asked to move since start. */
  get shedTotal(): number {
    return this.shed;
  }

  start(): void {
    if (this.stopped || this.timer) return;
    const interval = this.o.intervalMs ?? DEFAULT_REBALANCE_INTERVAL_MS;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (this.stopped) return;
      this.step();
      this.start();
    }, interval * (0.5 + this.random()));
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** One check: sheds ceil(excess / 8) agents at most (see the header). Returns the host ids asked to move. */
  step(): string[] {
    const replicas = this.o.replicas();
    if (replicas === undefined || replicas < 2) return [];
    const open = this.service.open();
    const agents = Math.max(this.o.agents(), open);
    const { fairShare, limit } = shedLimit(agents, replicas, this.o.slack);
    const moved: string[] = [];
    for (let batch = Math.ceil((open - limit) * SHED_SHARE_PER_STEP); moved.length < batch; ) {
      const hostId = this.service.shedOne(rebalancingReason(open - moved.length, fairShare, replicas), (n) => Math.floor(this.random() * n));
      if (hostId === undefined) break;
      moved.push(hostId);
      this.shed += 1;
      this.logger.info({ hostId, open: open - moved.length + 1, agents, replicas, fairShare, limit, shedTotal: this.shed }, 'sync: rebalancing: agent asked to move to another replica');
    }
    return moved;
  }
}
