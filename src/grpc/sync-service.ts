/**
 * The controller's Sync stream service: one bidirectional stream per agent, each agent receiving
 * only its own host's newest desired state (latest-wins, never a queue). See agent-session.ts
 * for the per-stream contract and proto/portcullis/v1/sync.proto for the wire protocol.
 *
 * A plain class holding its state, added to a grpc.Server it does not own:
 *   const service = new SyncService(store, { pingIntervalMs: 10_000 });
 *   service.addToServer(server);  ...  service.close();
 * One stream per host: a newer stream from the same host supersedes (ends) the older one.
 * Changes fan out in O(changed hosts); one interval timer serves pings of all streams.
 */
import * as grpc from '@grpc/grpc-js';
import type { FlowSink } from '../flows/flow-types.js';
import { AgentCap } from './agent-cap.js';
import { Rebalancer, type RebalanceOptions } from './agent-rebalance.js';
import { AgentSession, type SessionContext, type SyncCall } from './agent-session.js';
import { FlowIntake } from './flow-intake.js';
import { HostRecord, type AgentStatus } from './host-record.js';
import { CLUSTER_SKEW_MS } from './input-stamp.js';
import { loadSyncProto, type SyncHandlers } from './proto.js';
import { silentLogger, type SyncLogger } from './sync-logger.js';
import type { StateSource } from './state-source.js';
import { SupersedeWatch } from './supersede-watch.js';

export type { AgentStatus } from './host-record.js';
export type { StateSource } from './state-source.js';

export interface SyncServiceOptions {
  /** Trust Hello.host_id without a client certificate (plaintext servers, tests). Default false. */
  readonly insecure?: boolean;
  /** Interval between pings, also the period of the Hello deadline check. Default 10 s. */
  readonly pingIntervalMs?: number;
  /** Unanswered pings after which a stream is dropped. Default 3. */
  readonly maxMissedPongs?: number;
  /** A stream that sends no Hello within this time is rejected. Default 10 s. */
  readonly helloTimeoutMs?: number;
  /** After an ApplyError on a snapshot, resend after this long (or on the next change). Default 15 s. */
  readonly errorRetryMs?: number;
  /** Recent states kept per host as delta bases. Default 4. */
  readonly retainStatesPerHost?: number;
  readonly now?: () => number;
  readonly logger?: SyncLogger;
  /** Told of every Hello refused for its certificate (src/tls/tls-refusals.ts counts them). */
  readonly onCertificateRefused?: SessionContext['onCertificateRefused'];
  /**
   * Where the agents' recorded flows go (src/flows/flow-store.ts). Absent: agents are told not to
   * send FlowReports (accepts_flow_reports false), and any that arrive are dropped.
   */
  readonly flowSink?: FlowSink;
  /**
   * Open agent streams this replica serves (`--max-agents`); a Hello beyond it is answered
   * Rejected "at capacity" and the agent tries another replica (agent-cap.ts). Default 0: no cap.
   */
  readonly maxAgents?: number;
  /**
   * Active rebalancing (agent-rebalance.ts): above its share of the agents this replica asks one
   * agent at a time to move to another replica. Absent: never.
   */
  readonly rebalance?: RebalanceOptions;
  /** Clock skew allowed between replicas when comparing Marathon stamps (input-stamp.ts). Default 2 s. */
  readonly clusterSkewMs?: number;
}

export class SyncService {
  private readonly hosts = new Map<string, HostRecord>();
  private readonly sessions = new Map<string, AgentSession>();
  private readonly pending = new Set<AgentSession>();
  private readonly ctx: SessionContext;
  private readonly unsubscribe: () => void;
  private readonly pingTimer: NodeJS.Timeout;
  private closed = false;
  private readonly flowIntake: FlowIntake | undefined;
  private readonly cap: AgentCap;
  private readonly rebalancer: Rebalancer | undefined;
  private heldBehindTotal = 0;
  private readonly supersedes: SupersedeWatch;

  constructor(
    private readonly source: StateSource,
    options: SyncServiceOptions = {},
  ) {
    const retain = Math.max(1, options.retainStatesPerHost ?? 4);
    const now = options.now ?? Date.now;
    const logger = options.logger ?? silentLogger;
    this.flowIntake = options.flowSink ? new FlowIntake(options.flowSink, logger, now) : undefined;
    this.cap = new AgentCap(options.maxAgents ?? 0, logger, now);
    this.supersedes = new SupersedeWatch(logger, now);
    this.ctx = {
      source,
      insecure: options.insecure ?? false,
      helloTimeoutMs: options.helloTimeoutMs ?? 10_000,
      maxMissedPongs: Math.max(1, options.maxMissedPongs ?? 3),
      errorRetryMs: options.errorRetryMs ?? 15_000,
      now,
      logger,
      clusterSkewMs: options.clusterSkewMs ?? CLUSTER_SKEW_MS,
      onHeldBehind: () => void this.heldBehindTotal++,
      flows: this.flowIntake,
      onCertificateRefused: options.onCertificateRefused ?? (() => undefined),
      admit: (hostId) => this.cap.admit(hostId, this.sessions.size, this.sessions.has(hostId)),
      attach: (session, hostId) => this.attach(session, hostId, retain),
      detach: (session) => this.detach(session),
    };
    this.unsubscribe = source.subscribe((hostIds) => {
      for (const hostId of hostIds) this.sessions.get(hostId)?.kick();
    });
    this.pingTimer = setInterval(() => this.tick(), options.pingIntervalMs ?? 10_000);
    this.pingTimer.unref();
    this.rebalancer = this.startRebalancer(options.rebalance, logger);
  }

  private startRebalancer(options: RebalanceOptions | undefined, logger: SyncLogger): Rebalancer | undefined {
    if (!options) return undefined;
    const rebalancer = new Rebalancer(options, { open: () => this.sessions.size, shedOne: (reason, pick) => this.shedOne(reason, pick) }, logger);
    rebalancer.start();
    return rebalancer;
  }

  /** Asks one settled agent (picked by `pick` among them, in host id order) to move; its host id. */
  private shedOne(reason: string, pick: (n: number) => number): string | undefined {
    const settled = [...this.sessions.entries()].filter(([, s]) => s.settled).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    if (settled.length === 0) return undefined;
    const [hostId, session] = settled[Math.min(settled.length - 1, pick(settled.length))]!;
    session.shed(reason);
    return hostId;
  }

  /** Agents asked to move to another replica by rebalancing (`portcullis_agents_rebalanced_total`). */
  agentsRebalanced(): number {
    return this.rebalancer?.shedTotal ?? 0;
  }

  addToServer(server: grpc.Server): void {
    const handlers: SyncHandlers = { Sync: (call) => this.open(call) };
    server.addService(loadSyncProto().service, handlers);
  }

  /** Every host that ever opened a stream to this service, sorted by host id. */
  agents(): AgentStatus[] {
    return [...this.hosts.values()]
      .sort((a, b) => (a.hostId < b.hostId ? -1 : a.hostId > b.hostId ? 1 : 0))
      .map((host) => host.status(this.source.current(host.hostId)));
  }

  agent(hostId: string): AgentStatus | undefined {
    return this.hosts.get(hostId)?.status(this.source.current(hostId));
  }

  /** Flow records the agents sent that were invalid and skipped (`portcullis_flow_records_rejected_total`). */
  flowRecordsRejected(): number {
    return this.flowIntake?.rejected ?? 0;
  }

  /** Hellos refused because this replica was at `maxAgents` (`portcullis_agents_refused_at_capacity_total`). */
  agentsRefusedAtCapacity(): number {
    return this.cap.refusedTotal;
  }

  /** Times a stream started holding its agent because this replica was behind (`portcullis_agents_held_behind_total`). */
  agentsHeldBehind(): number {
    return this.heldBehindTotal;
  }

  /** The source's input stamp moved (a policy accepted or restored): held streams check again. */
  restamped(): void {
    for (const session of this.sessions.values()) session.recheck();
  }

  /** Streams ended by a newer stream from the same host id (`portcullis_streams_superseded_total`). */
  streamsSuperseded(): number {
    return this.supersedes.superseded;
  }

  /** Agent streams open now (attached after their Hello). */
  openStreams(): number {
    return this.sessions.size;
  }

  /** Stops pings and change notifications and ends every stream (agents will reconnect elsewhere). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.unsubscribe();
    clearInterval(this.pingTimer);
    this.rebalancer?.stop();
    for (const session of [...this.pending, ...this.sessions.values()]) {
      session.drop(grpc.status.UNAVAILABLE, 'controller shutting down');
    }
    this.pending.clear();
  }

  private open(call: SyncCall): void {
    if (this.closed) {
      call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'controller shutting down' });
      return;
    }
    this.pending.add(new AgentSession(call, this.ctx));
  }

  private attach(session: AgentSession, hostId: string, retain: number): HostRecord {
    this.pending.delete(session);
    const previous = this.sessions.get(hostId);
    this.sessions.set(hostId, session);
    if (previous && previous !== session) {
      this.supersedes.superseding(hostId, previous.peer, session.peer);
      previous.drop(grpc.status.ABORTED, 'superseded by a newer stream from the same host');
    }
    let host = this.hosts.get(hostId);
    if (!host) {
      host = new HostRecord(hostId, retain);
      this.hosts.set(hostId, host);
    }
    return host;
  }

  private detach(session: AgentSession): void {
    this.pending.delete(session);
    const hostId = session.hostId;
    if (hostId === undefined || this.sessions.get(hostId) !== session) return;
    this.sessions.delete(hostId);
    const host = this.hosts.get(hostId);
    if (host) host.connected = false;
  }

  private tick(): void {
    for (const session of [...this.pending]) {
      if (session.isOpen) session.tick();
      else this.pending.delete(session);
    }
    for (const session of [...this.sessions.values()]) session.tick();
  }
}
