/**
 * MarathonSource against the Marathon API double (test/support/marathon-double.ts), which speaks
 * the documented REST + SSE payloads (docs/docs/rest-api.md, docs/docs/event-bus.md).
 * Every wait is on a condition with a deadline.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { ClusterState } from '../src/inventory/cluster-state.js';
import { appPath, MarathonSource, type MarathonSourceOptions } from '../src/marathon/marathon-source.js';
import { MarathonDouble, waitFor, type DoubleOptions } from './support/marathon-double.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function double(opts: DoubleOptions = {}): Promise<MarathonDouble> {
  const d = await MarathonDouble.start(opts);
  cleanups.push(() => d.close());
  return d;
}

interface Harness {
  source: MarathonSource;
  changes: { cluster: ClusterState; ids: string[] }[];
}

async function source(url: string | string[], extra: Partial<MarathonSourceOptions> = {}): Promise<Harness> {
  const s = new MarathonSource({ url, backoff: { initialMs: 20, maxMs: 200 }, requestTimeoutMs: 5000, ...extra });
  const changes: Harness['changes'] = [];
  s.onChange((cluster, ids) => changes.push({ cluster, ids }));
  cleanups.push(() => s.stop());
  await s.start();
  return { source: s, changes };
}

/** Stream attached and the re-list it triggered done: nothing more in flight. */
async function settle(s: MarathonSource): Promise<void> {
  await waitFor(() => s.status().streamConnected, 'stream attached');
  await s.relist();
}

const taskIds = (s: MarathonSource): string[] => s.cluster().tasks.map((t) => t.id);
const listRequests = (d: MarathonDouble): number => d.requests.filter((r) => r.url.startsWith('/v2/apps?')).length;

async function seeded(opts: DoubleOptions = {}): Promise<{ d: MarathonDouble; web: string; api: string }> {
  const d = await double(opts);
  d.addApp({ id: '/shop/web', network: 'host', labels: { tier: 'front' }, ports: [{ name: 'http', protocol: 'tcp', labels: { 'portcullis.allow-from': 'lb' } }] });
  d.addApp({ id: '/shop/api', network: 'bridge', ports: [{ name: 'grpc', containerPort: 9000 }, { name: 'dns', protocol: 'udp,tcp', containerPort: 53 }] });
  const web = d.startTask('/shop/web', 'agent-1', [31000]);
  const api = d.startTask('/shop/api', 'agent-2', [31001, 31002]);
  return { d, web, api };
}

describe.each(['v1.4', 'v1.5'] as const)('MarathonSource (%s payloads)', (format) => {
  it('initial list builds the cluster; hosts have names and no addresses', async () => {
    const { d, web, api } = await seeded({ format });
    const { source: s } = await source(d.url);
    const c = s.cluster();
    expect(c.apps).toEqual([
      {
        id: '/shop/api',
        labels: {},
        networkMode: 'bridge',
        ports: [
          { name: 'grpc', protocols: ['tcp'], containerPort: 9000, labels: {} },
          { name: 'dns', protocols: ['tcp', 'udp'], containerPort: 53, labels: {} },
        ],
      },
      { id: '/shop/web', labels: { tier: 'front' }, networkMode: 'host', ports: [{ name: 'http', protocols: ['tcp'], labels: { 'portcullis.allow-from': 'lb' } }] },
    ]);
    expect(c.tasks).toEqual(
      [
        { id: api, appId: '/shop/api', hostId: 'agent-2', hostPorts: [31001, 31002] },
        { id: web, appId: '/shop/web', hostId: 'agent-1', hostPorts: [31000] },
      ].sort((a, b) => (a.id < b.id ? -1 : 1)),
    );
    expect(c.hosts).toEqual([
      { id: 'agent-1', addresses: [] },
      { id: 'agent-2', addresses: [] },
    ]);
    await waitFor(() => !s.status().stale, 'stream attached, not stale');
    expect(s.status().lastSync).toBeTypeOf('number');
  });

  it('start, kill and move are reflected through events', async () => {
    const { d, web } = await seeded({ format });
    const { source: s, changes } = await source(d.url);
    await settle(s);
    const lists = listRequests(d);

    const t2 = d.startTask('/shop/web', 'agent-3', [31010]);
    await waitFor(() => taskIds(s).includes(t2), 'started task appears');
    expect(changes.at(-1)!.ids).toEqual(['/shop/web']);
    expect(s.cluster().hosts.map((h) => h.id)).toContain('agent-3');

    d.killTask(t2);
    await waitFor(() => !taskIds(s).includes(t2), 'killed task disappears');
    expect(s.cluster().hosts.map((h) => h.id)).not.toContain('agent-3');

    const moved = d.moveTask(web, 'agent-9', [31500]);
    await waitFor(() => taskIds(s).includes(moved) && !taskIds(s).includes(web), 'task moved');
    expect(s.cluster().tasks.find((t) => t.id === moved)).toEqual({ id: moved, appId: '/shop/web', hostId: 'agent-9', hostPorts: [31500] });
    // Status updates are applied incrementally, not by re-listing.
    expect(listRequests(d)).toBe(lists);
  });

  it('data-only SSE (no event: lines) works too', async () => {
    const { d } = await seeded({ format, sseEventNames: false });
    const { source: s } = await source(d.url);
    await waitFor(() => s.status().streamConnected, 'stream attached');
    const t = d.startTask('/shop/api', 'agent-5', [32000, 32001]);
    await waitFor(() => taskIds(s).includes(t), 'task from a data-only event');
  });
});

describe('MarathonSource: apps come and go', () => {
  it('api_post_event re-reads the app; app_terminated_event removes it (404)', async () => {
    const { d } = await seeded();
    const { source: s, changes } = await source(d.url);
    await waitFor(() => s.status().streamConnected, 'stream attached');
    d.addApp({ id: '/new/app', network: 'host', ports: [{ name: 'p' }] });
    await waitFor(() => s.cluster().apps.some((a) => a.id === '/new/app'), 'new app read');
    expect(d.requests.some((r) => r.url === '/v2/apps/new/app?embed=app.tasks')).toBe(true);
    const t = d.startTask('/new/app', 'agent-7', [31100]);
    await waitFor(() => taskIds(s).includes(t), 'task of the new app');
    d.removeApp('/new/app');
    await waitFor(() => !s.cluster().apps.some((a) => a.id === '/new/app'), 'app removed');
    expect(taskIds(s)).not.toContain(t);
    expect(changes.some((c) => c.ids.includes('/new/app'))).toBe(true);
  });

  it('a running task whose port count differs from its app makes the source re-read the app', async () => {
    const { d } = await seeded();
    const { source: s } = await source(d.url);
    await waitFor(() => s.status().streamConnected, 'stream attached');
    d.sendRaw(
      `event: status_update_event\ndata: ${JSON.stringify({ eventType: 'status_update_event', appId: '/shop/web', taskId: 'x.1', taskStatus: 'TASK_RUNNING', host: 'h', ports: [1, 2] })}\n\n`,
    );
    await waitFor(() => d.requests.some((r) => r.url === '/v2/apps/shop/web?embed=app.tasks'), 'app re-read');
    expect(taskIds(s)).not.toContain('x.1');
  });

  it('a deployment that changes the ports keeps the old tasks, their ports named as when they started; one first seen misaligned is skipped', async () => {
    const { d, web } = await seeded();
    const { source: s } = await source(d.url);
    await settle(s);
    const webTask = () => s.cluster().tasks.find((t) => t.id === web);
    // A port added in front: the old task serves http only, on its own host port.
    d.addApp({ id: '/shop/web', network: 'host', ports: [{ name: 'metrics' }, { name: 'http' }] });
    await waitFor(() => s.cluster().apps.find((a) => a.id === '/shop/web')?.ports.length === 2, 'new definition read');
    expect(webTask()?.hostPorts).toEqual([0, 31000]);
    const fresh = d.startTask('/shop/web', 'agent-3', [31010, 31011]);
    await waitFor(() => taskIds(s).includes(fresh), 'a task of the new definition');
    await s.relist(); // kept across re-lists while its ports are the same
    expect(webTask()?.hostPorts).toEqual([0, 31000]);
    expect(s.status().problems.filter((p) => p.includes(web))).toEqual([]);
    // A second source that never saw the old definition cannot name the old task's port: skipped, and said.
    const { source: late } = await source(d.url);
    expect(taskIds(late)).toContain(fresh);
    expect(taskIds(late)).not.toContain(web);
    expect(late.status().problems.filter((p) => p.includes(web))).toEqual([expect.stringMatching(/has 1 host port\(s\) but the app defines 2; skipped/)]);
    // A definition that keeps none of the old task's port names: it is no longer kept.
    d.addApp({ id: '/shop/web', network: 'host', ports: [{ name: 'admin' }, { name: 'metrics' }, { name: 'grpc' }] });
    await waitFor(() => s.cluster().apps.find((a) => a.id === '/shop/web')?.ports.length === 3, 'third definition read');
    expect(webTask()).toBeUndefined();
  });

  it('malformed events are skipped and the stream keeps working', async () => {
    const { d } = await seeded();
    const { source: s } = await source(d.url);
    await waitFor(() => s.status().streamConnected, 'stream attached');
    d.sendRaw('event: status_update_event\ndata: {"appId": "/shop/web", "taskId": 5\n\n');
    d.sendRaw('event: status_update_event\ndata: {trunc\n\n');
    d.sendRaw('event: something_new\ndata: whatever\n\n');
    const t = d.startTask('/shop/web', 'agent-4', [31004]);
    await waitFor(() => taskIds(s).includes(t), 'later event applied');
    expect(d.streamCount).toBe(1);
  });
});

describe('MarathonSource: connection trouble', () => {
  it('a dropped stream reconnects and re-lists, catching what was missed', async () => {
    const { d } = await seeded();
    const { source: s } = await source(d.url);
    await waitFor(() => s.status().streamConnected && d.streamCount === 1, 'stream attached');
    const lists = listRequests(d);
    d.dropStreams();
    // Started while no stream is open: its event reaches nobody; only a re-list can find it.
    const missed = d.startTask('/shop/web', 'agent-8', [31008]);
    await waitFor(() => taskIds(s).includes(missed), 're-list after reconnect finds the missed task');
    expect(listRequests(d)).toBeGreaterThan(lists);
    // The periodic re-list may find it first on a loaded machine; the stream must come back anyway.
    await waitFor(() => d.requests.filter((r) => r.url.startsWith('/v2/events')).length >= 2, 'the stream reconnected');
    await waitFor(() => !s.status().stale, 'fresh again');
  });

  it("another client's event_stream_attached (Marathon sends every client's attach to every stream) re-lists nothing", async () => {
    const { d } = await seeded();
    const { source: s } = await source(d.url);
    await settle(s);
    const fresh = s.freshAsOf();
    const lists = listRequests(d);
    // docs/docs/event-bus.md: the attach of a client at another address, on our open stream.
    d.sendRaw('event: event_stream_attached\ndata: {"remoteAddress":"10.9.9.9","eventType":"event_stream_attached","timestamp":"2017-02-18T19:12:00.102Z"}\n\n');
    const later = d.startTask('/shop/web', 'agent-5', [31005]); // sent after it on the same stream
    await waitFor(() => taskIds(s).includes(later), 'the status update behind the attach applied');
    await s.relist(); // queued behind a list the attach would have started
    expect(listRequests(d)).toBe(lists + 1);
    expect(s.freshAsOf()).toBeGreaterThanOrEqual(fresh);
  });

  const ATTACHED = 'event: event_stream_attached\ndata: {"remoteAddress":"127.0.0.1","eventType":"event_stream_attached","timestamp":"2017-02-18T19:12:00.102Z"}\n\n';

  /** A Marathon whose n-th event stream (from 1) sends `stream(n)` and ends; lists are empty. The reconnect delays the source logs. */
  async function endingStreams(stream: (n: number) => string): Promise<number[]> {
    let streams = 0;
    const server = http.createServer((req, res) => {
      if ((req.url ?? '').startsWith('/v2/events')) {
        res.writeHead(200, { 'Content-Type': 'text/event-stream' });
        res.end(stream(++streams));
        return;
      }
      const body = JSON.stringify({ apps: [] });
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) }).end(body);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    });
    const retries: number[] = [];
    const write = (line: string): void => {
      const { retryInMs } = JSON.parse(line) as { retryInMs?: number };
      if (retryInMs !== undefined) retries.push(retryInMs);
    };
    await source(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, { logger: pino({ level: 'warn' }, { write }), backoff: { initialMs: 10, maxMs: 5000, random: () => 0.99 } });
    return retries;
  }

  it('a stream that ends right after attaching reconnects with a growing backoff, not in a loop of re-lists', async () => {
    // A Marathon or proxy that accepts, sends the attach and closes (marathon-lb#35 shows such flapping).
    const retries = await endingStreams(() => ATTACHED);
    await waitFor(() => retries.length >= 5, 'five reconnects');
    expect(retries.slice(0, 5)).toEqual([9, 19, 39, 79, 158]);
  });

  it('a stream that carried an event after its attach restarts the backoff when it ends', async () => {
    // A working stream Marathon ends (a leader change, a proxy's idle timeout): the next connect comes at the first delay again.
    const event = 'event: deployment_success\ndata: {"eventType":"deployment_success","timestamp":"2017-02-18T19:12:01.000Z","id":"d1","plan":{"id":"d1","original":{"apps":[]},"target":{"apps":[]},"steps":[]}}\n\n';
    // The first three streams only attach; from the fourth, each carries an event too.
    const retries = await endingStreams((n) => (n <= 3 ? ATTACHED : ATTACHED + event));
    await waitFor(() => retries.length >= 6, 'six reconnects');
    expect(retries.slice(0, 6)).toEqual([9, 19, 39, 9, 9, 9]);
  });

  it('a standby redirect (302 Location) is followed to the leader, for lists and the stream', async () => {
    const { d: leader, web } = await seeded();
    const standby = await double();
    standby.setStandbyRedirect(leader.url);
    const { source: s } = await source(standby.url);
    expect(taskIds(s)).toContain(web);
    await waitFor(() => leader.streamCount === 1, 'stream held on the leader');
    const t = leader.startTask('/shop/web', 'agent-6', [31006]);
    await waitFor(() => taskIds(s).includes(t), 'event from the leader applied');
    expect(standby.requests.some((r) => r.url.startsWith('/v2/events'))).toBe(true);
  });

  it('an unreachable first URL moves on to the next', async () => {
    const { d, web } = await seeded();
    const dead = http.createServer();
    await new Promise<void>((r) => dead.listen(0, '127.0.0.1', r));
    const deadUrl = `http://127.0.0.1:${(dead.address() as AddressInfo).port}`;
    await new Promise<void>((r) => dead.close(() => r()));
    const { source: s } = await source([deadUrl, d.url]);
    expect(taskIds(s)).toContain(web);
  });

  it('unreachable at start: empty, stale, and fills in once Marathon answers', async () => {
    const { d, web } = await seeded();
    d.setFailing('http500');
    const { source: s } = await source(d.url);
    expect(s.cluster().apps).toEqual([]);
    expect(s.status()).toMatchObject({ stale: true, reason: expect.stringMatching(/^GET \/v2\/apps\?embed=apps\.tasks: HTTP 500 from http:\/\/127\.0\.0\.1:\d+/) });
    d.setFailing('none');
    await waitFor(() => taskIds(s).includes(web), 'retry with backoff succeeds');
    await waitFor(() => !s.status().stale, 'not stale');
  });

  it.each([
    ['http500', /HTTP 500/],
    ['emptyApps', /empty app list/],
    ['truncated', /truncated/],
  ] as const)('%s: the cluster is kept, status is stale, and it recovers', async (mode, reason) => {
    const { d } = await seeded();
    const { source: s, changes } = await source(d.url);
    await settle(s);
    const before = s.cluster();
    const changesBefore = changes.length;

    d.setFailing(mode);
    await s.relist();
    expect(s.cluster()).toEqual(before);
    const st = s.status();
    expect(st.stale).toBe(true);
    expect(st.reason).toMatch(reason);
    expect(st.since).toBeTypeOf('number');
    // Through the stream path too: reconnect → attached → re-list fails the same way.
    d.dropStreams();
    await waitFor(() => d.streamCount === 1, 'reconnected');
    await s.relist();
    expect(s.cluster()).toEqual(before);
    expect(s.status().stale).toBe(true);
    expect(changes.length).toBe(changesBefore);

    d.setFailing('none');
    const t = d.startTask('/shop/web', 'agent-2', [31020]);
    await s.relist();
    await waitFor(() => !s.status().stale && taskIds(s).includes(t), 'recovered');
  });

  it('an empty app list replaces known apps only after it persists (emptyConfirmMs)', async () => {
    const { d } = await seeded();
    let clock = 1_000_000;
    const { source: s } = await source(d.url, { emptyConfirmMs: 60_000, now: () => clock });
    await settle(s);
    d.setFailing('emptyApps');
    await s.relist();
    clock += 30_000;
    await s.relist();
    expect(s.cluster().apps).toHaveLength(2);
    expect(s.status().stale).toBe(true);
    clock += 31_000;
    await s.relist();
    expect(s.cluster()).toEqual({ hosts: [], apps: [], tasks: [] });
    expect(s.status().stale).toBe(false);
  });

  it('re-lists periodically', async () => {
    const { d } = await seeded();
    const { source: s } = await source(d.url, { relistIntervalMs: 50 });
    const lists = listRequests(d);
    await waitFor(() => listRequests(d) >= lists + 3, 'three periodic re-lists', 3000);
    expect(s.status().lastSync).toBeTypeOf('number');
  });
});

describe('MarathonSource: auth', () => {
  it('sends basic auth on every request', async () => {
    const { d, web } = await seeded({ basicAuth: { user: 'ops', password: 'p:ss' } });
    const { source: s } = await source(d.url, { auth: { basic: { user: 'ops', password: 'p:ss' } } });
    expect(taskIds(s)).toContain(web);
    await waitFor(() => d.streamCount === 1, 'stream attached with auth');
    const want = `Basic ${Buffer.from('ops:p:ss').toString('base64')}`;
    expect(d.requests.length).toBeGreaterThanOrEqual(2);
    expect(d.requests.every((r) => r.headers.authorization === want)).toBe(true);
  });

  it('a wrong password is an HTTP 401: stale, nothing invented', async () => {
    const { d } = await seeded({ basicAuth: { user: 'ops', password: 'right' } });
    const { source: s } = await source(d.url, { auth: { basic: { user: 'ops', password: 'wrong' } } });
    expect(s.cluster().apps).toEqual([]);
    expect(s.status()).toMatchObject({ stale: true, reason: expect.stringMatching(/^GET \/v2\/apps\?embed=apps\.tasks: HTTP 401 from http:\/\/127\.0\.0\.1:\d+/) });
  });

  it('sends a DC/OS token as `Authorization: token=...`', async () => {
    const { d } = await seeded();
    await source(d.url, { auth: { token: 'abc.def' } });
    expect(d.requests[0]!.headers.authorization).toBe('token=abc.def');
  });
});

describe('appPath', () => {
  it('encodes each segment and refuses ids that could address something else', () => {
    expect(appPath('/shop/web')).toBe('/v2/apps/shop/web');
    expect(appPath('/a b/c?d#e%')).toBe('/v2/apps/a%20b/c%3Fd%23e%25');
    expect(appPath('/a/../b')).toBeNull();
    expect(appPath('/a//b')).toBeNull();
    expect(appPath('/a/.')).toBeNull();
    expect(appPath('/x/tasks')).toBeNull();
    expect(appPath('/bad\ud800')).toBeNull();
  });
});

describe('MarathonSource: events out of order (event-bus.md @ 1.8: "the ordering of events is not guaranteed")', () => {
  it('a running update that arrives after the task ended does not bring it back', async () => {
    const { d, web } = await seeded();
    const { source: s } = await source(d.url);
    await settle(s);
    d.killTask(web); // TASK_KILLED, then the task's older TASK_RUNNING, late:
    const stale = { slaveId: 'agent-1-S0', taskId: web, taskStatus: 'TASK_RUNNING', message: '', appId: '/shop/web', host: 'agent-1', ports: [31000], version: '2015-09-25T15:13:48.343Z', eventType: 'status_update_event', timestamp: '2015-09-30T12:44:45.681Z' };
    d.sendRaw(`event: status_update_event\ndata: ${JSON.stringify(stale)}\n\n`);
    const later = d.startTask('/shop/web', 'agent-5', [31005]); // sent after both on the same stream
    await waitFor(() => taskIds(s).includes(later), 'the status update behind them applied');
    expect(taskIds(s)).not.toContain(web);
  });
});

describe('MarathonSource: events that overtake a list', () => {
  it('a list answer older than a kill event does not bring the killed task back', async () => {
    const { d, web } = await seeded();
    const { source: s } = await source(d.url);
    await settle(s);
    const hold = d.holdLists();
    const relisted = s.relist();
    await waitFor(() => hold.held() === 1, 'list computed and held');
    d.killTask(web); // the held answer still lists it
    await waitFor(() => !taskIds(s).includes(web), 'kill applied from the event');
    hold.release();
    await relisted;
    expect(s.status().stale).toBe(false);
    expect(taskIds(s)).not.toContain(web);
  });
});
