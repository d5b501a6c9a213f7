/**
 * One agent's Sync stream, controller side.
 *
 * Contract:
 * - The first message must be Hello. Under mTLS its host_id must be one of the names of the
 *   client certificate (CN, DNS/IP SANs), else Rejected + PERMISSION_DENIED; with `insecure` the
 *   Hello is trusted. Nothing about a host is sent before its Hello is accepted.
 * - Latest-wins with no queue: at most ONE state is in flight (sent, not yet acked). While one
 *   is in flight, or the transport pushes back (`write` false → wait for 'drain'), changes only
 *   mark the session; when it can send again it reads the NEWEST state from the StateSource.
 *   Intermediate states are skipped, never buffered.
 * - A Delta is sent only against the version the agent is known to have (its last Ack, or the
 *   applied_version of its Hello) when this service still holds that state; otherwise, and after
 *   any ApplyError, a Snapshot. An ApplyError for a Delta gets a Snapshot at once; one for a
 *   Snapshot is retried after `errorRetryMs` or on the next change.
 * - Pings every tick; a stream is dropped (UNAVAILABLE) when the newest Pong it sent answers a
 *   ping `maxMissedPongs` or more pings old. A Pong answers its own ping and every earlier one, so
 *   an agent that is slow but alive (its answers arrive after the next ping went out: a host or a
 *   replica busy with a mass reconnect) is kept while it lags less than that many pings.
 * - Egress: the Hello's EgressStatus decides, for the life of the stream, what the agent is sent:
 *   with `supported` the full state; without (an agent of an earlier release) its view without
 *   the egress kinds, with that view's version, and deltas between views (agent-view.ts). The
 *   latest EgressStatus (Hello, Ack, Pong) is kept on the host record, cleaned, and a host that
 *   cannot enforce is logged at warn once per reason (egress-status.ts).
 * - Flows: every Snapshot/Delta says `accepts_flow_reports` when the service has a FlowIntake
 *   (a FlowSink); an agent sends FlowReports only after that. Each report goes to the intake
 *   (validated, the bad records skipped, logged and counted: flow-intake.ts); without one a
 *   report is dropped unread. The agent's FlowStatus (Hello, Ack, Pong) is kept on the host
 *   record, cleaned (flow-wire.ts); a Hello without one (an earlier release) records null.
 *   An agent whose Hello announces flows and already holds the desired version would otherwise
 *   get no Snapshot/Delta on this stream, so never learn that reports are taken: it is sent one
 *   empty Delta (base_version = version, nothing added or removed), which it acks without a
 *   kernel write. An agent whose Hello has no FlowStatus is never sent one (a release before
 *   flows would rewrite its kernel for it). An ApplyError for it means the agent does not hold
 *   that version after all: the next state is a Snapshot.
 * - Replicas: an agent whose Hello announces the version this replica would send it (it came
 *   from another replica compiling the same bytes) is sent nothing, and that state becomes a
 *   delta base here, so the next change reaches it as a Delta. One that announces the version
 *   this replica's source last patched the host from gets that patch as a Delta.
 * - Never backwards (issue 12, input-stamp.ts): every Snapshot/Delta carries this replica's input
 *   stamp; the agent's applied stamp comes from its Hello and then from each ack. While the
 *   replica's stamp is behind the agent's on a component both know, the agent is HELD: no state of
 *   another version is sent (the stream and the pings go on); it is logged at info once per hold,
 *   counted (ctx.onHeldBehind) and shown on the host record. A held stream is re-checked on every
 *   change of its host, on `recheck()` (the source's stamp moved) and on every tick. Two ways out
 *   of a hold that would never end: a Consul read started after this stream opened that answered
 *   an index below the agent's policy stamp (Consul's index went backwards: a restore or a new
 *   cluster), and a cluster time more than CLUSTER_FUTURE_MS ahead of this clock (a wrong clock);
 *   that component is then sent as 0 (not comparable, which the agent accepts) until the next ack.
 * - Cap: a Hello that passed the checks but finds the replica at `--max-agents` (ctx.admit) is
 *   answered Rejected "at capacity ..." with RESOURCE_EXHAUSTED; the service counts and logs it
 *   (agent-cap.ts), so it is not logged here as a refused stream.
 * - Rebalancing: a settled stream (in sync, nothing in flight) may be shed by the service
 *   (agent-rebalance.ts): Rejected "rebalancing: ..." with UNAVAILABLE.
 * Single-threaded (Node); the service calls `kick` and `tick`, grpc-js calls the handlers.
 */
import * as grpc from '@grpc/grpc-js';
import type { DesiredState } from '../compile/desired-state.js';
import { diffStates, type StateDelta } from '../compile/state-delta.js';
import { certificateIdentities } from '../tls/peer-identity.js';
import { agentView, deltaForView, isOwnView, wireKinds, type WireFeatures } from './agent-view.js';
import { egressReport, recordEgress } from './egress-status.js';
import type { FlowIntake } from './flow-intake.js';
import { flowStatusInfo } from './flow-wire.js';
import type { HostRecord } from './host-record.js';
import { behindReason, CLUSTER_FUTURE_MS, NO_STAMP, stampFields, stampFromWire, type InputStamp } from './input-stamp.js';
import type { AgentMessage__Output, ControllerMessage } from './proto.js';
import type { SyncLogger } from './sync-logger.js';
import type { SourceStamp, StateSource } from './state-source.js';
import { deltaMessage, snapshotMessage } from './wire-state.js';

export type SyncCall = grpc.ServerDuplexStream<AgentMessage__Output, ControllerMessage>;

export interface SessionContext {
  readonly source: StateSource;
  readonly insecure: boolean;
  readonly helloTimeoutMs: number;
  readonly maxMissedPongs: number;
  readonly errorRetryMs: number;
  readonly now: () => number;
  readonly logger: SyncLogger;
  /** Clock skew allowed between replicas when comparing cluster stamps (input-stamp.ts). */
  readonly clusterSkewMs: number;
  /** A stream started holding its agent (its replica is behind the agent's applied state). */
  readonly onHeldBehind: () => void;
  /** Where FlowReports go; undefined: none are asked for, and any that arrive are dropped. */
  readonly flows: FlowIntake | undefined;
  /** A Hello refused for the client certificate (counted in /status and /metrics; logged here). */
  readonly onCertificateRefused: (peer: string, reason: 'no_client_certificate' | 'host_mismatch', detail: string) => void;
  /** Undefined when `hostId` may open a stream on this replica, else the Rejected reason (the cap). */
  admit(hostId: string): string | undefined;
  /** Makes `session` the host's current stream (superseding an older one) and returns its record. */
  attach(session: AgentSession, hostId: string): HostRecord;
  detach(session: AgentSession): void;
}

interface InFlight {
  readonly seq: number;
  readonly version: string;
  readonly kind: 'snapshot' | 'delta';
  /** The stamp sent with it; undefined for an empty Delta (the agent keeps its stamp). */
  readonly stamp: InputStamp | undefined;
}

export class AgentSession {
  private phase: 'hello' | 'active' | 'closed' = 'hello';
  private host: HostRecord | undefined;
  private seq = 0;
  private inflight: InFlight | undefined;
  /** Version the agent has in its kernel, as far as this stream knows. */
  private agentVersion: string | undefined;
  private forceSnapshot = false;
  /** The Hello announced egress support: this stream is sent the egress kinds (agent-view.ts). */
  private features: WireFeatures = { egress: false, groupModes: false };
  /** The Hello had a FlowStatus (an agent that knows FlowReports). */
  private agentKnowsFlows = false;
  /** A Snapshot/Delta has been sent on this stream, so the agent knows whether reports are taken. */
  private flowsTold = false;
  private writeBlocked = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private pingNonce = 0;
  /** The newest ping nonce answered by a Pong (pings sent since: pingNonce - answeredNonce). */
  private answeredNonce = 0;
  private readonly openedAt: number;
  /** Never backwards (see the header): the agent's applied stamp, as far as this stream knows. */
  private agentStamp: InputStamp = NO_STAMP;
  /** Components of the agent's stamp found not comparable: sent as 0 until the next ack. */
  private blank = { policy: false, cluster: false };
  /** Why this stream holds its agent now; undefined: not held. */
  private heldBehind: string | undefined;

  constructor(
    private readonly call: SyncCall,
    private readonly ctx: SessionContext,
  ) {
    this.openedAt = ctx.now();
    call.on('data', (message: AgentMessage__Output) => this.onMessage(message));
    call.on('end', () => {
      this.close('agent closed the stream');
      call.end();
    });
    call.on('cancelled', () => this.close('stream cancelled'));
    call.on('close', () => this.close('stream closed'));
    call.on('error', (err: Error) => this.close(`stream error: ${err.message}`));
  }

  /** The stream's peer address (host:port). */
  get peer(): string {
    return this.call.getPeer();
  }

  get hostId(): string | undefined {
    return this.host?.hostId;
  }

  get isOpen(): boolean {
    return this.phase !== 'closed';
  }

  /** The host's desired state may have changed: send the newest one if the stream can take it. */
  kick(): void {
    if (this.phase !== 'active' || !this.host || this.inflight || this.writeBlocked) return;
    const full = this.ctx.source.current(this.host.hostId);
    if (!full) return;
    const desired = agentView(full, this.features);
    if (desired.version === this.agentVersion) {
      // The agent holds what this replica compiled (versions are content hashes): a base for
      // the next Delta, also for an agent that came from another replica.
      this.host.remember(desired);
      if (this.ctx.flows && this.agentKnowsFlows && !this.flowsTold) this.sendEmptyDelta(desired);
      return;
    }
    const stamp = this.stampToSend();
    if (stamp === undefined) return;
    this.clearRetry();
    this.seq += 1;
    const kinds = wireKinds(this.features);
    const base = this.deltaBase();
    const delta = base ? this.deltaTo(base, full, desired) : this.patchFromAnnounced(full, desired);
    const extra = { acceptsFlowReports: this.ctx.flows !== undefined, ...stampFields(stamp) };
    const message: ControllerMessage = delta
      ? { delta: { ...deltaMessage(delta, this.seq, kinds), ...extra } }
      : { snapshot: { ...snapshotMessage(desired, this.seq, kinds), ...extra } };
    this.host.remember(desired);
    if (base) this.host.remember(base);
    this.inflight = { seq: this.seq, version: desired.version, kind: delta ? 'delta' : 'snapshot', stamp };
    this.ctx.logger.debug(
      { hostId: this.host.hostId, seq: this.seq, version: desired.version, kind: this.inflight.kind, egress: this.features.egress, groupModes: this.features.groupModes },
      'sync: sending state',
    );
    this.flowsTold = true;
    this.write(message);
  }

  /** Tells an agent that holds `desired` already that reports are taken (see the header). */
  private sendEmptyDelta(desired: DesiredState): void {
    this.seq += 1;
    this.inflight = { seq: this.seq, version: desired.version, kind: 'delta', stamp: undefined };
    this.flowsTold = true;
    this.host?.remember(desired);
    this.ctx.logger.debug({ hostId: desired.hostId, seq: this.seq, version: desired.version }, 'sync: sending an empty delta (flow reports are taken)');
    const { version, mode } = desired;
    this.write({ delta: { seq: this.seq, baseVersion: version, version, mode, adds: [], removes: [], acceptsFlowReports: true } });
  }

  /** The stamp of a state this stream may send now, or undefined while the agent is held (see the header). */
  private stampToSend(): InputStamp | undefined {
    const own = this.ctx.source.stamp?.();
    if (!own) return NO_STAMP;
    this.findNotComparable(own);
    const applied = { policy: this.blank.policy ? 0 : this.agentStamp.policy, cluster: this.blank.cluster ? 0 : this.agentStamp.cluster };
    const reason = behindReason(own, applied, this.ctx.clusterSkewMs);
    const fields = { hostId: this.host?.hostId, agentStamp: this.agentStamp, replicaStamp: { policy: own.policy, cluster: own.cluster } };
    if (reason !== undefined) {
      if (this.heldBehind === undefined) {
        this.ctx.onHeldBehind();
        this.ctx.logger.info({ ...fields, reason }, 'sync: holding the agent: this replica is behind the state it applied');
      }
      this.heldBehind = reason;
      if (this.host) this.host.heldBehind = reason;
      return undefined;
    }
    if (this.heldBehind !== undefined) this.ctx.logger.info(fields, 'sync: caught up with the agent: sending');
    this.heldBehind = undefined;
    if (this.host) this.host.heldBehind = undefined;
    return { policy: this.blank.policy ? 0 : own.policy, cluster: this.blank.cluster ? 0 : own.cluster };
  }

  /** The ways out of a hold that would never end (see the header); logged at warn once each. */
  private findNotComparable(own: SourceStamp): void {
    const agent = this.agentStamp;
    const read = own.consulRead;
    const hostId = this.host?.hostId;
    if (!this.blank.policy && agent.policy > own.policy && read !== undefined && read.startedAt >= this.openedAt && read.index < agent.policy) {
      this.blank.policy = true;
      this.ctx.logger.warn({ hostId, agentPolicyStamp: agent.policy, consulIndex: read.index }, "sync: the agent's policy stamp is from a Consul history that no longer exists (the index went backwards): not compared");
    }
    if (!this.blank.cluster && agent.cluster > this.ctx.now() + CLUSTER_FUTURE_MS) {
      this.blank.cluster = true;
      this.ctx.logger.warn({ hostId, agentClusterStamp: agent.cluster }, "sync: the agent's Marathon stamp is far ahead of this clock (a wrong clock where it was compiled): not compared");
    }
  }

  /** The source's stamp moved: a held stream checks again. */
  recheck(): void {
    if (this.heldBehind !== undefined) this.kick();
  }

  /** The state the agent has, when this service still holds it and may send a delta on it. */
  private deltaBase(): DesiredState | undefined {
    if (this.forceSnapshot || !this.host) return undefined;
    const base = this.host.lookup(this.agentVersion);
    // An agent cannot hold members of kinds it does not know (it refuses them), and a delta
    // removing them would name those kinds.
    return base && !isOwnView(base, this.features) ? undefined : base;
  }

  /**
   * No state of the announced version here (e.g. the agent came from a replica that was killed
   * during a change): the source's own last patch of the host, when it starts at that version and
   * the agent is sent the full state (a view's version is not the patch's base).
   */
  private patchFromAnnounced(full: DesiredState, desired: DesiredState): StateDelta | undefined {
    if (this.forceSnapshot || desired !== full || this.agentVersion === undefined) return undefined;
    const patch = this.ctx.source.deltaFrom?.(full.hostId, this.agentVersion);
    return patch && patch.version === full.version ? patch : undefined;
  }

  /** base → desired (the agent's view of `full`): the source's own patch when it has one, else a diff. */
  private deltaTo(base: DesiredState, full: DesiredState, desired: DesiredState): StateDelta {
    const patch = this.ctx.source.deltaFrom?.(full.hostId, base.version);
    if (patch && patch.version === full.version) return desired === full ? patch : deltaForView(patch, desired, this.features);
    return diffStates(base, desired);
  }

  /** Periodic: Hello deadline, then liveness pings. */
  tick(): void {
    if (this.phase === 'hello') {
      if (this.ctx.now() - this.openedAt >= this.ctx.helloTimeoutMs) this.reject('no Hello received in time');
      return;
    }
    if (this.phase !== 'active') return;
    const unanswered = this.pingNonce - this.answeredNonce;
    if (unanswered >= this.ctx.maxMissedPongs) {
      this.drop(grpc.status.UNAVAILABLE, `no Pong for ${unanswered} pings`);
      return;
    }
    this.pingNonce += 1;
    this.write({ ping: { nonce: this.pingNonce } });
    this.recheck();
  }

  /** Attached, nothing in flight and the agent holds what this replica would send: may be asked to move. */
  get settled(): boolean {
    if (this.phase !== 'active' || !this.host || this.inflight || this.writeBlocked) return false;
    const full = this.ctx.source.current(this.host.hostId);
    return full === undefined || agentView(full, this.features).version === this.agentVersion;
  }

  /** Rebalancing (agent-rebalance.ts): Rejected with `reason` and UNAVAILABLE; the agent moves on keeping its state. */
  shed(reason: string): void {
    if (this.phase !== 'active') return;
    this.refuse(reason, grpc.status.UNAVAILABLE);
  }

  /** Ends the stream with `code`; the agent reconnects with backoff. */
  drop(code: grpc.status, reason: string): void {
    if (this.phase === 'closed') return;
    this.ctx.logger.info({ hostId: this.host?.hostId, peer: this.call.getPeer(), reason }, 'sync: dropping stream');
    this.close(reason);
    this.call.emit('error', { code, details: reason });
  }

  /** A Pong answers its ping and every earlier one; a nonce this stream never sent is ignored. */
  private onPong(nonce: number): void {
    if (Number.isSafeInteger(nonce) && nonce > this.answeredNonce && nonce <= this.pingNonce) this.answeredNonce = nonce;
  }

  private onMessage(message: AgentMessage__Output): void {
    if (this.phase === 'closed') return;
    if (this.phase === 'hello') {
      this.onHello(message);
      return;
    }
    const host = this.host;
    if (!host) return;
    host.lastSeen = this.ctx.now();
    switch (message.msg) {
      case 'ack':
        if (message.ack?.egress) recordEgress(host, egressReport(message.ack.egress), this.ctx.logger);
        if (message.ack?.flows) host.flows = flowStatusInfo(message.ack.flows);
        if (message.ack) this.onAck(host, message.ack.version, message.ack.seq);
        return;
      case 'applyError':
        if (message.applyError) this.onApplyError(host, message.applyError.seq, message.applyError.message);
        return;
      case 'pong':
        if (message.pong?.egress) recordEgress(host, egressReport(message.pong.egress), this.ctx.logger);
        if (message.pong?.flows) host.flows = flowStatusInfo(message.pong.flows);
        if (message.pong) this.onPong(message.pong.nonce);
        return;
      case 'flowReport':
        if (message.flowReport) this.ctx.flows?.receive(host.hostId, message.flowReport);
        return;
      default:
        this.ctx.logger.warn({ hostId: host.hostId, kind: message.msg }, 'sync: unexpected message ignored');
    }
  }

  private onHello(message: AgentMessage__Output): void {
    const hello = message.msg === 'hello' ? message.hello : undefined;
    if (!hello) {
      this.reject('the first message must be Hello');
      return;
    }
    if (hello.hostId === '') {
      this.reject('Hello.host_id is empty');
      return;
    }
    if (!this.ctx.insecure) {
      const names = certificateIdentities(this.call.getAuthContext().sslPeerCertificate);
      if (names.length === 0) {
        this.reject('no verified client certificate', 'no_client_certificate');
        return;
      }
      if (!names.includes(hello.hostId)) {
        this.reject(`certificate is for [${names.join(', ')}], not host '${hello.hostId}'`, 'host_mismatch');
        return;
      }
    }
    const full = this.ctx.admit(hello.hostId);
    if (full !== undefined) {
      this.refuse(full, grpc.status.RESOURCE_EXHAUSTED);
      return;
    }
    this.phase = 'active';
    const host = this.ctx.attach(this, hello.hostId);
    this.host = host;
    host.connected = true;
    host.peer = this.call.getPeer();
    host.addresses = [...hello.addresses];
    host.agentVersion = hello.agentVersion;
    host.lastSeen = this.ctx.now();
    this.agentVersion = hello.appliedVersion === '' ? undefined : hello.appliedVersion;
    host.appliedVersion = this.agentVersion;
    this.agentStamp = this.agentVersion === undefined ? NO_STAMP : stampFromWire(hello.appliedPolicyStamp, hello.appliedClusterStampMs);
    host.appliedStamp = this.agentStamp;
    host.heldBehind = undefined;
    const egress = egressReport(hello.egress);
    this.features = { egress: egress.supported, groupModes: hello.groupModes === true };
    host.features = this.features;
    host.flows = flowStatusInfo(hello.flows);
    this.agentKnowsFlows = hello.flows !== null;
    this.ctx.logger.info(
      { hostId: host.hostId, peer: host.peer, agentVersion: host.agentVersion, appliedVersion: this.agentVersion, egressSupported: egress.supported, egressEnforcing: egress.enforcing, flowsRecording: host.flows?.recording ?? null },
      'sync: agent connected',
    );
    recordEgress(host, egress, this.ctx.logger);
    this.kick();
  }

  private onAck(host: HostRecord, version: string, seq: number): void {
    if (!this.inflight || seq !== this.inflight.seq) {
      this.ctx.logger.warn({ hostId: host.hostId, seq, version }, 'sync: ack for a message not in flight');
      return;
    }
    const acked = this.inflight;
    this.inflight = undefined;
    this.forceSnapshot = false;
    if (acked.stamp !== undefined) {
      this.agentStamp = acked.stamp;
      host.appliedStamp = acked.stamp;
      this.blank = { policy: false, cluster: false };
    }
    this.agentVersion = version;
    host.appliedVersion = version;
    host.lastError = undefined;
    const applied = host.lookup(version);
    if (applied) host.remember(applied);
    this.kick();
  }

  private onApplyError(host: HostRecord, seq: number, text: string): void {
    if (!this.inflight || seq !== this.inflight.seq) {
      this.ctx.logger.warn({ hostId: host.hostId, seq }, 'sync: apply error for a message not in flight');
      return;
    }
    const failed = this.inflight;
    this.inflight = undefined;
    this.forceSnapshot = true;
    // An empty delta refused: the agent does not hold the version it announced.
    if (failed.version === this.agentVersion) this.agentVersion = undefined;
    host.lastError = text;
    this.ctx.logger.warn({ hostId: host.hostId, seq, version: failed.version, kind: failed.kind, error: text }, 'sync: agent failed to apply');
    if (failed.kind === 'delta') {
      this.kick();
      return;
    }
    this.clearRetry();
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.kick();
    }, this.ctx.errorRetryMs);
    this.retryTimer.unref();
  }

  private reject(reason: string, refusal?: 'no_client_certificate' | 'host_mismatch'): void {
    if (this.phase === 'closed') return;
    const peer = this.call.getPeer();
    this.ctx.logger.warn({ peer, reason, ...(refusal ? { refusal } : {}) }, 'sync: stream rejected');
    if (refusal) this.ctx.onCertificateRefused(peer, refusal, reason);
    this.refuse(reason, grpc.status.PERMISSION_DENIED);
  }

  /** Rejected with `reason`, then the stream ends with `code`. */
  private refuse(reason: string, code: grpc.status): void {
    this.write({ rejected: { reason } });
    this.close(reason);
    this.call.emit('error', { code, details: reason });
  }

  private write(message: ControllerMessage): void {
    if (this.call.write(message)) return;
    if (this.writeBlocked) return;
    this.writeBlocked = true;
    this.call.once('drain', () => {
      this.writeBlocked = false;
      this.kick();
    });
  }

  private clearRetry(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
  }

  private close(reason: string): void {
    if (this.phase === 'closed') return;
    const wasActive = this.phase === 'active';
    this.phase = 'closed';
    this.clearRetry();
    if (wasActive) this.ctx.logger.info({ hostId: this.host?.hostId, reason }, 'sync: agent disconnected');
    this.ctx.detach(this);
  }
}
