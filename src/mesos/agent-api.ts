/**
 * The local Mesos agent's v1 operator API (`POST <url>/api/v1`, JSON; Mesos
 * docs/operator-http-api.md, "Agent API"), read by a Portcullis agent to learn which container
 * each local task runs in (local-tasks.ts).
 *
 * - One call = one POST with `{"type": ...}`; the answer is read bounded (src/json/bounded-body.ts)
 *   and parsed bounded (src/json/bounded-json.ts); an HTTP error, a timeout or unparseable JSON is
 *   an Error whose message names the call and the URL and previews the answer (never the whole).
 * - `localTasks()` asks GET_FLAGS once (for `cgroups_root`; the flag does not change while the
 *   Mesos agent runs), then GET_TASKS and GET_CONTAINERS (nested containers included) each time.
 *   A GET_FLAGS the agent answers with an HTTP error (403 where its ACLs refuse VIEW_FLAGS) does
 *   not stop the mapping: the configured root is used, said in the answer's `warning`, and
 *   GET_FLAGS is asked again at the next call.
 * - Plain HTTP to a local address is what Mesos agents serve by default; `http:` and `https:`
 *   URLs are accepted (https with the system CAs).
 */
import http from 'node:http';
import https from 'node:https';
import { readBoundedBody } from '../json/bounded-body.js';
import { parseBoundedJson } from '../json/bounded-json.js';
import { previewJson } from '../json/json-preview.js';
import { DEFAULT_CGROUPS_ROOT, parseLocalTasks, type LocalTasks } from './local-tasks.js';

export interface MesosAgentApiOptions {
  /** Base URL of the local Mesos agent, e.g. http://127.0.0.1:5051. */
  readonly url: string;
  /** Per call, until the whole answer is read. Default 5 s. */
  readonly timeoutMs?: number;
  /** Largest answer read. Default 16 MiB (a host runs hundreds of tasks at most). */
  readonly maxBytes?: number;
  /** The cgroups root used when GET_FLAGS does not say (the agent's --cgroups-root). Default "mesos". */
  readonly cgroupsRoot?: string;
}

const DEFAULT_TIMEOUT_MS = 5_000;
const DEFAULT_MAX_BYTES = 16 * 1024 * 1024;

function flagValue(body: unknown, name: string): string | undefined {
  const flags = (body as { get_flags?: { flags?: unknown } } | null)?.get_flags?.flags;
  if (!Array.isArray(flags)) return undefined;
  for (const f of flags) {
    if (typeof f === 'object' && f !== null && (f as { name?: unknown }).name === name) {
      const v = (f as { value?: unknown }).value;
      return typeof v === 'string' ? v : undefined;
    }
  }
  return undefined;
}

/** The Mesos agent answered a call with an HTTP error status. */
export class MesosHttpError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
    this.name = 'MesosHttpError';
  }
}

export class MesosAgentApi {
  private readonly endpoint: URL;
  private cgroupsRoot: string | undefined;

  constructor(private readonly options: MesosAgentApiOptions) {
    const url = new URL('/api/v1', options.url);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`Mesos agent URL must be http: or https:, not ${url.protocol}`);
    this.endpoint = url;
  }

  /** One call of the agent API; the parsed answer. */
  async call(type: string, extra: Record<string, unknown> = {}): Promise<unknown> {
    const where = `Mesos agent ${this.options.url}: ${type}`;
    const timer = AbortSignal.timeout(this.options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    const payload = JSON.stringify({ type, ...extra });
    const text = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const get = this.endpoint.protocol === 'https:' ? https.request : http.request;
      const req = get(this.endpoint, { method: 'POST', signal: timer, headers: { 'content-type': 'application/json', accept: 'application/json', 'content-length': Buffer.byteLength(payload) } }, (res) => {
        readBoundedBody(res, this.options.maxBytes ?? DEFAULT_MAX_BYTES, timer).then((t) => resolve({ status: res.statusCode ?? 0, text: t }), reject);
      });
      req.on('error', (e) => reject(new Error(`${where}: ${timer.aborted ? 'timed out' : e.message}`)));
      req.end(payload);
    }).catch((e: Error) => {
      throw e.message.startsWith(where) ? e : new Error(`${where}: ${e.message}`);
    });
    if (text.status !== 200) throw new MesosHttpError(`${where} answered HTTP ${text.status}: ${previewJson(text.text, 200)}`, text.status);
    const parsed = parseBoundedJson(text.text, { maxBytes: this.options.maxBytes ?? DEFAULT_MAX_BYTES });
    if (!parsed.ok) throw new Error(`${where}: ${parsed.error}`);
    return parsed.value;
  }

  /** The cgroups root in force: the Mesos agent's `cgroups_root` flag once read, else the configured one. */
  get effectiveCgroupsRoot(): string {
    return this.cgroupsRoot ?? this.options.cgroupsRoot ?? DEFAULT_CGROUPS_ROOT;
  }

  /** Which container each local task runs in (local-tasks.ts), from one GET_TASKS and one GET_CONTAINERS. */
  async localTasks(): Promise<LocalTasks> {
    const configured = this.options.cgroupsRoot ?? DEFAULT_CGROUPS_ROOT;
    let flagsProblem: string | undefined;
    if (this.cgroupsRoot === undefined) {
      try {
        this.cgroupsRoot = flagValue(await this.call('GET_FLAGS'), 'cgroups_root') ?? configured;
      } catch (e) {
        if (!(e instanceof MesosHttpError)) throw e;
        flagsProblem = `${e.message}: the cgroups root '${configured}' of --cgroups-root is used`;
      }
    }
    const [tasks, containers] = await Promise.all([this.call('GET_TASKS'), this.call('GET_CONTAINERS', { get_containers: { show_nested: true, show_standalone: false } })]);
    const found = parseLocalTasks(tasks, containers, this.cgroupsRoot ?? configured);
    return flagsProblem === undefined ? found : { ...found, warning: flagsProblem };
  }
}
