/**
 * The built entry point (`bin/portcullis.js` → dist/), for tests that must run the CLI as its
 * own process. `ensureBuilt` rebuilds dist/ when a source file is newer than it (a focused
 * `npx vitest run` skips the `pretest` build).
 */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { packageRoot } from '../../src/package-root.js';

export const ROOT = packageRoot();
export const BIN = join(ROOT, 'bin/portcullis.js');
export const run = promisify(execFile);

const newest = (dir: string): number => Math.max(...readdirSync(dir, { recursive: true, encoding: 'utf8' }).map((f) => statSync(join(dir, f)).mtimeMs));

export async function ensureBuilt(): Promise<void> {
  const dist = join(ROOT, 'dist/src/cli/main.js');
  if (existsSync(dist) && statSync(dist).mtimeMs >= Math.max(newest(join(ROOT, 'src')), newest(join(ROOT, 'agent')))) return;
  // Other modules' type errors must not stop the build of ours: tsc still emits.
  await run('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: ROOT }).catch(() => undefined);
}
