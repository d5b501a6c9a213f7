/**
 * The state an agent is sent, by what it understands. An agent of a release before egress
 * refuses a message naming a set kind it does not know (wire-state.ts decodes kinds as a closed
 * vocabulary), so an agent whose Hello does not announce egress support gets every state WITHOUT
 * the egress kinds, versioned as such: its view is the state with the egress lists emptied and
 * the version `stateVersion` gives those sets, which is the v2 version of the destination-side
 * sets alone (the "#egress" header line is absent when no egress member is; state-version.ts).
 * Deltas to such an agent go between views, and its messages name only INGRESS_KINDS.
 *
 * A state without an egress member is its own view (same object, same version), so with
 * `defaults.egress: false` nothing changes for anyone. Otherwise the view is made once per state
 * object (a WeakMap: states are immutable and die with the store's generation) and shares every
 * destination-side list with the state, so diffing two views costs what diffing the states does.
 */
import { EGRESS_KINDS, INGRESS_KINDS, SET_KINDS, hasEgressMembers, type DesiredState, type SetKind } from '../compile/desired-state.js';
import type { StateDelta } from '../compile/state-delta.js';
import { stateVersion } from '../compile/state-version.js';

const NONE: readonly string[] = Object.freeze([]);
const views = new WeakMap<DesiredState, DesiredState>();

/** The set kinds that go on the wire to an agent with or without egress support. */
export function wireKinds(egress: boolean): readonly SetKind[] {
  return egress ? SET_KINDS : INGRESS_KINDS;
}

/** `state` as an agent with (`egress` true) or without egress support is sent it. */
export function agentView(state: DesiredState, egress: boolean): DesiredState {
  if (egress || !hasEgressMembers(state.sets)) return state;
  let view = views.get(state);
  if (view) return view;
  const sets: Record<SetKind, readonly string[]> = { ...state.sets };
  for (const kind of EGRESS_KINDS) sets[kind] = NONE;
  view = { hostId: state.hostId, mode: state.mode, sets, version: stateVersion(state.mode, sets) };
  views.set(state, view);
  return view;
}

/**
 * `delta` (between two full states, from the source) as it applies between their views for an
 * agent without egress support: the egress kinds dropped, `version` that of the target's view.
 * Only valid when its base has no egress member (then the base is its own view).
 */
export function deltaForView(delta: StateDelta, version: string): StateDelta {
  const adds: Record<SetKind, readonly string[]> = { ...delta.adds };
  const removes: Record<SetKind, readonly string[]> = { ...delta.removes };
  for (const kind of EGRESS_KINDS) {
    adds[kind] = NONE;
    removes[kind] = NONE;
  }
  return { ...delta, version, adds, removes };
}
