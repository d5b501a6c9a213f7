/**
 * Live inventory from Marathon: list, then follow the event stream, and never lose what we know.
 *
 * Contract
 *  - `start()` lists `GET /v2/apps?embed=apps.tasks` once (resolves whatever the outcome), then
 *    holds `GET /v2/events` (SSE, `Accept: text/event-stream`; docs/docs/event-bus.md) in the
 *    background, reconnecting with backoff + jitter when it drops (the backoff restarts only after
 *    a stream that stayed attached for STABLE_STREAM_MS). Redirects from a standby to the
 *    leader are followed (http-client.ts); several URLs are tried in turn.
 *  - Events: `status_update_event` is applied incrementally (running → add/update the task,
 *    terminal → remove it; a late running update of an ended task is ignored, cluster-store.ts). `api_post_event`, `app_terminated_event`, `deployment_success` re-read
 *    the app (`GET /v2/apps/{id}?embed=app.tasks`, 404 = deleted) or, when the event names no app,
 *    re-list. `event_stream_attached` (every (re)connect) re-lists, so nothing missed while
 *    disconnected stays missed; only the first on a connection is ours (Marathon sends every
 *    client's attach to every stream). A re-list also runs every `relistIntervalMs`.
 *    `instance_changed_event` duplicates status updates; it only makes us read an app we do not
 *    know yet.
 *  - Reads are serialised (one at a time). Status updates that arrive while a read is in flight
 *    are journaled and re-applied on top of its result, so an answer older than an event never
 *    undoes the event.
 *  - `onChange(cluster, changedAppIds)` fires after every real change, with the app ids whose
 *    definition or running tasks changed.
 *
 * Safety: an unreachable Marathon, an HTTP error, a redirect loop, invalid, truncated, oversized
 * or too deeply nested JSON, an answer without embedded tasks, or an unexpected shape never
 * changes the cluster: the last good one is kept and `status()` says `stale: true` with the
 * reason (the request, the HTTP status or error, and the URL that answered) and since when. An
 * app that is malformed in an otherwise good list (including one without `tasks` when others
 * have them, see requireEmbeddedTasks) keeps its last good definition and tasks; an entry
 * without a readable id (not an object, no string id) could be any app, so while a list holds
 * one, no known app is removed for being absent from it.
 * Untrusted input is bounded before it is walked: list answers and SSE event data are read up to
 * `maxBodyBytes` (reading stops past it) and parsed by src/json/bounded-json.ts (size and
 * `maxJsonDepth` checked first), so no payload can exhaust the stack or the heap; nothing a
 * handler of Marathon data throws escapes the stream (the stream is dropped and reconnected).
 *
 * Staleness: the cluster is stale while the last read failed, or while the event stream is down
 * after it was lost or failed to connect (events would be missed). The stream still connecting
 * for the first time, right after a good list, is not stale: nothing has been missed yet.
 *
 * "Marathon really has zero apps" vs a broken answer: an empty list is accepted at once only when
 * we know no apps anyway. Otherwise it must be a well-formed `{"apps": []}` and stay so for
 * `emptyConfirmMs` (default 2 minutes) over at least two consecutive lists; until then we keep the
 * old apps, report stale and log an error. Rationale: wiping every app unmanages every port and
 * empties every group's source set, so a proxy or a Marathon mid-recovery that briefly answers an
 * empty list must not do that; a real "delete everything" is rare and a two-minute delay is cheap.
 */
import pino, { type Logger } from 'pino';
import { createParser } from 'eventsource-parser';
import type { ClusterState } from '../inventory/cluster-state.js';
import { isoTime } from '../logging.js';
import { fullJitterDelay, sleep, type BackoffOptions } from '../retry/backoff.js';
import { DEFAULT_JSON_LIMITS, parseBoundedJson, type JsonLimits } from '../json/bounded-json.js';
import { UnusualAppIds } from './app-id.js';
import { ClusterStore } from './cluster-store.js';
import { HttpClient, type MarathonAuth, type MarathonTls } from './http-client.js';
import { isRecord, preview } from './json-guards.js';
import { parseApps, requireEmbeddedTasks } from './parse-apps.js';
import { parseEvent, type MarathonEvent } from './parse-event.js';

export interface MarathonSourceOptions {
  /** One or more Marathon base URLs (e.g. `http://marathon:8080`, `https://leader.mesos/marathon`). */
  readonly url: string | readonly string[];
  readonly auth?: MarathonAuth;
  readonly tls?: MarathonTls;
  /** Full re-list period. Default 60 s. */
  readonly relistIntervalMs?: number;
  readonly logger?: Logger;
  /** Per request (headers + body of a list). Default 30 s. */
  readonly requestTimeoutMs?: number;
  readonly backoff?: BackoffOptions;
  /** How long an empty app list must persist before it replaces known apps. Default 120 s. */
  readonly emptyConfirmMs?: number;
  /** Largest answer (and largest SSE event) accepted, in bytes. Default 64 MiB. */
  readonly maxBodyBytes?: number;
  /** Deepest JSON nesting accepted in an answer or event. Default 64. */
  readonly maxJsonDepth?: number;
  readonly now?: () => number;
}

export interface MarathonSourceStatus {
  readonly stale: boolean;
  readonly reason?: string;
  readonly since?: number;
  /** When the last full list was accepted. */
  readonly lastSync?: number;
  readonly streamConnected: boolean;
  /** Problems of the last accepted list (malformed apps/tasks skipped), at most 50. */
  readonly problems: readonly string[];
}

export type ChangeListener = (cluster: ClusterState, changedAppIds: string[]) => void;

const EVENT_TYPES = ['event_stream_attached', 'status_update_event', 'instance_changed_event', 'api_post_event', 'deployment_success', 'app_terminated_event'];
const EVENTS_PATH = `/v2/events?${EVENT_TYPES.map((t) => `event_type=${t}`).join('&')}`;
const MAX_JOURNAL = 100_000;
/** How long a stream must stay attached for its end to restart the reconnect backoff. */
const STABLE_STREAM_MS = 10_000;
const RESERVED_LAST_SEGMENTS = new Set(['tasks', 'versions', 'restart']);

export class MarathonSource {
  private readonly http: HttpClient;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly store = new ClusterStore();
  private readonly listeners = new Set<ChangeListener>();
  private readonly abort = new AbortController();
  private readonly relistMs: number;
  private readonly timeoutMs: number;
  private readonly backoff: BackoffOptions;
  private readonly emptyConfirmMs: number;
  private readonly limits: JsonLimits;
  private readonly unusualIds: UnusualAppIds;

  private problem: { reason: string; since: number } | null = null;
  /** Set when the stream was lost or failed to connect; cleared when it attaches. */
  private streamDown: { reason: string; since: number } | null = null;
  private streamConnected = false;
  private lastSync: number | undefined;
  /** When the last accepted full list was started, and when the event stream last attached. */
  private lastListStartedAt = 0;
  private attachedAt = 0;
  private lastProblems: string[] = [];
  private empty: { since: number; count: number } | null = null;
  private pendingFull = false;
  private readonly pendingApps = new Set<string>();
  private worker: Promise<void> | null = null;
  private journal: MarathonEvent[] | null = null;
  private readFailures = 0;
  private retryTimer: NodeJS.Timeout | null = null;
  private relistTimer: NodeJS.Timeout | null = null;
  private streamLoop: Promise<void> | null = null;

  constructor(opts: MarathonSourceOptions) {
    const urls = typeof opts.url === 'string' ? [opts.url] : [...opts.url];
    this.http = new HttpClient({ urls, ...(opts.auth ? { auth: opts.auth } : {}), ...(opts.tls ? { tls: opts.tls } : {}) });
    this.log = (opts.logger ?? pino({ level: 'silent' })).child({ module: 'marathon-source' });
    this.now = opts.now ?? Date.now;
    this.relistMs = opts.relistIntervalMs ?? 60_000;
    this.timeoutMs = opts.requestTimeoutMs ?? 30_000;
    this.backoff = opts.backoff ?? {};
    this.emptyConfirmMs = opts.emptyConfirmMs ?? 120_000;
    this.limits = { maxBytes: opts.maxBodyBytes ?? DEFAULT_JSON_LIMITS.maxBytes, maxDepth: opts.maxJsonDepth ?? DEFAULT_JSON_LIMITS.maxDepth };
    this.unusualIds = new UnusualAppIds(this.log);
  }

  onChange(fn: ChangeListener): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  cluster(): ClusterState {
    return this.store.snapshot();
  }

  status(): MarathonSourceStatus {
    const base = { streamConnected: this.streamConnected, problems: [...this.lastProblems], ...(this.lastSync !== undefined ? { lastSync: this.lastSync } : {}) };
    const why = [this.problem, this.streamDown].filter((p) => p !== null);
    if (why.length === 0) return { stale: false, ...base };
    return { stale: true, reason: why.map((p) => p.reason).join('; '), since: Math.min(...why.map((p) => p.since)), ...base };
  }

  /**
   * Epoch ms as of which the cluster is known complete (the input stamp of issue 12, see
   * src/grpc/input-stamp.ts), 0 before the first good list: the clock now while the event stream
   * is attached, a full list started after that attach was accepted and no read failed since
   * (every change reaches us as an event); otherwise the start of the last accepted full list.
   */
  freshAsOf(): number {
    if (this.lastSync === undefined) return 0;
    const following = this.streamConnected && this.problem === null && this.lastListStartedAt >= this.attachedAt;
    return following ? this.now() : this.lastListStartedAt;
  }

  /** First list, then the event stream and the periodic re-list run in the background. */
  async start(): Promise<void> {
    await this.relist();
    if (this.abort.signal.aborted) return; // stop() came during the first list
    this.relistTimer = setInterval(() => this.schedule({ full: true }), this.relistMs);
    this.relistTimer.unref();
    this.streamLoop = this.runStream();
  }

  async stop(): Promise<void> {
    this.abort.abort();
    if (this.relistTimer) clearInterval(this.relistTimer);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    await Promise.allSettled([this.streamLoop, this.worker]);
  }

  /** A full list now (queued behind any read in flight). Resolves when it has run. */
  async relist(): Promise<void> {
    this.schedule({ full: true });
    while (this.worker) await this.worker;
  }

  private schedule(what: { full: true } | { appId: string }): void {
    if (this.abort.signal.aborted) return;
    if ('full' in what) this.pendingFull = true;
    else this.pendingApps.add(what.appId);
    this.worker ??= this.drain().finally(() => {
      this.worker = null;
    });
  }

  private async drain(): Promise<void> {
    while (!this.abort.signal.aborted && (this.pendingFull || this.pendingApps.size > 0)) {
      let ok: boolean;
      if (this.pendingFull) {
        this.pendingFull = false;
        this.pendingApps.clear();
        ok = await this.readAll();
      } else {
        const id = this.pendingApps.values().next().value as string;
        this.pendingApps.delete(id);
        ok = await this.readApp(id);
      }
      if (ok) this.readFailures = 0;
      else this.retryLater();
    }
  }

  private retryLater(): void {
    if (this.retryTimer || this.abort.signal.aborted) return;
    const delay = fullJitterDelay(this.readFailures++, this.backoff);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.schedule({ full: true });
    }, delay);
    this.retryTimer.unref();
  }

  private async readAll(): Promise<boolean> {
    this.journal = [];
    const startedAt = this.now();
    try {
      const path = '/v2/apps?embed=apps.tasks';
      const got = await this.getJson(path);
      if (typeof got === 'string') return this.fail(`GET ${path}: ${got}`);
      // Only `{"apps": [...]}` is a list: a single app or a group must not replace every app.
      if (!isRecord(got.json) || !Array.isArray(got.json.apps)) return this.fail(`GET ${path}: expected {"apps": [...]}, got ${preview(got.json)} (from ${got.url})`);
      const all = parseApps({ apps: got.json.apps });
      const parsed = requireEmbeddedTasks(all);
      if (parsed === null) return this.fail(`GET ${path}: no app in the answer has embedded tasks (embed=apps.tasks not honoured by ${got.url})`);
      this.unusualIds.check([...parsed.apps.map((a) => a.id), ...parsed.skippedAppIds]);
      if (parsed.apps.length === 0 && parsed.skippedAppIds.length === 0 && parsed.anonymousSkipped === 0 && this.store.appCount > 0) {
        const now = this.now();
        this.empty = this.empty ? { since: this.empty.since, count: this.empty.count + 1 } : { since: now, count: 1 };
        if (this.empty.count < 2 || now - this.empty.since < this.emptyConfirmMs) {
          this.log.error({ knownApps: this.store.appCount, emptySince: isoTime(this.empty.since) }, 'Marathon answered an empty app list; keeping the known apps until that is confirmed');
          const reason = `Marathon answered an empty app list while ${this.store.appCount} apps were known; kept until empty answers persist for ${this.emptyConfirmMs} ms`;
          return this.fail(reason, true);
        }
        this.log.error({ removedApps: this.store.appCount }, 'empty app list confirmed: removing every app');
      } else {
        this.empty = null;
      }
      // An entry without a readable id may be any known app: keep every app this list leaves out.
      const anonymous = parsed.anonymousSkipped;
      const keep = anonymous > 0 ? this.store.appIds() : parsed.skippedAppIds;
      const changed = this.store.replaceAll(parsed.apps, parsed.tasks, keep, parsed.misaligned);
      const reported = [...parsed.problems, ...(anonymous > 0 ? [`${anonymous} entr${anonymous === 1 ? 'y' : 'ies'} without a readable app id: no known app is removed for missing from this list`] : []), ...this.store.unkeptProblems(parsed.misaligned)];
      for (const p of reported) this.log.warn({ problem: p }, 'skipped part of the Marathon answer');
      const replayed = this.replayJournal(() => true);
      this.lastProblems = reported.slice(0, 50);
      this.problem = null;
      this.lastSync = this.now();
      this.lastListStartedAt = startedAt;
      this.emit([...changed, ...replayed]);
      return true;
    } finally {
      this.journal = null;
    }
  }

  private async readApp(id: string): Promise<boolean> {
    const path = appPath(id);
    if (path === null) {
      this.log.info({ appId: id }, 'app id cannot be read on its own; re-listing instead');
      this.pendingFull = true;
      return true;
    }
    this.journal = [];
    try {
      const got = await this.getJson(`${path}?embed=app.tasks`, true);
      if (typeof got === 'string') return this.fail(`reading app ${preview(id, 200)} (GET ${path}?embed=app.tasks): ${got}`);
      let changed: string[];
      if (got.status === 404) {
        changed = this.store.replaceApp(id, null, []);
      } else {
        const parsed = parseApps(got.json);
        const app = parsed.apps.find((a) => a.id === id);
        if (!parsed.wellFormed || !app || parsed.apps.length !== 1 || !parsed.tasksEmbedded) {
          return this.fail(`reading app ${preview(id, 200)}: ${parsed.problems[0] ?? 'the answer is not that app with its tasks'} (from ${got.url})`);
        }
        this.unusualIds.check([id]);
        changed = this.store.replaceApp(id, app, parsed.tasks, parsed.misaligned);
        for (const p of [...parsed.problems, ...this.store.unkeptProblems(parsed.misaligned)]) this.log.warn({ problem: p }, 'skipped part of the Marathon answer');
      }
      this.emit([...changed, ...this.replayJournal((ev) => ev.kind === 'status_update' && ev.appId === id)]);
      return true;
    } finally {
      this.journal = null;
    }
  }

  /** JSON of a 2xx (or, with allow404, a 404) answer, or the reason it is unusable. */
  private async getJson(path: string, allow404 = false): Promise<{ status: number; url: string; json: unknown } | string> {
    let r: { status: number; url: string; text: string };
    try {
      r = await this.http.getText(path, { accept: 'application/json', timeoutMs: this.timeoutMs, maxBytes: this.limits.maxBytes, signal: this.abort.signal });
    } catch (e) {
      return errorText(e);
    }
    const from = originOf(r.url);
    if (!(r.status >= 200 && r.status < 300) && !(allow404 && r.status === 404)) return `HTTP ${r.status} from ${from}`;
    const parsed = parseBoundedJson(r.text, this.limits);
    if (!parsed.ok) return `unusable answer from ${from}: ${parsed.error}`;
    return { status: r.status, url: from, json: parsed.value };
  }

  private fail(reason: string, quiet = false): false {
    if (!quiet) this.log.warn({ reason }, 'Marathon read failed; keeping the last good cluster');
    this.problem = { reason, since: this.problem?.since ?? this.now() };
    return false;
  }

  private replayJournal(filter: (ev: MarathonEvent) => boolean): string[] {
    const changed: string[] = [];
    for (const ev of this.journal ?? []) {
      if (ev.kind === 'status_update' && filter(ev) && this.store.applyStatus(ev).kind === 'changed') changed.push(ev.appId);
    }
    return changed;
  }

  private emit(changed: string[]): void {
    const ids = [...new Set(changed)].sort();
    if (ids.length === 0) return;
    const cluster = this.store.snapshot();
    this.log.debug({ changedAppIds: ids.slice(0, 20), changed: ids.length }, 'cluster changed');
    for (const fn of this.listeners) {
      try {
        fn(cluster, ids);
      } catch (e) {
        this.log.error({ err: e }, 'onChange listener threw');
      }
    }
  }

  private async runStream(): Promise<void> {
    let attempt = 0;
    while (!this.abort.signal.aborted) {
      let why: string;
      let attachedAt: number | undefined;
      let events = false;
      try {
        why = await this.holdStream(
          () => void (attachedAt = performance.now()),
          () => void (events = true),
        );
      } catch (e) {
        why = errorText(e);
      }
      if (this.abort.signal.aborted) break;
      // Only a stream that worked resets the backoff (it carried an event after its attach, or
      // stayed attached a while): one that attaches and ends at once (each attach a full re-list)
      // must not reconnect in a loop.
      if (attachedAt !== undefined && (events || performance.now() - attachedAt >= STABLE_STREAM_MS)) attempt = 0;
      this.streamConnected = false;
      this.streamDown = { reason: `event stream: ${why}`, since: this.streamDown?.since ?? this.now() };
      const delay = fullJitterDelay(attempt++, this.backoff);
      this.log.warn({ reason: why, retryInMs: delay }, 'Marathon event stream lost; reconnecting');
      await sleep(delay, this.abort.signal);
    }
  }

  /** Resolves with the reason when the stream ends. */
  /** One stream until it ends (why); `onAttached` at our attach, `onEvent` at each good event after it. */
  private async holdStream(onAttached: () => void, onEvent: () => void): Promise<string> {
    const r = await this.http.open(EVENTS_PATH, { accept: 'text/event-stream', timeoutMs: this.timeoutMs, signal: this.abort.signal });
    if (r.status !== 200) {
      r.res.resume();
      return `HTTP ${r.status} from ${originOf(r.url)}`;
    }
    r.res.setEncoding('utf8');
    let attached = false;
    const attach = (): boolean => {
      if (attached) return false;
      attached = true;
      onAttached();
      return true;
    };
    return new Promise<string>((resolve) => {
      const end = (why: string): void => {
        resolve(why);
        r.res.destroy();
      };
      // maxBufferSize bounds the line being read plus the event's data so far (in characters).
      const parser = createParser({
        maxBufferSize: this.limits.maxBytes,
        onEvent: (msg) => {
          const wasAttached = attached;
          if (this.onMessage(msg.event, msg.data, attach) && wasAttached) onEvent();
        },
        onError: (e) => {
          if (e.type === 'max-buffer-size-exceeded') end(`an event larger than the limit of ${this.limits.maxBytes} bytes`);
          else this.log.warn({ err: preview(e.message, 200) }, 'bad SSE line from Marathon');
        },
      });
      r.res.on('data', (chunk: string) => {
        try {
          parser.feed(chunk);
        } catch (e) {
          this.log.error({ err: errorText(e) }, 'handling a Marathon event failed; dropping the stream');
          end(`handling an event failed: ${errorText(e)}`);
        }
      });
      r.res.on('end', () => resolve('closed by Marathon'));
      r.res.on('error', (e) => resolve(`error: ${e.message}`));
      r.res.on('close', () => resolve('connection closed'));
    });
  }

  /** `attach` marks this connection attached; false when it already was. Whether the event was a good one (not ignored, not malformed). */
  private onMessage(type: string | undefined, data: string, attach: () => boolean): boolean {
    const ev = parseEvent(type, data, this.limits);
    switch (ev.kind) {
      case 'ignored':
        return false;
      case 'malformed':
        this.log.warn({ error: ev.error }, 'malformed Marathon event skipped');
        return false;
      case 'stream_attached':
        // Marathon publishes this on its bus for every SSE client that attaches (event-bus.md:
        // "a new client attaching"), so every other subscriber's connect reaches us too. Only the
        // first on this connection is ours; another's must neither re-list nor move attachedAt.
        if (!attach()) return true;
        this.streamConnected = true;
        this.attachedAt = this.now();
        this.streamDown = null;
        this.schedule({ full: true });
        return true;
      case 'status_update': {
        if (this.journal) {
          if (this.journal.length < MAX_JOURNAL) this.journal.push(ev);
          else this.pendingFull = true;
        }
        const r = this.store.applyStatus(ev);
        if (r.kind === 'changed') this.emit([ev.appId]);
        if (r.kind === 'refresh') {
          this.log.info({ appId: ev.appId, taskId: ev.taskId, why: r.why }, 're-reading app');
          this.schedule({ appId: ev.appId });
        }
        return true;
      }
      case 'instance_changed':
        if (!this.store.hasApp(ev.appId)) this.schedule({ appId: ev.appId });
        return true;
      case 'api_post':
        this.schedule(ev.appId !== undefined ? { appId: ev.appId } : { full: true });
        return true;
      case 'app_terminated':
        this.schedule({ appId: ev.appId });
        return true;
      case 'deployment_success':
        if (ev.appIds.length === 0) this.schedule({ full: true });
        for (const id of ev.appIds) this.schedule({ appId: id });
        return true;
    }
  }
}

/** A URL's scheme, host and port: where an answer came from (no path, no query). */
function originOf(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return preview(url, 200);
  }
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : preview(e, 200);
}

/**
 * `/v2/apps/<segments>` with each segment percent-encoded, or null when the id cannot name one
 * app safely (empty, `.` or `..` segments — which URL handling anywhere could collapse — or a
 * last segment that Marathon routes elsewhere, like `/tasks`). Then the caller re-lists instead.
 */
export function appPath(id: string): string | null {
  const segments = id.replace(/^\//, '').split('/');
  if (segments.some((s) => s === '' || s === '.' || s === '..')) return null;
  if (RESERVED_LAST_SEGMENTS.has(segments[segments.length - 1] as string)) return null;
  try {
    return `/v2/apps/${segments.map(encodeURIComponent).join('/')}`;
  } catch {
    return null; // a lone surrogate cannot be percent-encoded
  }
}
