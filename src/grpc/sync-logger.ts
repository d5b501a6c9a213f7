/**
 * The slice of a pino logger the sync stream code uses, so callers pass their pino instance
 * (structured fields first, message second) and tests pass nothing.
 */
export interface SyncLogger {
  debug(fields: object, message: string): void;
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
}

const noop = (): void => undefined;
export const silentLogger: SyncLogger = { debug: noop, info: noop, warn: noop };
