/**
 * Conversions between the compiler's types (DesiredState, StateDelta) and the wire messages
 * (Snapshot, Delta). Decoding validates what the type system cannot see on the wire: the mode
 * and the set kinds are closed vocabularies, a version is present, a kind appears at most once.
 * A Snapshot is where a whole state enters the agent, so its decoding also checks it as a
 * DesiredState, its version against its content included (desired-state-check.ts); a Delta's
 * result is checked by `applyDelta` (state-delta.ts). Members are passed through untouched (their
 * syntax is checked by the render layer, src/render/validate-member.ts, when the agent's dataplane
 * renders them), so the version hash still describes exactly the bytes that were sent.
 */
import { SET_KINDS, type DesiredState, type SetKind } from '../compile/desired-state.js';
import { checkDesiredState } from '../compile/desired-state-check.js';
import type { StateDelta } from '../compile/state-delta.js';
import type { Mode } from '../policy/policy-model.js';
import type { Delta, Delta__Output, SetMembers, SetMembers__Output, Snapshot, Snapshot__Output } from './proto.js';

/** A message that cannot be turned into a state; the agent answers it with ApplyError. */
export class WireError extends Error {}

const MODES: readonly Mode[] = ['enforce', 'audit'];

/**
 * Every kind of `kinds` (default all), empty ones included. An agent without egress support is
 * sent INGRESS_KINDS only (agent-view.ts: it refuses a kind it does not know, even an empty one).
 */
export function snapshotMessage(state: DesiredState, seq: number, kinds: readonly SetKind[] = SET_KINDS): Snapshot {
  return {
    seq,
    version: state.version,
    mode: state.mode,
    sets: kinds.map((kind) => ({ kind, members: [...state.sets[kind]] })),
  };
}

/** The kinds of `kinds` (default all) that have something to add or remove. */
export function deltaMessage(delta: StateDelta, seq: number, kinds: readonly SetKind[] = SET_KINDS): Delta {
  return {
    seq,
    baseVersion: delta.baseVersion,
    version: delta.version,
    mode: delta.mode,
    adds: nonEmptyKinds(delta.adds, kinds),
    removes: nonEmptyKinds(delta.removes, kinds),
  };
}

/** Fields of a Snapshot/Delta that are not part of the state (the sync client reads them). */
type NotState = 'acceptsFlowReports' | 'policyStamp' | 'clusterStampMs';

/** `accepts_flow_reports` and the input stamp (input-stamp.ts) are not part of the state. */
export function stateFromSnapshot(hostId: string, message: Omit<Snapshot__Output, NotState>): DesiredState {
  const state: DesiredState = {
    hostId,
    mode: decodeMode(message.mode),
    sets: decodeSets(message.sets, 'sets'),
    version: decodeVersion(message.version, 'version'),
  };
  const problem = checkDesiredState(state);
  if (problem !== undefined) throw new WireError(`snapshot: ${problem}`);
  return state;
}

export function deltaFromMessage(hostId: string, message: Omit<Delta__Output, NotState>): StateDelta {
  return {
    hostId,
    baseVersion: decodeVersion(message.baseVersion, 'base_version'),
    version: decodeVersion(message.version, 'version'),
    mode: decodeMode(message.mode),
    adds: decodeSets(message.adds, 'adds'),
    removes: decodeSets(message.removes, 'removes'),
  };
}

function nonEmptyKinds(sets: Readonly<Record<SetKind, readonly string[]>>, kinds: readonly SetKind[]): SetMembers[] {
  return kinds.filter((kind) => sets[kind].length > 0).map((kind) => ({ kind, members: [...sets[kind]] }));
}

function decodeMode(mode: string): Mode {
  const found = MODES.find((m) => m === mode);
  if (!found) throw new WireError(`unknown mode '${mode}' (expected enforce or audit)`);
  return found;
}

function decodeVersion(version: string, field: string): string {
  if (version === '') throw new WireError(`${field} is empty`);
  return version;
}

function decodeSets(sets: readonly SetMembers__Output[], field: string): Record<SetKind, string[]> {
  const out = Object.fromEntries(SET_KINDS.map((kind) => [kind, [] as string[]])) as Record<SetKind, string[]>;
  const seen = new Set<string>();
  for (const entry of sets) {
    const kind = SET_KINDS.find((k) => k === entry.kind);
    if (!kind) throw new WireError(`${field}: unknown set kind '${entry.kind}'`);
    if (seen.has(kind)) throw new WireError(`${field}: set kind '${kind}' appears twice`);
    seen.add(kind);
    out[kind] = [...entry.members];
  }
  return out;
}
