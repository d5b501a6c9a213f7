/** The resolved flow the controller keeps and serves on /flows (issue 11). Types only. */
export interface FlowEndpointApp { readonly appId: string; readonly taskIds: readonly string[] }
export interface ObservedFlow {
  /** Stable key of the aggregate: sha256 of direction|verdict|reporter|source|destination|protocol|port, 16 hex. */
  readonly key: string;
  readonly direction: 'ingress' | 'egress';
  readonly verdict: 'allowed' | 'denied' | 'audit';
  /** The host whose agent recorded it. */
  readonly reportedBy: string;
  readonly source: {
    /** ingress: the source address; egress: the source host's address of the destination's family, or '' */
    readonly address: string;
    /** 'app' = an egress record (exactly one app), 'host' = a cluster host (its apps listed), 'network' = a named network, 'outside' = none of these */
    readonly kind: 'app' | 'host' | 'network' | 'outside';
    readonly hostId?: string;
    /** The app (egress) or the apps with a task on that host (ingress), by app id ascending. */
    readonly apps: readonly string[];
    /** Networks of the policy that contain the address, in policy order. */
    readonly networks: readonly string[];
  };
  readonly destination: {
    readonly hostId: string;
    readonly address: string;      // '' for ingress (the reporting host)
    readonly protocol: 'tcp' | 'udp';
    readonly port: number;          // host port
    /** The owners of the claim: '' app when no task claims it (unmanaged by now). */
    readonly apps: readonly FlowEndpointApp[];
    readonly portName?: string;     // the app port's name, when it has one
  };
  /** What the policy in force says now (the reference evaluator, the one explain uses). */
  readonly decidedBy: { readonly tier: string; readonly rule?: string; readonly at?: string; readonly reason: string };
  readonly packets: number;
  readonly bytes: number;
  readonly firstSeen: string;   // ISO 8601
  readonly lastSeen: string;    // ISO 8601
}
