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
 *   GET /ui/               the dashboard, when the source sets `ui` (src/status/ui-assets.ts)
 *
 * It only reads through the `StatusSource` it is given; it owns no state of its own. Everything
 * it serves may hold text from Marathon (app ids, labels, host names): it is only ever sent as
 * JSON with `content-type: application/json` and `x-content-type-options: nosniff`, and no
 * answer repeats the request's text. It has no authentication: bind it to loopback (the
 * default) or a private interface.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { serveUi } from './ui-assets.js';

export interface Readiness {
  readonly ready: boolean;
  readonly reason?: string;
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
}

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
      if (this.source.ui && (url.pathname === '/ui' || url.pathname.startsWith('/ui/'))) return void serveUi(url.pathname, res);
      const { hosts, hostState, cluster } = this.source;
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
      }
      return send(404, 'text/plain', `not found: try /healthz, /readyz, /status, /metrics${hosts ? ', /hosts, /hosts/<id>/state, /cluster' : ''}\n`);
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
