/**
 * The shape of one `portcullis <command>`. Each command lives in src/cli/commands/<name>.ts and
 * is registered in src/cli/main.ts, which imports a command's module only when that command runs
 * (so `check` never loads gRPC, protobuf or pino: the CLI answers in well under 150 ms).
 * Commands write through `io` (never console directly) so tests can run them in-process, and
 * return the process exit code:
 *   0 ok · 1 policy or input error · 2 usage error.
 */
export interface CliIO {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
  /** Resolves relative paths given on the command line. */
  readonly cwd: string;
}

export const EXIT_OK = 0;
export const EXIT_INPUT_ERROR = 1;
export const EXIT_USAGE = 2;

export interface Command {
  readonly name: string;
  /** Full `--help` text of the command. */
  readonly help: string;
  run(args: readonly string[], io: CliIO): Promise<number>;
}

