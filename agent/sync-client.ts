/**
 * The agent's end of the Sync stream.
 *
 * Contract:
 * - Connects to the controller, says Hello (host id, addresses, agent version, the version the
 *   kernel holds: `held`, owned by the agent's dataplane; this client keeps no copy), and hands
 *   every Snapshot/Delta to `apply` as a full DesiredState, a Delta also as it came.
 * - A message is validated here, where it enters the agent: a Snapshot's shape and its version
 *   against its content (wire-state.ts, desired-state-check.ts); a Delta must apply onto the
 *   state held (the controller sends a Delta only against the version the agent acked or
 *   announced, and keeps one state in flight), and `applyDelta` checks its base and the version
 *   of the result. On a wrong base, an unknown set kind or a hash mismatch it answers ApplyError
 *   and applies nothing; the controller then sends a Snapshot.
 * - Receive → record → apply once (Felix style): states are recorded as "pending" and one apply
 *   runs at a time; states arriving during an apply overwrite the pending one, so only the
 *   newest is applied afterwards. Each apply ends in Ack (version, seq) or ApplyError.
 * - Hello, every Ack and every Pong carry the agent's EgressStatus when it has one (`egress`),
 *   and its FlowStatus when it has a flow source (`flows`); Hello says `group_modes` as the
 *   `groupModes` option does (default false: the controller then sends no group-mode kinds).
 * - Flows (issue 11): every `flowIntervalMs` the client takes at most FLOW_REPORT_MAX_RECORDS
 *   records from the FlowSource (agent/flow-reader.ts; the rest stays there for the next
 *   interval) and sends them as one FlowReport, split over several messages of at most that
 *   many records and ~4 MiB each (flow-wire.ts), only on a stream where the controller's last
 *   Snapshot/Delta said `accepts_flow_reports` (an earlier controller never does: nothing is
 *   taken, so nothing is lost) and only while the transport takes writes (after a full buffer,
 *   not until 'drain'), so memory stays bounded by one read.
 * - A Delta whose base_version is its version, onto the state held, is acked without calling
 *   `apply` (the controller sends one to say accepts_flow_reports to an agent already in sync).
 * - Answers Ping with Pong. A stream that fails, is rejected, or stays silent longer than
 *   `idleTimeoutMs` (45 s: 4.5 of the controller's default 10 s pings; before its first message
 *   `firstMessageTimeoutMs`, which covers a controller busy with a mass reconnect) is replaced
 *   after an exponential backoff with full jitter, reset once the controller sends anything but
 *   Rejected. The channel must be connected (TCP and TLS) within `connectTimeoutMs` (default 5 s,
 *   doubled after each one missed in a row: connect-deadline.ts): a replica that drops packets
 *   is left within seconds. One that has accepted the connection and not finished its TLS
 *   handshake (a busy replica's handshake queue) keeps it up to `queuedWaitMs` (60 s) instead,
 *   so that an agent does not give up its place in the queue to start at the end of another's.
 * - Fail static: losing the controller never changes what is applied.
 * - Never backwards (issue 12, src/grpc/input-stamp.ts): Hello carries `heldStamp`, the input
 *   stamp of the state held; a Snapshot/Delta of another version whose stamp is behind it is
 *   answered ApplyError and not applied; `apply` gets the stamp of the state it applies.
 * - Replicas (issue 12): the client dials the current target of its ControllerTargets (each
 *   agent's own shuffled order of the candidates; agent/controller-targets.ts), one gRPC channel
 *   at a time: made when a target is dialled, closed when its stream ended and the next dial
 *   goes elsewhere, when the target leaves the list, or when the client closes (so an agent holds
 *   one connection, also after a storm of connect deadlines). Every stream that ends (failed,
 *   Rejected, silent past its deadline, or ended by the replica) moves the client to the next
 *   target, after the backoff; when a whole round failed since the last good stream,
 *   `refreshTargets` is called (re-resolve DNS). A Rejected "at capacity" (the replica is at
 *   `--max-agents`) is logged at info `sync: replica at capacity, trying another`, not as a
 *   connection problem. A Rejected "rebalancing" (the replica holds more than its share of the
 *   agents; src/grpc/agent-rebalance.ts) is logged at info `sync: replica rebalancing, moving to
 *   another` and leaves no error in the agent's health. Versions are content hashes, so the
 *   next replica sends a Delta when it still holds the version the agent announces in Hello,
 *   else a Snapshot.
 * - A stream that fails before the controller said anything, or that the controller rejected
 *   (a refused certificate, another host's name), is a connection problem: logged at warn
 *   `sync: cannot connect to the controller` as connect-warnings.ts says (once per reason, then
 *   every `repeatWarnMs`). A stream that worked and then ended logs at info.
 */
import * as grpc from '@grpc/grpc-js';
import type { DesiredState } from '../src/compile/desired-state.js';
import { applyDelta, type StateDelta } from '../src/compile/state-delta.js';
import { loadSyncProto, type AgentMessage, type ControllerMessage__Output, type SyncStubClient } from '../src/grpc/proto.js';
import { silentLogger, type SyncLogger } from '../src/grpc/sync-logger.js';
import { deltaFromMessage, stateFromSnapshot } from '../src/grpc/wire-state.js';
import type { FlowSource } from '../src/flows/flow-types.js';
import { flowStatusMessage } from '../src/grpc/flow-wire.js';
import type { EgressStatus } from '../src/grpc/generated/portcullis/v1/EgressStatus.js';
import type { FlowStatus } from '../src/grpc/generated/portcullis/v1/FlowStatus.js';
import { Backoff, type BackoffOptions } from '../src/retry/backoff.js';
import { isAtCapacity } from '../src/grpc/agent-cap.js';
import { isRebalancing } from '../src/grpc/agent-rebalance.js';
import { ControllerTargets, type Target } from './controller-targets.js';
import { ConnectWarnings } from './connect-warnings.js';
import { sendFlowReport } from './flow-report-sender.js';
import { ConnectDeadline } from './connect-deadline.js';
import { AgentChannelCredentials } from '../src/tls/agent-channel-credentials.js';

/** `--connect-timeout` default: a few seconds, well above a TLS handshake across a data centre. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
import { checkedStamp, helloStampFields, NO_STAMP, type InputStamp } from '../src/grpc/input-stamp.js';

export type SyncClientEvent =
  | { readonly type: 'connecting' }
  | { readonly type: 'rejected'; readonly reason: string }
  | { readonly type: 'disconnected'; readonly reason: string; readonly retryInMs: number }
  | { readonly type: 'applied'; readonly version: string; readonly seq: number }
  | { readonly type: 'apply-failed'; readonly version: string; readonly seq: number; readonly message: string };

export interface SyncClientOptions {
  /** `host:port` of the one controller; or `targets`. */
  readonly target?: string;
  /** The controller replicas to dial (kept up to date by the caller through `setCandidates`). */
  readonly targets?: ControllerTargets;
  /** Called when every target failed since the last good stream (the caller re-resolves DNS). */
  readonly refreshTargets?: () => void;
  /** Extra channel options for one target (e.g. the TLS name of a DNS name resolved to addresses). */
  readonly channelOptionsFor?: (target: Target) => grpc.ChannelOptions | undefined;
  /** From src/tls (mTLS) or grpc.credentials.createInsecure(). */
  readonly credentials: grpc.ChannelCredentials;
  /** Extra channel options, e.g. `grpc.ssl_target_name_override`. */
  readonly channelOptions?: grpc.ChannelOptions;
  readonly hostId: string;
  readonly addresses?: readonly string[];
  readonly agentVersion: string;
  /** What the kernel holds (the dataplane knows): announced in Hello, the base of a Delta. Default: nothing (every Delta refused, a Snapshot follows). */
  readonly held?: () => DesiredState | undefined;
  /** Puts a state into the kernel; `delta`: the wire Delta it was built from (onto `held`). A rejection is reported. */
  readonly apply: (state: DesiredState, delta?: StateDelta, stamp?: InputStamp) => Promise<void>;
  /** The input stamp of the state `held` returns (saved with it). Default: none (0, not comparable). */
  readonly heldStamp?: () => InputStamp;
  /**
   * The agent's per-app egress status now, sent in Hello, every Ack and every Pong (the
   * controller sends egress set kinds only to an agent that says `supported`). Default: absent.
   */
  readonly egress?: () => EgressStatus;
  /**
   * The agent's recorded flows (agent/flow-reader.ts): its status goes in Hello, every Ack and
   * every Pong, its records in FlowReports once the controller accepts them. Default: absent
   * (Hello then has no FlowStatus, as from an agent of an earlier release).
   */
  readonly flows?: FlowSource;
  /** Between two FlowReports (`--flow-interval`). Default: the source's `intervalSeconds` (at least 1 s). */
  readonly flowIntervalMs?: number;
  /** The agent understands the group-mode set kinds (Hello.group_modes). Default false. */
  readonly groupModes?: boolean;
  readonly backoff?: BackoffOptions;
  /** Reconnect when the controller sends nothing (not even a Ping) for this long. Default 45 s. */
  readonly idleTimeoutMs?: number;
  /** Silence allowed before the controller's first message (connecting, a mass reconnect's queue). Default 120 s. */
  readonly firstMessageTimeoutMs?: number;
  /** The channel (TCP, TLS) must be up within this long (doubling, see the header), else the next target is dialled (`--connect-timeout`; 0: none). Default 5 s. */
  readonly connectTimeoutMs?: number;
  /** A connection whose TLS handshake is under way (queued at a busy replica) is kept this long since the dial, past `connectTimeoutMs`. Default DEFAULT_QUEUED_WAIT_MS (connect-deadline.ts). */
  readonly queuedWaitMs?: number;
  /** A connection problem that persists is logged at warn again after this long. Default 5 min. */
  readonly repeatWarnMs?: number;
  readonly logger?: SyncLogger;
  readonly onEvent?: (event: SyncClientEvent) => void;
}

interface Stream {
  readonly target: Target;
  readonly call: grpc.ClientDuplexStream<AgentMessage, ControllerMessage__Output>;
  idleTimer: NodeJS.Timeout | undefined;
  /** The controller has sent something on this stream (the idle deadline applies from then). */
  heard: boolean;
  rejectedReason: string | undefined;
  /** The controller's last Snapshot/Delta on this stream said accepts_flow_reports. */
  acceptsFlows: boolean;
  /** A FlowReport write found the transport's buffer full; no report until it drains. */
  flowBlocked: boolean;
}

/** A decoded message: the full state, and the wire Delta it was built from (if it came as one). */
interface Received {
  readonly state: DesiredState;
  readonly delta: StateDelta | undefined;
  readonly stamp?: InputStamp;
}

interface Job extends Received {
  readonly seq: number;
  readonly stream: Stream;
}

export class SyncClient {
  private readonly targets: ControllerTargets;
  /** The channel of the target dialled (closeAllBut, closeUnlisted). */
  private readonly stubs = new Map<Target, SyncStubClient>();
  private warnedNoTarget = false;
  private readonly backoff: Backoff;
  private readonly logger: SyncLogger;
  private stream: Stream | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private started = false;
  private closed = false;
  private pending: Job | undefined;
  private applyLoop: Promise<void> | undefined;
  private lastProblem: string | undefined;
  private readonly warnings: ConnectWarnings;
  private flowTimer: NodeJS.Timeout | undefined;
  private readonly connectDeadline: ConnectDeadline;

  constructor(private readonly options: SyncClientOptions) {
    this.backoff = new Backoff(options.backoff);
    this.logger = options.logger ?? silentLogger;
    this.warnings = new ConnectWarnings(this.logger, options.repeatWarnMs ?? 300_000);
    this.connectDeadline = new ConnectDeadline(options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS, options.firstMessageTimeoutMs ?? 120_000, options.queuedWaitMs);
    if (options.targets && options.target !== undefined) throw new Error('SyncClient: give target or targets, not both');
    this.targets = options.targets ?? new ControllerTargets(options.target !== undefined ? [options.target] : []);
  }

  /** The target dialled now (or next), for logs and the agent's status. */
  get target(): Target | undefined {
    return this.stream?.target ?? this.targets.current();
  }

  /** The targets with a gRPC channel open now (dialled, and listed or in use). */
  get channelTargets(): Target[] {
    return [...this.stubs.keys()].sort();
  }

  /**
   * A new list of replicas (Consul, DNS): kept order, the one in use stays (controller-targets.ts).
   * Channels of targets no longer listed are closed, the one in use when its stream ends.
   */
  setCandidates(list: readonly Target[]): void {
    this.targets.setCandidates(list);
    this.closeUnlisted();
    if (this.started && !this.closed && !this.stream && !this.reconnectTimer) this.connect();
  }

  private closeUnlisted(): void {
    const listed = new Set(this.targets.candidates);
    this.closeChannels((target) => listed.has(target) || this.stream?.target === target);
  }

  /** After a stream ended only the next target's channel stays: one left open keeps its TLS
   *  connection, which the replica pays for (see the header). */
  private closeAllBut(next: Target | undefined): void {
    this.closeChannels((target) => target === next);
  }

  private closeChannels(keep: (target: Target) => boolean): void {
    for (const [target, stub] of this.stubs) {
      if (keep(target)) continue;
      stub.close();
      this.stubs.delete(target);
    }
  }

  private stubFor(target: Target): SyncStubClient {
    let stub = this.stubs.get(target);
    if (!stub) {
      const o = this.options;
      stub = new (loadSyncProto().Client)(target, o.credentials, {
        'grpc.use_local_subchannel_pool': 1, // the global pool is scanned on every dial: O(clients in the process)
        'grpc.initial_reconnect_backoff_ms': o.backoff?.initialMs ?? 500,
        'grpc.max_reconnect_backoff_ms': o.backoff?.maxMs ?? 30_000,
        ...o.channelOptionsFor?.(target),
        ...o.channelOptions,
      });
      this.stubs.set(target, stub);
    }
    return stub;
  }

  /** Starts connecting; reconnects until `close()`. */
  start(): void {
    if (this.started || this.closed) return;
    this.started = true;
    this.connect();
    const flows = this.options.flows;
    if (flows) {
      const ms = this.options.flowIntervalMs ?? Math.max(1, flows.status().intervalSeconds) * 1000;
      this.flowTimer = setInterval(() => this.reportFlows(flows), ms);
      this.flowTimer.unref();
    }
  }

  /** Ends the stream, stops reconnecting, waits for a running apply, closes the channel. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    if (this.flowTimer) clearInterval(this.flowTimer);
    this.pending = undefined;
    const stream = this.stream;
    this.stream = undefined;
    if (stream) this.endStream(stream);
    await this.applyLoop;
    for (const stub of this.stubs.values()) stub.close();
    this.stubs.clear();
  }

  /** The controller has answered on the current stream (a Ping, a state) and not rejected it: not while connecting. */
  get connected(): boolean {
    const stream = this.stream;
    return stream !== undefined && stream.heard && stream.rejectedReason === undefined;
  }

  /** Why the last stream ended or was rejected, for the agent's health output. */
  get lastError(): string | undefined {
    return this.lastProblem;
  }

  private connect(): void {
    if (this.closed) return;
    const target = this.targets.current();
    if (target === undefined) {
      // No replica known (an empty Consul list): wait for setCandidates, and ask the source.
      if (!this.warnedNoTarget) this.logger.info({ hostId: this.options.hostId }, 'sync: no controller known yet: waiting for a list of replicas');
      this.warnedNoTarget = true;
      this.options.refreshTargets?.();
      return;
    }
    this.warnedNoTarget = false;
    this.emit({ type: 'connecting' });
    const call = this.stubFor(target).Sync();
    const stream: Stream = { target, call, idleTimer: undefined, heard: false, rejectedReason: undefined, acceptsFlows: false, flowBlocked: false };
    this.stream = stream;
    this.armSilenceTimer(stream, this.options.firstMessageTimeoutMs ?? 120_000);
    this.armConnectDeadline(stream, this.stubFor(target));
    call.on('data', (message: ControllerMessage__Output) => this.onMessage(stream, message));
    call.on('error', (err: grpc.ServiceError) => this.streamEnded(stream, err.details || err.message));
    call.on('end', () => this.streamEnded(stream, 'controller ended the stream'));
    call.write({
      hello: {
        hostId: this.options.hostId,
        addresses: [...(this.options.addresses ?? [])],
        agentVersion: this.options.agentVersion,
        appliedVersion: this.held()?.version ?? '',
        ...helloStampFields(this.held() ? this.options.heldStamp?.() : undefined),
        ...this.egressField(),
        ...this.flowsField(),
        groupModes: this.options.groupModes ?? false,
      },
    });
  }

  private onMessage(stream: Stream, message: ControllerMessage__Output): void {
    if (this.stream !== stream) return;
    if (stream.heard) {
      stream.idleTimer?.refresh();
    } else {
      stream.heard = true;
      this.armSilenceTimer(stream, this.options.idleTimeoutMs ?? 45_000);
    }
    if (message.msg === 'rejected') {
      const reason = message.rejected?.reason ?? 'rejected';
      stream.rejectedReason = reason;
      this.emit({ type: 'rejected', reason });
      return;
    }
    this.targets.connected();
    this.backoff.reset();
    this.connectDeadline.reset();
    this.lastProblem = undefined;
    this.warnings.reset();
    switch (message.msg) {
      case 'ping':
        this.send(stream, { pong: { nonce: message.ping?.nonce ?? 0, ...this.egressField(), ...this.flowsField() } });
        return;
      case 'snapshot':
        if (message.snapshot) {
          const snapshot = message.snapshot;
          stream.acceptsFlows = snapshot.acceptsFlowReports === true;
          this.receive(stream, snapshot.seq, snapshot.version, snapshot, () => ({ state: stateFromSnapshot(this.options.hostId, snapshot), delta: undefined }));
        }
        return;
      case 'delta':
        if (message.delta) {
          const delta = message.delta;
          stream.acceptsFlows = delta.acceptsFlowReports === true;
          this.receive(stream, delta.seq, delta.version, delta, () => {
            const decoded = deltaFromMessage(this.options.hostId, delta);
            const base = this.held();
            if (!base) throw new Error(`delta on base '${decoded.baseVersion}' but this agent has no state`);
            return { state: applyDelta(base, decoded), delta: decoded };
          });
        }
        return;
      default:
        this.logger.warn({ kind: message.msg }, 'sync: unexpected controller message ignored');
    }
  }

  /** Record → apply once: decode now (cheap, pure), apply in the loop. */
  private receive(stream: Stream, seq: number, version: string, stamped: Parameters<typeof checkedStamp>[0], decode: () => Received): void {
    let decoded: Received;
    try {
      decoded = decode();
      decoded = { ...decoded, stamp: checkedStamp(stamped, decoded.state.version, this.options.heldStamp?.() ?? NO_STAMP, this.held()?.version) };
    } catch (err) {
      const text = err instanceof Error ? err.message : String(err);
      this.logger.warn({ hostId: this.options.hostId, seq, version, error: text }, 'sync: cannot use controller message');
      this.send(stream, { applyError: { version, seq, message: text } });
      this.emit({ type: 'apply-failed', version, seq, message: text });
      return;
    }
    this.pending = { ...decoded, seq, stream };
    if (!this.applyLoop) {
      this.applyLoop = this.runApplies().finally(() => {
        this.applyLoop = undefined;
      });
    }
  }

  private async runApplies(): Promise<void> {
    for (let job = this.takePending(); job; job = this.takePending()) {
      try {
        // A Delta onto the version held that leaves it as it is (the controller's way of saying
        // accepts_flow_reports to an agent already in sync) needs no kernel write.
        const unchanged = job.delta !== undefined && job.delta.baseVersion === job.delta.version && this.held()?.version === job.state.version;
        if (!unchanged) await this.options.apply(job.state, job.delta, job.stamp);
        this.send(job.stream, { ack: { version: job.state.version, seq: job.seq, ...this.egressField(), ...this.flowsField() } });
        if (!unchanged) this.emit({ type: 'applied', version: job.state.version, seq: job.seq });
      } catch (err) {
        const text = err instanceof Error ? err.message : String(err);
        this.logger.warn({ hostId: this.options.hostId, version: job.state.version, error: text }, 'sync: apply failed');
        this.send(job.stream, { applyError: { version: job.state.version, seq: job.seq, message: text } });
        this.emit({ type: 'apply-failed', version: job.state.version, seq: job.seq, message: text });
      }
    }
  }

  private takePending(): Job | undefined {
    const job = this.pending;
    this.pending = undefined;
    return this.closed ? undefined : job;
  }

  private egressField(): { egress?: EgressStatus } {
    const status = this.options.egress?.();
    return status === undefined ? {} : { egress: status };
  }

  private flowsField(): { flows?: FlowStatus } {
    const source = this.options.flows;
    return source === undefined ? {} : { flows: flowStatusMessage(source.status()) };
  }

  /** One interval's FlowReport, when the current stream may take one (see the header). */
  private reportFlows(source: FlowSource): void {
    const stream = this.stream;
    if (!this.closed && stream) sendFlowReport(stream, source, this.logger, this.options.hostId);
  }

  private held(): DesiredState | undefined {
    return this.options.held?.();
  }

  private send(stream: Stream, message: AgentMessage): void {
    if (this.stream === stream) stream.call.write(message);
  }

  private streamEnded(stream: Stream, reason: string): void {
    if (this.stream !== stream) return;
    this.stream = undefined;
    if (this.pending?.stream === stream) this.pending = undefined;
    this.endStream(stream);
    if (this.closed) return;
    this.lastProblem = stream.rejectedReason ? `rejected by the controller: ${stream.rejectedReason}` : reason;
    const delay = this.backoff.next();
    // A target no longer listed was already replaced in the order (setCandidates): dial that one.
    const listed = this.targets.candidates.includes(stream.target);
    const { target: next, roundDone } = listed ? this.targets.advance() : { target: this.targets.current(), roundDone: false };
    const fields = { hostId: this.options.hostId, controller: stream.target, next: next ?? null, retryInMs: delay };
    if (stream.rejectedReason !== undefined && isAtCapacity(stream.rejectedReason)) {
      this.logger.info({ ...fields, reason: stream.rejectedReason }, 'sync: replica at capacity, trying another');
    } else if (this.askedToMove(stream)) {
      this.lastProblem = undefined;
      this.logger.info({ ...fields, reason: stream.rejectedReason }, 'sync: replica rebalancing, moving to another');
    } else if (stream.heard && stream.rejectedReason === undefined) {
      this.logger.info({ ...fields, reason }, 'sync: stream ended');
    } else {
      this.warnings.problem(this.lastProblem, fields);
    }
    this.closeAllBut(next);
    if (roundDone) this.options.refreshTargets?.();
    this.emit({ type: 'disconnected', reason, retryInMs: delay });
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.connect();
    }, delay);
  }

  /** The replica asked this agent to move (rebalancing): nothing is wrong, the applied state stays. */
  private askedToMove(stream: Stream): boolean {
    return stream.rejectedReason !== undefined && isRebalancing(stream.rejectedReason);
  }

  /** Fails `stream` as a connection problem when its channel is not up in time (connect-deadline.ts). */
  private armConnectDeadline(stream: Stream, stub: SyncStubClient): void {
    const credentials = this.options.credentials;
    this.connectDeadline.watch(stub, {
      stillWaiting: () => this.stream === stream && !stream.heard,
      handshaking: () => credentials instanceof AgentChannelCredentials && credentials.handshaking(stream.target),
      missed: (waitedMs, message) => this.streamEnded(stream, `not connected within ${waitedMs} ms (${message})`),
    });
  }

  /** Ends `stream` when the controller stays silent for `ms` (see idleTimeoutMs, firstMessageTimeoutMs). */
  private armSilenceTimer(stream: Stream, ms: number): void {
    if (stream.idleTimer) clearTimeout(stream.idleTimer);
    stream.idleTimer = setTimeout(() => this.streamEnded(stream, `no message from the controller for ${ms} ms`), ms);
    stream.idleTimer.unref();
  }

  private endStream(stream: Stream): void {
    if (stream.idleTimer) clearTimeout(stream.idleTimer);
    stream.call.cancel();
  }

  private emit(event: SyncClientEvent): void {
    this.options.onEvent?.(event);
  }
}
