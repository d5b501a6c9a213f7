/**
 * How the sync client logs a connection problem that persists (agent/sync-client.ts): at warn
 * once per distinct problem (grpc-js's reason with its timestamps stripped) and again at most
 * every `repeatWarnMs` with the count of failed attempts; the retries in between at debug. A good
 * stream resets it.
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

export class ConnectWarnings {
  /** The problem last logged at warn and when; the failed attempts since the last good stream. */
  private warned: { problem: string; at: number } | undefined;
  private failedAttempts = 0;

  constructor(
    private readonly logger: SyncLogger,
    private readonly repeatWarnMs: number,
  ) {}

  /** A good stream: the next problem is logged at warn again. */
  reset(): void {
    this.warned = undefined;
    this.failedAttempts = 0;
  }

  /** One failed attempt with grpc-js's `details`. */
  problem(details: string, where: ConnectProblemWhere): void {
    const problem = connectProblem(details);
    this.failedAttempts += 1;
    const now = Date.now();
    const fields = { ...where, reason: problem, attempts: this.failedAttempts };
    const warned = this.warned;
    if (warned && warned.problem === problem && now - warned.at < this.repeatWarnMs) {
      this.logger.debug(fields, 'sync: still cannot connect to the controller');
      return;
    }
    this.warned = { problem, at: now };
    this.logger.warn(fields, 'sync: cannot connect to the controller');
  }
}
