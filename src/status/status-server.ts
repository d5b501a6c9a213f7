/**
 * The plain-HTTP operator endpoint of the controller and of the agent (each passes its own
 * `StatusSource`, so it lives below both): liveness, readiness, agent status and metrics.
 *
 *   GET /healthz  200 while the process serves (always, once listening)
 *   GET /readyz   200 when a valid policy and an inventory are loaded, else 503 with the reason
 *   GET /status   JSON: policy/inventory state, compile reports, every agent (applied vs desired)
 *   GET /metrics  Prometheus text format
 * and, when the source offers them (the controller does, the agent does not):
 *   GET /hosts             JSON: every host with a desired state and its version
 *   GET /hosts/<id>/state  JSON: that host's DesiredState (404 when it has none)
 *   GET /cluster           JSON: the cluster the states were compiled from (503 before the first)
 *   GET /ui/               the dashboard, when the source sets `ui` (src/status/ui-assets.ts); `/` and
 *                          `/ui` then redirect to it
 *   GET /flows             JSON: recorded flows with the filters of src/flows/flow-query.ts (400 on a bad one);
 *                          the source may answer later (a controller asking its peer replicas)
 *   GET /flows/events      Server-Sent Events: `event: flows` with what changed (at most 1/s),
 *                          the same filters, a comment line as keep-alive; a client that does not
 *                          read is cut off once MAX_EVENT_BUFFER bytes wait for it
 *
 * It only reads through the `StatusSource` it is given; it owns no state of its own. Everything
 * it serves may hold text from Marathon (app ids, labels, host names): it is only ever sent as
 * JSON with `content-type: application/json` (or JSON lines in an event stream) and
 * `x-content-type-options: nosniff`, and no answer repeats more than 100 characters of the
 * request's text (a bad /flows parameter is named, clipped). It has no authentication: bind it
 * to loopback (the default) or a private interface.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { serveUi } from './ui-assets.js';

export interface Readiness {
  readonly ready: boolean;
  readonly reason?: string;
}

/** An answer of the source: an HTTP status and a JSON body. */
export interface JsonAnswer {
  readonly code: number;
  readonly body: unknown;
}

/** A live event stream: `send` writes raw text/event-stream chunks; `close` unsubscribes. */
export interface EventSubscription {
  close(): void;
}

export interface StatusSource {
  readiness(): Readiness;
  status(): unknown;
  metrics(): string;
  hosts?(): unknown;
  hostState?(hostId: string): unknown;
  cluster?(): unknown;
  /** Serve the dashboard under /ui/ (the controller's). */
  readonly ui?: boolean;
  /** `/flows`: the query string's parameters in, the answer out (400 for a bad parameter); a promise when peers are asked. */
  flows?(params: URLSearchParams): JsonAnswer | Promise<JsonAnswer>;
  /** `/flows/events`: a subscription, or a JsonAnswer refusing it (bad parameter, too many streams). */
  flowEvents?(params: URLSearchParams, send: (chunk: string) => void): EventSubscription | JsonAnswer;
}

/** Bytes an event-stream client may leave unread before it is disconnected. */
export const MAX_EVENT_BUFFER = 8 << 20;

const HOST_STATE_PATH = /^\/hosts\/([^/]+)\/state$/;

function decodeSegment(segment: string): string | undefined {
  try {
    return decodeURIComponent(segment);
  } catch {
    return undefined;
  }
}

export class StatusServer {
  private server: Server | undefined;

  constructor(private readonly source: StatusSource) {}

  async listen(host: string, port: number): Promise<AddressInfo> {
    const server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://status');
      const send = (code: number, type: string, body: string) => {
        res.writeHead(code, { 'content-type': type, 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
        res.end(body);
      };
      const json = (code: number, body: unknown) => send(code, 'application/json', `${JSON.stringify(body, null, 2)}\n`);
      if (req.method !== 'GET') return send(405, 'text/plain', 'method not allowed\n');
      if (this.source.ui && (url.pathname === '/' || url.pathname === '/ui' || url.pathname.startsWith('/ui/'))) return void serveUi(url.pathname, res);
      const { hosts, hostState, cluster, flows, flowEvents } = this.source;
      const hostPath = HOST_STATE_PATH.exec(url.pathname);
      if (hostPath && hostState) {
        const hostId = decodeSegment(hostPath[1]!);
        if (hostId === undefined) return json(400, { error: 'the host id in the path is not valid percent-encoding' });
        const state = hostState.call(this.source, hostId);
        return state === undefined ? json(404, { error: 'no desired state for this host id: see /hosts for the hosts that have one' }) : json(200, state);
      }
      switch (url.pathname) {
        case '/healthz':
          return send(200, 'text/plain', 'ok\n');
        case '/readyz': {
          const r = this.source.readiness();
          return send(r.ready ? 200 : 503, 'text/plain', r.ready ? 'ready\n' : `not ready: ${r.reason ?? 'unknown'}\n`);
        }
        case '/status':
          return json(200, this.source.status());
        case '/metrics':
          return send(200, 'text/plain; version=0.0.4', this.source.metrics());
        case '/hosts':
          if (hosts) return json(200, hosts.call(this.source));
          break;
        case '/cluster': {
          if (!cluster) break;
          const body = cluster.call(this.source);
          return body === undefined ? json(503, { error: 'no cluster loaded yet: see /readyz' }) : json(200, body);
        }
        case '/flows': {
          if (!flows) break;
          const answer = flows.call(this.source, url.searchParams);
          if (!(answer instanceof Promise)) return json(answer.code, answer.body);
          return void answer.then(
            (a) => json(a.code, a.body),
            (e: unknown) => json(500, { error: `flows could not be read: ${String(e).slice(0, 200)}` }),
          );
        }
        case '/flows/events': {
          if (!flowEvents) break;
          let open = false;
          const sub = flowEvents.call(this.source, url.searchParams, (chunk) => {
            if (!open) return;
            res.write(chunk);
            if (res.writableLength > MAX_EVENT_BUFFER) res.destroy();
          });
          if ('code' in sub) return json(sub.code, sub.body);
          open = true;
          res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff', connection: 'keep-alive' });
          res.write(': portcullis flow events\n\n');
          const end = (): void => {
            if (!open) return;
            open = false;
            sub.close();
          };
          res.on('close', end);
          return;
        }
      }
      return send(404, 'text/plain', `not found: try /healthz, /readyz, /status, /metrics${hosts ? ', /hosts, /hosts/<id>/state, /cluster' : ''}${flows ? ', /flows, /flows/events' : ''}${this.source.ui ? ', /ui/' : ''}\n`);
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    return server.address() as AddressInfo;
  }

  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
