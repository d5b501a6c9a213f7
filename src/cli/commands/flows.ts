/**
 * `portcullis flows`, in the spirit of `hubble observe`: the flows a running controller recorded
 * (its status listener's `/flows`, flows-spec section 5), filtered by the controller, printed as
 * a table or JSON; `--follow` then prints every changed aggregate the controller pushes on
 * `/flows/events` (Server-Sent Events, parsed with eventsource-parser) until SIGINT, and when
 * the stream drops it reconnects with full-jitter backoff (src/retry), saying so on stderr; a
 * controller whose answer names peer replicas is followed by reading its merged /flows again
 * instead (src/cli/flows-poll.ts: a replica's events are its own store's only).
 * Every record is read by src/flows/flows-answer.ts (untrusted: bounded, validated, a bad one
 * skipped with a message) and every string printed through `printable`.
 */
import { createParser } from 'eventsource-parser';
import { parseBoundedJson } from '../../json/bounded-json.js';
import { readFlowsDocument } from '../../flows/flows-answer.js';
import type { ObservedFlow } from '../../flows/observed-flow.js';
import { Backoff, sleep, type BackoffOptions } from '../../retry/backoff.js';
import { EXIT_INPUT_ERROR, EXIT_OK, type CliIO, type Command } from '../command.js';
import { UsageError } from '../../usage-error.js';
import { ControllerError, DEFAULT_STATUS_LISTEN, controllerBase, printable } from '../controller-client.js';
import { checkTime, checkVerdicts, loadFlows } from '../flows-input.js';
import { flowTable } from '../flow-table.js';
import { DEFAULT_POLL_SECONDS, pollFlows } from '../flows-poll.js';
import { oneOf, parseFlags } from '../load-inputs.js';

const help = `Usage: portcullis flows [--controller URL] [--from X] [--to X] [--port P]
                       [--verdict allowed,denied,audit] [--direction ingress|egress]
                       [--since D] [--until D] [--limit N] [--format table|json] [--follow]
                       [--interval SECONDS]

Shows the flows a running controller recorded (new connections to managed ports, as its
agents saw them in the kernel), resolved to apps and port names, with the verdict and what
decided it. Columns: LAST SEEN, VERDICT, SOURCE (app(s) with their host, or the address and
its network), DESTINATION (app:portname, or app:port, with the host), PROTO, CONNS (new
connections), DECIDED BY (rule and tier of the policy in force).

Options:
  --controller URL    the controller's status listener (default http://${DEFAULT_STATUS_LISTEN},
                      the controller's default --status-listen); --controller-status URL is
                      the same option
  --from X            source: an app id (exact, or a glob with *), a network name, an address
                      or a host id
  --to X              destination: an app id (exact, or a glob with *) or a host id
  --port P            destination port: a port name or a number
  --verdict V         allowed, denied, audit, or a comma list (default: all three)
  --direction D       ingress (recorded at the destination host) or egress (at the source)
  --since D           only flows seen since: a duration back from now (30s, 10m, 1h, 2d) or
                      an ISO 8601 time
  --until D           only flows seen until (same forms)
  --limit N           at most N flows, most connections first (default 1000, at most 100000)
  --format table|json table (default); json: the /flows answer (with --follow, one flow per
                      line)
  --follow            then print each flow as it changes (the controller's /flows/events),
                      until interrupted (Ctrl-C); reconnects when the stream drops. Against
                      controller replicas (the answer names peers), it reads the merged
                      /flows again every --interval instead and prints the flows whose
                      counts changed: every replica's changes, with cluster-wide totals
  --interval SECONDS  with --follow against replicas: how often /flows is read again
                      (default ${DEFAULT_POLL_SECONDS}, from 1 to 600)
  --timeout SECONDS   give up reading /flows after this long (default 30)

Exit codes: 0 answered (also when --follow is interrupted), 1 controller unreachable or a bad
answer, 2 usage error.

Examples:
  portcullis flows --controller http://10.0.0.5:7444 --verdict denied,audit --since 1h
  portcullis flows --to '/shop/*' --port http --follow
`;

/** The /flows query of the filter options (checked: a bad one is a UsageError). */
export function flowsQuery(values: { from?: string | undefined; to?: string | undefined; port?: string | undefined; verdict?: string | undefined; direction?: string | undefined; since?: string | undefined; until?: string | undefined; limit?: string | undefined }): URLSearchParams {
  const q = new URLSearchParams();
  for (const key of ['from', 'to', 'port'] as const) {
    const v = values[key];
    if (v === undefined) continue;
    if (v === '' || v.length > 1024) throw new UsageError(`--${key} must be a non-empty value of at most 1024 characters`);
    q.set(key, v);
  }
  if (values.port !== undefined && /^\d+$/.test(values.port) && (Number(values.port) < 1 || Number(values.port) > 65535)) throw new UsageError(`--port must be a port name or a number from 1 to 65535; got '${values.port}'`);
  if (values.verdict !== undefined) q.set('verdict', checkVerdicts(values.verdict, []).join(','));
  if (values.direction !== undefined) q.set('direction', oneOf('direction', values.direction, ['ingress', 'egress'] as const, 'ingress'));
  const since = checkTime('since', values.since);
  const until = checkTime('until', values.until);
  if (since !== undefined) q.set('since', since);
  if (until !== undefined) q.set('until', until);
  if (values.limit !== undefined) {
    const n = Number(values.limit);
    if (!/^\d+$/.test(values.limit) || n < 1 || n > 100_000) throw new UsageError(`--limit must be a whole number from 1 to 100000; got '${values.limit}'`);
    q.set('limit', values.limit);
  }
  return q;
}

export interface FollowOptions {
  readonly signal: AbortSignal;
  /** The changed aggregates of one event. */
  readonly onFlows: (flows: readonly ObservedFlow[]) => void;
  /** One line for stderr (a reconnect, a bad record). */
  readonly onNote: (text: string) => void;
  readonly backoff?: BackoffOptions;
  /** Largest event accepted (characters); a larger one ends the stream (and reconnects). */
  readonly maxEventBytes?: number;
}

/**
 * Reads `/flows/events?query` until `signal` aborts, reconnecting after a drop with backoff.
 * Rejects with a ControllerError only for an answer that retrying cannot fix (an HTTP error:
 * a bad parameter, a controller without /flows/events).
 */
export async function followFlows(base: URL, query: URLSearchParams, o: FollowOptions): Promise<void> {
  const url = new URL(`/flows/events?${query.toString()}`, base);
  const backoff = new Backoff(o.backoff);
  while (!o.signal.aborted) {
    let why: string;
    try {
      why = await readStream(url, o, () => backoff.reset());
    } catch (err) {
      if (o.signal.aborted) return;
      if (err instanceof ControllerError) throw err;
      const cause = (err as { cause?: { message?: string } }).cause?.message;
      why = `${(err as Error).message}${cause ? ` (${cause})` : ''}`;
    }
    if (o.signal.aborted) return;
    const delay = backoff.next();
    o.onNote(`${url.href}: ${why}; reconnecting in ${(delay / 1000).toFixed(1)} s`);
    await sleep(delay, o.signal);
  }
}

/** One connection to the event stream: resolves with why it ended (never for an abort). */
async function readStream(url: URL, o: FollowOptions, connected: () => void): Promise<string> {
  const response = await fetch(url, { signal: o.signal, headers: { accept: 'text/event-stream' } });
  if (response.status !== 200) {
    await response.body?.cancel();
    if (response.status >= 500) return `answered HTTP ${response.status}`;
    throw new ControllerError(`${url.href} answered HTTP ${response.status} ${response.statusText}${response.status === 404 ? ' (a controller without flows: older than this CLI?)' : ''}`);
  }
  const reader = response.body?.getReader();
  if (!reader) return 'no event stream in the answer';
  const maxEventBytes = o.maxEventBytes ?? 64 * 1024 * 1024;
  let ended: string | undefined;
  const parser = createParser({
    maxBufferSize: maxEventBytes,
    onEvent: (msg) => {
      if (msg.event !== 'flows') return;
      const parsed = parseBoundedJson(msg.data, { maxBytes: maxEventBytes });
      const read = parsed.ok ? readFlowsDocument(parsed.value, { requireNow: false }) : { ok: false as const, error: parsed.error };
      if (!read.ok) return o.onNote(`${url.href}: an event that is not flows (${read.error}): skipped`);
      for (const p of read.problems) o.onNote(`${url.href}: ${p}`);
      connected();
      if (read.answer.flows.length > 0) o.onFlows(read.answer.flows);
    },
    // The keep-alive comments say the stream works: a later drop starts the backoff afresh.
    onComment: () => connected(),
    onError: (e) => {
      if (e.type === 'max-buffer-size-exceeded') ended = `an event larger than the limit of ${maxEventBytes} characters`;
    },
  });
  const decoder = new TextDecoder();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return 'the stream ended';
    parser.feed(decoder.decode(value, { stream: true }));
    if (ended !== undefined) {
      await reader.cancel();
      return ended;
    }
  }
}

export const flowsCommand: Command = {
  name: 'flows',
  help,
  async run(args: readonly string[], io: CliIO): Promise<number> {
    const values = parseFlags(args, {
      controller: { type: 'string' },
      'controller-status': { type: 'string' },
      from: { type: 'string' },
      to: { type: 'string' },
      port: { type: 'string' },
      verdict: { type: 'string' },
      direction: { type: 'string' },
      since: { type: 'string' },
      until: { type: 'string' },
      limit: { type: 'string' },
      format: { type: 'string' },
      follow: { type: 'boolean' },
      timeout: { type: 'string' },
      interval: { type: 'string' },
    });
    const format = oneOf('format', values.format, ['table', 'json'] as const, 'table');
    if (values.controller !== undefined && values['controller-status'] !== undefined) throw new UsageError('--controller and --controller-status are the same option: give one');
    const controller = values.controller ?? values['controller-status'];
    const base = controllerBase('controller', controller);
    const timeout = values.timeout === undefined ? 30 : Number(values.timeout);
    if (!Number.isFinite(timeout) || timeout <= 0 || timeout > 600) throw new UsageError(`--timeout must be a number of seconds in (0, 600], got '${values.timeout}'`);
    const interval = values.interval === undefined ? DEFAULT_POLL_SECONDS : Number(values.interval);
    if (!Number.isFinite(interval) || interval < 1 || interval > 600) throw new UsageError(`--interval must be a number of seconds from 1 to 600, got '${values.interval}'`);
    if (values.interval !== undefined && !values.follow) throw new UsageError('--interval is for --follow');
    const query = flowsQuery(values);
    const line = (flows: readonly ObservedFlow[]) => (format === 'json' ? flows.map((f) => `${JSON.stringify(f)}\n`).join('') : flowTable(flows, false));

    // Ctrl-C ends --follow cleanly (exit 0); before it, SIGINT keeps its default (the process ends).
    const stop = new AbortController();
    const interrupt = (): void => stop.abort();
    try {
      const { answer } = await loadFlows(io, { controller: base.href }, query, timeout * 1000);
      if (format === 'json') io.stdout(values.follow ? line(answer.flows) : `${JSON.stringify(answer, null, 2)}\n`);
      else if (answer.flows.length > 0) io.stdout(flowTable(answer.flows));
      else io.stderr(`no flows recorded${query.size > 0 ? ' that match the filters' : ''} (${printable(base.origin)})\n`);
      if (format === 'table' && !values.follow) {
        for (const l of answer.lost) io.stderr(`${printable(l.reportedBy)}: ${l.packets} new ${l.direction} ${l.verdict} connections (IPv${l.family}) not recorded: its flow set was full\n`);
      }
      if (values.follow) {
        const peers = (answer.replicas ?? []).length - 1;
        const follow = { signal: stop.signal, onFlows: (flows: readonly ObservedFlow[]) => io.stdout(line(flows)), onNote: (text: string) => io.stderr(`portcullis flows: ${printable(text)}\n`) };
        process.once('SIGINT', interrupt);
        if (peers > 0) {
          io.stderr(`portcullis flows: ${printable(base.origin)} merges the flows of ${peers} peer replica${peers === 1 ? '' : 's'}: following the merged /flows, read again every ${interval} s\n`);
          await pollFlows(base, query, { ...follow, intervalMs: interval * 1000, timeoutMs: timeout * 1000, first: answer });
        } else {
          await followFlows(base, query, follow);
        }
      }
      return EXIT_OK;
    } catch (err) {
      if (!(err instanceof ControllerError)) throw err;
      io.stderr(`portcullis flows: ${err.message}\n`);
      return EXIT_INPUT_ERROR;
    } finally {
      process.off('SIGINT', interrupt);
    }
  },
};
