/**
 * Where the Sync service reads desired states from. The controller core implements it (see
 * src/controller/desired-state-store.ts); tests use an in-memory one.
 */
import type { DesiredState } from '../compile/desired-state.js';
import type { StateDelta } from '../compile/state-delta.js';
import type { InputStamp } from './input-stamp.js';

/** The source's input stamp now (input-stamp.ts), and its last answered Consul policy read. */
export interface SourceStamp extends InputStamp {
  /** When the newest answered read of the policy pointer started, and the index it answered. */
  readonly consulRead?: { readonly startedAt: number; readonly index: number } | undefined;
}

export interface StateSource {
  /** The newest desired state of the host, or undefined when the controller has none for it. */
  current(hostId: string): DesiredState | undefined;
  /**
   * Optional: the delta from the host's state of version `baseVersion` to its current one when
   * the source has it at hand (the incremental compiler's patch); otherwise the session diffs.
   */
  deltaFrom?(hostId: string, baseVersion: string): StateDelta | undefined;
  /**
   * Optional: what the current states were compiled from (input-stamp.ts). Absent: every state is
   * sent with stamp 0 (not comparable) and no agent is held.
   */
  stamp?(): SourceStamp;
  /** Calls `listener` with the hosts whose state changed; returns an unsubscribe function. */
  subscribe(listener: (hostIds: readonly string[]) => void): () => void;
}
