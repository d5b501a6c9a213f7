/**
 * TCP helper process for the kernel and packet benchmarks, run inside a test namespace with
 * `ip netns exec <ns> node packet-tcp-tool.js <mode> ...` (see netns.ts spawnIn). Never imported.
 *
 *   server <port>
 *     Listens on 0.0.0.0:<port>, accepts and closes every connection. Prints "LISTENING <port>".
 *   rate <address> <port> <seconds> <concurrency> <timeoutMs> <warmupMs>
 *     Opens and closes TCP connections as fast as it can (<concurrency> in flight; a connection
 *     is closed with RST as soon as it is established, so no TIME_WAIT limits the rate). Counts
 *     connections established within <seconds> after <warmupMs>; prints one line
 *     "RESULT {json}" and exits.
 *   probe <address> <port> <timeoutMs> <concurrency> <pauseMs> <maxSeconds>
 *     New connections in a loop; prints one line per attempt "P <startMs> <endMs> <verdict>"
 *     (epoch milliseconds; verdict open | timeout | refused | error:<code>). With a timeout
 *     under one second each attempt is exactly one SYN (the first retransmit comes at 1 s).
 *     Stops when stdin ends or after <maxSeconds>, then prints "DONE" and exits.
 * Every process stops by itself: servers when stdin ends, the others after their time bound.
 * With PCUT_CGROUP_PROCS=<cgroup.procs file> in its environment it first moves itself into that
 * cgroup (before any socket exists; it must then run where the cgroup2 mount is visible, e.g.
 * under `nsenter --net`, not `ip netns exec`, which remounts /sys).
 */
import { writeFileSync } from 'node:fs';
import net from 'node:net';

if (process.env.PCUT_CGROUP_PROCS) writeFileSync(process.env.PCUT_CGROUP_PROCS, String(process.pid));

const now = (): number => performance.timeOrigin + performance.now();
const [mode, ...args] = process.argv.slice(2);

function number(i: number, name: string): number {
  const v = Number(args[i]);
  if (!Number.isFinite(v) || v < 0) {
    process.stderr.write(`packet-tcp-tool: bad ${name} ${String(args[i])}\n`);
    process.exit(2);
  }
  return v;
}

type Verdict = 'open' | 'timeout' | 'refused' | `error:${string}`;

/** One connection attempt: resolves with its verdict; the socket is always gone afterwards. */
function attempt(host: string, port: number, timeoutMs: number): Promise<Verdict> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    let done = false;
    const finish = (v: Verdict): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (v === 'open') socket.resetAndDestroy();
      else socket.destroy();
      resolve(v);
    };
    const timer = setTimeout(() => finish('timeout'), timeoutMs);
    socket.on('connect', () => finish('open'));
    socket.on('error', (e: NodeJS.ErrnoException) => finish(e.code === 'ECONNREFUSED' ? 'refused' : `error:${e.code ?? 'unknown'}`));
  });
}

function server(): void {
  const port = number(0, 'port');
  const srv = net.createServer({ noDelay: true }, (socket) => {
    socket.on('error', () => undefined);
    socket.destroy();
  });
  srv.on('error', (e) => {
    process.stderr.write(`packet-tcp-tool server: ${e.message}\n`);
    process.exit(1);
  });
  srv.listen({ port, host: '0.0.0.0', backlog: 4096 }, () => {
    const address = srv.address();
    process.stdout.write(`LISTENING ${typeof address === 'object' && address ? address.port : port}\n`);
  });
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
}

async function rate(): Promise<void> {
  const host = args[0] ?? '';
  const port = number(1, 'port');
  const seconds = number(2, 'seconds');
  const concurrency = Math.max(1, number(3, 'concurrency'));
  const timeoutMs = number(4, 'timeoutMs');
  const warmupMs = number(5, 'warmupMs');
  const start = now();
  const from = start + warmupMs;
  const until = from + seconds * 1000;
  let connections = 0;
  let attempts = 0;
  const failures: Record<string, number> = {};
  const worker = async (): Promise<void> => {
    // Bounded by time; an attempt takes at most timeoutMs.
    while (now() < until) {
      const v = await attempt(host, port, timeoutMs);
      const t = now();
      if (t < from || t > until) continue;
      attempts++;
      if (v === 'open') connections++;
      else {
        failures[v] = (failures[v] ?? 0) + 1;
        await new Promise((r) => setTimeout(r, 1));
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  process.stdout.write(`RESULT ${JSON.stringify({ connections, attempts, seconds, perSecond: connections / seconds, failures })}\n`);
  process.exit(0);
}

async function probe(): Promise<void> {
  const host = args[0] ?? '';
  const port = number(1, 'port');
  const timeoutMs = number(2, 'timeoutMs');
  const concurrency = Math.max(1, number(3, 'concurrency'));
  const pauseMs = number(4, 'pauseMs');
  const deadline = now() + number(5, 'maxSeconds') * 1000;
  let stop = false;
  process.stdin.on('end', () => (stop = true));
  process.stdin.resume();
  const worker = async (): Promise<void> => {
    while (!stop && now() < deadline) {
      const t0 = now();
      const v = await attempt(host, port, timeoutMs);
      process.stdout.write(`P ${t0.toFixed(3)} ${now().toFixed(3)} ${v}\n`);
      if (pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs));
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  process.stdout.write('DONE\n');
  process.exit(0);
}

if (mode === 'server') server();
else if (mode === 'rate') await rate();
else if (mode === 'probe') await probe();
else {
  process.stderr.write(`packet-tcp-tool: unknown mode ${String(mode)}\n`);
  process.exit(2);
}
