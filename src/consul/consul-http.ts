/**
 * The `consul` npm client (v2, over `papi`), set up so that everything Consul sends is read
 * bounded, as every outside answer in Portcullis is (docs/architecture.md):
 *
 *  - bytes: papi collects a body without limit, so an `onRequest` extension wraps the request's
 *    transport and has src/json/bounded-body.ts read each response too: a Content-Length over
 *    `maxBytes` is refused before reading, reading stops as soon as the bytes pass it, and a
 *    connection that closes mid-body is an error at once (papi alone would wait for its
 *    timeout), never a truncated answer taken as whole;
 *  - JSON: the `application/json` decoder is src/json/bounded-json.ts (size and depth checked
 *    before anything walks the value) instead of a bare JSON.parse;
 *  - shape: the `consul` library walks some answers itself before returning them (KV entries:
 *    `item.hasOwnProperty`, in an event handler, where a throw would kill the process), so an
 *    `onResponse` extension refuses, as an error, a KV answer that is not a list of objects with
 *    base64 (or null) values, before the library sees it. Everything else is checked by the pure
 *    parsers of consul-payloads.ts.
 *
 * `consulCall` runs one library call with a context that gives back the HTTP response (status,
 * X-Consul-Index) and cancels the request when an AbortSignal fires; `timeoutMs` bounds each call
 * (a blocking query's timeout is its wait plus the documented wait/16 jitter plus a margin).
 */
import { EventEmitter } from 'node:events';
import type { ClientRequest, IncomingMessage, RequestOptions } from 'node:http';
import Consul from 'consul';
import { readBoundedBody } from '../json/bounded-body.js';
import { parseBoundedJson, type JsonLimits } from '../json/bounded-json.js';
import { previewJson } from '../json/json-preview.js';

export interface ConsulHttpOptions {
  /** Base URL of the local Consul agent, e.g. http://127.0.0.1:8500 (http: or https:). */
  readonly url: string;
  /** ACL token, sent as X-Consul-Token. */
  readonly token?: string;
  /** Largest answer read, in bytes. Default 16 MiB. */
  readonly maxBytes?: number;
  /** Deepest JSON nesting accepted. Default 64. */
  readonly maxDepth?: number;
}

export const DEFAULT_CONSUL_MAX_BYTES = 16 * 1024 * 1024;

/** What one call gives back: the HTTP status, Consul's index header (raw) and the library's result. */
export interface ConsulAnswer<T> {
  readonly status: number;
  readonly index: string | undefined;
  readonly body: T | undefined;
}

/** A call failed: the HTTP status when Consul answered (undefined when it could not be reached). */
export class ConsulCallError extends Error {
  constructor(
    message: string,
    readonly status: number | undefined,
  ) {
    super(message);
    this.name = 'ConsulCallError';
  }
}

interface PapiRequest {
  readonly opts: { readonly name?: string };
  transport: { request(o: RequestOptions): ClientRequest };
  res?: IncomingMessage & { body?: unknown };
  err?: Error;
}
type Next = (err?: Error) => void;
interface Extensible {
  _ext(event: 'onRequest' | 'onResponse', fn: (request: PapiRequest, next: Next) => void): void;
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Why a KV answer cannot be handed to the library, or undefined when it is a list of entries. */
function kvShapeError(body: unknown): string | undefined {
  if (body === undefined) return undefined;
  if (!Array.isArray(body)) return 'KV answer is not a list';
  for (const item of body) {
    if (typeof item !== 'object' || item === null || Array.isArray(item)) return 'KV answer holds a non-object entry';
    const v = (item as { Value?: unknown }).Value;
    if (v !== undefined && v !== null && (typeof v !== 'string' || !BASE64.test(v))) return 'KV entry Value is not base64';
  }
  return undefined;
}

/**
 * Wraps the request's transport so each response is also read by src/json/bounded-body.ts
 * (papi keeps its own copy; both are bounded by `maxBytes`): over the limit, truncated or broken,
 * the request fails at once with that module's message.
 */
function boundTransport(request: PapiRequest, maxBytes: number): void {
  const inner = request.transport;
  request.transport = {
    request(o: RequestOptions): ClientRequest {
      const req = inner.request(o);
      req.on('response', (res: IncomingMessage) => {
        // papi owns the timeout; this signal never fires (one per response, so no listener piles up).
        readBoundedBody(res, maxBytes, new AbortController().signal).catch((e: Error) => {
          req.destroy();
          req.emit('error', e);
        });
      });
      return req;
    },
  };
}

/** A `consul` client whose answers are read bounded (see the header). */
export function boundedConsul(options: ConsulHttpOptions): Consul {
  const url = new URL(options.url);
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`Consul URL must be http: or https:, not ${url.protocol}`);
  const maxBytes = options.maxBytes ?? DEFAULT_CONSUL_MAX_BYTES;
  const limits: JsonLimits = { maxBytes, maxDepth: options.maxDepth ?? 64 };
  const decode = (data: Buffer | string): unknown => {
    const parsed = parseBoundedJson(Buffer.isBuffer(data) ? data.toString('utf8') : data, limits);
    if (!parsed.ok) throw new Error(parsed.error);
    return parsed.value;
  };
  const base = `${url.origin}${url.pathname.replace(/\/+$/, '')}/v1`;
  const consul = new Consul({
    baseUrl: base,
    decoders: { 'application/json': decode, 'text/json': decode },
    ...(options.token !== undefined ? { defaults: { token: options.token } } : {}),
  } as ConstructorParameters<typeof Consul>[0]);
  const ext = consul as unknown as Extensible;
  ext._ext('onRequest', (request, next) => {
    boundTransport(request, maxBytes);
    next();
  });
  ext._ext('onResponse', (request, next) => {
    const res = request.res;
    const mime = (res?.headers['content-type'] ?? '').split(';')[0]!.trim();
    if (request.err === undefined && res !== undefined && res.body !== undefined && (res.statusCode ?? 0) < 300 && mime !== 'application/json') {
      request.err = new Error(`answer is ${mime === '' ? 'untyped' : mime}, not application/json`);
    } else if (request.err === undefined && request.opts.name === 'kv.get' && res?.statusCode === 200) {
      const why = kvShapeError(res.body);
      if (why !== undefined) request.err = new Error(why);
    }
    next();
  });
  return consul;
}

/** The context papi and the `consul` library read: it returns [response, body] and cancels on 'cancel'. */
class CallContext extends EventEmitter {
  readonly includeResponse = true;
}

/**
 * Runs one `consul` library call (`fn` gets the options to pass: ctx and timeout added to
 * `opts`), bounded by `timeoutMs` and `signal`. A non-2xx answer or a transport failure is a
 * ConsulCallError naming `what`.
 */
export async function consulCall<T>(what: string, timeoutMs: number, signal: AbortSignal | undefined, fn: (opts: Record<string, unknown>) => Promise<unknown>, opts: Record<string, unknown> = {}): Promise<ConsulAnswer<T>> {
  if (signal?.aborted) throw new ConsulCallError(`${what}: cancelled`, undefined);
  const ctx = new CallContext();
  const onAbort = (): void => {
    ctx.emit('cancel');
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    const out = (await fn({ ...opts, ctx, timeout: timeoutMs })) as [IncomingMessage, T?] | undefined;
    const res = Array.isArray(out) ? out[0] : undefined;
    const index = res?.headers['x-consul-index'];
    return { status: res?.statusCode ?? 0, index: typeof index === 'string' ? index : undefined, body: Array.isArray(out) ? out[1] : undefined };
  } catch (e) {
    const err = e as Error & { response?: IncomingMessage };
    const status = err.response?.statusCode;
    // papi's message may carry up to 80 characters of Consul's own text: untrusted, so previewed.
    const detail = previewJson(err.message.replace(/^consul: /, ''), 240);
    // 403 is Consul's ACLs refusing ("Permission denied", "ACL not found"): say what to check.
    const acl = status === 403 ? ': refused by its ACLs (the token of --consul-token-file is missing, unknown or lacks this permission)' : '';
    const message = signal?.aborted ? 'cancelled' : status !== undefined && (status < 200 || status > 299) ? `Consul answered HTTP ${status} (${detail})${acl}` : detail;
    throw new ConsulCallError(`${what}: ${message}`, status !== undefined && (status < 200 || status > 299) ? status : undefined);
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}
