/**
 * Flows in the running controller (startController, real HTTP on port 0, a temp --state-dir):
 * records handed to its flow sink (the Sync service's `flowSink`) are served on /flows with the
 * filters, streamed on /flows/events (parsed with eventsource-parser, as the CLI and the
 * dashboard do), counted on /metrics and /status, and survive a restart through flows.json; a
 * corrupt flows.json is set aside and logged, never fatal.
 */
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
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

  it('keeps recorded flows across a restart in flows.json (0600 in a 0700 directory)', async () => {
    const paths = prepare();
    let c = await start(paths);
    expect(existsSync(paths.stateDir)).toBe(false); // nothing recorded, nothing written
    c.flows.ingest('node-1', [entry({ packets: 7 }), entry({ source: '10.0.100.5', port: 31000, packets: 1 })], [{ direction: 'ingress', verdict: 'allowed', family: 6, packets: 1 }], Date.now());
    const before = (await flows(c)).body;
    await c.stop();
    controller = undefined;
    const file = join(paths.stateDir, 'flows.json');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(paths.stateDir).mode & 0o777).toBe(0o700);

    c = await start(paths);
    const after = (await flows(c)).body;
    expect(after.flows).toEqual(before.flows);
    expect(after.lost).toEqual(before.lost);
    expect(after.flows.map((f) => [f.source.kind, f.packets])).toEqual([['host', 7], ['network', 1]]);
    c.flows.ingest('node-1', [entry({ packets: 1 })], [], Date.now());
    expect((await flows(c)).body.flows[0]!.packets).toBe(8);
  });

  it('sets a corrupt flows.json aside, logs it and starts with none', async () => {
    const paths = prepare();
    let c = await start(paths);
    c.flows.ingest('node-1', [entry({})], [], Date.now());
    await c.stop();
    controller = undefined;
    const file = join(paths.stateDir, 'flows.json');
    const good = readFileSync(file, 'utf8');
    writeFileSync(file, `${good.slice(0, Math.floor(good.length / 2))}\n{not json\n`);
    const { logger, lines } = logCapture();
    c = await start(paths, logger);
    expect((await flows(c)).body.flows).toEqual([]);
    expect(existsSync(`${file}.corrupt`)).toBe(true);
    expect(existsSync(file)).toBe(false);
    expect(lines.find((l) => l['msg'] === 'saved flows are corrupt: set aside, starting with none')).toMatchObject({ level: 50, setAside: `${file}.corrupt` });
  });
});
