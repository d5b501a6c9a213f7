/**
 * A controller's status listener for the dashboard tests, with a known content: the real
 * StatusServer (so /ui/ and /status are served by the code under test) behind a front that also
 * answers /flows and /flows/events (flows-spec section 5) from a fixed flow set, filtered by
 * from / to / port / direction / verdict as the controller does. It records the /flows queries the page
 * sends and can push an `event: flows` to every open event stream.
 *
 * The flow set holds hostile app ids (markup, quotes) as Marathon could hand them over.
 */
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { StatusServer, type StatusSource } from '../../src/status/status-server.js';

/** The ObservedFlow fields the dashboard reads (src/flows/observed-flow.ts). */
export interface FixtureFlow {
  key: string;
  direction: 'ingress' | 'egress';
  verdict: 'allowed' | 'denied' | 'audit';
  reportedBy: string;
  source: { address: string; kind: 'app' | 'host' | 'network' | 'outside'; hostId?: string; apps: string[]; networks: string[] };
  destination: { hostId: string; address: string; protocol: 'tcp' | 'udp'; port: number; apps: { appId: string; taskIds: string[] }[]; portName?: string };
  decidedBy: { tier: string; rule?: string; at?: string; reason: string };
  packets: number;
  bytes: number;
  firstSeen: string;
  lastSeen: string;
}

export const HOSTILE_APP = '/x/<img src=x onerror=alert(1)>';
export const QUOTED_APP = `/team/"quoted"'app`;
export const HOSTILE_HOST = '<script>alert(2)</script>';

const T0 = '2026-12-01T15:00:00.000Z';
const T1 = '2026-12-01T16:00:00.000Z';

function flow(key: string, f: Omit<FixtureFlow, 'key' | 'bytes' | 'firstSeen' | 'lastSeen' | 'reportedBy'> & { reportedBy?: string }): FixtureFlow {
  return { key, reportedBy: f.reportedBy ?? f.destination.hostId, bytes: f.packets * 60, firstSeen: T0, lastSeen: T1, ...f };
}

const dest = (hostId: string, appId: string, port: number, portName?: string): FixtureFlow['destination'] => ({
  hostId,
  address: '',
  protocol: 'tcp',
  port,
  apps: [{ appId, taskIds: [`${appId.slice(1).replaceAll('/', '_')}.1`] }],
  ...(portName ? { portName } : {}),
});

/** Five flows: 7 nodes, 5 edges on the map (one per flow). */
export function fixtureFlows(): FixtureFlow[] {
  return [
    flow('a000000000000001', {
      direction: 'ingress', verdict: 'allowed', packets: 40,
      source: { address: '10.0.0.1', kind: 'host', hostId: 'node-1', apps: ['/shop/web'], networks: [] },
      destination: dest('node-2', '/shop/api', 31000, 'http'),
      decidedBy: { tier: 'policy', rule: 'web-to-api', at: 'policy/shop.yaml:12:5', reason: 'rule web-to-api allows it' },
    }),
    flow('a000000000000002', {
      direction: 'ingress', verdict: 'denied', packets: 7,
      source: { address: '203.0.113.9', kind: 'outside', apps: [], networks: [] },
      destination: dest('node-3', '/shop/db', 31432, 'postgres'),
      decidedBy: { tier: 'default', reason: 'no rule allows it: default deny' },
    }),
    flow('a000000000000003', {
      direction: 'ingress', verdict: 'audit', packets: 3,
      source: { address: '10.8.0.5', kind: 'network', apps: [], networks: ['office'] },
      destination: dest('node-2', '/shop/api', 31000, 'http'),
      decidedBy: { tier: 'default', reason: 'no rule allows it: the group shop is in audit' },
    }),
    flow('a000000000000004', {
      direction: 'egress', verdict: 'denied', packets: 2, reportedBy: 'node-1',
      source: { address: '10.0.0.1', kind: 'app', hostId: 'node-1', apps: [HOSTILE_APP], networks: [] },
      destination: { ...dest('node-3', '/shop/db', 31432), address: '10.0.0.3' },
      decidedBy: { tier: 'egress', reason: `${HOSTILE_APP} may not reach /shop/db` },
    }),
    flow('a000000000000005', {
      direction: 'egress', verdict: 'allowed', packets: 1, reportedBy: 'node-1',
      source: { address: '10.0.0.1', kind: 'app', hostId: 'node-1', apps: [QUOTED_APP], networks: [] },
      destination: { ...dest('node-2', '/shop/api', 31000, 'http'), address: '10.0.0.2' },
      decidedBy: { tier: 'policy', rule: `"team's" rule`, reason: 'allowed' },
    }),
  ];
}

/** A flow the tests push live: a new source node and a new edge. */
export function liveFlow(): FixtureFlow {
  return flow('a000000000000006', {
    direction: 'ingress', verdict: 'allowed', packets: 12,
    source: { address: '10.0.0.4', kind: 'host', hostId: 'node-4', apps: ['/monitoring/prometheus'], networks: [] },
    destination: dest('node-2', '/shop/api', 31090, 'metrics'),
    decidedBy: { tier: 'policy', rule: 'scrape', reason: 'rule scrape allows it' },
  });
}

function agent(hostId: string, connected: boolean, inSync: boolean, lastError: string | null) {
  return {
    hostId, connected, peer: connected ? '10.0.0.9:50000' : null, addresses: [], agentVersion: connected ? '0.1.0' : null,
    appliedVersion: connected ? '1111222233334444' : null, desiredVersion: inSync ? '1111222233334444' : '5555666677778888',
    inSync, lastError, lastSeen: connected ? T1 : null,
    egress: connected ? { supported: true, enforcing: true, reason: '', mappedTasks: 2, unmappedTasks: 0 } : null,
    flows: connected ? { recording: true, reason: '', intervalSeconds: 10, maxEntries: 65536 } : null,
  };
}

/** The controller's /status document (docs/status.md), with hostile text where Marathon's goes. */
export function fixtureStatus(): unknown {
  return {
    ready: true,
    policy: { path: '/etc/portcullis/policy', valid: true, loadedAt: T0, lastError: null, reloadErrors: 0, warnings: [] },
    inventory: { source: 'marathon', ready: true, hosts: 4, apps: 6, tasks: 7, stale: false },
    compile: {
      hosts: 4, revision: 3, compiles: 5, lastDurationMs: 12,
      reports: [
        { kind: 'label-rejected', message: `guardrails.deny forbids 'db' for ${HOSTILE_APP} <b>bold</b>`, appId: HOSTILE_APP },
        { kind: 'port-conflict', message: 'two tasks claim tcp:31000 on node-2', hostId: 'node-2' },
      ],
    },
    agentCounts: { known: 3, connected: 2, inSync: 1 },
    egress: { enforcing: 2, hostLevel: 0 },
    groupModes: [{ group: 'shop', mode: 'audit' }, { group: 'monitoring', mode: 'enforce' }],
    flows: { records: 5, windows: 2, oldest: T0, newest: T1, lost: 5 },
    agents: [agent('node-1', true, true, null), agent('node-2', true, false, `iptables-restore: line 3 "<i>x</i>"`), agent(HOSTILE_HOST, false, false, null)],
    tls: null,
  };
}

/** The fixture's StatusSource: what the StatusServer serves itself. */
export const fixtureSource: StatusSource = {
  ui: true,
  readiness: () => ({ ready: true }),
  status: fixtureStatus,
  metrics: () => 'portcullis_ready 1\n',
};

const globMatch = (pattern: string, value: string): boolean =>
  new RegExp(`^${pattern.split('*').map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`).test(value);

/** The /flows filters the fixture understands; a bad one is a 400 as the controller's. */
function filtered(flows: readonly FixtureFlow[], q: URLSearchParams): FixtureFlow[] | string {
  const verdicts = q.get('verdict')?.split(',');
  if (verdicts?.some((v) => !['allowed', 'denied', 'audit'].includes(v))) return 'verdict must be allowed, denied or audit';
  const since = q.get('since');
  if (since !== null && !/^\d+[smhd]$/.test(since) && Number.isNaN(Date.parse(since))) return 'since must be a duration (10m, 1h, 2d) or an ISO 8601 time';
  const from = q.get('from');
  const to = q.get('to');
  const port = q.get('port');
  const direction = q.get('direction');
  if (direction !== null && direction !== 'ingress' && direction !== 'egress') return 'direction must be ingress or egress';
  return flows.filter(
    (f) =>
      (!verdicts || verdicts.includes(f.verdict)) &&
      (direction === null || f.direction === direction) &&
      (from === null || [...f.source.apps, ...f.source.networks, f.source.address, f.source.hostId ?? ''].some((v) => v !== '' && globMatch(from, v))) &&
      (to === null || [...f.destination.apps.map((a) => a.appId), f.destination.hostId].some((v) => globMatch(to, v))) &&
      (port === null || port === f.destination.portName || port === String(f.destination.port)),
  );
}

export class DashboardFixture {
  flows: FixtureFlow[] = fixtureFlows();
  /** `replicas` of the /flows answer (a controller merging its peers'), when set. */
  replicas: unknown[] | undefined;
  /** The query strings of the /flows and /flows/events requests received, in order. */
  readonly flowQueries: string[] = [];
  readonly eventQueries: string[] = [];
  private readonly streams = new Set<{ res: ServerResponse; query: URLSearchParams }>();
  private readonly status = new StatusServer(fixtureSource);
  private front: Server | undefined;

  /** Listens on 127.0.0.1 (on `port`, again after a close); returns the base URL (`http://127.0.0.1:<port>`). */
  async start(port = 0): Promise<string> {
    const inner = await this.status.listen('127.0.0.1', 0);
    const front = createServer((req, res) => this.handle(req, res, inner.port));
    this.front = front;
    await new Promise<void>((resolve, reject) => {
      front.once('error', reject);
      front.listen(port, '127.0.0.1', () => resolve());
    });
    return `http://127.0.0.1:${(front.address() as AddressInfo).port}`;
  }

  /** Adds `flows` to the set and sends them to every open event stream whose filters match. */
  emit(flows: readonly FixtureFlow[]): number {
    this.flows = [...this.flows, ...flows];
    let sent = 0;
    for (const { res, query } of this.streams) {
      const matching = filtered(flows, query);
      if (typeof matching === 'string' || matching.length === 0) continue;
      res.write(`event: flows\ndata: ${JSON.stringify({ flows: matching })}\n\n`);
      sent++;
    }
    return sent;
  }

  openStreams(): number {
    return this.streams.size;
  }

  /** Stops answering: every connection is cut (the page's "connection lost"). */
  async close(): Promise<void> {
    for (const { res } of this.streams) res.destroy();
    this.streams.clear();
    const front = this.front;
    this.front = undefined;
    if (front) {
      front.closeAllConnections();
      await new Promise<void>((resolve) => front.close(() => resolve()));
    }
    await this.status.close();
  }

  private handle(req: IncomingMessage, res: ServerResponse, innerPort: number): void {
    const url = new URL(req.url ?? '/', 'http://fixture');
    if (url.pathname === '/flows') {
      this.flowQueries.push(url.search);
      const flows = filtered(this.flows, url.searchParams);
      const body = typeof flows === 'string' ? { error: flows } : { flows: [...flows].sort((a, b) => b.packets - a.packets), lost: [{ reportedBy: 'node-3', direction: 'ingress', verdict: 'denied', family: 4, packets: 5 }], now: T1, ...(this.replicas ? { replicas: this.replicas } : {}) };
      res.writeHead(typeof flows === 'string' ? 400 : 200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
      return;
    }
    if (url.pathname === '/flows/events') {
      this.eventQueries.push(url.search);
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store' });
      res.write(': portcullis flow events\n\n');
      const stream = { res, query: url.searchParams };
      this.streams.add(stream);
      res.on('close', () => this.streams.delete(stream));
      return;
    }
    // Everything else is the real status server's.
    const inner = request({ host: '127.0.0.1', port: innerPort, path: req.url, method: req.method, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    inner.on('error', () => res.destroy());
    req.pipe(inner);
  }
}
