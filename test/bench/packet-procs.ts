/**
 * Starting packet-tcp-tool.js processes inside test namespaces (through TestNetwork.spawnIn, so
 * `destroy()` kills them whatever happens) and reading their output. Every wait is bounded.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import type { TestNetwork } from '../support/netns.js';

const TOOL = path.join(import.meta.dirname, 'packet-tcp-tool.js');

function lines(child: ChildProcess, onLine: (line: string) => void): void {
  let buffer = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    buffer += chunk;
    let nl: number;
    while ((nl = buffer.indexOf('\n')) >= 0) {
      onLine(buffer.slice(0, nl));
      buffer = buffer.slice(nl + 1);
    }
  });
}

function stderrOf(child: ChildProcess): () => string {
  let text = '';
  child.stderr?.setEncoding('utf8').on('data', (d: string) => {
    if (text.length < 10_000) text += d;
  });
  return () => text.trim();
}

function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

/** Waits for the child to exit, SIGKILL after `ms`. */
function waitExit(child: ChildProcess, ms: number): Promise<void> {
  if (exited(child)) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      resolve();
    }, ms);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

export interface TcpServer {
  readonly port: number;
  /** The server process (node itself: `ip netns exec` execs it). */
  readonly pid: number | undefined;
  stop(): Promise<void>;
}

export function startServer(net: TestNetwork, ns: string, port: number): Promise<TcpServer> {
  const child = net.spawnIn(ns, [process.execPath, TOOL, 'server', String(port)]);
  const stderr = stderrOf(child);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`server in ${ns} did not start: ${stderr()}`));
    }, 10_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server in ${ns} exited ${code}: ${stderr()}`));
    });
    lines(child, (line) => {
      const m = /^LISTENING (\d+)$/.exec(line);
      if (!m) return;
      clearTimeout(timer);
      resolve({
        port: Number(m[1]),
        pid: child.pid,
        stop: async () => {
          child.stdin?.end();
          await waitExit(child, 3000);
        },
      });
    });
  });
}

export interface RateResult {
  readonly connections: number;
  readonly attempts: number;
  readonly seconds: number;
  readonly perSecond: number;
  readonly failures: Record<string, number>;
}

/**
 * Runs the connection-rate client in `ns` for `seconds` (plus warm-up) and returns its result.
 * `cgroupProcs`: the client runs in that cgroup (it enters the namespace with `nsenter --net` so
 * it sees the cgroup2 mount, and moves itself there before its first socket).
 */
export function runRate(net: TestNetwork, ns: string, address: string, port: number, seconds: number, concurrency: number, cgroupProcs?: string): Promise<RateResult> {
  const timeoutMs = 900;
  const warmupMs = 300;
  const argv = [process.execPath, TOOL, 'rate', address, String(port), String(seconds), String(concurrency), String(timeoutMs), String(warmupMs)];
  const child =
    cgroupProcs === undefined
      ? net.spawnIn(ns, argv)
      : spawn('nsenter', [`--net=/run/netns/${ns}`, ...argv], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, PCUT_CGROUP_PROCS: cgroupProcs } });
  child.stdin?.end();
  const stderr = stderrOf(child);
  let result: RateResult | undefined;
  lines(child, (line) => {
    if (line.startsWith('RESULT ')) result = JSON.parse(line.slice(7)) as RateResult;
  });
  return new Promise((resolve, reject) => {
    const hard = setTimeout(() => child.kill('SIGKILL'), seconds * 1000 + warmupMs + timeoutMs + 15_000);
    child.once('exit', (code) => {
      clearTimeout(hard);
      if (code === 0 && result) resolve(result);
      else reject(new Error(`rate client in ${ns} failed (exit ${code}): ${stderr()}`));
    });
  });
}

export type ProbeVerdict = 'open' | 'timeout' | 'refused' | string;

export interface ProbeRecord {
  readonly start: number;
  readonly end: number;
  readonly verdict: ProbeVerdict;
}

export interface Prober {
  /** Attempts recorded so far. */
  readonly records: readonly ProbeRecord[];
  /** Asks the prober to stop, waits for its in-flight attempts, returns every record. */
  stop(): Promise<ProbeRecord[]>;
}

export interface ProberOptions {
  readonly address: string;
  readonly port: number;
  readonly timeoutMs: number;
  readonly concurrency: number;
  readonly pauseMs: number;
  readonly maxSeconds: number;
}

export function startProber(net: TestNetwork, ns: string, o: ProberOptions): Prober {
  const argv = [process.execPath, TOOL, 'probe', o.address, String(o.port), String(o.timeoutMs), String(o.concurrency), String(o.pauseMs), String(o.maxSeconds)];
  const child = net.spawnIn(ns, argv);
  const stderr = stderrOf(child);
  const records: ProbeRecord[] = [];
  lines(child, (line) => {
    const m = /^P (\S+) (\S+) (\S+)$/.exec(line);
    if (m) records.push({ start: Number(m[1]), end: Number(m[2]), verdict: m[3]! });
  });
  return {
    records,
    stop: async () => {
      child.stdin?.end();
      await waitExit(child, o.timeoutMs + 5000);
      if (child.exitCode !== 0) throw new Error(`prober in ${ns} ended with ${child.exitCode ?? child.signalCode}: ${stderr()}`);
      return records;
    },
  };
}
