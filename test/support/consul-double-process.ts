/**
 * Test-side handle of the Consul API double running as a child process
 * (consul-double-main.ts, run from dist/), e.g. inside a test network namespace (`spawn` =
 * TestNetwork.spawnIn for it, as cluster-harness.ts does for the Marathon double).
 *
 * One JSON line per command on the child's stdin, one answer line on its stdout. Every call is
 * bounded (`timeoutMs`); the child exiting rejects every pending call; `stop()` closes the child
 * (SIGKILL after a grace period) and is idempotent.
 */
import { spawn as spawnChild, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { packageRoot } from '../../src/package-root.js';
import type { CheckStatus, OutageMode, RemoteInstance } from './consul-double.js';

export interface ConsulDoubleProcessOptions {
  readonly node?: string;
  readonly nodeAddress?: string;
  /** Starts the child from an argv (default: a plain child process of this one). */
  readonly spawn?: (argv: readonly string[]) => ChildProcess;
  /** Deadline for the ready line, and for each command's answer. Default 15 s and 10 s. */
  readonly startTimeoutMs?: number;
  readonly timeoutMs?: number;
}

export interface LocalServiceInfo {
  readonly id: string;
  readonly name: string;
  readonly address: string;
  readonly port: number;
  readonly checks: readonly { readonly checkId: string; readonly status: CheckStatus; readonly http: string }[];
}

interface Pending {
  readonly resolve: (v: unknown) => void;
  readonly reject: (e: Error) => void;
  readonly timer: NodeJS.Timeout;
}

export function consulDoubleMainScript(): string {
  return path.join(packageRoot(), 'dist', 'test', 'support', 'consul-double-main.js');
}

export class ConsulDoubleProcess {
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private exited: string | undefined;
  private stopping: Promise<void> | undefined;
  stderr = '';

  private constructor(
    readonly child: ChildProcess,
    /** The double's URL as seen from the namespace it runs in. */
    readonly url: string,
    private readonly timeoutMs: number,
  ) {}

  static start(o: ConsulDoubleProcessOptions = {}): Promise<ConsulDoubleProcess> {
    const script = consulDoubleMainScript();
    if (!existsSync(script)) return Promise.reject(new Error(`${script} is missing: run \`npm run build\` first`));
    const argv = [process.execPath, script, ...(o.node ? ['--node', o.node] : []), ...(o.nodeAddress ? ['--node-address', o.nodeAddress] : [])];
    const child = o.spawn ? o.spawn(argv) : spawnChild(argv[0] as string, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    child.stdin?.on('error', () => undefined);
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    return new Promise((resolve, reject) => {
      let handle: ConsulDoubleProcess | undefined;
      const fail = (why: string): void => {
        clearTimeout(timer);
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
        reject(new Error(`Consul double did not start: ${why}${stderr.trim() ? `\n${stderr.trim()}` : ''}`));
      };
      const timer = setTimeout(() => fail(`no ready line within ${o.startTimeoutMs ?? 15_000} ms`), o.startTimeoutMs ?? 15_000);
      child.once('error', (e) => fail(e.message));
      child.once('exit', (code, signal) => (handle ? handle.onExit(`exited (code ${code}, signal ${signal})`) : fail(`exited (code ${code}, signal ${signal})`)));
      createInterface({ input: child.stdout! }).on('line', (line) => {
        let msg: Record<string, unknown>;
        try {
          msg = JSON.parse(line) as Record<string, unknown>;
        } catch {
          return;
        }
        if (handle) return handle.onLine(msg);
        if (msg.ready === true && typeof msg.url === 'string') {
          clearTimeout(timer);
          handle = new ConsulDoubleProcess(child, msg.url, o.timeoutMs ?? 10_000);
          child.stderr?.on('data', (d: string) => handle && (handle.stderr += d));
          handle.stderr = stderr;
          resolve(handle);
        }
      });
    });
  }

  private onLine(msg: Record<string, unknown>): void {
    const p = this.pending.get(Number(msg.id));
    if (!p) return;
    this.pending.delete(Number(msg.id));
    clearTimeout(p.timer);
    if (msg.ok === true) p.resolve(msg.result);
    else p.reject(new Error(String(msg.error)));
  }

  private onExit(why: string): void {
    this.exited = why;
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new Error(`Consul double ${why}`));
    }
    this.pending.clear();
  }

  call<T = unknown>(cmd: string, ...args: unknown[]): Promise<T> {
    if (this.exited !== undefined) return Promise.reject(new Error(`Consul double ${this.exited}; cannot ${cmd}`));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`Consul double: no answer to ${cmd} within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      this.child.stdin?.write(`${JSON.stringify({ id, cmd, args })}\n`);
    });
  }

  setCheck = (idOrService: string, status: CheckStatus, output = ''): Promise<null> => this.call('setCheck', idOrService, status, output);
  addRemoteInstance = (r: RemoteInstance): Promise<null> => this.call('addRemoteInstance', r);
  removeInstance = (node: string, id: string): Promise<boolean> => this.call('removeInstance', node, id);
  forgetAgent = (): Promise<number> => this.call('forgetAgent');
  expireSession = (id: string): Promise<boolean> => this.call('expireSession', id);
  touch = (): Promise<null> => this.call('touch');
  /** Names a snapshot kept in the child, for `restore`. */
  snapshot = (): Promise<string> => this.call('snapshot');
  restore = (name: string): Promise<null> => this.call('restore', name);
  setOutage = (mode: OutageMode): Promise<null> => this.call('setOutage', mode);
  localServices = (): Promise<LocalServiceInfo[]> => this.call('localServices');
  blockedQueries = (): Promise<number> => this.call('blockedQueries');
  requests = (): Promise<Record<string, number>> => this.call('requests');

  /** Closes the double (SIGKILL after `graceMs`); idempotent. */
  stop(graceMs = 3_000): Promise<void> {
    this.stopping ??= new Promise<void>((resolve) => {
      if (this.exited !== undefined) return resolve();
      const kill = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
      this.child.once('exit', () => {
        clearTimeout(kill);
        resolve();
      });
      this.call('close').catch(() => undefined);
    });
    return this.stopping;
  }
}
