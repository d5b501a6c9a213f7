/**
 * TCP/UDP reachability inside a TestNetwork (see netns.ts). A listener is a small node process
 * (listener.mjs) started in a host namespace through `spawnIn`; a probe is a short-lived node
 * process (probe-client.mjs) in the source namespace. Every wait is bounded: the listener must
 * announce itself within `startTimeoutMs`, a probe answers within `timeoutMs` (plus process start).
 *
 * Verdicts: 'open' (TCP connected / UDP reply received), 'refused' (TCP RST / ICMP port
 * unreachable; for UDP best effort, as the kernel rate-limits ICMP), 'timeout' (no answer: what
 * an iptables DROP looks like). Anything else (e.g. unreachable) rejects.
 */
import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { TestNetwork } from './netns.js';

export type ProbeProtocol = 'tcp' | 'udp';
export type ProbeVerdict = 'open' | 'refused' | 'timeout';

export const LISTENER_REPLY = 'portcullis-probe-reply';
const listenerScript = path.join(import.meta.dirname, 'listener.mjs');
const probeScript = path.join(import.meta.dirname, 'probe-client.mjs');

export interface ListenerOptions {
  readonly protocol: ProbeProtocol;
  /** 0 = any free port (read `port` of the result). */
  readonly port: number;
  readonly family: 4 | 6;
  readonly startTimeoutMs?: number;
}

export interface Listener {
  readonly ns: string;
  readonly protocol: ProbeProtocol;
  readonly family: 4 | 6;
  readonly port: number;
  /** Source addresses of the connections / datagrams received so far (IPv4-mapped prefix removed). */
  readonly peers: readonly string[];
  /** Resolves once at least `count` peers were seen, or rejects after `timeoutMs`. */
  waitForPeers(count: number, timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, 5000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGKILL');
  });
}

export function startListener(net: TestNetwork, ns: string, opts: ListenerOptions): Promise<Listener> {
  const child = net.spawnIn(ns, [process.execPath, listenerScript, opts.protocol, String(opts.family), String(opts.port), LISTENER_REPLY]);
  const peers: string[] = [];
  const waiters = new Set<() => void>();
  let stdout = '';
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  return new Promise<Listener>((resolve, reject) => {
    const timer = setTimeout(() => {
      void stopChild(child);
      reject(new Error(`listener ${opts.protocol}/${opts.port} in ${ns} did not start: ${stderr.trim()}`));
    }, opts.startTimeoutMs ?? 10_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`listener ${opts.protocol}/${opts.port} in ${ns} exited ${code}: ${stderr.trim()}`));
    });
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
      let nl: number;
      while ((nl = stdout.indexOf('\n')) >= 0) {
        const line = stdout.slice(0, nl);
        stdout = stdout.slice(nl + 1);
        const listening = /^LISTENING (\d+)$/.exec(line);
        if (listening) {
          clearTimeout(timer);
          resolve(listener(Number(listening[1])));
        } else if (line.startsWith('PEER ')) {
          peers.push(line.slice(5));
          for (const wake of waiters) wake();
        }
      }
    });
  });

  function listener(port: number): Listener {
    return {
      ns,
      protocol: opts.protocol,
      family: opts.family,
      port,
      peers,
      waitForPeers: (count, timeoutMs = 5000) =>
        new Promise<void>((resolve, reject) => {
          const check = (): void => {
            if (peers.length < count) return;
            clearTimeout(timer);
            waiters.delete(check);
            resolve();
          };
          const timer = setTimeout(() => {
            waiters.delete(check);
            reject(new Error(`listener ${opts.protocol}/${port} in ${ns}: ${peers.length} of ${count} peers after ${timeoutMs} ms`));
          }, timeoutMs);
          waiters.add(check);
          check();
        }),
      stop: () => stopChild(child),
    };
  }
}

export interface ProbeOptions {
  readonly protocol: ProbeProtocol;
  readonly address: string;
  readonly port: number;
  /** How long to wait for an answer (default 700 ms); process start-up is not counted. */
  readonly timeoutMs?: number;
  /**
   * Run the probe in this cgroup (cgroup.ts): the probe process starts, waits, is moved into the
   * cgroup from outside the namespace (writing its pid to `procsFile`), and only then connects,
   * so its socket is created in the cgroup.
   */
  readonly cgroup?: { readonly procsFile: string };
}

export function probe(net: TestNetwork, fromNs: string, opts: ProbeOptions): Promise<ProbeVerdict> {
  const timeoutMs = opts.timeoutMs ?? 700;
  const child = net.spawnIn(fromNs, [process.execPath, probeScript, opts.protocol, opts.address, String(opts.port), String(timeoutMs)], {
    env: { ...process.env, ...(opts.cgroup ? { PCUT_PROBE_WAIT: '1' } : {}) },
  });
  if (opts.cgroup) {
    // `ip netns exec` execs the command in place: child.pid is the probe's pid.
    writeFileSync(opts.cgroup.procsFile, String(child.pid));
    child.stdin?.write('go\n');
  }
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const what = `${opts.protocol} ${opts.address}:${opts.port} from ${fromNs}`;
  return new Promise<ProbeVerdict>((resolve, reject) => {
    const hardStop = setTimeout(() => {
      void stopChild(child);
      reject(new Error(`probe ${what} did not finish within ${timeoutMs + 15_000} ms`));
    }, timeoutMs + 15_000);
    // 'close', not 'exit': 'exit' may come before the last of stdout has been read.
    child.once('close', (code) => {
      clearTimeout(hardStop);
      const verdict = stdout.trim();
      if (code === 0 && (verdict === 'open' || verdict === 'refused' || verdict === 'timeout')) resolve(verdict);
      else reject(new Error(`probe ${what} failed (exit ${code}): ${stderr.trim() || stdout.trim()}`));
    });
  });
}
