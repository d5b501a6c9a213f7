/**
 * The state an agent is sent, by what it understands. An agent refuses a message naming a set
 * kind it does not know (wire-state.ts decodes kinds as a closed vocabulary), so each stream is
 * sent only the kinds its Hello announces (`WireFeatures`):
 *
 * - Egress (Hello.egress.supported): without it, every state goes WITHOUT the egress kinds,
 *   versioned as such: the version `stateVersion` gives the state with the egress lists emptied,
 *   which is the v2 version of the destination-side sets alone (the "#egress" header line is
 *   absent when no egress member is; state-version.ts).
 * - Per-group mode (Hello.group_modes): without it, the audit kinds (audit-tcp, audit-udp,
 *   egress-audit: exceptions to an enforcing state) are dropped and, when one had a member, the
 *   view's mode is `audit`: an agent that cannot audit some ports while enforcing others audits
 *   them all, so a group being staged never breaks (/status says why the host audits).
 * Deltas to such an agent go between views, and its messages name only its kinds.
 *
 * A state with nothing to strip is its own view (same object, same version), so with
 * `defaults.egress: false` and one mode for every group nothing changes for anyone. Otherwise the
 * view is made once per state object and features (a WeakMap: states are immutable and die with
 * the store's generation) and shares every other list with the state, a pending one unbuilt
 * (pending-list.ts replacedSets: a patched state sent as a delta is never built for its view), so
 * diffing two views costs what diffing the states does. Its version comes from the parts the
 * compiler versioned the state with (state-version.ts viewVersion: one hash of the header, the
 * allow lists not read), or from its members (stateVersion) for a state the compiler did not make.
 */
import {
  AUDIT_KINDS,
  EGRESS_KINDS,
  SET_KINDS,
  hasAuditMembers,
  hasEgressMembers,
  type DesiredState,
  type SetKind,
} from '../compile/desired-state.js';
import { replacedSets } from '../compile/pending-list.js';
import type { StateDelta } from '../compile/state-delta.js';
import { stateVersion, viewVersion } from '../compile/state-version.js';

/** What an agent's Hello announces it understands. */
export interface WireFeatures {
  /** The egress kinds (Hello.egress.supported). */
  readonly egress: boolean;
  /** The per-group mode kinds (Hello.group_modes). */
  readonly groupModes: boolean;
}

const NONE: readonly string[] = Object.freeze([]);
const views = new WeakMap<DesiredState, Map<string, DesiredState>>();
const EGRESS: ReadonlySet<SetKind> = new Set(EGRESS_KINDS);
const AUDIT: ReadonlySet<SetKind> = new Set(AUDIT_KINDS);

/** The set kinds that go on the wire to an agent with `features`, in SET_KINDS order. */
export function wireKinds(features: WireFeatures): readonly SetKind[] {
  return SET_KINDS.filter((kind) => (features.egress || !EGRESS.has(kind)) && (features.groupModes || !AUDIT.has(kind)));
}

function stripped(state: DesiredState, features: WireFeatures): { egress: boolean; audit: boolean } {
  return { egress: !features.egress && hasEgressMembers(state.sets), audit: !features.groupModes && hasAuditMembers(state.sets) };
}

/** `state` as an agent with `features` is sent it. */
export function agentView(state: DesiredState, features: WireFeatures): DesiredState {
  const strip = stripped(state, features);
  if (!strip.egress && !strip.audit) return state;
  const key = `${strip.egress ? 'e' : ''}${strip.audit ? 'a' : ''}`;
  let byKey = views.get(state);
  let view = byKey?.get(key);
  if (view) return view;
  const emptied: Partial<Record<SetKind, readonly string[]>> = {};
  if (strip.egress) for (const kind of EGRESS_KINDS) emptied[kind] = NONE;
  if (strip.audit) for (const kind of AUDIT_KINDS) emptied[kind] = NONE;
  const sets = replacedSets(state.sets, emptied);
  const mode = strip.audit ? 'audit' : state.mode;
  view = { hostId: state.hostId, mode, sets, version: viewVersion(state, mode, strip) ?? stateVersion(mode, sets) };
  if (!byKey) views.set(state, (byKey = new Map()));
  byKey.set(key, view);
  return view;
}

/** True when the agent with `features` could hold `base` as it is (nothing of it would be stripped). */
export function isOwnView(base: DesiredState, features: WireFeatures): boolean {
  const strip = stripped(base, features);
  return !strip.egress && !strip.audit;
}

/**
 * `delta` (between two full states, from the source) as it applies between their views for an
 * agent with `features`: the kinds it does not know dropped, mode and version those of the
 * target's `view`. Only valid when its base is its own view (`isOwnView`).
 */
export function deltaForView(delta: StateDelta, view: DesiredState, features: WireFeatures): StateDelta {
  const kinds = new Set(wireKinds(features));
  const adds: Record<SetKind, readonly string[]> = { ...delta.adds };
  const removes: Record<SetKind, readonly string[]> = { ...delta.removes };
  for (const kind of SET_KINDS) {
    if (kinds.has(kind)) continue;
    adds[kind] = NONE;
    removes[kind] = NONE;
  }
  return { ...delta, mode: view.mode, version: view.version, adds, removes };
}
