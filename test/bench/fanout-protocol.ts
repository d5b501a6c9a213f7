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
  /** Applies since the last batch: host index, version, wall time of the apply call. */
  | { readonly type: 'applied'; readonly hosts: number[]; readonly versions: string[]; readonly at: number[] }
  | { readonly type: 'rejected'; readonly host: number; readonly reason: string }
  | { readonly type: 'stats'; readonly stats: WorkerStats }
  | { readonly type: 'stopped'; readonly stats: WorkerStats }
  | { readonly type: 'error'; readonly message: string };

export function wallNow(): number {
  return performance.timeOrigin + performance.now();
}
