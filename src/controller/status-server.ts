/**
 * The controller's plain-HTTP operator endpoint: liveness, readiness, agent status and metrics.
 *
 *   GET /healthz  200 while the process serves (always, once listening)
 *   GET /readyz   200 when a valid policy and an inventory are loaded, else 503 with the reason
 *   GET /status   JSON: policy/inventory state, compile reports, every agent (applied vs desired)
 *   GET /metrics  Prometheus text format
 *
 * It only reads through the `StatusSource` it is given; it owns no state of its own.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Readiness {
  readonly ready: boolean;
  readonly reason?: string;
}

export interface StatusSource {
  readiness(): Readiness;
  status(): unknown;
  metrics(): string;
}

export class StatusServer {
  private server: Server | undefined;

  constructor(private readonly source: StatusSource) {}

  async listen(host: string, port: number): Promise<AddressInfo> {
    const server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://status');
      const send = (code: number, type: string, body: string) => {
        res.writeHead(code, { 'content-type': type, 'cache-control': 'no-store' });
        res.end(body);
      };
      if (req.method !== 'GET') return send(405, 'text/plain', 'method not allowed\n');
      switch (url.pathname) {
        case '/healthz':
          return send(200, 'text/plain', 'ok\n');
        case '/readyz': {
          const r = this.source.readiness();
          return send(r.ready ? 200 : 503, 'text/plain', r.ready ? 'ready\n' : `not ready: ${r.reason ?? 'unknown'}\n`);
        }
        case '/status':
          return send(200, 'application/json', `${JSON.stringify(this.source.status(), null, 2)}\n`);
        case '/metrics':
          return send(200, 'text/plain; version=0.0.4', this.source.metrics());
        default:
          return send(404, 'text/plain', 'not found: try /healthz, /readyz, /status, /metrics\n');
      }
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
