/**
 * Issue 8 hardening of the Marathon input path, against the Marathon double
 * (test/support/marathon-double.ts) and Marathon's documented payloads
 * (test/fixtures/marathon-payloads):
 *  - item 1: JSON deep or large enough to kill a recursive walker is refused before it is walked,
 *    in list answers and in event data; formatting untrusted values never throws;
 *  - item 4: an app without `tasks` in an otherwise good embed=apps.tasks list is skipped alone;
 *  - item 5: the stale reason names the real cause; a normal start logs no stale transition;
 *  - item 7: an app id Marathon could never produce is logged once, with how it was handled.
 * Every wait is on a condition with a deadline.
 */
import { readdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { HostAddresses } from '../src/controller/host-addresses.js';
import { MarathonFeed, type MarathonLike } from '../src/controller/marathon-feed.js';
import { depthViolation, parseBoundedJson } from '../src/json/bounded-json.js';
import { previewJson } from '../src/json/json-preview.js';
import { isMarathonAppId } from '../src/marathon/app-id.js';
import { MarathonSource, type MarathonSourceOptions } from '../src/marathon/marathon-source.js';
import { parseApps } from '../src/marathon/parse-apps.js';
import { parseEvent } from '../src/marathon/parse-event.js';
import { logCapture } from './support/log-capture.js';
import { MarathonDouble, waitFor } from './support/marathon-double.js';

const FIXTURES = path.join(import.meta.dirname, 'fixtures', 'marathon-payloads');
const DEEP = 100_000;
const deepText = (n: number): string => `${'['.repeat(n)}${']'.repeat(n)}`;

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function seeded(): Promise<{ d: MarathonDouble; web: string; api: string }> {
  const d = await MarathonDouble.start();
  cleanups.push(() => d.close());
  d.addApp({ id: '/shop/web', network: 'host', ports: [{ name: 'http' }] });
  d.addApp({ id: '/shop/api', network: 'bridge', ports: [{ name: 'grpc', containerPort: 9000 }] });
  return { d, web: d.startTask('/shop/web', 'agent-1', [31000]), api: d.startTask('/shop/api', 'agent-2', [31001]) };
}

async function started(url: string, extra: Partial<MarathonSourceOptions> = {}): Promise<MarathonSource> {
  const s = new MarathonSource({ url, backoff: { initialMs: 20, maxMs: 200 }, requestTimeoutMs: 5000, ...extra });
  cleanups.push(() => s.stop());
  await s.start();
  await waitFor(() => s.status().streamConnected, 'stream attached');
  await s.relist();
  return s;
}

const msgs = (lines: Record<string, unknown>[], re: RegExp) => lines.filter((l) => re.test(String(l.msg)));

describe('item 1: bounded JSON', () => {
  it('refuses text nested deeper than the limit before parsing it, with a clear error', () => {
    expect(parseBoundedJson(`{"apps": ${deepText(DEEP)}}`)).toEqual({ ok: false, error: 'JSON nested deeper than the limit of 64 levels (at character 72)' });
    expect(parseBoundedJson(deepText(64))).toMatchObject({ ok: true });
    expect(parseBoundedJson(deepText(65))).toMatchObject({ ok: false });
    expect(parseBoundedJson(deepText(3), { maxDepth: 2 })).toMatchObject({ ok: false, error: expect.stringContaining('limit of 2 levels') });
    // Brackets inside strings, escaped quotes included, do not count.
    expect(depthViolation(JSON.stringify({ a: `\\"${'['.repeat(500)}` }), 2)).toBeNull();
    expect(parseBoundedJson(JSON.stringify({ id: '[[[[[[', q: 'x\\"[[[[' }), { maxDepth: 1 })).toMatchObject({ ok: true });
  });

  it("Marathon's documented payloads are all within the default limits", () => {
    const files = readdirSync(FIXTURES).filter((f) => f.endsWith('.json'));
    expect(files.length).toBeGreaterThan(10);
    for (const f of files) expect(parseBoundedJson(readFileSync(path.join(FIXTURES, f), 'utf8')), f).toMatchObject({ ok: true });
  });

  it('refuses text larger than the limit (in UTF-8 bytes) and reports invalid JSON', () => {
    expect(parseBoundedJson(`"${'x'.repeat(100)}"`, { maxBytes: 50 })).toEqual({ ok: false, error: 'JSON larger than the limit of 50 bytes' });
    expect(parseBoundedJson(`"${'é'.repeat(30)}"`, { maxBytes: 50 })).toMatchObject({ ok: false }); // 62 bytes, 32 characters
    expect(parseBoundedJson('{"apps": [')).toMatchObject({ ok: false, error: expect.stringMatching(/^invalid JSON \(/) });
  });

  it('previews of hostile values never throw and stay short', () => {
    const deep = JSON.parse(deepText(DEEP)) as unknown;
    const cyclic: Record<string, unknown> = { a: 1 };
    cyclic.self = cyclic;
    for (const v of [deep, { apps: deep }, cyclic, 'x'.repeat(10_000_000), new Proxy({}, { ownKeys: () => { throw new Error('trap'); } }), undefined, 10n, Symbol('s')]) {
      const p = previewJson(v);
      expect(p.length).toBeLessThanOrEqual(81);
    }
    expect(previewJson(deep, 10)).toBe('[[[[[[[[[[…');
    expect(previewJson({ id: '/a;b\n$(x)' })).toBe('{"id":"/a;b\\n$(x)"}');
  });

  it('the parsers survive values 100,000 levels deep (a clear problem, no RangeError)', () => {
    const deep = JSON.parse(deepText(DEEP)) as unknown;
    const r = parseApps({ apps: [deep, { id: '/a', labels: deep }, { id: '/b', portDefinitions: deep }] });
    expect(r.apps).toEqual([]);
    expect(r.problems).toHaveLength(3);
    expect(r.problems[0]).toMatch(/^app: expected an object, got \[\[\[\[/);
    expect(parseEvent('status_update_event', `{"appId": ${deepText(DEEP)}}`)).toEqual({
      kind: 'malformed',
      error: 'status_update_event: data is not usable JSON: JSON nested deeper than the limit of 64 levels (at character 73)',
    });
  });

  it('a list answer 100,000 levels deep leaves the controller alive, stale, with the last good cluster', async () => {
    const { d, web } = await seeded();
    const s = await started(d.url);
    const before = s.cluster();
    expect(before.tasks.map((t) => t.id)).toContain(web);
    d.setListRewrite(() => `{"apps": ${deepText(DEEP)}}`);
    await s.relist();
    expect(s.cluster()).toEqual(before);
    expect(s.status()).toMatchObject({ stale: true, reason: expect.stringMatching(/^GET \/v2\/apps\?embed=apps\.tasks: unusable answer from http:\/\/127\.0\.0\.1:\d+: JSON nested deeper than the limit of 64 levels/) });
    d.setListRewrite(null);
    await s.relist();
    expect(s.status().stale).toBe(false);
  });

  it('a list answer larger than maxBodyBytes is refused (while reading) and the last good cluster kept', async () => {
    const { d } = await seeded();
    const s = await started(d.url, { maxBodyBytes: 64 * 1024 });
    const before = s.cluster();
    d.setListRewrite((body) => ({ ...body, padding: 'x'.repeat(200 * 1024) }));
    await s.relist();
    expect(s.cluster()).toEqual(before);
    expect(s.status().reason).toMatch(/^GET \/v2\/apps\?embed=apps\.tasks: answer of \d+ bytes announced, larger than the limit of 65536 bytes/);
  });

  it('deep event data is a malformed event, logged and skipped; the stream stays up', async () => {
    const { d } = await seeded();
    const { logger, lines } = logCapture();
    const s = await started(d.url, { logger });
    const before = s.cluster();
    d.sendRaw(`event: status_update_event\ndata: ${deepText(DEEP)}\n\nevent: api_post_event\ndata: {"appDefinition": ${deepText(DEEP)}}\n\n`);
    await waitFor(() => msgs(lines, /malformed Marathon event skipped/).length >= 2, 'both events reported');
    expect(msgs(lines, /malformed Marathon event skipped/).map((l) => l.error)).toEqual([
      expect.stringContaining('nested deeper than the limit of 64 levels'),
      expect.stringContaining('nested deeper than the limit of 64 levels'),
    ]);
    expect(s.cluster()).toEqual(before);
    expect(s.status()).toMatchObject({ stale: false, streamConnected: true });
  });

  it('an SSE event larger than maxBodyBytes drops the stream (stops reading) and reconnects', async () => {
    const { d } = await seeded();
    const { logger, lines } = logCapture();
    const s = await started(d.url, { logger, maxBodyBytes: 64 * 1024 });
    const before = s.cluster();
    const streamsBefore = d.requests.filter((r) => r.url.startsWith('/v2/events')).length;
    // One event whose data never ends: 40 data lines of 4 KiB, no blank line.
    d.sendRaw(`event: status_update_event\n${`data: ${'x'.repeat(4096)}\n`.repeat(40)}`);
    await waitFor(() => msgs(lines, /event stream lost/).length >= 1, 'stream dropped');
    expect(msgs(lines, /event stream lost/)[0]).toMatchObject({ reason: 'an event larger than the limit of 65536 bytes' });
    await waitFor(() => d.requests.filter((r) => r.url.startsWith('/v2/events')).length > streamsBefore && s.status().streamConnected, 'reconnected');
    expect(s.cluster()).toEqual(before);
  });
});

describe('item 4: an app without tasks in an embed=apps.tasks list', () => {
  const docList = JSON.parse(readFileSync(path.join(FIXTURES, 'apps-list-docs-v1.4.13.json'), 'utf8')) as { apps: Record<string, unknown>[] };
  const docApp = docList.apps[0]!; // "/myapp", Marathon's docs example: no "tasks"

  it("Marathon's app_list.json app beside good apps is skipped alone; an app losing its tasks keeps its last good state", async () => {
    const { d, web } = await seeded();
    const s = await started(d.url);
    const webApp = s.cluster().apps.find((a) => a.id === '/shop/web');
    const api2 = d.startTask('/shop/api', 'agent-3', [31005]);
    d.setListRewrite((body) => ({
      apps: [...body.apps.map((a) => (a.id === '/shop/web' ? { ...a, tasks: undefined } : a)), docApp],
    }));
    await s.relist();
    const c = s.cluster();
    expect(s.status()).toMatchObject({ stale: false });
    expect(c.apps.map((a) => a.id)).toEqual(['/shop/api', '/shop/web']);
    expect(c.apps.find((a) => a.id === '/shop/web')).toEqual(webApp);
    expect(c.tasks.map((t) => t.id)).toEqual(expect.arrayContaining([web, api2]));
    expect(s.status().problems).toEqual(
      expect.arrayContaining([
        'app "/myapp": no "tasks" list although embed=apps.tasks was asked; app skipped (its last good definition and tasks, if any, are kept)',
        'app "/shop/web": no "tasks" list although embed=apps.tasks was asked; app skipped (its last good definition and tasks, if any, are kept)',
      ]),
    );
  });

  it('app_list.json itself (no app has tasks: the embed was not honoured) is rejected whole', async () => {
    const { d } = await seeded();
    const s = await started(d.url);
    const before = s.cluster();
    d.setListRewrite(() => docList);
    await s.relist();
    expect(s.cluster()).toEqual(before);
    expect(s.status()).toMatchObject({ stale: true, reason: expect.stringMatching(/no app in the answer has embedded tasks \(embed=apps\.tasks not honoured by http:\/\/127\.0\.0\.1:\d+\)/) });
  });
});

describe('found by test/fuzz-marathon.test.ts', () => {
  it('a /v2/apps answer shaped as one app ({"app": ...}) is not a list: rejected, no app removed', async () => {
    const { d } = await seeded();
    const s = await started(d.url);
    const before = s.cluster();
    d.setListRewrite((body) => ({ app: body.apps.find((a) => a.id === '/shop/web') }));
    await s.relist();
    expect(s.cluster()).toEqual(before);
    expect(s.status().reason).toMatch(/^GET \/v2\/apps\?embed=apps\.tasks: expected \{"apps": \[\.\.\.\]\}, got \{"app":/);
  });

  it('list entries without a readable id (1, null, {"id": 5}) may be any app: no known app is removed for missing', async () => {
    const { d, api } = await seeded();
    const s = await started(d.url);
    const before = s.cluster();
    // Only /shop/api is listed, beside entries that could be /shop/web.
    d.setListRewrite((body) => ({ apps: [...body.apps.filter((a) => a.id === '/shop/api'), 1, null, { id: 5 }] }));
    await s.relist();
    expect(s.cluster()).toEqual(before);
    expect(s.cluster().tasks.map((t) => t.id)).toContain(api);
    expect(s.status().problems).toContain('3 entries without a readable app id: no known app is removed for missing from this list');
    // Entries that are all unreadable are not an empty list either: nothing goes, nothing waits to go.
    d.setListRewrite(() => ({ apps: [1, 'x'] }));
    await s.relist();
    expect(s.cluster()).toEqual(before);
    // A clean list that leaves /shop/web out removes it, as before.
    d.setListRewrite((body) => ({ apps: body.apps.filter((a) => a.id === '/shop/api') }));
    await s.relist();
    expect(s.cluster().apps.map((a) => a.id)).toEqual(['/shop/api']);
  });

  it('a BRIDGE app (networks given) whose "container" has the wrong type is malformed, not "no port mappings"', () => {
    const r = parseApps({ apps: [{ id: '/b', networks: [{ mode: 'container/bridge' }], container: 'x', tasks: [] }] });
    expect(r.apps).toEqual([]);
    expect(r.problems).toEqual(['app "/b": "container" must be an object, got "x"; app skipped']);
    expect(parseApps({ apps: [{ id: '/b', networks: [{ mode: 'container/bridge' }], container: { docker: 5 }, tasks: [] }] }).problems).toEqual([
      'app "/b": "container.docker" must be an object, got 5; app skipped',
    ]);
  });
});

describe('item 5: what the feed says about staleness', () => {
  /** The source, with a count of status() reads (each feed check reads it once). */
  function counted(s: MarathonSource): { source: MarathonLike; reads: () => number } {
    let reads = 0;
    const source: MarathonLike = {
      start: () => s.start(),
      stop: () => s.stop(),
      cluster: () => s.cluster(),
      onChange: (fn) => s.onChange(fn),
      status: () => {
        reads++;
        return s.status();
      },
    };
    return { source, reads: () => reads };
  }

  async function feedOn(url: string): Promise<{ feed: MarathonFeed; lines: Record<string, unknown>[]; reads: () => number; s: MarathonSource }> {
    const { logger, lines } = logCapture();
    const s = new MarathonSource({ url, logger, backoff: { initialMs: 20, maxMs: 200 }, requestTimeoutMs: 5000 });
    const c = counted(s);
    const feed = new MarathonFeed({ source: c.source, addresses: new HostAddresses({ agents: () => [], dns: false }), logger, checkMs: 10 });
    cleanups.push(() => feed.stop());
    await feed.start(() => {});
    return { feed, lines, reads: c.reads, s };
  }

  const transitions = (lines: Record<string, unknown>[]) => msgs(lines, /inventory is (stale|fresh again)/);

  it('a normal start logs no stale / fresh-again pair', async () => {
    const { d } = await seeded();
    const { feed, lines, reads, s } = await feedOn(d.url);
    await waitFor(() => s.status().streamConnected, 'stream attached');
    const after = reads();
    await waitFor(() => reads() >= after + 5, 'five more feed checks');
    expect(feed.status()).toMatchObject({ ready: true, stale: false, streamConnected: true });
    expect(transitions(lines)).toEqual([]);
  });

  it('Marathon answering HTTP 500 everywhere: the reason names the list, the stream, the status and the URL', async () => {
    const server = http.createServer((_req, res) => res.writeHead(500, { 'Content-Type': 'application/json' }).end('{"message":"An unexpected server error occurred."}'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const { feed, lines } = await feedOn(url);
    await waitFor(() => /event stream/.test(feed.status().reason ?? ''), 'the stream failure reported');
    expect(feed.status()).toMatchObject({
      ready: false,
      stale: true,
      reason: `GET /v2/apps?embed=apps.tasks: HTTP 500 from ${url}; event stream: HTTP 500 from ${url}`,
    });
    expect(transitions(lines)[0]).toMatchObject({ msg: expect.stringContaining('stale'), reason: expect.stringContaining(`HTTP 500 from ${url}`) });
  });

  it('a good Marathon turning to HTTP 500 everywhere: "event stream: HTTP 500", not "not connected"', async () => {
    const { d } = await seeded();
    const { feed, lines, s } = await feedOn(d.url);
    await waitFor(() => feed.status().streamConnected, 'stream attached');
    await s.relist(); // the re-list the attach triggered is done: only the stream will fail
    d.setFailing('http500All');
    d.dropStreams();
    // First the drop itself ("connection closed"/"aborted"), then the reconnects answered 500.
    await waitFor(() => feed.status().reason === `event stream: HTTP 500 from ${d.url}`, 'the reconnect failure named');
    expect(feed.status()).toMatchObject({ stale: true, streamConnected: false });
    await waitFor(() => transitions(lines).length > 0, 'the transition logged');
    expect(transitions(lines)).toEqual([expect.objectContaining({ reason: expect.stringMatching(/^event stream: /) })]);
    d.setFailing('none');
    await waitFor(() => !feed.status().stale, 'fresh again');
    await waitFor(() => transitions(lines).length === 2, 'the transition back logged');
  });
});

describe('item 7: app ids Marathon could never produce', () => {
  it('the grammar: /-separated segments of lowercase labels joined by "."', () => {
    for (const ok of ['/a', '/shop/web', '/prod/api.v2/db-1', '/0/9-x.y']) expect(isMarathonAppId(ok), ok).toBe(true);
    for (const bad of ['', '/', 'shop', '/Shop', '/a//b', '/a/', '/-a', '/a-', '/a..b', '/a_b', '/a;b', '/$(id)', '/a\nb', '/a b', '/a\u0007', '/é']) {
      expect(isMarathonAppId(bad), JSON.stringify(bad)).toBe(false);
    }
  });

  it('is logged once (warn, escaped preview, how it was handled), not on every re-list', async () => {
    const { d } = await seeded();
    const hostile = '/shop/x;rm -rf $(id)\n\u0007';
    d.addApp({ id: hostile, network: 'host', ports: [{ name: 'http' }] });
    const { logger, lines } = logCapture();
    const s = await started(d.url, { logger });
    d.startTask(hostile, 'agent-1', [31009]);
    await waitFor(() => s.cluster().tasks.some((t) => t.appId === hostile), 'the task of the odd app');
    await s.relist();
    await s.relist();
    const warned = msgs(lines, /could never produce/);
    expect(warned).toEqual([
      expect.objectContaining({
        level: 40,
        appIdPreview: '"/shop/x;rm -rf $(id)\\n\\u0007"',
        msg: expect.stringContaining('kept as an opaque id; it never reaches the kernel'),
      }),
    ]);
    expect(s.cluster().apps.map((a) => a.id)).toContain(hostile);
  });
});
