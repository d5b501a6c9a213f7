/**
 * The agent's memory across restarts ("fail static"): the last DesiredState it applied, so on boot
 * it can enforce that state before the controller is reachable.
 *
 * Contract: `saveState` replaces `<dir>/desired-state.json` atomically (temp file, fsync, rename,
 * mode 0600), so a crash leaves the old file or the new one. `loadState` returns the state only if
 * the file parses, has the DesiredState shape and its `version` equals the content hash recomputed
 * from {mode, sets}; anything else (missing file aside) is logged and ignored, never thrown: an
 * agent must boot even with a corrupt disk state, it then waits for the controller. This is the
 * one check of a state read from disk (where it enters the agent); the dataplane does not repeat
 * it (it checks only member syntax, in the render layer, as it renders). A state saved by a
 * release before the v2 version (state-version.ts stateVersionV1) is trusted when its version is
 * that release's hash of its content, and re-versioned as it is read (logged once,
 * `state_store.upgraded`), so an agent upgraded while its controller is away still boots into
 * the rules it had. The input stamp of the state (src/grpc/input-stamp.ts, sent in Hello) is saved
 * beside it (`stamp`, optional in format 1: a file of an earlier release loads with stamp 0, not
 * comparable, and an earlier release reads a file with a stamp as before); a stamp that is not
 * two non-negative integers is read as 0.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { SET_KINDS, type DesiredState, type SetContents } from '../src/compile/desired-state.js';
import { checkDesiredState, withEveryKind } from '../src/compile/desired-state-check.js';
import { stateVersion } from '../src/compile/state-version.js';
import { writeFileAtomic } from './dataplane/atomic-write.js';
import { NO_STAMP, stampFromWire, type InputStamp } from '../src/grpc/input-stamp.js';

export const STATE_FILE = 'desired-state.json';
const FORMAT = 1;

interface StoredState {
  readonly format: number;
  readonly state: DesiredState;
  readonly stamp?: InputStamp;
}

/** A state read back from disk, with the input stamp it was applied with. */
export interface SavedState {
  readonly state: DesiredState;
  readonly stamp: InputStamp;
}

export function statePath(dir: string): string {
  return path.join(dir, STATE_FILE);
}

export async function saveState(dir: string, state: DesiredState, stamp: InputStamp = NO_STAMP): Promise<void> {
  const stored: StoredState = { format: FORMAT, state, stamp: { policy: stamp.policy, cluster: stamp.cluster } };
  await writeFileAtomic(statePath(dir), `${JSON.stringify(stored)}\n`, 0o600);
}

/** Why a parsed value is not a stored DesiredState, or undefined when it is one. */
export function checkStoredState(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null) return 'not an object';
  const { format, state } = value as Partial<StoredState>;
  if (format !== FORMAT) return `unknown format ${JSON.stringify(format)} (expected ${FORMAT})`;
  if (typeof state !== 'object' || state === null) return 'no state';
  return checkDesiredState(state, { acceptV1: true, acceptMissingNewKinds: true });
}

export function loadState(dir: string, logger?: Logger): DesiredState | undefined {
  return loadSavedState(dir, logger)?.state;
}

/** As loadState, with the saved input stamp (0 when the file has none). */
export function loadSavedState(dir: string, logger?: Logger): SavedState | undefined {
  const file = statePath(dir);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT') logger?.warn({ event: 'state_store.unreadable', file, err: (e as Error).message }, 'saved state unreadable; ignored');
    return undefined;
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    logger?.warn({ event: 'state_store.corrupt', file, err: (e as Error).message }, 'saved state is not JSON; ignored');
    return undefined;
  }
  const problem = checkStoredState(value);
  if (problem !== undefined) {
    logger?.warn({ event: 'state_store.corrupt', file, err: problem }, 'saved state is invalid; ignored');
    return undefined;
  }
  const { state, stamp } = value as StoredState;
  const given = withEveryKind(state.sets);
  const sets = Object.fromEntries(SET_KINDS.map((kind) => [kind, [...given[kind]]])) as unknown as SetContents;
  const version = stateVersion(state.mode, sets);
  if (version !== state.version) {
    logger?.info({ event: 'state_store.upgraded', file, savedVersion: state.version, version }, 'saved state of an earlier release: trusted by its old version and re-versioned');
  }
  const saved = typeof stamp === 'object' && stamp !== null ? stampFromWire(stamp.policy, stamp.cluster) : NO_STAMP;
  return { state: { hostId: state.hostId, mode: state.mode, sets, version }, stamp: saved };
}
