/**
 * A command-line value that cannot be used: thrown by argument parsing (the CLI's, and the
 * `--log-level` parser in src/logging.ts); src/cli/main.ts prints it with the command's usage and
 * exits 2. It sits below every layer so that any of them may parse an option.
 */
export class UsageError extends Error {}
