/**
 * An in-memory StateSource for Sync stream tests, plus helpers to make valid DesiredStates
 * (versions computed with the real content hash, so applyDelta accepts them).
 */
import { SET_KINDS, type DesiredState, type SetKind } from '../../src/compile/desired-state.js';
import { diffStates, type StateDelta } from '../../src/compile/state-delta.js';
import { stateVersion } from '../../src/compile/state-version.js';
import type { StateSource } from '../../src/grpc/state-source.js';
import type { Mode } from '../../src/policy/policy-model.js';

export class MemoryStateSource implements StateSource {
  private readonly states = new Map<string, DesiredState>();
  private readonly listeners = new Set<(hostIds: readonly string[]) => void>();

  set(state: DesiredState): void {
    this.states.set(state.hostId, state);
    for (const listener of [...this.listeners]) listener([state.hostId]);
  }

  current(hostId: string): DesiredState | undefined {
    return this.states.get(hostId);
  }

  subscribe(listener: (hostIds: readonly string[]) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  get listenerCount(): number {
    return this.listeners.size;
  }
}

/** A source that also offers its own patch (as the incremental compiler does), keyed by the full versions. */
export class PatchingSource extends MemoryStateSource {
  private readonly previous = new Map<string, DesiredState>();
  patches = 0;

  override set(state: DesiredState): void {
    const before = this.current(state.hostId);
    if (before) this.previous.set(state.hostId, before);
    super.set(state);
  }

  deltaFrom(hostId: string, baseVersion: string): StateDelta | undefined {
    const before = this.previous.get(hostId);
    const now = this.current(hostId);
    if (!before || !now || before.version !== baseVersion) return undefined;
    this.patches++;
    return diffStates(before, now);
  }
}

export function makeState(hostId: string, members: Partial<Record<SetKind, readonly string[]>>, mode: Mode = 'enforce'): DesiredState {
  const sets = Object.fromEntries(
    SET_KINDS.map((kind) => {
      const list = [...new Set(members[kind] ?? [])].sort();
      return [kind, list];
    }),
  ) as Record<SetKind, string[]>;
  return { hostId, mode, sets, version: stateVersion(mode, sets) };
}

/** The n-th state of a host in a sequence of distinct states (n ≥ 0). */
export function nthState(hostId: string, n: number): DesiredState {
  const ports = Array.from({ length: 1 + (n % 5) }, (_, i) => String(31000 + n * 10 + i));
  return makeState(hostId, {
    'managed-tcp': ports,
    'failsafe-tcp': ['22'],
    'allow-ip4': ports.map((p) => `10.0.0.${1 + (n % 200)},tcp:${p}`),
    'allow-net6': [`fd00:${n.toString(16)}::/64,udp:53`],
  });
}
