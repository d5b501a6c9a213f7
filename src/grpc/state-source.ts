/**
 * Where the Sync service reads desired states from. The controller core implements it (see
 * src/controller/desired-state-store.ts); tests use an in-memory one.
 */
import type { DesiredState } from '../compile/desired-state.js';
import type { StateDelta } from '../compile/state-delta.js';

export interface StateSource {
  /** The newest desired state of the host, or undefined when the controller has none for it. */
  current(hostId: string): DesiredState | undefined;
  /**
   * Optional: the delta from the host's state of version `baseVersion` to its current one when
   * the source has it at hand (the incremental compiler's patch); otherwise the session diffs.
   */
  deltaFrom?(hostId: string, baseVersion: string): StateDelta | undefined;
  /** Calls `listener` with the hosts whose state changed; returns an unsubscribe function. */
  subscribe(listener: (hostIds: readonly string[]) => void): () => void;
}
