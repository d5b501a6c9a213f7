/**
 * The Marathon API double (marathon-double.ts) as a process of its own, so it can run inside a
 * network namespace next to the controller (the test process cannot be reached from there, and
 * the test network has no route out). Compiled to dist/test/support/marathon-double-main.js;
 * driven by marathon-double-process.ts.
 *
 *   node marathon-double-main.js [--format v1.4|v1.5] [--no-event-names]
 *
 * Listens on 127.0.0.1, port 0 (any free one), and prints one line
 *   {"ready":true,"url":"http://127.0.0.1:PORT","port":PORT,"pid":PID}
 * then reads commands, one JSON object a line on stdin:
 *   {"id":7,"cmd":"startTask","args":["/shop/web","h1",[31000]]}
 * and answers each with one line on stdout:
 *   {"id":7,"ok":true,"result":"shop_web.<uuid>","at":1767225600000.25}
 *   {"id":7,"ok":false,"error":"double: no app /x"}
 * `at` is the wall-clock time (ms since the epoch, fractional) taken just before the command ran:
 * for commands that emit events, the moment the event was written to the open streams.
 * Commands: addApp, removeApp, startTask, killTask, moveTask, sendRaw, dropStreams (→ number of
 * streams dropped), setFailing, setStandbyRedirect, info (→ {streams, requests, format}),
 * requests (→ [{method, url}]), appsJson (→ the body of GET /v2/apps?embed=apps.tasks, read
 * from its own server; an error while failing or redirecting), close (answers, then exits 0).
 * End of stdin, SIGTERM and SIGINT close the server and exit 0. Nothing else is written to stdout.
 */
import http from 'node:http';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { MarathonDouble, type DoubleApp, type DoubleFormat, type FailingMode } from './marathon-double.js';

/** Requests the double makes to itself (appsJson) carry this header and are not reported. */
const SELF_HEADER = 'x-marathon-double-self';

interface Request {
  readonly id: number;
  readonly cmd: string;
  readonly args: readonly unknown[];
}

const write = (value: unknown): void => {
  process.stdout.write(`${JSON.stringify(value)}\n`);
};

const wallClock = (): number => performance.timeOrigin + performance.now();

function str(v: unknown, what: string): string {
  if (typeof v !== 'string') throw new Error(`${what} must be a string`);
  return v;
}

function ports(v: unknown): number[] {
  if (!Array.isArray(v) || !v.every((p) => Number.isInteger(p))) throw new Error('ports must be an array of integers');
  return v as number[];
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: { format: { type: 'string' }, 'no-event-names': { type: 'boolean' } },
    strict: true,
    allowPositionals: false,
  });
  const format = (values.format ?? 'v1.5') as DoubleFormat;
  if (format !== 'v1.4' && format !== 'v1.5') throw new Error(`--format must be v1.4 or v1.5, got ${format}`);

  const double = await MarathonDouble.start({ format, ...(values['no-event-names'] ? { sseEventNames: false } : {}) });
  let failing: FailingMode = 'none';
  let redirecting = false;

  const own = () => double.requests.filter((r) => r.headers[SELF_HEADER] === undefined);
  const appsJson = (): Promise<unknown> => {
    if (failing !== 'none' || redirecting) throw new Error(`appsJson: the double is failing (${failing}) or redirecting`);
    return new Promise((resolve, reject) => {
      const req = http.get(`${double.url}/v2/apps?embed=apps.tasks`, { headers: { [SELF_HEADER]: '1', accept: 'application/json' } }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => {
          try {
            if (res.statusCode !== 200) throw new Error(`HTTP ${res.statusCode}: ${body.slice(0, 200)}`);
            resolve(JSON.parse(body) as unknown);
          } catch (e) {
            reject(e as Error);
          }
        });
        res.on('error', reject);
      });
      req.on('error', reject);
      req.setTimeout(10_000, () => req.destroy(new Error('appsJson: timed out')));
    });
  };

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= double.close().then(() => process.exit(0));
    return closing;
  };

  const run = async (r: Request): Promise<unknown> => {
    const a = r.args;
    switch (r.cmd) {
      case 'addApp':
        double.addApp(a[0] as DoubleApp);
        return null;
      case 'removeApp':
        double.removeApp(str(a[0], 'app id'));
        return null;
      case 'startTask':
        return double.startTask(str(a[0], 'app id'), str(a[1], 'host'), ports(a[2]));
      case 'killTask':
        double.killTask(str(a[0], 'task id'));
        return null;
      case 'moveTask':
        return double.moveTask(str(a[0], 'task id'), str(a[1], 'host'), ports(a[2]));
      case 'sendRaw':
        double.sendRaw(str(a[0], 'text'));
        return null;
      case 'dropStreams': {
        const n = double.streamCount;
        double.dropStreams();
        return n;
      }
      case 'setFailing': {
        const mode = str(a[0], 'mode') as FailingMode;
        if (!['none', 'http500', 'http500All', 'emptyApps', 'truncated'].includes(mode)) throw new Error(`unknown failing mode ${mode}`);
        failing = mode;
        double.setFailing(mode);
        return null;
      }
      case 'setStandbyRedirect': {
        const to = a[0] === null ? null : str(a[0], 'url');
        redirecting = to !== null;
        double.setStandbyRedirect(to);
        return null;
      }
      case 'info':
        return { streams: double.streamCount, requests: own().length, format: double.format };
      case 'requests':
        return own().map((q) => ({ method: q.method, url: q.url }));
      case 'appsJson':
        return appsJson();
      case 'close':
        setImmediate(() => void close());
        return null;
      default:
        throw new Error(`unknown command ${JSON.stringify(r.cmd)}`);
    }
  };

  // Commands run one at a time, in order, so `at` stamps and events follow the order sent.
  let queue: Promise<void> = Promise.resolve();
  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
  lines.on('line', (line) => {
    if (line.trim() === '') return;
    queue = queue.then(async () => {
      let request: Request;
      try {
        const raw = JSON.parse(line) as Partial<Request>;
        if (typeof raw.id !== 'number' || typeof raw.cmd !== 'string') throw new Error('expected {"id": number, "cmd": string, "args": [...]}');
        request = { id: raw.id, cmd: raw.cmd, args: Array.isArray(raw.args) ? raw.args : [] };
      } catch (e) {
        write({ id: null, ok: false, error: `bad command line: ${(e as Error).message}` });
        return;
      }
      const at = wallClock();
      try {
        const result = await run(request);
        write({ id: request.id, ok: true, result: result ?? null, at });
      } catch (e) {
        write({ id: request.id, ok: false, error: (e as Error).message, at });
      }
    });
  });
  lines.on('close', () => void queue.then(close));
  process.on('SIGTERM', () => void close());
  process.on('SIGINT', () => void close());

  write({ ready: true, url: double.url, port: Number(new URL(double.url).port), pid: process.pid });
}

main().catch((e: unknown) => {
  process.stderr.write(`marathon double: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
