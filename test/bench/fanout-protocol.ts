/**
 * IPC messages between the fanout benchmark (the controller process) and its worker processes
 * (fanout-worker.ts), each hosting a slice of the simulated agents.
 *
 * Times are wall-clock milliseconds with sub-millisecond resolution
 * (`performance.timeOrigin + performance.now()`), comparable across processes of one machine.
 */

export interface WorkerInit {
  readonly type: 'init';
  /** `127.0.0.1:port` of the controller's gRPC listener. */
  readonly target: string;
  /**
   * Several controller replicas (bench-replicas.ts): each agent dials them in its own shuffled
   * order (agent/controller-targets.ts) and moves on when a stream ends; `target` is then unused.
   */
  readonly targets?: readonly string[];
  /** Name the controller's certificate is checked against (ssl_target_name_override). */
  readonly serverName: string;
  readonly caCertFile: string;
  readonly caKeyFile: string;
  /** Agents hosted by this worker: host indices [first, first + count). */
  readonly first: number;
  readonly count: number;
}

export type ToWorker = WorkerInit | { readonly type: 'connect' } | { readonly type: 'stats' } | { readonly type: 'stop' };

export interface WorkerStats {
  readonly agents: number;
  readonly applied: number;
  readonly rejected: number;
  readonly applyFailed: number;
  readonly disconnects: number;
  readonly connected: number;
  readonly rssBytes: number;
  /** CPU time (user + system) of the worker process so far, ms. */
  readonly cpuMs: number;
  /** Why streams ended (SyncClient 'disconnected' reasons, digits folded), with counts. */
  readonly reasons: Readonly<Record<string, number>>;
}

export type FromWorker =
  | { readonly type: 'ready'; readonly issueMs: number; readonly clientsMs: number }
  /** Applies since the last batch: host index, version, wall time of the apply call, 1 when it came as a Delta (0: Snapshot). */
  | { readonly type: 'applied'; readonly hosts: number[]; readonly versions: string[]; readonly at: number[]; readonly deltas: number[] }
  | { readonly type: 'rejected'; readonly host: number; readonly reason: string }
  | { readonly type: 'stats'; readonly stats: WorkerStats }
  | { readonly type: 'stopped'; readonly stats: WorkerStats }
  | { readonly type: 'error'; readonly message: string };

export function wallNow(): number {
  return performance.timeOrigin + performance.now();
}

// ---- replicas (bench-replicas.ts ↔ fanout-replica.ts) ----

export interface ReplicaInit {
  readonly type: 'init';
  /** Hosts of the fanout world (fanout-cluster.ts) and its seed: every replica compiles the same bytes. */
  readonly hosts: number;
  readonly seed: number;
  /** The controller's certificate, key and CA (the same for every replica). */
  readonly certFile: string;
  readonly keyFile: string;
  readonly caFile: string;
  /** 0: any free port; else this one (a replica brought back where it was). */
  readonly port: number;
  /** Prometheus on this host index at start (the cluster the other replicas are at). */
  readonly prometheusOn: number;
  /** The replica's connection cap (SyncServiceOptions.maxAgents). */
  readonly maxAgents: number;
  /** Handshakes at once (`--max-handshakes`, src/tls/handshake-queue.ts); 0: no limit. */
  readonly maxHandshakes: number;
}

export type ToReplica =
  | ReplicaInit
  /** setCluster with Prometheus on host `prometheusOn`. */
  | { readonly type: 'change'; readonly prometheusOn: number }
  /** Every stream dropped: the SyncService and server closed and made again on the same port, with a change made meanwhile. */
  | { readonly type: 'restart'; readonly prometheusOn: number }
  /** `hosts`: also list the hosts connected here. */
  | { readonly type: 'stats'; readonly hosts: boolean }
  | { readonly type: 'memory' }
  | { readonly type: 'stop' };

export interface ReplicaStats {
  /** Agent streams open (past Hello). */
  readonly open: number;
  /** Connected agents whose applied version is the replica's desired one. */
  readonly inSync: number;
  /** Connected host ids, when asked for. */
  readonly hosts?: string[];
  readonly refusedAtCapacity: number;
  /** Connections closed unhandshaked because the replica was busy, and closed by their peer while waiting. */
  readonly busy: number;
  readonly abandoned: number;
  readonly cpuMs: number;
  readonly rssBytes: number;
}

export type FromReplica =
  /** Listening; memory after GC with no agent connected. */
  | { readonly type: 'ready'; readonly port: number; readonly compileMs: number; readonly rss: number; readonly heap: number }
  | { readonly type: 'changed'; readonly changed: number; readonly compileMs: number; readonly sendLoopMs: number }
  | { readonly type: 'restarted'; readonly downMs: number }
  | { readonly type: 'stats'; readonly stats: ReplicaStats }
  /** `open`: agent streams; `bytesWritten`: what the listener's agent sessions have written so far (ListenerTraffic). */
  | { readonly type: 'memory'; readonly rss: number; readonly heap: number; readonly open: number; readonly sessions: number; readonly bytesWritten: number }
  | { readonly type: 'error'; readonly message: string };
