/**
 * `portcullis flows`, `suggest` and `plan` against a controller's status listener: a real local
 * HTTP server (port 0) serving a fixture /flows answer, /cluster and a /flows/events stream
 * (Server-Sent Events) that drops once, as the controller's would. In-process through main()
 * for the answers; the built entry point as its own process for --follow ended by SIGINT.
 */
import { spawn } from 'node:child_process';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync, cpSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clusterDocument } from '../src/inventory/cluster-document.js';
import { loadInventoryInput } from '../src/cli/load-inputs.js';
import type { ClusterState } from '../src/inventory/cluster-state.js';
import type { ObservedFlow } from '../src/flows/observed-flow.js';
import { followFlows } from '../src/cli/commands/flows.js';
import { pollFlows } from '../src/cli/flows-poll.js';
import { readFlowsAnswer } from '../src/flows/flows-answer.js';
import { fetchBounded } from '../src/cli/flows-input.js';
import { BIN, ROOT, ensureBuilt } from './support/built-cli.js';
import { egressFlow, flowsAnswer, ingressFlow } from './support/flow-records.js';
import { runCli } from './support/run-cli.js';

const FIXTURE = join(ROOT, 'test/fixtures/flows-suggest');
const POLICY = join(FIXTURE, 'policy');
const INVENTORY = join(FIXTURE, 'inventory.yaml');
let cluster: ClusterState;
let flows: ObservedFlow[];
let server: Server;
let url = '';
let tmp = '';
const queries: string[] = [];
let eventConnections = 0;
let answerOverride: string | undefined;
/** When set, the /flows answer of each request in turn (the last one repeated). */
let answerFn: (() => string) | undefined;
let status = 200;

function events(res: ServerResponse, flows: readonly ObservedFlow[], end: boolean): void {
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  res.write(': keep-alive\n\n');
  res.write(`event: flows\ndata: ${JSON.stringify({ flows })}\n\n`);
  if (end) res.end();
}

function handle(req: IncomingMessage, res: ServerResponse): void {
  const u = new URL(req.url ?? '/', 'http://x');
  queries.push(`${u.pathname}?${u.searchParams.toString()}`);
  if (u.pathname === '/flows') {
    if (status !== 200) {
      res.writeHead(status, { 'content-type': 'application/json' });
      return void res.end(JSON.stringify({ error: "bad parameter 'since': not a time" }));
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    return void res.end(answerFn?.() ?? answerOverride ?? JSON.stringify(flowsAnswer(flows)));
  }
  if (u.pathname === '/cluster') {
    res.writeHead(200, { 'content-type': 'application/json' });
    return void res.end(JSON.stringify(clusterDocument(cluster)));
  }
  if (u.pathname === '/flows/events') {
    eventConnections++;
    // The first stream drops after one event; the next ones stay open.
    return events(res, [flows[eventConnections === 1 ? 1 : 2]!], eventConnections === 1);
  }
  res.writeHead(404).end();
}

beforeAll(async () => {
  const c = await loadInventoryInput(INVENTORY);
  if (!c.ok) throw new Error('fixture inventory does not load');
  cluster = c.loaded.cluster;
  const hostile = '/shop/api\u001b[31m';
  flows = [
    egressFlow(cluster, '/shop/web', 'n1', 'n3', 'tcp', 31100, { packets: 30 }),
    ingressFlow(cluster, '203.0.113.5', 'n3', 'tcp', 31100, { packets: 4, verdict: 'denied' }),
    egressFlow(cluster, '/shop/api', 'n3', 'n3', 'tcp', 31300, { packets: 25 }),
    // A destination app id with a terminal escape in it: printed escaped.
    { ...ingressFlow(cluster, '10.50.7.9', 'n3', 'tcp', 31100, { packets: 2, networks: ['office', 'vpn'] }), destination: { hostId: 'n3', address: '', protocol: 'tcp', port: 31100, apps: [{ appId: hostile, taskIds: ['x.1'] }], portName: 'http' } },
  ];
  tmp = mkdtempSync(join(tmpdir(), 'pcut-flows-cli-'));
  server = createServer(handle);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  await ensureBuilt();
}, 120_000);

afterAll(async () => {
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve));
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe('portcullis flows', () => {
  it('passes the filters to /flows and prints the table, untrusted text escaped', async () => {
    queries.length = 0;
    const r = await runCli(['flows', '--controller', url, '--verdict', 'denied,audit', '--since', '1h', '--port', 'http', '--to', '/shop/*', '--limit', '50']);
    expect(r.code, r.err).toBe(0);
    expect(queries).toEqual(['/flows?to=%2Fshop%2F*&port=http&verdict=denied%2Caudit&since=1h&limit=50']);
    const lines = r.out.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^LAST SEEN +VERDICT +SOURCE +DESTINATION +PROTO +CONNS +DECIDED BY$/);
    expect(lines.slice(1).map((l) => l.split(/ {2,}/))).toEqual([
      ['2026-12-01T11:00:00Z', 'audit', '/shop/web on n1', '/shop/api:http on n3', 'tcp', '30', 'default'],
      ['2026-12-01T11:00:00Z', 'denied', '203.0.113.5', '/shop/api:http on n3', 'tcp', '4', 'default'],
      ['2026-12-01T11:00:00Z', 'audit', '/shop/api on n3', '/shop/db:postgres on n3', 'tcp', '25', 'default'],
      ['2026-12-01T11:00:00Z', 'audit', '10.50.7.9 (office,vpn)', '/shop/api\\u001b[31m:http on n3', 'tcp', '2', 'default'],
    ]);
    expect(r.out).not.toContain('\u001b');
  });

  it('--format json prints the answer; a bad record is skipped with a message', async () => {
    answerOverride = JSON.stringify({ ...flowsAnswer(flows.slice(0, 2)), flows: [flows[0], { ...flows[1], destination: { ...flows[1]!.destination, port: 70000 } }] });
    try {
      const r = await runCli(['flows', '--controller', url, '--format', 'json']);
      expect(r.code, r.err).toBe(0);
      expect(JSON.parse(r.out)).toEqual({ flows: [flows[0]], lost: [], now: '2026-12-01T12:00:00.000Z' });
      expect(r.err).toContain('flows[1].destination.port must be a port from 1 to 65535, got 70000: record skipped');
    } finally {
      answerOverride = undefined;
    }
  });

  it('a bad option is a usage error; an HTTP error of the controller is exit 1 with its message', async () => {
    for (const bad of [['--verdict', 'dropped'], ['--limit', '0'], ['--since', 'yesterday'], ['--direction', 'up'], ['--port', '70000']]) {
      const r = await runCli(['flows', '--controller', url, ...bad]);
      expect(r.code, bad.join(' ')).toBe(2);
    }
    status = 400;
    try {
      const r = await runCli(['flows', '--controller', url]);
      expect(r.code).toBe(1);
      expect(r.err).toContain("answered HTTP 400 Bad Request: bad parameter 'since': not a time");
    } finally {
      status = 200;
    }
    const gone = await runCli(['flows', '--controller', 'http://127.0.0.1:1']);
    expect(gone.code).toBe(1);
    expect(gone.err).toMatch(/cannot read http:\/\/127\.0\.0\.1:1\/flows/);
  });

  it('reads an answer up to its byte limit and no further', async () => {
    const whole = await fetchBounded(new URL('/flows', url), 1_000_000, 5_000);
    expect(JSON.parse(whole)).toEqual(flowsAnswer(flows));
    await expect(fetchBounded(new URL('/flows', url), 100, 5_000)).rejects.toThrow(/\/flows: answer larger than the limit of 100 bytes$/);
  });

  it('--follow reads /flows/events and reconnects when the stream drops', async () => {
    eventConnections = 0;
    const seen: ObservedFlow[] = [];
    const notes: string[] = [];
    const stop = new AbortController();
    const deadline = setTimeout(() => stop.abort(), 10_000);
    await followFlows(new URL(url), new URLSearchParams({ verdict: 'denied' }), {
      signal: stop.signal,
      backoff: { initialMs: 20, maxMs: 100 },
      onFlows: (list) => {
        seen.push(...list);
        if (seen.length >= 2) stop.abort();
      },
      onNote: (t) => notes.push(t),
    });
    clearTimeout(deadline);
    expect(seen.map((f) => f.key)).toEqual([flows[1]!.key, flows[2]!.key]);
    expect(eventConnections).toBe(2);
    expect(notes).toHaveLength(1);
    expect(notes[0]).toMatch(/\/flows\/events\?verdict=denied: the stream ended; reconnecting in \d+\.\d s$/);
  });

  it('--follow as a process prints the table, then each event, and exits 0 on SIGINT', async () => {
    eventConnections = 0;
    const child = spawn(process.execPath, [BIN, 'flows', '--controller', url, '--follow'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => void (out += c.toString()));
    try {
      const started = Date.now();
      // The second stream's event (after the first drops) names /shop/db.
      while (!(out.includes('LAST SEEN') && out.split('/shop/db:postgres').length >= 3) && Date.now() - started < 15_000) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      expect(out.split('/shop/db:postgres').length, out).toBe(3);
      const code = new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
      child.kill('SIGINT');
      expect(await code).toBe(0);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  }, 30_000);

  /** A /flows answer of `list` merged from this replica and a peer (`peerError`: the peer did not answer). */
  const merged = (list: readonly ObservedFlow[], peerError?: string): string =>
    JSON.stringify({
      ...flowsAnswer(list),
      replicas: [{ name: '10.0.0.5:7443', self: true, ok: true, flows: list.length }, { name: '10.0.0.6:7443', ok: peerError === undefined, flows: 0, ...(peerError === undefined ? {} : { error: peerError }) }],
    });
  /** Answers in turn, the last one repeated; counts the reads. */
  const inTurn = (answers: readonly string[]) => {
    const state = { reads: 0 };
    answerFn = () => answers[Math.min(state.reads++, answers.length - 1)]!;
    return state;
  };
  const more = (f: ObservedFlow, packets: number): ObservedFlow => ({ ...f, packets: f.packets + packets, lastSeen: new Date(Date.parse(f.lastSeen) + 60_000).toISOString() });

  it('against replicas, follows the merged /flows: each changed flow once, a peer that stops or starts answering said once', async () => {
    const first = readFlowsAnswer(merged(flows));
    if (!first.ok) throw new Error(first.error);
    const changed = [more(flows[0]!, 5), ...flows.slice(1)];
    const reads = inTurn([merged(changed, 'deadline exceeded'), merged(changed, 'deadline exceeded'), merged([...changed.slice(0, 3), more(changed[3]!, 1)]), 'not json']);
    eventConnections = 0;
    const seen: ObservedFlow[][] = [];
    const notes: string[] = [];
    const stop = new AbortController();
    const deadline = setTimeout(() => stop.abort(), 10_000);
    try {
      await pollFlows(new URL(url), new URLSearchParams({ port: 'http' }), {
        signal: stop.signal,
        intervalMs: 20,
        timeoutMs: 5_000,
        first: first.answer,
        backoff: { initialMs: 20, maxMs: 40 },
        onFlows: (list) => seen.push([...list]),
        onNote: (t) => {
          notes.push(t);
          if (t.includes('not json') || t.includes('JSON')) stop.abort();
        },
      });
    } finally {
      clearTimeout(deadline);
      answerFn = undefined;
    }
    expect(stop.signal.aborted).toBe(true);
    // Read 1: flows[0] grew (merged totals); read 2: nothing new; read 3: flows[3] grew.
    expect(seen.map((list) => list.map((f) => [f.key, f.packets]))).toEqual([[[flows[0]!.key, flows[0]!.packets + 5]], [[flows[3]!.key, flows[3]!.packets + 1]]]);
    expect(notes.slice(0, 2)).toEqual([
      'partial view: controller replica 10.0.0.6:7443 did not answer (deadline exceeded); the flows its agents reported are missing until it does',
      'controller replica 10.0.0.6:7443 answers again',
    ]);
    expect(notes[2]).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/flows\?port=http: .*; reading again in \d+\.\d s$/);
    expect(reads.reads).toBe(4);
    expect(eventConnections).toBe(0);
  });

  it('--follow against a replica with peers follows the merged /flows, not the replica\'s own events', async () => {
    const reads = inTurn([merged(flows), merged([more(flows[0]!, 7), ...flows.slice(1)])]);
    eventConnections = 0;
    const child = spawn(process.execPath, [BIN, 'flows', '--controller', url, '--follow', '--interval', '1', '--format', 'json'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    let out = '';
    child.stderr.on('data', (c: Buffer) => void (err += c.toString()));
    child.stdout.on('data', (c: Buffer) => void (out += c.toString()));
    try {
      const started = Date.now();
      // The first answer's four flows, then the one that grew.
      while (out.trimEnd().split('\n').length < 5 && Date.now() - started < 15_000) await new Promise((resolve) => setTimeout(resolve, 50));
      const lines = out.trimEnd().split('\n').map((l) => JSON.parse(l) as ObservedFlow);
      expect(lines.map((f) => f.packets)).toEqual([...flows.map((f) => f.packets), flows[0]!.packets + 7]);
      expect(err).toContain(`portcullis flows: ${new URL(url).origin} merges the flows of 1 peer replica: following the merged /flows, read again every 1 s`);
      expect(reads.reads).toBeGreaterThanOrEqual(2);
      const code = new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
      child.kill('SIGINT');
      expect(await code).toBe(0);
      expect(eventConnections).toBe(0);
    } finally {
      answerFn = undefined;
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  }, 30_000);

  it('--interval is checked and is for --follow only', async () => {
    expect((await runCli(['flows', '--controller', url, '--interval', '0', '--follow'])).err).toContain("--interval must be a number of seconds from 1 to 600, got '0'");
    const r = await runCli(['flows', '--controller', url, '--interval', '5']);
    expect(r.code).toBe(2);
    expect(r.err).toContain('--interval is for --follow');
  });
});

describe('portcullis suggest and plan against a controller or a saved answer', () => {
  it('suggest reads /flows and /cluster of the controller, and the same from --flows FILE and --inventory', async () => {
    const live = await runCli(['suggest', '--controller', url, '--policy', POLICY]);
    expect(live.code, live.err).toBe(0);
    expect(live.out).toContain('  - name: allow-shop-web-to-api-http\n    from: shop-web\n    to: api\n    ports: [http]\n    action: allow\n');
    expect(live.out).toContain('cidrs: ["203.0.113.5/32"]');
    const file = join(tmp, 'flows.json');
    writeFileSync(file, JSON.stringify(flowsAnswer(flows)));
    const offline = await runCli(['suggest', '--flows', file, '--inventory', INVENTORY, '--policy', POLICY]);
    expect(offline.code, offline.err).toBe(0);
    expect(offline.out.split('\n').slice(1)).toEqual(live.out.split('\n').slice(1));
    const json = await runCli(['suggest', '--flows', file, '--inventory', INVENTORY, '--policy', POLICY, '--format', 'json', '--verdict', 'denied']);
    expect((JSON.parse(json.out) as { rules: { from: string }[] }).rules.map((r) => r.from)).toEqual(['seen-203-0-113-5']);
  });

  it('plan lists the flows whose verdict a policy edit changes: a group to enforce, a rule added', async () => {
    const next = join(tmp, 'next');
    cpSync(POLICY, next, { recursive: true });
    writeFileSync(join(next, '00-defaults.yaml'), readFileSync(join(POLICY, '00-defaults.yaml'), 'utf8').replace('mode: audit', 'mode: enforce'));
    writeFileSync(join(next, '30-more.yaml'), 'rules:\n  - name: web-to-api\n    from: front\n    to: api\n    ports: [http]\n    action: allow\n');
    const file = join(tmp, 'plan-flows.json');
    writeFileSync(file, JSON.stringify(flowsAnswer(flows.slice(0, 3))));
    const r = await runCli(['plan', POLICY, next, '--flows', file, '--inventory', INVENTORY]);
    expect(r.code, r.err).toBe(0);
    const rows = r.out.trimEnd().split('\n');
    expect(rows.slice(1, -1).map((l) => l.split(/ {2,}/))).toEqual([
      ['2026-12-01T11:00:00Z', 'audit → allowed', '/shop/web on n1', '/shop/api:http on n3', 'tcp', '30', 'default', 'web-to-api (policy)'],
      ['2026-12-01T11:00:00Z', 'audit → denied', '/shop/api on n3', '/shop/db:postgres on n3', 'tcp', '25', 'default', 'default'],
      ['2026-12-01T11:00:00Z', 'audit → denied', '203.0.113.5', '/shop/api:http on n3', 'tcp', '4', 'default', 'default'],
    ]);
    expect(rows.at(-1)).toBe('3 flows of 3 change verdict (1 audit → allowed, 2 audit → denied); 0 unchanged');
    const same = await runCli(['plan', POLICY, POLICY, '--flows', file, '--inventory', INVENTORY, '--format', 'json']);
    expect(JSON.parse(same.out)).toMatchObject({ changes: [], summary: { judged: 3, unchanged: 3 } });
    const live = await runCli(['plan', POLICY, next, '--controller', url]);
    expect(live.code, live.err).toBe(0);
    expect(live.out).toContain('audit → allowed');
    expect(live.err).toContain('not judged: 1 flow (2 connections): app /shop/api\\u001b[31m is not in the cluster now');
  });

  it('each command has --help, and plan wants two policies', async () => {
    for (const c of ['flows', 'suggest', 'plan']) {
      const r = await runCli([c, '--help']);
      expect(r.out).toMatch(new RegExp(`^Usage: portcullis ${c} `));
    }
    expect((await runCli(['plan', POLICY, '--flows', 'x.json'])).code).toBe(2);
    const top = await runCli(['--help']);
    for (const c of ['flows', 'suggest', 'plan']) expect(top.out).toContain(`  ${c} `);
  });
});
