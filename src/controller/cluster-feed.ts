/**
 * Where the controller learns where tasks run. One implementation per source: the static
 * inventory file (static-inventory-feed.ts, the default) and Marathon (marathon-feed.ts).
 *
 * Contract: `start(onCluster)` resolves once the first load was attempted; `onCluster` is called
 * only with whole, valid ClusterStates (a broken source keeps the last good one upstream, so the
 * controller never sees it). `status()` is plain JSON for /status; `ready` says whether one good
 * cluster was had. `reload()` (SIGHUP) re-reads at once where that means something. `freshAsOf()`
 * is the cluster side of the input stamp, where a source has one (Marathon).
 */
import type { ClusterState } from '../inventory/cluster-state.js';

export interface ClusterFeedStatus {
  /** 'file', 'marathon', ... */
  readonly source: string;
  /** One good cluster was delivered (states are meaningful). */
  readonly ready: boolean;
}

export interface ClusterFeed {
  start(onCluster: (cluster: ClusterState) => void): Promise<void>;
  stop(): Promise<void>;
  status(): ClusterFeedStatus;
  reload?(): Promise<void>;
  /**
   * The cluster side of the input stamp (src/grpc/input-stamp.ts): epoch ms as of which the
   * delivered cluster is known complete. Absent or 0: not comparable across replicas (a file).
   */
  freshAsOf?(): number;
}
