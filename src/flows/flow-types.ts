/** Flow records: what agents report and the controller keeps (issue 11; docs/architecture.md "Flows"). Types only. */
export type FlowVerdict = 'allowed' | 'denied' | 'audit';
export type FlowDirection = 'ingress' | 'egress';
export const FLOW_VERDICTS: readonly FlowVerdict[] = ['allowed', 'denied', 'audit'];

/** One record as an agent reports it: counts since its previous report of the same key. */
export interface FlowEntry {
  readonly direction: FlowDirection;
  readonly verdict: FlowVerdict;
  /** ingress: the source address (canonical); egress: the local app id. */
  readonly source: string;
  /** ingress: '' (this host); egress: the destination address (canonical). */
  readonly destination: string;
  readonly protocol: 'tcp' | 'udp';
  /** Destination host port, 1-65535. */
  readonly port: number;
  /** New-connection packets and their bytes since the previous report of this key. */
  readonly packets: number;
  readonly bytes: number;
  /** ms since the epoch: when the kernel entry was added (estimated from its timeout), when last counted. */
  readonly firstSeenMs: number;
  readonly lastSeenMs: number;
}

/** New connections that could not be recorded (a full set) since the previous report. */
export interface FlowOverflow {
  readonly direction: FlowDirection;
  readonly verdict: FlowVerdict;
  readonly family: 4 | 6;
  readonly packets: number;
}

export interface FlowStatusInfo {
  /** The agent records flows (`--flow-interval` not off, and the kernel took the rules). */
  readonly recording: boolean;
  readonly reason: string;
  readonly intervalSeconds: number;
  readonly maxEntries: number;
}

/** The agent's recorded flows, read from the kernel (agent/flow-reader.ts). */
export interface FlowSource {
  /** Records gathered since the last call, at most `max`; the rest stays for the next call. */
  take(max: number): { entries: FlowEntry[]; overflow: FlowOverflow[]; more: boolean };
  status(): FlowStatusInfo;
}

/** Where the controller puts what agents report (src/flows/flow-store.ts). */
export interface FlowSink {
  ingest(hostId: string, entries: readonly FlowEntry[], lost: readonly FlowOverflow[], receivedAtMs: number): void;
}
