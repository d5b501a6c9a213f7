/**
 * The Consul API double (consul-double.ts) as a process of its own, so it can run inside a
 * network namespace next to controllers and agents (the test process cannot be reached from
 * there). Compiled to dist/test/support/consul-double-main.js; driven by
 * consul-double-process.ts.
 *
 *   node consul-double-main.js [--node NAME] [--node-address ADDRESS]
 *
 * Listens on 127.0.0.1, port 0, and prints one line
 *   {"ready":true,"url":"http://127.0.0.1:PORT","port":PORT,"pid":PID}
 * then reads commands, one JSON object a line on stdin, {"id":3,"cmd":"setCheck","args":["a","passing"]},
 * and answers each with one line: {"id":3,"ok":true,"result":null} or {"id":3,"ok":false,"error":"..."}.
 * Commands (the double's test controls): setCheck, addRemoteInstance, removeInstance,
 * forgetAgent, expireSession, touch, snapshot (→ a name), restore(name), setOutage,
 * localServices, blockedQueries, requests (→ route → count), close (answers, then exits 0).
 * End of stdin, SIGTERM and SIGINT close the server and exit 0. Nothing else goes to stdout.
 */
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { ConsulDouble, type CheckStatus, type OutageMode, type RemoteInstance } from './consul-double.js';

const write = (value: unknown): void => {
  process.stdout.write(`${JSON.stringify(value)}\n`);
};

function str(v: unknown, what: string): string {
  if (typeof v !== 'string') throw new Error(`${what} must be a string`);
  return v;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ args: process.argv.slice(2), options: { node: { type: 'string' }, 'node-address': { type: 'string' } }, strict: true });
  const double = new ConsulDouble({ ...(values.node ? { node: values.node } : {}), ...(values['node-address'] ? { nodeAddress: values['node-address'] } : {}) });
  await double.start();
  const snapshots = new Map<string, ReturnType<ConsulDouble['snapshot']>>();
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= double.close().then(() => process.exit(0));
    return closing;
  };

  const run = (cmd: string, a: readonly unknown[]): unknown => {
    switch (cmd) {
      case 'setCheck': {
        const status = str(a[1], 'status');
        if (!['passing', 'warning', 'critical'].includes(status)) throw new Error(`unknown check status ${status}`);
        double.setCheck(str(a[0], 'check or service id'), status as CheckStatus, typeof a[2] === 'string' ? a[2] : '');
        return null;
      }
      case 'addRemoteInstance':
        double.addRemoteInstance(a[0] as RemoteInstance);
        return null;
      case 'removeInstance':
        return double.removeInstance(str(a[0], 'node'), str(a[1], 'id'));
      case 'forgetAgent':
        return double.forgetAgent();
      case 'expireSession':
        return double.expireSession(str(a[0], 'session id'));
      case 'touch':
        double.touch();
        return null;
      case 'snapshot': {
        const name = `snap-${snapshots.size + 1}`;
        snapshots.set(name, double.snapshot());
        return name;
      }
      case 'restore': {
        const snap = snapshots.get(str(a[0], 'snapshot name'));
        if (!snap) throw new Error(`no snapshot ${String(a[0])}`);
        double.restore(snap);
        return null;
      }
      case 'setOutage': {
        const mode = a[0] ?? null;
        if (mode !== null && mode !== 'refuse' && mode !== 'error' && mode !== 'hang') throw new Error(`unknown outage mode ${String(mode)}`);
        double.setOutage(mode as OutageMode);
        return null;
      }
      case 'localServices':
        return double.localServices().map((s) => ({ id: s.id, name: s.name, address: s.address, port: s.port, checks: s.checks.map((c) => ({ checkId: c.checkId, status: c.status, http: c.http })) }));
      case 'blockedQueries':
        return double.blockedQueries();
      case 'requests':
        return Object.fromEntries(double.requests);
      default:
        throw new Error(`unknown command ${cmd}`);
    }
  };

  const lines = createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    let id: unknown = null;
    try {
      const r = JSON.parse(line) as { id: unknown; cmd: unknown; args?: unknown };
      id = r.id;
      if (r.cmd === 'close') {
        write({ id, ok: true, result: null });
        void close();
        return;
      }
      write({ id, ok: true, result: run(str(r.cmd, 'cmd'), Array.isArray(r.args) ? r.args : []) ?? null });
    } catch (e) {
      write({ id, ok: false, error: `double: ${(e as Error).message}` });
    }
  });
  lines.on('close', () => void close());
  process.on('SIGTERM', () => void close());
  process.on('SIGINT', () => void close());
  const port = Number(new URL(double.url).port);
  write({ ready: true, url: double.url, port, pid: process.pid });
}

main().catch((e: unknown) => {
  process.stderr.write(`consul double: ${(e as Error).message}\n`);
  process.exit(1);
});
