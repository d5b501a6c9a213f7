/**
 * Keeps one service registered on the local Consul agent for as long as the process runs
 * (issue 12 item 3: a controller registers itself with an HTTP check on /readyz, is registered
 * again when the local agent forgets it, and is deregistered on a clean stop).
 *
 *  - `start()` begins the loop: register, then every `checkEveryMs` list the agent's services
 *    (GET /v1/agent/services; the agent API has no index blocking) and register again when the
 *    ID is missing, e.g. after the agent restarted without its data;
 *  - a failed call (agent down) is retried after full-jitter backoff; nothing is lost meanwhile:
 *    the next success registers again if needed;
 *  - `stop()` ends the loop and deregisters (bounded by the client's timeout; a failure is
 *    reported, never thrown: the process is stopping anyway, and the check would fail soon).
 */
import { Backoff, sleep, type BackoffOptions } from '../retry/backoff.js';
import type { ConsulClient, ServiceRegistration } from './consul-client.js';

export interface RegistrarOptions {
  readonly client: ConsulClient;
  readonly registration: ServiceRegistration;
  /** How often the agent's list is checked for our ID. Default 10 s. */
  readonly checkEveryMs?: number;
  readonly backoff?: BackoffOptions;
  /** A registration was sent (`again`: the agent had forgotten it). */
  readonly onRegistered?: (info: { readonly again: boolean }) => void;
  readonly onError?: (error: Error, info: { readonly delayMs: number }) => void;
}

export interface RegistrarStats {
  registrations: number;
  checks: number;
  errors: number;
}

export class ServiceRegistrar {
  readonly stats: RegistrarStats = { registrations: 0, checks: 0, errors: 0 };
  private readonly stopper = new AbortController();
  private loop: Promise<void> | undefined;

  constructor(private readonly o: RegistrarOptions) {}

  start(): void {
    this.loop ??= this.run();
  }

  async stop(): Promise<void> {
    this.stopper.abort();
    await this.loop;
    if (this.loop === undefined) return;
    try {
      await this.o.client.deregister(this.o.registration.id);
    } catch (e) {
      this.o.onError?.(e as Error, { delayMs: 0 });
    }
  }

  private async run(): Promise<void> {
    const signal = this.stopper.signal;
    const backoff = new Backoff({ initialMs: 500, maxMs: 30_000, ...this.o.backoff });
    const id = this.o.registration.id;
    let registered = false;
    while (!signal.aborted) {
      try {
        let present = false;
        if (registered) {
          this.stats.checks += 1;
          present = (await this.o.client.agentServices(signal)).some((s) => s.id === id);
        }
        if (!present) {
          await this.o.client.register(this.o.registration, signal);
          this.stats.registrations += 1;
          this.o.onRegistered?.({ again: registered });
          registered = true;
        }
        backoff.reset();
        await sleep(this.o.checkEveryMs ?? 10_000, signal);
      } catch (e) {
        if (signal.aborted) break;
        this.stats.errors += 1;
        const delayMs = backoff.next();
        this.o.onError?.(e as Error, { delayMs });
        await sleep(delayMs, signal);
      }
    }
  }
}
