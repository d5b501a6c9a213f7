/**
 * A failed load of an input file (the policy, or the static inventory): the one place that
 * decides what an operator sees of it. Both inputs keep their last good content on a failed load
 * (their watchers say so); this module turns the diagnostics into lines, bounded (a large broken
 * file can have thousands of errors: the first LOGGED_ERRORS and a line that says how many more,
 * and which `portcullis check` lists them all), logs every line at error level
 * (`{"diagnostic": "file:line:col: message"}`) followed by one summary line, and returns the
 * lines for /status (`lastError.diagnostics`).
 */
import type { Logger } from 'pino';
import { formatDiagnostic, type Diagnostic } from '../diagnostic.js';

/** Diagnostics of one failed load that are logged and shown in /status. */
export const LOGGED_ERRORS = 200;

export interface LoadFailure {
  /** `policy` or `inventory`: names the check flag of the hint line. */
  readonly input: 'policy' | 'inventory';
  readonly path: string;
  readonly errors: readonly Diagnostic[];
  /** The summary line's message (what stays in force). */
  readonly message: string;
  /** More fields for the summary line. */
  readonly fields?: Readonly<Record<string, unknown>>;
}

/** Logs a failed load (see the header); returns its bounded diagnostic lines. */
export function reportLoadFailure(log: Logger | undefined, failure: LoadFailure): string[] {
  const { errors, path } = failure;
  const lines = errors.slice(0, LOGGED_ERRORS).map(formatDiagnostic);
  if (errors.length > LOGGED_ERRORS) {
    lines.push(`… and ${errors.length - LOGGED_ERRORS} more errors (portcullis check --${failure.input} ${path} lists them all)`);
  }
  if (log) {
    for (const line of lines) log.error({ diagnostic: line }, line);
    log.error({ path, errors: errors.length, ...failure.fields }, failure.message);
  }
  return lines;
}
