/**
 * The controller's policy from Consul KV (`--policy-consul`, issue 12): every replica follows the
 * prefix `portcullis policy push` writes (src/consul/policy-kv.ts) with blocking queries, and
 * loads each new policy through the same contract as the policy directory (PolicyLoads in
 * src/sources/policy-watcher.ts): parsed in the controller's worker within its limits, offered
 * to the store, and a policy that does not parse or check is reported while the last good one
 * stays in force.
 *
 * What is a policy error and what is not:
 * - a pointer or a bundle that does not read back whole and unaltered (policy-kv.ts checks the
 *   content address) is reported like a broken policy file, at `consul:<prefix>/current`;
 * - Consul being unreachable or answering errors is NOT: the policy in force is still good, so
 *   it is logged (warn, rate-limited by the follower's backoff) and counted, and /status keeps
 *   the policy valid; the follower retries with backoff and resumes on the next good read;
 * - no policy pushed yet: reported once as an error (nothing to serve until one is pushed).
 *
 * Input stamp (src/grpc/input-stamp.ts): `loadingIndex` is the ModifyIndex of the pointer whose
 * policy is being loaded (the controller stamps the policy it accepts, or restores, with it; the
 * policy in force pushed again, same bundle at a new index, is such a restore: `onRestored`), and
 * `lastRead()` is the follower's last answered read (for the rule on Consul's index going backwards).
 */
import type { Logger } from 'pino';
import type { Diagnostic } from '../diagnostic.js';
import type { Follower } from '../consul/blocking-follow.js';
import { ConsulCallError } from '../consul/consul-http.js';
import type { ConsulClient } from '../consul/consul-client.js';
import { followKvPolicy, policyPointerKey } from '../consul/policy-kv.js';
import { PolicyLoads, type PolicyWatcherOptions } from '../sources/policy-watcher.js';

export interface ConsulPolicyFeedOptions extends Pick<PolicyWatcherOptions, 'onPolicy' | 'onError' | 'onRestored' | 'parse'> {
  readonly client: ConsulClient;
  readonly prefix: string;
  readonly logger: Logger;
  /** Blocking wait per read (default 60 s) and backoff bounds, for tests. */
  readonly waitMs?: number;
  readonly backoff?: { readonly initialMs?: number; readonly maxMs?: number };
}

export interface ConsulPolicyFeedStats {
  /** Reads that failed because Consul did not answer well (not policy errors). */
  consulErrors: number;
}

export class ConsulPolicyFeed {
  private readonly loads: PolicyLoads;
  private follower: Follower | undefined;
  private queue: Promise<void> = Promise.resolve();
  private first: (() => void) | undefined;
  private loading = 0;
  private stopped = false;
  readonly stats: ConsulPolicyFeedStats = { consulErrors: 0 };

  constructor(private readonly options: ConsulPolicyFeedOptions) {
    // After stop() nothing reaches the controller: a load in flight (a parse in the worker) ends
    // unheard, and stop() waits for it.
    this.loads = new PolicyLoads({
      ...options,
      path: this.where,
      onPolicy: (policy, warnings) => (this.stopped ? false : options.onPolicy(policy, warnings)),
      onError: (errors) => {
        if (!this.stopped) options.onError(errors);
      },
      onRestored: () => {
        if (!this.stopped) options.onRestored();
      },
    });
  }

  /** The ModifyIndex of P/current of the policy being loaded now (0: none). */
  get loadingIndex(): number {
    return this.loading;
  }

  /** The follower's last answered read (when it started, the index it answered). */
  lastRead(): { readonly startedAt: number; readonly index: number } | undefined {
    return this.follower?.stats.lastAnswer;
  }

  /** Where a policy error is reported: the pointer key. */
  get where(): string {
    return `consul:${policyPointerKey(this.options.prefix)}`;
  }

  /** Starts following; resolves after the first read was loaded (or failed), to whether a good policy is in force. */
  async start(): Promise<boolean> {
    const firstDone = new Promise<void>((resolve) => (this.first = resolve));
    this.follower = followKvPolicy(this.options.client, this.options.prefix, {
      ...(this.options.waitMs !== undefined ? { waitMs: this.options.waitMs } : {}),
      ...(this.options.backoff ? { backoff: this.options.backoff } : {}),
      onPolicy: (kv) => {
        this.enqueue(async () => {
          this.loading = kv?.modifyIndex ?? 0;
          const read = kv
            ? { files: kv.files, errors: [], warnings: [] }
            : { files: [], errors: [this.error(`no policy under ${this.options.prefix} in Consul yet: push one with portcullis policy push`)], warnings: [] };
          // The policy in force pushed again: nothing to recompile, but it is stamped with the new index.
          if (kv && this.loads.holdsInForce(read)) this.options.onRestored();
          else await this.loads.load(read);
        });
      },
      onError: (e, info) => {
        if (e instanceof ConsulCallError) {
          this.stats.consulErrors++;
          this.options.logger.warn({ event: 'policy.consul_unreachable', err: e.message, attempt: info.attempt, retryInMs: info.delayMs }, 'cannot read the policy from Consul; the policy in force stays');
          if (info.attempt === 1 && !this.loads.hasGood) this.enqueue(async () => this.options.onError([this.error(`cannot read the policy from Consul: ${e.message}`)]));
        } else {
          this.enqueue(() => this.loads.load({ files: [], errors: [this.error(`${e.message}; the last good policy stays in force`)], warnings: [] }));
        }
      },
    });
    await firstDone;
    return this.loads.hasGood;
  }

  /** SIGHUP: nothing to re-read (the follower sees every change of Consul's as it happens). */
  async reload(): Promise<void> {
    await this.queue;
  }

  /** The policy taken as in force was refused after all (see PolicyWatcher.refused). */
  refused(): void {
    this.loads.refused();
  }

  /** Stops following; resolves once the read and the load in flight, if any, have ended (neither is offered). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.first?.();
    await this.follower?.stop();
    await this.queue;
  }

  private error(message: string): Diagnostic {
    return { file: this.where, line: 1, col: 1, message, severity: 'error' };
  }

  private enqueue(load: () => Promise<void>): void {
    this.queue = this.queue
      .then(() => (this.stopped ? undefined : load()))
      .catch((e: unknown) => this.options.logger.error({ event: 'policy.consul_load_failed', err: String(e) }, 'policy load from Consul failed unexpectedly'))
      .finally(() => {
        this.first?.();
        this.first = undefined;
      });
  }
}
