/**
 * Where the Sync service reads desired states from. The controller core implements it (see
 * src/controller/desired-state-store.ts); tests use an in-memory one.
 */
import type { DesiredState } from '../compile/desired-state.js';

export interface StateSource {
  /** The newest desired state of the host, or undefined when the controller has none for it. */
  current(hostId: string): DesiredState | undefined;
  /** Calls `listener` with the hosts whose state changed; returns an unsubscribe function. */
  subscribe(listener: (hostIds: readonly string[]) => void): () => void;
}
