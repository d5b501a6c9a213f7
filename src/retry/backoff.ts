/**
 * Exponential backoff with full jitter (AWS architecture blog, "Exponential Backoff And
 * Jitter"): attempt n waits a uniformly random time in [0, min(maxMs, initialMs * multiplier^n)).
 * Full jitter spreads thousands of agents that lost the same controller at the same moment, so
 * they do not reconnect in lockstep. The random source is injected for tests.
 */
export interface BackoffOptions {
  /** Cap of the first attempt's delay. Default 500 ms. */
  readonly initialMs?: number;
  /** Largest cap. Default 30 s. */
  readonly maxMs?: number;
  /** Growth of the cap per attempt. Default 2. */
  readonly multiplier?: number;
  /** Uniform in [0, 1). Default Math.random. */
  readonly random?: () => number;
}

/** The cap (upper bound of the delay) for attempt `attempt` (0-based). */
export function backoffCap(attempt: number, options: BackoffOptions = {}): number {
  const initial = options.initialMs ?? 500;
  const max = options.maxMs ?? 30_000;
  const multiplier = options.multiplier ?? 2;
  const cap = initial * Math.pow(multiplier, Math.max(0, attempt));
  return Number.isFinite(cap) ? Math.min(max, cap) : max;
}

/** Full-jitter delay for attempt `attempt`: floor(random() * cap). */
export function fullJitterDelay(attempt: number, options: BackoffOptions = {}): number {
  const random = options.random ?? Math.random;
  const r = Math.min(Math.max(random(), 0), 1);
  return Math.floor(r * backoffCap(attempt, options));
}

/** Stateful helper: `next()` for each failed attempt, `reset()` once a connection works. */
export class Backoff {
  private attempts = 0;

  constructor(private readonly options: BackoffOptions = {}) {}

  next(): number {
    const delay = fullJitterDelay(this.attempts, this.options);
    if (backoffCap(this.attempts, this.options) < (this.options.maxMs ?? 30_000)) this.attempts += 1;
    return delay;
  }

  reset(): void {
    this.attempts = 0;
  }

  get attempt(): number {
    return this.attempts;
  }
}

/** Resolves after `ms`, or early (without error) when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const onAbort = (): void => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
