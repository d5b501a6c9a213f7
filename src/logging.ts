/**
 * The one pino setup of the long-running processes (controller, agent): JSON lines on stdout with
 * stable field names, so operators and tests can parse them:
 *   {"level":"info","time":"2026-01-01T00:00:00.000Z","pid":1,"component":"controller","msg":"..."}
 * `level` is the label (not pino's number), `time` ISO 8601, `msg` the message, `component` the
 * process (controller, agent) and `module` the part of it that logs (sync, dataplane, marathon-feed,
 * ...), set with `logger.child({ module })`; every other field is the caller's. Writes are
 * synchronous, so a line logged just before exit is never lost.
 */
import pino, { type Logger } from 'pino';
import { UsageError } from './cli/command.js';

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export const LOG_LEVEL_HELP = `  --log-level LEVEL   ${LOG_LEVELS.join(' | ')} (default: info)`;

/** The `--log-level` value, or a UsageError naming the choices. */
export function parseLogLevel(value: string | undefined): LogLevel {
  if (value === undefined) return 'info';
  if ((LOG_LEVELS as readonly string[]).includes(value)) return value as LogLevel;
  throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')}; got '${value}'`);
}

export interface LoggerOptions {
  readonly component: string;
  readonly level?: LogLevel;
  /** Where lines go; default stdout (fd 1), synchronously. */
  readonly destination?: pino.DestinationStream;
}

export function createLogger(options: LoggerOptions): Logger {
  return pino(
    {
      level: options.level ?? 'info',
      base: { pid: process.pid, component: options.component },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    options.destination ?? pino.destination({ dest: 1, sync: true }),
  );
}
