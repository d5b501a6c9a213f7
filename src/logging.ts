/**
 * The one pino setup of the long-running processes (controller, agent): JSON lines on stdout with
 * stable field names, so operators and tests can parse them:
 *   {"level":"info","time":"2026-01-01T00:00:00.000Z","pid":1,"component":"controller","msg":"..."}
 * `level` is the label (not pino's number), `time` ISO 8601, `msg` the message, `component` the
 * process (controller, agent) and `module` the part of it that logs (sync, dataplane, marathon-feed,
 * ...), set with `logger.child({ module })`; every other field is the caller's. Writes are
 * synchronous, so a line logged just before exit is never lost.
 *
 * One key, one value: pino appends a child's bindings to its parent's, so a child of a child
 * (`{module: 'marathon'}` then `{module: 'marathon-feed'}`) would repeat the key on every line.
 * Every child made from these loggers keeps each key once, with the child's value (the
 * innermost `module` names the part that logs). Times in fields are ISO 8601 strings like
 * `time` (`since`, `lastSync`, ...), never epoch numbers.
 */
import pino, { type Logger } from 'pino';
import { UsageError } from './usage-error.js';

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export const LOG_LEVEL_HELP = `  --log-level LEVEL   ${LOG_LEVELS.join(' | ')} (default: info)`;

/** The `--log-level` value, or a UsageError naming the choices. */
export function parseLogLevel(value: string | undefined): LogLevel {
  if (value === undefined) return 'info';
  if ((LOG_LEVELS as readonly string[]).includes(value)) return value as LogLevel;
  throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')}; got '${value}'`);
}

/** An epoch-milliseconds time as the ISO 8601 string logs and /status carry; undefined stays undefined. */
export function isoTime(epochMs: number): string;
export function isoTime(epochMs: number | undefined): string | undefined;
export function isoTime(epochMs: number | undefined): string | undefined {
  return epochMs === undefined ? undefined : new Date(epochMs).toISOString();
}

export interface LoggerOptions {
  readonly component: string;
  readonly level?: LogLevel;
  /** Where lines go; default stdout (fd 1), synchronously. */
  readonly destination?: pino.DestinationStream;
}

/**
 * pino's serialised bindings of `child` (`,"pid":1,"module":"a","module":"b"`), rewritten with
 * each key once: the last value, at the key's first position. Children are made rarely (per
 * module, not per line), so the parse costs nothing that matters.
 */
function keepEachBindingOnce(child: Logger): void {
  const holder = child as unknown as Record<symbol, unknown>;
  const text = holder[pino.symbols.chindingsSym];
  if (typeof text !== 'string' || !text.startsWith(',')) return;
  const merged = JSON.parse(`{${text.slice(1)}}`) as Record<string, unknown>;
  holder[pino.symbols.chindingsSym] = `,${JSON.stringify(merged).slice(1, -1)}`;
}

export function createLogger(options: LoggerOptions): Logger {
  return pino(
    {
      level: options.level ?? 'info',
      base: { pid: process.pid, component: options.component },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      onChild: keepEachBindingOnce,
    },
    options.destination ?? pino.destination({ dest: 1, sync: true }),
  );
}
