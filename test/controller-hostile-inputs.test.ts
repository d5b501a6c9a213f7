/**
 * The controller as a process, fed what a broken proxy, a hostile Marathon or a careless edit can
 * send: answers nested 100,000 levels deep, answers past any sane size, truncated and mistyped
 * JSON, an event stream line that never ends, policy files that are deep, binary, aliased or
 * empty.
 * Each time the process must stay up, keep answering /status, keep every host's desired version
 * exactly as the last good input compiled it, and say what was wrong.
 *
 * The Marathon here is a scripted HTTP server in this test: the good answer is Marathon's own
 * payload (test/fixtures/marathon-payloads/apps-embed-tasks-networks-bridge-v1.5-marathonlb.json,
 * see SOURCES.md); the bad ones are that payload broken on purpose. It listens on loopback only.
 */
import { spawn } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../src/package-root.js';
import { logged, type LoggedProcess } from './support/process-log.js';

const root = packageRoot();
const goodApps = readFileSync(path.join(root, 'test/fixtures/marathon-payloads/apps-embed-tasks-networks-bridge-v1.5-marathonlb.json'));
const MiB = 1024 * 1024;

interface Answer {
  readonly status: number;
  readonly body: string | Buffer;
}

/** A scripted Marathon: GET /v2/apps answers `answer`; /v2/events holds SSE streams open. */
class ScriptedMarathon {
  answer: Answer = { status: 200, body: goodApps };
  lists = 0;
  private readonly streams = new Set<ServerResponse>();
  private readonly server: Server;
  private readonly wakers = new Set<() => void>();

  constructor() {
    this.server = createServer((req, res) => this.handle(req, res));
  }

  async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = req.url ?? '';
    if (url.startsWith('/v2/events')) {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('event: event_stream_attached\ndata: {"remoteAddress":"127.0.0.1","eventType":"event_stream_attached","timestamp":"2026-12-01T00:00:00.000Z"}\n\n');
      this.streams.add(res);
      res.on('close', () => this.streams.delete(res));
      return;
    }
    if (url.startsWith('/v2/apps?')) {
      this.lists += 1;
      for (const wake of [...this.wakers]) wake();
      res.writeHead(this.answer.status, { 'content-type': 'application/json' });
      res.end(this.answer.body);
      return;
    }
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end('{"message":"App not found"}');
  }

  /** Writes raw bytes to every open event stream. */
  sendRaw(text: string): number {
    for (const s of this.streams) s.write(text);
    return this.streams.size;
  }

  /** Resolves once `n` more app lists than now have been asked for (bounded by `deadlineMs`). */
  listsMore(n: number, deadlineMs: number): Promise<void> {
    const target = this.lists + n;
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (this.lists < target) return;
        clearTimeout(timer);
        this.wakers.delete(check);
        resolve();
      };
      const timer = setTimeout(() => {
        this.wakers.delete(check);
        reject(new Error(`Marathon double: only ${this.lists} of ${target} app lists within ${deadlineMs} ms`));
      }, deadlineMs);
      this.wakers.add(check);
      check();
    });
  }

  async close(): Promise<void> {
    for (const s of this.streams) s.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

async function until<T>(what: string, deadlineMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const end = Date.now() + deadlineMs;
  for (let i = 0; ; i++) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`not within ${deadlineMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, Math.min(200, 10 * (i + 1))));
  }
}

interface StatusDoc {
  ready: boolean;
  policy: { valid: boolean; lastError: { diagnostics: string[] } | null };
  inventory: Record<string, unknown>;
  agents: { hostId: string; desiredVersion: string | null }[];
}

describe('the controller process under hostile inputs', () => {
  const marathon = new ScriptedMarathon();
  let controller: LoggedProcess | undefined;
  let statusUrl = '';
  let policyDir = '';
  let good: Record<string, string | null> = {};

  const status = async (): Promise<StatusDoc> => {
    const res = await fetch(`${statusUrl}/status`, { signal: AbortSignal.timeout(5000) });
    expect(res.status).toBe(200);
    return (await res.json()) as StatusDoc;
  };
  /** Rejects (with its last output) once the controller process exits. */
  let died: Promise<never> = new Promise(() => undefined);
  /** Waits for `n` more app lists, failing at once if the controller died meanwhile. */
  const alive = <T,>(p: Promise<T>): Promise<T> => Promise.race([p, died]);
  const listsMore = (n: number, deadlineMs = 20_000): Promise<void> => alive(marathon.listsMore(n, deadlineMs));
  const versions = (doc: StatusDoc): Record<string, string | null> => Object.fromEntries(doc.agents.map((a) => [a.hostId, a.desiredVersion]));

  /** Still up, still answering, every desired version as the last good inputs compiled it. */
  const expectUnharmed = async (): Promise<StatusDoc> => {
    expect(controller?.exited(), controller?.text().slice(-3000)).toBe(false);
    const doc = await status();
    expect(doc.ready).toBe(true);
    expect(versions(doc)).toEqual(good);
    return doc;
  };

  beforeAll(async () => {
    policyDir = mkdtempSync(path.join(tmpdir(), 'pcut-hostile-'));
    cpSync(path.join(root, 'policies/shop'), policyDir, { recursive: true });
    const marathonUrl = await marathon.listen();
    const child = spawn(
      process.execPath,
      [path.join(root, 'bin/portcullis.js'), 'controller', '--insecure', '--policy', policyDir, '--marathon', marathonUrl, '--relist-interval', '1', '--listen', '127.0.0.1:0', '--status-listen', '127.0.0.1:0', '--coalesce-ms', '0'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    controller = logged(child, 'controller');
    died = new Promise<never>((_, reject) => child.once('exit', (code, signal) => reject(new Error(`controller exited (${code ?? signal}):\n${controller?.text().slice(-3000)}`))));
    died.catch(() => undefined);
    const line = await controller.waitFor((l) => l['msg'] === 'controller listening', 20_000, 'the listening line');
    statusUrl = `http://${String(line['status'])}`;
    const doc = await until('ready with states', 20_000, async () => {
      const d = await status();
      return d.ready && d.agents.length > 0 ? d : undefined;
    });
    good = versions(doc);
  });

  afterAll(async () => {
    await controller?.stop('SIGTERM', 5000);
    await marathon.close();
    rmSync(policyDir, { recursive: true, force: true });
  });

  // A test that failed half-way leaves its bad answer in place: put the good one back first.
  afterEach(async () => {
    if (marathon.answer.body === goodApps) return;
    marathon.answer = { status: 200, body: goodApps };
    await listsMore(2).catch(() => undefined);
  });

  const deep = (n: number, open: string, close: string): string => `{"apps":${open.repeat(n)}${close.repeat(n)}}`;
  const badAnswers: [string, Answer][] = [
    ['apps nested 100,000 arrays deep', { status: 200, body: deep(100_000, '[', ']') }],
    ['apps nested 100,000 objects deep', { status: 200, body: deep(100_000, '{"a":', '}') }],
    ['a 100 MiB answer', { status: 200, body: `{"apps":[{"id":"/big","x":"${'a'.repeat(100 * MiB)}"}]}` }],
    ['Marathon\'s answer cut in half', { status: 200, body: goodApps.subarray(0, Math.floor(goodApps.length / 2)) }],
    ['apps of the wrong types', { status: 200, body: '{"apps":[1,null,"s",[],{"id":5},{"id":"/x","tasks":"no"}]}' }],
    ['apps as a string', { status: 200, body: '{"apps":"everything"}' }],
    ['a JSON null', { status: 200, body: 'null' }],
    ['not JSON at all', { status: 200, body: '\u0000\u0001<html>proxy error</html>' }],
    ['HTTP 500', { status: 500, body: '{"message":"boom"}' }],
  ];

  for (const [what, answer] of badAnswers) {
    it(`GET /v2/apps answering ${what}: nothing changes`, async () => {
      marathon.answer = answer;
      // Two more lists: the second one is asked for only after the first answer was handled.
      await listsMore(2);
      await expectUnharmed();
      marathon.answer = { status: 200, body: goodApps };
      await listsMore(2);
      await expectUnharmed();
    });
  }

  // Generated damage to Marathon's own answer, every kind of which leaves no usable new app:
  // the list cut anywhere, or one field of one app (or of one of its tasks) given a value of a
  // type Marathon never sends. A malformed app keeps its last good definition, so nothing moves.
  const apps = (JSON.parse(goodApps.toString('utf8')) as { apps: Record<string, unknown>[] }).apps;
  const wrongValue = fc.oneof(fc.integer(), fc.constant(null), fc.boolean(), fc.constant([[[[]]]]), fc.dictionary(fc.string({ maxLength: 3 }), fc.integer(), { maxKeys: 2 }));
  const damage = fc.oneof(
    fc.integer({ min: 1, max: goodApps.length - 2 }).map((cut) => goodApps.subarray(0, cut)),
    fc.tuple(fc.nat({ max: apps.length - 1 }), fc.constantFrom('id', 'labels', 'portDefinitions', 'container', 'networks'), wrongValue).map(([i, key, value]) => {
      const copy = structuredClone(apps);
      (copy[i] as Record<string, unknown>)[key] = value;
      return JSON.stringify({ apps: copy });
    }),
    fc.tuple(fc.nat({ max: apps.length - 1 }), fc.constantFrom('host', 'ports', 'appId', 'state'), wrongValue).map(([i, key, value]) => {
      const copy = structuredClone(apps);
      const tasks = (copy[i] as { tasks?: Record<string, unknown>[] }).tasks ?? [];
      if (tasks[0]) tasks[0][key] = value;
      return JSON.stringify({ apps: copy });
    }),
  );

  it('generated damage to Marathon\'s answer (fast-check): nothing changes', async () => {
    await fc.assert(
      fc.asyncProperty(damage, async (body) => {
        marathon.answer = { status: 200, body };
        await listsMore(2);
        await expectUnharmed();
      }),
      { numRuns: 8, seed: 20261201, endOnFailure: true },
    );
    marathon.answer = { status: 200, body: goodApps };
    await listsMore(2);
    await expectUnharmed();
  });

  it('events nested 100,000 levels deep, events of the wrong shape and hostile ids: nothing changes', async () => {
    const before = marathon.lists;
    expect(marathon.sendRaw(`event: status_update_event\ndata: ${'['.repeat(100_000)}${']'.repeat(100_000)}\n\n`)).toBeGreaterThan(0);
    marathon.sendRaw('event: status_update_event\ndata: {"eventType":"status_update_event","appId":5,"taskStatus":["TASK_RUNNING"]}\n\n');
    marathon.sendRaw('event: api_post_event\ndata: {"eventType":"api_post_event","appDefinition":{"id":"/a;rm -rf /$(reboot)\\n"}}\n\n');
    await listsMore(2);
    expect(marathon.lists).toBeGreaterThan(before);
    await expectUnharmed();
  });

  it('an event line that never ends (100 MiB without a newline) does not exhaust the controller', async () => {
    const chunk = 'x'.repeat(MiB);
    marathon.sendRaw('data: ');
    for (let i = 0; i < 100; i++) marathon.sendRaw(chunk);
    await listsMore(2, 30_000);
    await expectUnharmed();
  });

  const rulesFile = (): string => path.join(policyDir, '20-rules.yaml');
  let goodRules: Buffer = Buffer.alloc(0);
  beforeAll(() => {
    goodRules = readFileSync(rulesFile());
  });

  const badPolicies: [string, string | Buffer, RegExp][] = [
    ['a flow sequence nested 100,000 deep', `rules: ${'['.repeat(100_000)}${']'.repeat(100_000)}\n`, /20-rules\.yaml:1:\d+: .*nest/],
    ['a mapping nested 2,000 deep', `${Array.from({ length: 2_000 }, (_, i) => `${' '.repeat(i)}k${i}:`).join('\n')} x\n`, /20-rules\.yaml:\d+:\d+: .*nest/],
    ['nothing (emptied by a careless edit)', '', /20-rules\.yaml:1:1: /],
    ['only a comment', '# rules moved elsewhere\n', /20-rules\.yaml:1:1: /],
    ['binary garbage', Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 131 + 7) % 256)), /20-rules\.yaml:\d+:\d+: /],
    ['a YAML anchor bomb', `a: &a ["x","x","x","x","x","x","x","x","x"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n`, /20-rules\.yaml:\d+:\d+: /],
    ['50 MB of comments (over --max-policy-bytes)', `# ${'x'.repeat(50 * MiB)}\n`, /policy too large: .*--max-policy-bytes/],
  ];

  for (const [what, text, reported] of badPolicies) {
    it(`a policy file holding ${what}: reported, the last good policy kept, and a revert is valid again`, async () => {
      try {
        writeFileSync(rulesFile(), text);
        controller?.child.kill('SIGHUP');
        const broken = await alive(
          until('the policy reported invalid', 15_000, async () => {
            const d = await status();
            return d.policy.valid ? undefined : d;
          }),
        );
        expect(broken.policy.lastError?.diagnostics.join('\n')).toMatch(reported);
        await expectUnharmed();
      } finally {
        writeFileSync(rulesFile(), goodRules);
      }
      controller?.child.kill('SIGHUP');
      await alive(until('the reverted policy valid again', 15_000, async () => ((await status()).policy.valid ? true : undefined)));
      await expectUnharmed();
    });
  }
});
