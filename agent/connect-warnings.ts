/**
 * How the sync client logs a connection problem that persists (agent/sync-client.ts): at warn
 * once per distinct problem (grpc-js's reason with its timestamps stripped) and again at most
 * every `repeatWarnMs` with the count of failed attempts; the retries in between at debug. Each
 * problem is remembered on its own (the last MAX_WARNED), so replicas that fail in turn (grpc-js
 * names the address in its reason) are not news at every attempt. A good stream resets it.
 */
import type { SyncLogger } from '../src/grpc/sync-logger.js';
import type { Target } from './controller-targets.js';

/** grpc-js's error details without the parts that change on every attempt (timestamps). */
export function connectProblem(details: string): string {
  return details
    .replace(/\s*\(\d{4}-\d\d-\d\dT[\d:.]+Z\)/g, '')
    .replace(/\.?\s*Resolution note:\s*$/, '')
    .trim();
}

export interface ConnectProblemWhere {
  readonly hostId: string;
  readonly controller: Target;
  readonly next: Target | null;
  readonly retryInMs: number;
}

/** Problems remembered as logged at warn: the oldest is forgotten past this many. */
const MAX_WARNED = 64;

export class ConnectWarnings {
  /** The problems logged at warn since the last good stream and when; the failed attempts since then. */
  private readonly warned = new Map<string, number>();
  private failedAttempts = 0;

  constructor(
    private readonly logger: SyncLogger,
    private readonly repeatWarnMs: number,
  ) {}

  /** A good stream: the next problem is logged at warn again. */
  reset(): void {
    this.warned.clear();
    this.failedAttempts = 0;
  }

  /** One failed attempt with grpc-js's `details`. */
  problem(details: string, where: ConnectProblemWhere): void {
    const problem = connectProblem(details);
    this.failedAttempts += 1;
    const now = Date.now();
    const fields = { ...where, reason: problem, attempts: this.failedAttempts };
    const warnedAt = this.warned.get(problem);
    if (warnedAt !== undefined && now - warnedAt < this.repeatWarnMs) {
      this.logger.debug(fields, 'sync: still cannot connect to the controller');
      return;
    }
    this.warned.delete(problem); // set again below: the newest last
    this.warned.set(problem, now);
    for (const old of this.warned.keys()) {
      if (this.warned.size <= MAX_WARNED) break;
      this.warned.delete(old);
    }
    this.logger.warn(fields, 'sync: cannot connect to the controller');
  }
}
