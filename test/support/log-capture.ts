/** A pino logger (level debug) whose lines are kept, parsed, for assertions on structured logs. */
import pino from 'pino';

export function logCapture(): { logger: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  return { logger, lines };
}
