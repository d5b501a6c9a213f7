/**
 * Whether a value read from outside (the agent's saved state, a controller's answer to the CLI)
 * is a DesiredState: the shape, known set kinds only, and a `version` equal to the content hash
 * recomputed from {mode, sets}. Pure.
 */
import { SET_KINDS, hasEgressMembers, type DesiredState, type SetContents } from './desired-state.js';
import { stateVersion, stateVersionV1 } from './state-version.js';

export interface CheckOptions {
  /**
   * Also accept a version of the previous definition (stateVersionV1), for a state an older
   * release saved; the caller then re-versions it (stateVersion). Default false.
   */
  readonly acceptV1?: boolean;
}

/** Why `value` is not a DesiredState, or undefined when it is one. */
export function checkDesiredState(value: unknown, options: CheckOptions = {}): string | undefined {
  if (typeof value !== 'object' || value === null) return 'not an object';
  const s = value as Partial<Record<keyof DesiredState, unknown>>;
  if (typeof s.hostId !== 'string' || s.hostId === '') return 'hostId is not a non-empty string';
  if (s.mode !== 'enforce' && s.mode !== 'audit') return `mode ${JSON.stringify(s.mode)} is not enforce or audit`;
  if (typeof s.version !== 'string' || !/^[0-9a-f]{16}$/.test(s.version)) return 'version is not 16 hex characters';
  if (typeof s.sets !== 'object' || s.sets === null) return 'sets is not an object';
  const sets = s.sets as Record<string, unknown>;
  for (const kind of SET_KINDS) {
    const members = sets[kind];
    if (!Array.isArray(members) || !members.every((m) => typeof m === 'string')) return `sets.${kind} is not a list of strings`;
  }
  const extra = Object.keys(sets).filter((k) => !(SET_KINDS as readonly string[]).includes(k));
  if (extra.length > 0) return `unknown set kind(s) ${extra.join(', ')}`;
  const expected = stateVersion(s.mode, s.sets as SetContents);
  if (expected === s.version) return undefined;
  const v1 = options.acceptV1 && !hasEgressMembers(s.sets as SetContents); // v1 had no egress
  if (v1 && stateVersionV1(s.mode, s.sets as SetContents) === s.version) return undefined;
  return `version ${s.version} does not match its content (${expected})`;
}
