/** Runs `portcullis <argv>` in-process (src/cli/main.ts) and keeps what it printed. */
import { main } from '../../src/cli/main.js';
import { packageRoot } from '../../src/package-root.js';

export interface CliRun {
  readonly code: number;
  readonly out: string;
  readonly err: string;
}

export async function runCli(argv: readonly string[], cwd = packageRoot()): Promise<CliRun> {
  let out = '';
  let err = '';
  const code = await main(argv, { stdout: (t) => void (out += t), stderr: (t) => void (err += t), cwd });
  return { code, out, err };
}
