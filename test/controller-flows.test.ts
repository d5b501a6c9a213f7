/**
 * Flows in the running controller (startController, real HTTP on port 0, a temp --state-dir):
 * records handed to its flow sink (the Sync service's `flowSink`) are served on /flows with the
 * filters, streamed on /flows/events (parsed with eventsource-parser, as the CLI and the
 * dashboard do), counted on /metrics and /status, and survive restarts through the flows
 * directory (a resolutions file and one file per window; an older release's flows.json read once
 * and replaced); a corrupt file is set aside and logged, never fatal.
 */
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { afterEach, describe, expect, it } from 'vitest';
import { defaultInventoryPath, defaultPolicyPath } from '../src/package-root.js';
import { startController, type RunningController } from '../src/controller/controller-main.js';
import { StaticInventoryFeed } from '../src/controller/static-inventory-feed.js';
import { createLogger } from '../src/logging.js';
import type { FlowEntry } from '../src/flows/flow-types.js';
import type { ObservedFlow } from '../src/flows/observed-flow.js';
import { waitFor } from './support/cluster-harness.js';
import { logCapture } from './support/log-capture.js';

let controller: RunningController | undefined;
let dir = '';

afterEach(async () => {
  await controller?.stop();
  controller = undefined;
  if (dir !== '') rmSync(dir, { recursive: true, force: true });
  dir = '';
});

function prepare(): { policy: string; inventory: string; stateDir: string } {
  dir = mkdtempSync(join(tmpdir(), 'pcut-flows-'));
  const policy = join(dir, 'policy');
  const inventory = join(dir, 'inventory.yaml');
  cpSync(defaultPolicyPath(), policy, { recursive: true });
  cpSync(defaultInventoryPath(), inventory);
  return { policy, inventory, stateDir: join(dir, 'state', 'controller') };
}

async function start(paths: ReturnType<typeof prepare>, logger = createLogger({ component: 'controller', level: 'silent' })): Promise<RunningController> {
  const c = await startController({
    policyPath: paths.policy,
    feed: () => new StaticInventoryFeed({ path: paths.inventory, pollMs: 60_000 }),
    listen: { host: '127.0.0.1', port: 0 },
    statusListen: { host: '127.0.0.1', port: 0 },
    credentials: undefined,
    pollMs: 60_000,
    stateDir: paths.stateDir,
    logger,
  });
  controller = c;
  await waitFor(async () => (await fetch(`http://${c.statusAddress}/readyz`)).ok, 10_000, 'controller ready');
  return c;
}

function entry(e: Partial<FlowEntry>): FlowEntry {
  const now = Date.now();
  return { direction: 'ingress', verdict: 'allowed', source: '10.0.1.12', destination: '', protocol: 'tcp', port: 31100, packets: 1, bytes: 60, firstSeenMs: now - 5000, lastSeenMs: now, ...e };
}

async function flows(c: RunningController, query = ''): Promise<{ code: number; body: { flows: ObservedFlow[]; lost: unknown[]; error?: string }; headers: Headers }> {
  const res = await fetch(`http://${c.statusAddress}/flows${query}`);
  return { code: res.status, body: (await res.json()) as { flows: ObservedFlow[]; lost: unknown[] }, headers: res.headers };
}

describe('controller flows', () => {
  it('serves what its sink received on /flows, with filters, /status and /metrics', async () => {
    const c = await start(prepare());
    c.flows.ingest('node-1', [entry({ packets: 4 }), entry({ source: '8.8.8.8', port: 31400, verdict: 'denied', packets: 2 })], [{ direction: 'ingress', verdict: 'denied', family: 4, packets: 3 }], Date.now());
    const all = await flows(c);
    expect(all.code).toBe(200);
    expect(all.headers.get('content-type')).toBe('application/json');
    expect(all.headers.get('x-content-type-options')).toBe('nosniff');
    expect(all.body.flows).toHaveLength(2);
    const [api, cache] = all.body.flows;
    expect(api).toMatchObject({
      verdict: 'allowed',
      reportedBy: 'node-1',
      packets: 4,
      source: { kind: 'host', hostId: 'node-2', address: '10.0.1.12' },
      destination: { hostId: 'node-1', port: 31100, portName: 'http', apps: [{ appId: '/shop/api', taskIds: ['shop_api.1'] }] },
      decidedBy: { tier: 'policy', rule: 'web-to-api' },
    });
    expect(cache).toMatchObject({ verdict: 'denied', source: { kind: 'outside' }, destination: { portName: 'redis', apps: [{ appId: '/shop/cache' }] }, decidedBy: { tier: 'default' } });
    expect(all.body.lost).toEqual([{ reportedBy: 'node-1', direction: 'ingress', verdict: 'denied', family: 4, packets: 3 }]);
    expect((await flows(c, '?to=/shop/c*&verdict=denied')).body.flows.map((f) => f.key)).toEqual([cache!.key]);
    expect((await flows(c, '?from=node-2&port=http')).body.flows.map((f) => f.key)).toEqual([api!.key]);

    const bad = await flows(c, `?verdict=${'x'.repeat(500)}`);
    expect(bad.code).toBe(400);
    expect(bad.body.error).toMatch(/^verdict "x+…" is not one of allowed, denied, audit$/);
    expect(bad.body.error!.length).toBeLessThan(160);

    const status = (await (await fetch(`http://${c.statusAddress}/status`)).json()) as { flows: { records: number; windows: number; lost: number; newest: string } };
    expect(status.flows).toMatchObject({ records: 2, windows: 1, lost: 3 });
    const metrics = await (await fetch(`http://${c.statusAddress}/metrics`)).text();
    expect(metrics).toContain('portcullis_flows_total{app="/shop/api",port="http",verdict="allowed",direction="ingress"} 4');
    expect(metrics).toContain('portcullis_flows_total{app="/shop/cache",port="redis",verdict="denied",direction="ingress"} 2');
    expect(metrics).toContain('portcullis_flow_lost_total{verdict="denied",direction="ingress"} 3');
    expect(metrics).toMatch(/^portcullis_flow_records_total 2$/m);
  });

  it('streams changes on /flows/events with its filters, and refuses a bad filter with 400', async () => {
    const c = await start(prepare());
    const refused = await fetch(`http://${c.statusAddress}/flows/events?since=never`);
    expect(refused.status).toBe(400);
    expect(((await refused.json()) as { error: string }).error).toMatch(/since "never"/);

    const abort = new AbortController();
    const res = await fetch(`http://${c.statusAddress}/flows/events?verdict=denied`, { signal: abort.signal });
    try {
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
      const events: EventSourceMessage[] = [];
      const comments: string[] = [];
      const parser = createParser({ onEvent: (e) => events.push(e), onComment: (t) => comments.push(t) });
      const reader = res.body!.getReader();
      const decoder = new TextDecoder();
      const readUntil = async (done: () => boolean, what: string): Promise<void> => {
        const deadline = Date.now() + 10_000;
        for (let i = 0; i < 1000 && !done(); i++) {
          if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
          const chunk = await reader.read();
          if (chunk.done) throw new Error(`stream ended before ${what}`);
          parser.feed(decoder.decode(chunk.value, { stream: true }));
        }
      };
      await readUntil(() => comments.length > 0, 'the opening comment');
      c.flows.ingest('node-1', [entry({ packets: 5 }), entry({ source: '8.8.8.8', port: 31400, verdict: 'denied', packets: 2 })], [], Date.now());
      await readUntil(() => events.length > 0, 'an event');
      expect(events[0]!.event).toBe('flows');
      const body = JSON.parse(events[0]!.data) as { flows: ObservedFlow[] };
      expect(body.flows.map((f) => [f.verdict, f.destination.port, f.packets])).toEqual([['denied', 31400, 2]]);
      c.flows.ingest('node-1', [entry({ source: '8.8.8.8', port: 31400, verdict: 'denied', packets: 3 })], [], Date.now());
      await readUntil(() => events.length > 1, 'a second event');
      // Each event carries the changed flows' totals (what /flows says of them now): 2 + 3.
      expect((JSON.parse(events[1]!.data) as { flows: ObservedFlow[] }).flows.map((f) => f.packets)).toEqual([5]);
    } finally {
      abort.abort();
    }
  });

  const flowsDir = (paths: ReturnType<typeof prepare>) => join(paths.stateDir, 'flows');
  const windowFiles = (paths: ReturnType<typeof prepare>) => readdirSync(flowsDir(paths)).filter((n) => /^window-\d+\.jsonl$/.test(n)).sort();
  const restart = async (paths: ReturnType<typeof prepare>, logger?: Parameters<typeof start>[1]) => {
    await controller?.stop();
    controller = undefined;
    return start(paths, logger);
  };

  it('keeps recorded flows across restarts in flows/ (files 0600 in 0700 directories), appending to what it read', async () => {
    const paths = prepare();
    let c = await start(paths);
    expect(existsSync(paths.stateDir)).toBe(false); // nothing recorded, nothing written
    c.flows.ingest('node-1', [entry({ packets: 7 }), entry({ source: '10.0.100.5', port: 31000, packets: 1 })], [{ direction: 'ingress', verdict: 'allowed', family: 6, packets: 1 }], Date.now());
    const before = (await flows(c)).body;
    c = await restart(paths);
    for (const name of ['resolutions.jsonl', ...windowFiles(paths)]) expect(statSync(join(flowsDir(paths), name)).mode & 0o777).toBe(0o600);
    expect(windowFiles(paths)).toHaveLength(1);
    expect(statSync(paths.stateDir).mode & 0o777).toBe(0o700);
    expect(statSync(flowsDir(paths)).mode & 0o777).toBe(0o700);
    const after = (await flows(c)).body;
    expect(after.flows).toEqual(before.flows);
    expect(after.lost).toEqual(before.lost);
    expect(after.flows.map((f) => [f.source.kind, f.packets])).toEqual([['host', 7], ['network', 1]]);
    // A known flow and a new one after the read-back, then two restarts: the ids stay right.
    c.flows.ingest('node-1', [entry({ packets: 1 }), entry({ source: '10.0.100.6', port: 31000, packets: 2 })], [], Date.now());
    c = await restart(paths);
    c = await restart(paths);
    expect((await flows(c)).body.flows.map((f) => [f.source.address, f.packets])).toEqual([['10.0.1.12', 8], ['10.0.100.6', 2], ['10.0.100.5', 1]]);
  });

  it('sets a corrupt window file aside and keeps the other windows; a corrupt resolutions file sets the directory aside', async () => {
    const paths = prepare();
    let c = await start(paths);
    const now = Date.now();
    c.flows.ingest('node-1', [entry({ packets: 3 })], [], now - 120_000);
    c.flows.ingest('node-1', [entry({ source: '10.0.100.5', port: 31000, packets: 1 })], [], now);
    c = await restart(paths);
    const [older, newer] = windowFiles(paths) as [string, string];
    expect(newer).toBeDefined();
    await c.stop();
    controller = undefined;
    const file = join(flowsDir(paths), older);
    writeFileSync(file, `${readFileSync(file, 'utf8')}{not json\n`);
    let capture = logCapture();
    c = await start(paths, capture.logger);
    expect((await flows(c)).body.flows.map((f) => [f.source.address, f.packets])).toEqual([['10.0.100.5', 1]]);
    expect(existsSync(`${file}.corrupt`)).toBe(true);
    expect(capture.lines.find((l) => l['msg'] === 'a saved flow window is corrupt: set aside, the other windows kept')).toMatchObject({ level: 50, setAside: `${file}.corrupt` });

    c.flows.ingest('node-1', [entry({ packets: 1 })], [], Date.now());
    await c.stop();
    controller = undefined;
    const resolutions = join(flowsDir(paths), 'resolutions.jsonl');
    writeFileSync(resolutions, `{"not":"a resolution"}\n${readFileSync(resolutions, 'utf8')}`);
    capture = logCapture();
    c = await start(paths, capture.logger);
    expect((await flows(c)).body.flows).toEqual([]);
    expect(existsSync(`${flowsDir(paths)}.corrupt`)).toBe(true);
    expect(existsSync(flowsDir(paths))).toBe(false);
    expect(capture.lines.find((l) => l['msg'] === 'saved flows are corrupt: set aside, starting with none')).toMatchObject({ level: 50, setAside: `${flowsDir(paths)}.corrupt` });
  });

  it('ignores a resolution line cut short by a stop while saving, and rewrites the file whole at the next save', async () => {
    const paths = prepare();
    let c = await start(paths);
    c.flows.ingest('node-1', [entry({ packets: 3 })], [], Date.now());
    c = await restart(paths);
    await c.stop();
    controller = undefined;
    const resolutions = join(flowsDir(paths), 'resolutions.jsonl');
    writeFileSync(resolutions, `${readFileSync(resolutions, 'utf8')}{"r":99,"d":"ingr`);
    const tmp = join(flowsDir(paths), '.window-1.jsonl.0123456789ab.tmp');
    writeFileSync(tmp, '{"format":');
    const capture = logCapture();
    c = await start(paths, capture.logger);
    expect((await flows(c)).body.flows.map((f) => f.packets)).toEqual([3]);
    expect(capture.lines.find((l) => l['msg'] === 'the last saved resolution was cut short (a stop while saving): ignored')).toMatchObject({ level: 40 });
    // The next save rewrites the resolutions whole (the cut line gone) and removes the crash's temp file.
    c.flows.ingest('node-1', [entry({ packets: 1 })], [], Date.now());
    c = await restart(paths);
    expect(readFileSync(resolutions, 'utf8').endsWith('\n')).toBe(true);
    expect(readFileSync(resolutions, 'utf8')).not.toContain('"r":99');
    expect(existsSync(tmp)).toBe(false);
    expect((await flows(c)).body.flows.map((f) => f.packets)).toEqual([4]);
  });

  it("reads an older release's flows.json once, writes flows/ in its place, and sets a corrupt one aside", async () => {
    const paths = prepare();
    let c = await start(paths);
    c.flows.ingest('node-1', [entry({ packets: 4 }), entry({ source: '10.0.100.5', port: 31000, packets: 1 })], [], Date.now());
    const before = (await flows(c)).body.flows;
    c = await restart(paths);
    await c.stop();
    controller = undefined;
    // The same content in the v1 layout (one file, ids in sequence, each window after {"w":start}).
    const lines = (name: string) => readFileSync(join(flowsDir(paths), name), 'utf8').trimEnd().split('\n');
    const [window] = windowFiles(paths) as [string];
    const start0 = JSON.parse(lines(window)[0]!).w as number;
    const v1 = ['{"format":"portcullis-flows-v1","savedAt":"2026-12-01T00:00:00.000Z","windowMs":60000}', ...lines('resolutions.jsonl').slice(1), `{"w":${start0}}`, ...lines(window).slice(1)];
    rmSync(flowsDir(paths), { recursive: true });
    const legacy = join(paths.stateDir, 'flows.json');
    writeFileSync(legacy, `${v1.join('\n')}\n`);
    c = await start(paths);
    expect((await flows(c)).body.flows).toEqual(before);
    c = await restart(paths);
    expect(existsSync(legacy)).toBe(false);
    expect(windowFiles(paths)).toHaveLength(1);
    expect((await flows(c)).body.flows).toEqual(before);
    await c.stop();
    controller = undefined;

    rmSync(flowsDir(paths), { recursive: true });
    writeFileSync(legacy, `${v1.slice(0, 2).join('\n')}\n{not json\n`);
    const { logger, lines: logged } = logCapture();
    c = await start(paths, logger);
    expect((await flows(c)).body.flows).toEqual([]);
    expect(existsSync(`${legacy}.corrupt`)).toBe(true);
    expect(existsSync(legacy)).toBe(false);
    expect(logged.find((l) => l['msg'] === 'saved flows are corrupt: set aside, starting with none')).toMatchObject({ level: 50, setAside: `${legacy}.corrupt` });
  });
});
