/**
 * The agent's `--state-dir`: what it writes there, and how `--uninstall` leaves the directory
 * as it was before the agent ran.
 *
 * Files the agent owns (and the only ones `cleanStateDir` ever removes): `desired-state.json`
 * (state-store.ts), the rendered inputs `last-apply.*`, `failed-apply.*`, `failed-delta.*`
 * (`ipset4`, `ipset6`, `iptables4`, `iptables6`, `deltas4`, `deltas6`, `error`;
 * dataplane/kept-inputs.ts), the
 * temp files of dataplane/atomic-write.ts (`.<name>.<hex>.tmp`, left only by a crash mid-write),
 * and `.portcullis-created`, written when the agent itself created the directory: it names the
 * first directory `mkdir -p` made, so uninstall removes the directories it made (only if empty,
 * never recursively) and keeps a directory that existed before (e.g. systemd's StateDirectory).
 * Any other file is kept and reported.
 */
import { mkdir, readFile, readdir, rm, rmdir } from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomic } from './dataplane/atomic-write.js';
import { INPUT_SUFFIXES, KEPT_INPUT_PREFIXES } from './dataplane/kept-inputs.js';
import { STATE_FILE } from './state-store.js';

export const CREATED_MARKER = '.portcullis-created';

const OWNED_NAMES = new Set([
  STATE_FILE,
  CREATED_MARKER,
  ...KEPT_INPUT_PREFIXES.flatMap((prefix) => INPUT_SUFFIXES.map((suffix) => `${prefix}.${suffix}`)),
]);
const TEMP_FILE = /^\.(.+)\.[0-9a-f]{12}\.tmp$/;

/** Whether `name` (a file name in the state directory) is one the agent writes. */
export function isAgentFile(name: string): boolean {
  if (OWNED_NAMES.has(name)) return true;
  const temp = TEMP_FILE.exec(name);
  return temp !== null && OWNED_NAMES.has(temp[1] ?? '');
}

/** Creates `dir` (mode 0700) if missing, remembering that the agent made it. */
export async function prepareStateDir(dir: string): Promise<void> {
  const first = await mkdir(dir, { recursive: true, mode: 0o700 });
  if (first !== undefined) await writeFileAtomic(path.join(dir, CREATED_MARKER), `${first}\n`);
}

export interface StateDirCleanup {
  /** Files removed (names in the directory). */
  readonly removed: readonly string[];
  /** Files left because the agent did not write them. */
  readonly kept: readonly string[];
  /** Directories removed because the agent had created them and they were then empty. */
  readonly removedDirs: readonly string[];
}

/** Removes every file the agent wrote in `dir`, then the directories it created, if empty. */
export async function cleanStateDir(dir: string): Promise<StateDirCleanup> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { removed: [], kept: [], removedDirs: [] };
    throw err;
  }
  const createdFrom = await readCreatedMarker(dir);
  const removed: string[] = [];
  const kept: string[] = [];
  for (const name of names.sort()) {
    if (!isAgentFile(name)) {
      kept.push(name);
      continue;
    }
    await rm(path.join(dir, name), { force: true });
    removed.push(name);
  }
  const removedDirs: string[] = [];
  if (createdFrom !== undefined && kept.length === 0) {
    // From the state directory up to the first directory the agent made, while each is empty.
    for (let d = dir; ; d = path.dirname(d)) {
      try {
        await rmdir(d);
      } catch {
        break;
      }
      removedDirs.push(d);
      if (d === createdFrom || path.dirname(d) === d) break;
    }
  }
  return { removed, kept, removedDirs };
}

/** The first directory the agent created, if the marker names `dir` or one of its ancestors. */
async function readCreatedMarker(dir: string): Promise<string | undefined> {
  let text: string;
  try {
    text = await readFile(path.join(dir, CREATED_MARKER), 'utf8');
  } catch {
    return undefined;
  }
  const first = path.resolve(text.trim());
  const below = path.relative(first, path.resolve(dir));
  return below.startsWith('..') || path.isAbsolute(below) ? undefined : first;
}
