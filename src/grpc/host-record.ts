/**
 * What the Sync service knows about one host across its streams: status for `portcullis status`
 * and the few recent states it sent, so the next message can be a delta against the version the
 * agent has (its last ack, or the applied_version of its Hello after a reconnect).
 */
import { hasAuditMembers, type DesiredState } from '../compile/desired-state.js';
import type { FlowStatusInfo } from '../flows/flow-types.js';
import { agentView, type WireFeatures } from './agent-view.js';
import type { EgressHolder, EgressReport } from './egress-status.js';
import { NO_STAMP, stampInfo, type InputStamp } from './input-stamp.js';

export interface AgentStatus {
  readonly hostId: string;
  /** A stream from this host is open and past Hello. */
  readonly connected: boolean;
  /** Remote address of the current (or last) stream, as grpc-js reports it. */
  readonly peer: string | undefined;
  readonly addresses: readonly string[];
  readonly agentVersion: string;
  /** Version the agent last acked (or announced in Hello); undefined before it has any. */
  readonly appliedVersion: string | undefined;
  /**
   * Version the controller wants on the host now, as this agent is sent it (without the egress
   * kinds for an agent that does not support them: agent-view.ts); undefined when it has no state.
   */
  readonly desiredVersion: string | undefined;
  readonly inSync: boolean;
  /** Message of the last ApplyError since the last successful ack. */
  readonly lastError: string | undefined;
  /** Epoch milliseconds of the last message received from the agent. */
  readonly lastSeen: number | undefined;
  /** What the agent last said about egress (Hello, Ack, Pong; egress-status.ts). */
  readonly egress: EgressReport | undefined;
  /** What the agent last said about flow recording (Hello, Ack, Pong; cleaned); null when its release has none. */
  readonly flows: FlowStatusInfo | null;
  /**
   * The agent's release understands per-group mode (Hello.group_modes). When false and the
   * host's state audits some ports or apps while enforcing others, the agent is sent the whole
   * state in audit (agent-view.ts): `groupModesAllAudit` says so.
   */
  readonly groupModes: boolean;
  readonly groupModesAllAudit: boolean;
  /** Input stamp of the state the agent applied (input-stamp.ts); null when it has none comparable. */
  readonly appliedStamp: ReturnType<typeof stampInfo>;
  /** Why this replica holds the agent (it is behind the agent's applied state); null when not held. */
  readonly heldBehind: string | null;
}

export class HostRecord implements EgressHolder {
  connected = false;
  peer: string | undefined;
  addresses: readonly string[] = [];
  agentVersion = '';
  appliedVersion: string | undefined;
  lastError: string | undefined;
  lastSeen: number | undefined;
  egress: EgressReport | undefined;
  egressWarned: string | undefined;
  /** What the current (or last) stream's Hello announced it understands: it is sent those kinds (agent-view.ts). */
  features: WireFeatures = { egress: false, groupModes: false };
  flows: FlowStatusInfo | null = null;
  appliedStamp: InputStamp = NO_STAMP;
  heldBehind: string | undefined;
  private readonly sent = new Map<string, DesiredState>();

  constructor(
    readonly hostId: string,
    private readonly retain: number,
  ) {}

  /** Keeps `state` as a possible delta base (most recently used last, oldest evicted). */
  remember(state: DesiredState): void {
    this.sent.delete(state.version);
    this.sent.set(state.version, state);
    while (this.sent.size > this.retain) {
      const oldest = this.sent.keys().next().value;
      if (oldest === undefined) break;
      this.sent.delete(oldest);
    }
  }

  /** A state this service sent with that version, if still held. */
  lookup(version: string | undefined): DesiredState | undefined {
    return version === undefined ? undefined : this.sent.get(version);
  }

  /** `desired`: the host's current full state (this agent's view of it is compared). */
  status(desired: DesiredState | undefined): AgentStatus {
    const desiredVersion = desired === undefined ? undefined : agentView(desired, this.features).version;
    return {
      hostId: this.hostId,
      connected: this.connected,
      peer: this.peer,
      addresses: this.addresses,
      agentVersion: this.agentVersion,
      appliedVersion: this.appliedVersion,
      desiredVersion,
      inSync: desiredVersion !== undefined && desiredVersion === this.appliedVersion,
      lastError: this.lastError,
      lastSeen: this.lastSeen,
      egress: this.egress,
      flows: this.flows,
      groupModes: this.features.groupModes,
      groupModesAllAudit: desired !== undefined && !this.features.groupModes && hasAuditMembers(desired.sets),
      appliedStamp: stampInfo(this.appliedStamp),
      heldBehind: this.heldBehind ?? null,
    };
  }
}
