/**
 * `portcullis flows --follow` against a controller with peer replicas. A replica's
 * `/flows/events` pushes the changes of its own store only (docs/status.md), and an aggregate
 * whose agent moved between replicas has a part on each: following one replica's events would
 * miss the others' changes and print partial counts. So when the first answer names peers, the
 * CLI follows the merged `/flows` instead, as the dashboard does (ui/dashboard.js): it reads it
 * again every `intervalMs` and prints each flow whose counts or last-seen time differ from the
 * previous read (merged totals, the same numbers as the first table), and says on stderr when a
 * replica stops or starts answering, once per change, not on every read.
 *
 * A read that fails (the replica asked is down, a bad answer) is said on stderr and retried with
 * full-jitter backoff (src/retry); every answer is read as untrusted (src/flows/flows-answer.ts).
 */
import { FLOWS_ANSWER_MAX_BYTES, readFlowsAnswer, type FlowsAnswer } from '../flows/flows-answer.js';
import type { ObservedFlow } from '../flows/observed-flow.js';
import { Backoff, sleep, type BackoffOptions } from '../retry/backoff.js';
import { fetchBounded } from './flows-input.js';

export const DEFAULT_POLL_SECONDS = 5;

export interface PollOptions {
  readonly signal: AbortSignal;
  readonly intervalMs: number;
  /** Time allowed to one read of /flows. */
  readonly timeoutMs: number;
  /** The answer already shown: what the first read is compared with. */
  readonly first: FlowsAnswer;
  /** The flows that changed since the previous read (merged totals). */
  readonly onFlows: (flows: readonly ObservedFlow[]) => void;
  /** One line for stderr (a failed read, a replica that stopped or started answering). */
  readonly onNote: (text: string) => void;
  readonly backoff?: BackoffOptions;
}

/** What a flow's line shows that can change while its key stays. */
function shown(f: ObservedFlow): string {
  return `${f.packets}\u0000${f.bytes}\u0000${f.firstSeen}\u0000${f.lastSeen}`;
}

function replicaStates(answer: FlowsAnswer): Map<string, string | undefined> {
  return new Map((answer.replicas ?? []).map((r) => [r.name, r.ok ? undefined : (r.error ?? 'no reason given')]));
}

/** Reads the merged `/flows?query` every `intervalMs` until `signal` aborts (see the header). */
export async function pollFlows(base: URL, query: URLSearchParams, o: PollOptions): Promise<void> {
  const url = new URL(`/flows?${query.toString()}`, base);
  const backoff = new Backoff(o.backoff);
  let seen = new Map(o.first.flows.map((f) => [f.key, shown(f)]));
  let replicas = replicaStates(o.first);
  let failing = false;
  let wait = o.intervalMs;
  while (!o.signal.aborted) {
    await sleep(wait, o.signal);
    if (o.signal.aborted) return;
    let answer: FlowsAnswer;
    try {
      const read = readFlowsAnswer(await fetchBounded(url, FLOWS_ANSWER_MAX_BYTES, o.timeoutMs, o.signal));
      if (!read.ok) throw new Error(read.error);
      for (const p of read.problems) o.onNote(`${url.href}: ${p}`);
      answer = read.answer;
    } catch (err) {
      if (o.signal.aborted) return;
      wait = backoff.next();
      failing = true;
      o.onNote(`${url.href}: ${(err as Error).message}; reading again in ${(wait / 1000).toFixed(1)} s`);
      continue;
    }
    if (failing) o.onNote(`${url.href}: answering again`);
    failing = false;
    backoff.reset();
    wait = o.intervalMs;
    const now = replicaStates(answer);
    for (const [name, error] of now) {
      const before = replicas.get(name);
      if (!replicas.has(name)) o.onNote(`controller replica ${name} ${error === undefined ? 'joined' : `is known but did not answer (${error})`}`);
      else if (error !== undefined && before === undefined) o.onNote(`partial view: controller replica ${name} did not answer (${error}); the flows its agents reported are missing until it does`);
      else if (error === undefined && before !== undefined) o.onNote(`controller replica ${name} answers again`);
    }
    for (const name of replicas.keys()) if (!now.has(name)) o.onNote(`controller replica ${name} is no longer a peer`);
    replicas = now;
    const next = new Map(answer.flows.map((f) => [f.key, shown(f)]));
    const changed = answer.flows.filter((f) => seen.get(f.key) !== next.get(f.key));
    seen = next;
    if (changed.length > 0) o.onFlows(changed);
  }
}
