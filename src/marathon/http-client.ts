/**
 * HTTP(S) GETs to Marathon: auth, custom CA, redirects to the leader, several base URLs.
 *
 * - Auth: `Authorization: Basic ...` (user/password) or `Authorization: token=...` (DC/OS).
 * - TLS: a custom CA (PEM text) and, for labs only, `insecureSkipVerify`.
 * - Redirects: a standby Marathon answers 302/307 with `Location` pointing at the leader; up to
 *   5 hops are followed. A redirect from https to http is refused (it would leak credentials).
 * - Several base URLs: a connection error moves on to the next one (round robin); HTTP answers,
 *   even errors, do not (they come from a live Marathon).
 * - Paths are sent exactly as built by the caller (no WHATWG normalisation of `..` or `%2E`),
 *   via node's http.request with an explicit `path`.
 * - Bodies are read up to `maxBytes` and no further: a Content-Length above it is refused before
 *   reading, and reading stops (the connection is destroyed) as soon as the bytes received pass
 *   it. A body shorter than its Content-Length, or a connection that breaks mid-body, is an
 *   error (a truncated answer is never handed on as complete). Parse what was read with
 *   src/json/bounded-json.ts (size and depth bounded), never a bare JSON.parse.
 */
import http from 'node:http';
import https from 'node:https';
import type { IncomingMessage } from 'node:http';
import { readBoundedBody } from '../json/bounded-body.js';
import { previewJson } from '../json/json-preview.js';

export interface MarathonAuth {
  readonly basic?: { readonly user: string; readonly password: string };
  readonly token?: string;
}

export interface MarathonTls {
  readonly ca?: string;
  readonly insecureSkipVerify?: boolean;
}

export interface HttpClientOptions {
  readonly urls: readonly string[];
  readonly auth?: MarathonAuth;
  readonly tls?: MarathonTls;
}

export interface OpenOptions {
  readonly accept: string;
  /** Until the response headers arrive. */
  readonly timeoutMs: number;
  readonly signal?: AbortSignal;
}

export interface OpenResponse {
  readonly status: number;
  readonly url: string;
  readonly res: IncomingMessage;
}

const MAX_REDIRECTS = 5;

export class HttpClient {
  private readonly bases: URL[];
  private next = 0;

  constructor(private readonly opts: HttpClientOptions) {
    if (opts.urls.length === 0) throw new Error('at least one Marathon URL is required');
    this.bases = opts.urls.map((u) => {
      const url = new URL(u);
      if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`Marathon URL must be http(s): ${u}`);
      return url;
    });
  }

  /** GET `pathAndQuery` (starting with '/') and return once headers arrived (body unread). */
  async open(pathAndQuery: string, o: OpenOptions): Promise<OpenResponse> {
    let lastErr: unknown;
    for (let i = 0; i < this.bases.length; i++) {
      const base = this.bases[(this.next + i) % this.bases.length] as URL;
      const prefix = base.pathname.replace(/\/+$/, '');
      try {
        const r = await this.follow(new URL(base.origin), prefix + pathAndQuery, o);
        this.next = (this.next + i) % this.bases.length;
        return r;
      } catch (e) {
        lastErr = e;
        if (o.signal?.aborted || !(e instanceof ConnectError)) throw e;
      }
    }
    this.next = (this.next + 1) % this.bases.length;
    throw lastErr instanceof ConnectError ? new Error(lastErr.message) : lastErr;
  }

  /** GET and read the whole body as text (bounded); redirects followed. */
  async getText(pathAndQuery: string, o: OpenOptions & { maxBytes: number }): Promise<{ status: number; url: string; text: string }> {
    const timer = new AbortController();
    const onAbort = (): void => timer.abort();
    o.signal?.addEventListener('abort', onAbort, { once: true });
    const t = setTimeout(() => timer.abort(), o.timeoutMs);
    try {
      const r = await this.open(pathAndQuery, { ...o, signal: timer.signal });
      const text = await readBoundedBody(r.res, o.maxBytes, timer.signal);
      return { status: r.status, url: r.url, text };
    } finally {
      clearTimeout(t);
      o.signal?.removeEventListener('abort', onAbort);
    }
  }

  private async follow(origin: URL, path: string, o: OpenOptions): Promise<OpenResponse> {
    let target = { origin, path };
    for (let hop = 0; ; hop++) {
      const r = await this.once(target.origin, target.path, o);
      if (![301, 302, 303, 307, 308].includes(r.status)) return { status: r.status, url: target.origin.origin + target.path, res: r };
      const location = r.headers.location;
      r.resume();
      if (hop >= MAX_REDIRECTS) throw new Error(`too many redirects (last to ${previewJson(location ?? '?', 200)})`);
      if (typeof location !== 'string' || location === '') throw new Error(`redirect ${r.statusCode} without a Location`);
      const next = new URL(location, target.origin.origin + target.path);
      if (target.origin.protocol === 'https:' && next.protocol !== 'https:') throw new Error(`refusing redirect from https to ${next.protocol}`);
      if (next.protocol !== 'http:' && next.protocol !== 'https:') throw new Error(`refusing redirect to ${next.protocol}`);
      target = { origin: new URL(next.origin), path: next.pathname + next.search };
    }
  }

  private once(origin: URL, path: string, o: OpenOptions): Promise<IncomingMessage & { status: number }> {
    return new Promise((resolve, reject) => {
      const headers: Record<string, string> = { Accept: o.accept };
      const auth = this.opts.auth;
      if (auth?.basic) headers.Authorization = `Basic ${Buffer.from(`${auth.basic.user}:${auth.basic.password}`).toString('base64')}`;
      else if (auth?.token) headers.Authorization = `token=${auth.token}`;
      const secure = origin.protocol === 'https:';
      const options: https.RequestOptions = {
        method: 'GET',
        hostname: origin.hostname.replace(/^\[|\]$/g, ''),
        port: origin.port || (secure ? 443 : 80),
        path,
        headers,
        ...(o.signal ? { signal: o.signal } : {}),
        ...(secure ? { ca: this.opts.tls?.ca, rejectUnauthorized: this.opts.tls?.insecureSkipVerify !== true } : {}),
      };
      let responded = false;
      const req = (secure ? https : http).request(options, (res) => {
        responded = true;
        clearTimeout(timer);
        resolve(Object.assign(res, { status: res.statusCode ?? 0 }));
      });
      const timer = setTimeout(() => req.destroy(new ConnectError(`no answer from ${origin.origin} within ${o.timeoutMs} ms`)), o.timeoutMs);
      req.on('socket', (s) => s.setKeepAlive(true, 15_000));
      req.on('error', (e) => {
        clearTimeout(timer);
        if (!responded) reject(e instanceof ConnectError || isConnectErrno(e) ? new ConnectError(`${origin.origin}: ${e.message}`) : e);
      });
      req.end();
    });
  }
}

class ConnectError extends Error {}

function isConnectErrno(e: unknown): boolean {
  const code = (e as { code?: unknown }).code;
  return typeof code === 'string' && ['ECONNREFUSED', 'ECONNRESET', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT'].includes(code);
}
