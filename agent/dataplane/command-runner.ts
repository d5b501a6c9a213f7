/**
 * How the dataplane talks to kernel tools: one child process per call, argv as an array, text on
 * stdin. Never a shell, so no name from Marathon can become shell syntax.
 *
 * Contract of `run`: it never throws for a tool's failure. A non-zero exit, a missing binary
 * (code 127), a timeout (code 124) or output over the bound (the child is killed, code 125) all come
 * back as a result the caller inspects. Output is decoded as UTF-8 and capped at `maxOutputBytes`
 * per stream. An optional `prefix` argv is prepended to every command (for example
 * `['ip', 'netns', 'exec', 'pcut-x']`), so tests can drive a network namespace in-process.
 */
import { spawn } from 'node:child_process';

export interface CommandResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface CommandRunner {
  run(argv: readonly string[], input?: string): Promise<CommandResult>;
}

export interface ExecRunnerOptions {
  /** Prepended to every argv, e.g. `['ip', 'netns', 'exec', ns]`. */
  readonly prefix?: readonly string[];
  /** Kill the child after this long. Default 30 s. */
  readonly timeoutMs?: number;
  /** Cap per output stream. Default 64 MiB (an `ipset save` of a large set). */
  readonly maxOutputBytes?: number;
}

export const EXIT_NOT_FOUND = 127;
export const EXIT_TIMEOUT = 124;
export const EXIT_OUTPUT_TOO_LARGE = 125;

export class ExecCommandRunner implements CommandRunner {
  private readonly prefix: readonly string[];
  private readonly timeoutMs: number;
  private readonly maxOutputBytes: number;

  constructor(options: ExecRunnerOptions = {}) {
    this.prefix = options.prefix ?? [];
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.maxOutputBytes = options.maxOutputBytes ?? 64 * 1024 * 1024;
  }

  run(argv: readonly string[], input?: string): Promise<CommandResult> {
    const full = [...this.prefix, ...argv];
    const [file, ...args] = full;
    if (file === undefined) return Promise.resolve({ code: EXIT_NOT_FOUND, stdout: '', stderr: 'empty argv' });
    return new Promise((resolve) => {
      const child = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'], shell: false });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      let outBytes = 0;
      let errBytes = 0;
      let forced: { code: number; why: string } | undefined;
      let settled = false;
      const finish = (code: number, extraErr = ''): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        const stderr = Buffer.concat(err).toString('utf8') + extraErr;
        resolve({ code, stdout: Buffer.concat(out).toString('utf8'), stderr });
      };
      const kill = (code: number, why: string): void => {
        if (forced) return;
        forced = { code, why };
        child.kill('SIGKILL');
      };
      const timer = setTimeout(() => kill(EXIT_TIMEOUT, `timed out after ${this.timeoutMs} ms`), this.timeoutMs);
      child.stdout.on('data', (chunk: Buffer) => {
        outBytes += chunk.length;
        if (outBytes > this.maxOutputBytes) kill(EXIT_OUTPUT_TOO_LARGE, 'stdout over limit');
        else out.push(chunk);
      });
      child.stderr.on('data', (chunk: Buffer) => {
        errBytes += chunk.length;
        if (errBytes <= this.maxOutputBytes) err.push(chunk);
      });
      child.on('error', (e: NodeJS.ErrnoException) => {
        finish(e.code === 'ENOENT' ? EXIT_NOT_FOUND : 1, `${file}: ${e.message}`);
      });
      child.on('close', (code, signal) => {
        if (forced) finish(forced.code, `\n${file}: ${forced.why}`);
        else finish(code ?? 128, signal ? `\n${file}: killed by ${signal}` : '');
      });
      // A child that exits before reading stdin makes the write fail with EPIPE: not our error.
      child.stdin.on('error', () => undefined);
      child.stdin.end(input ?? '');
    });
  }
}
