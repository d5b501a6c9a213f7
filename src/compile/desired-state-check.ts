/**
 * Whether a value read from outside (the agent's saved state, a controller's answer to the CLI)
 * is a DesiredState: the shape, known set kinds only, and a `version` equal to the content hash
 * recomputed from {mode, sets}. Pure.
 */
import { INGRESS_KINDS, SET_KINDS, emptySets, hasEgressMembers, type DesiredState, type SetContents } from './desired-state.js';
import { stateVersion, stateVersionV1 } from './state-version.js';

export interface CheckOptions {
  /**
   * Also accept a version of the previous definition (stateVersionV1), for a state an older
   * release saved; the caller then re-versions it (stateVersion). Default false.
   */
  readonly acceptV1?: boolean;
  /**
   * Take a kind added after the destination-side ones (egress, per-group mode) that is absent as
   * empty: a state an older release saved has no such key. Default false (the wire and the
   * controller's answers always carry every kind).
   */
  readonly acceptMissingNewKinds?: boolean;
}

/** The kinds added after the destination-side ones: absent from what an older release saved. */
const NEWER_KINDS: ReadonlySet<string> = new Set(SET_KINDS.filter((kind) => !INGRESS_KINDS.includes(kind)));

/** Why `value` is not a DesiredState, or undefined when it is one. */
export function checkDesiredState(value: unknown, options: CheckOptions = {}): string | undefined {
  if (typeof value !== 'object' || value === null) return 'not an object';
  const s = value as Partial<Record<keyof DesiredState, unknown>>;
  if (typeof s.hostId !== 'string' || s.hostId === '') return 'hostId is not a non-empty string';
  if (s.mode !== 'enforce' && s.mode !== 'audit') return `mode ${JSON.stringify(s.mode)} is not enforce or audit`;
  if (typeof s.version !== 'string' || !/^[0-9a-f]{16}$/.test(s.version)) return 'version is not 16 hex characters';
  if (typeof s.sets !== 'object' || s.sets === null) return 'sets is not an object';
  const given = s.sets as Record<string, unknown>;
  for (const kind of SET_KINDS) {
    const members = given[kind];
    if (members === undefined && options.acceptMissingNewKinds && NEWER_KINDS.has(kind)) continue;
    if (!Array.isArray(members) || !members.every((m) => typeof m === 'string')) return `sets.${kind} is not a list of strings`;
  }
  const extra = Object.keys(given).filter((k) => !(SET_KINDS as readonly string[]).includes(k));
  if (extra.length > 0) return `unknown set kind(s) ${extra.join(', ')}`;
  const sets = withEveryKind(given as Partial<SetContents>);
  const expected = stateVersion(s.mode, sets);
  if (expected === s.version) return undefined;
  const v1 = options.acceptV1 && !hasEgressMembers(sets); // v1 had no egress
  if (v1 && stateVersionV1(s.mode, sets) === s.version) return undefined;
  return `version ${s.version} does not match its content (${expected})`;
}

/** `sets` with an empty list for every absent kind (see `acceptMissingNewKinds`). */
export function withEveryKind(sets: Partial<SetContents>): SetContents {
  const out: Record<string, readonly string[]> = emptySets();
  for (const [kind, members] of Object.entries(sets)) if (members !== undefined) out[kind] = members;
  return out as SetContents;
}
