/**
 * Test-side handle of a Marathon API double running as a child process
 * (marathon-double-main.ts, run from dist/), typically inside the controller's network namespace
 * (cluster-harness.ts passes `spawn` = TestNetwork.spawnIn for that namespace).
 *
 * Every command is one JSON line on the child's stdin and is answered by one line on its stdout
 * (see marathon-double-main.ts); `call` resolves with the result and `at`, the wall-clock time
 * (ms since the epoch) at which the child ran the command, i.e. emitted its events. Each call is
 * bounded (`timeoutMs`); the child exiting rejects every pending call. `stop()` ends the child
 * (close, then SIGKILL after a grace period) and is idempotent.
 */
import { spawn as spawnChild, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { packageRoot } from '../../src/package-root.js';
import type { DoubleApp, DoubleFormat, FailingMode } from './marathon-double.js';

export type { DoubleApp, DoubleFormat, DoublePort, FailingMode } from './marathon-double.js';

export interface DoubleInfo {
  /** Open SSE streams (/v2/events). */
  readonly streams: number;
  /** Requests received (the double's own appsJson reads excluded). */
  readonly requests: number;
  readonly format: DoubleFormat;
}

interface Commands {
  addApp: { args: [DoubleApp]; result: null };
  removeApp: { args: [string]; result: null };
  startTask: { args: [string, string, readonly number[]]; result: string };
  killTask: { args: [string]; result: null };
  moveTask: { args: [string, string, readonly number[]]; result: string };
  sendRaw: { args: [string]; result: null };
  dropStreams: { args: []; result: number };
  setFailing: { args: [FailingMode]; result: null };
  setStandbyRedirect: { args: [string | null]; result: null };
  info: { args: []; result: DoubleInfo };
  requests: { args: []; result: { method: string; url: string }[] };
  appsJson: { args: []; result: unknown };
  close: { args: []; result: null };
}
export type DoubleCommand = keyof Commands;

export interface Timed<T> {
  readonly result: T;
  /** Wall-clock ms since the epoch (fractional) when the child ran the command. */
  readonly at: number;
}

export interface DoubleProcessOptions {
  readonly format?: DoubleFormat;
  /** Starts the child from an argv (default: a plain child process of this one). */
  readonly spawn?: (argv: readonly string[]) => ChildProcess;
  /** Deadline for the child's ready line. Default 15 s. */
  readonly startTimeoutMs?: number;
  /** Deadline for each command's answer. Default 10 s. */
  readonly timeoutMs?: number;
}

/** The compiled entry script; tests import TS sources but child processes run from dist/. */
export function doubleMainScript(): string {
  return path.join(packageRoot(), 'dist', 'test', 'support', 'marathon-double-main.js');
}

interface Pending {
  readonly resolve: (v: Timed<unknown>) => void;
  readonly reject: (e: Error) => void;
  readonly timer: NodeJS.Timeout;
  readonly what: string;
}

export class MarathonDoubleProcess {
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private stderr = '';
  private exitedWith: string | undefined;
  private stopping: Promise<void> | undefined;

  private constructor(
    readonly child: ChildProcess,
    /** The double's base URL as seen from the namespace it runs in (http://127.0.0.1:PORT). */
    readonly url: string,
    readonly port: number,
    private readonly timeoutMs: number,
  ) {}

  static start(options: DoubleProcessOptions = {}): Promise<MarathonDoubleProcess> {
    const script = doubleMainScript();
    if (!existsSync(script)) return Promise.reject(new Error(`${script} is missing: run \`npm run build\` first`));
    const argv = [process.execPath, script, '--format', options.format ?? 'v1.5'];
    const child = options.spawn ? options.spawn(argv) : spawnChild(argv[0] as string, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    const startTimeoutMs = options.startTimeoutMs ?? 15_000;
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.stdin?.on('error', () => undefined);
    return new Promise<MarathonDoubleProcess>((resolve, reject) => {
      let buf = '';
      let handle: MarathonDoubleProcess | undefined;
      const fail = (why: string): void => {
        clearTimeout(timer);
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
        reject(new Error(`Marathon double did not start: ${why}${stderr.trim() ? `\n${stderr.trim()}` : ''}`));
      };
      const timer = setTimeout(() => fail(`no ready line within ${startTimeoutMs} ms`), startTimeoutMs);
      child.once('error', (e) => fail(e.message));
      child.once('exit', (code, signal) => {
        if (handle) handle.onExit(`exited (code ${code}, signal ${signal})`);
        else fail(`exited (code ${code}, signal ${signal})`);
      });
      child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
        buf += chunk;
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          let msg: Record<string, unknown>;
          try {
            msg = JSON.parse(line) as Record<string, unknown>;
          } catch {
            continue; // not a protocol line
          }
          if (handle) {
            handle.onLine(msg);
          } else if (msg['ready'] === true && typeof msg['url'] === 'string') {
            clearTimeout(timer);
            handle = new MarathonDoubleProcess(child, msg['url'], Number(msg['port']), options.timeoutMs ?? 10_000);
            handle.stderr = stderr;
            child.stderr?.on('data', (d: string) => {
              if (handle) handle.stderr += d;
            });
            resolve(handle);
          }
        }
      });
    });
  }

  /** Sends one command; resolves with its result and the child's timestamp. */
  call<C extends DoubleCommand>(cmd: C, ...args: Commands[C]['args']): Promise<Timed<Commands[C]['result']>> {
    if (this.exitedWith !== undefined) return Promise.reject(new Error(`Marathon double ${this.exitedWith}; cannot ${cmd}`));
    const id = this.nextId++;
    const what = `${cmd}(${JSON.stringify(args).slice(1, -1).slice(0, 200)})`;
    return new Promise<Timed<Commands[C]['result']>>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`Marathon double: no answer to ${what} within ${this.timeoutMs} ms${this.stderrTail()}`));
      }, this.timeoutMs);
      this.pending.set(id, { resolve: resolve as (v: Timed<unknown>) => void, reject, timer, what });
      this.child.stdin?.write(`${JSON.stringify({ id, cmd, args })}\n`);
    });
  }

  async addApp(app: DoubleApp): Promise<void> {
    await this.call('addApp', app);
  }

  async removeApp(id: string): Promise<void> {
    await this.call('removeApp', id);
  }

  /** Starts a task (TASK_RUNNING event); returns its id. */
  async startTask(appId: string, host: string, ports: readonly number[]): Promise<string> {
    return (await this.call('startTask', appId, host, ports)).result;
  }

  async killTask(taskId: string): Promise<void> {
    await this.call('killTask', taskId);
  }

  /** Kill, then start the replacement on `newHost`; returns the new task id. */
  async moveTask(taskId: string, newHost: string, newPorts: readonly number[]): Promise<string> {
    return (await this.call('moveTask', taskId, newHost, newPorts)).result;
  }

  async sendRaw(text: string): Promise<void> {
    await this.call('sendRaw', text);
  }

  /** Cuts every open event stream; returns how many were open. */
  async dropStreams(): Promise<number> {
    return (await this.call('dropStreams')).result;
  }

  async setFailing(mode: FailingMode): Promise<void> {
    await this.call('setFailing', mode);
  }

  async setStandbyRedirect(toUrl: string | null): Promise<void> {
    await this.call('setStandbyRedirect', toUrl);
  }

  async info(): Promise<DoubleInfo> {
    return (await this.call('info')).result;
  }

  async requests(): Promise<{ method: string; url: string }[]> {
    return (await this.call('requests')).result;
  }

  /** What `GET /v2/apps?embed=apps.tasks` answers now (what a full re-list would read). */
  async appsJson(): Promise<unknown> {
    return (await this.call('appsJson')).result;
  }

  exited(): boolean {
    return this.exitedWith !== undefined;
  }

  /** What the child wrote on stderr (diagnostics). */
  stderrText(): string {
    return this.stderr;
  }

  /** Closes the double (streams dropped, server closed) and waits for the exit; SIGKILL after `graceMs`. */
  stop(graceMs = 3000): Promise<void> {
    this.stopping ??= new Promise<void>((resolve) => {
      if (this.exitedWith !== undefined) return resolve();
      const hard = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
      const giveUp = setTimeout(resolve, graceMs + 5000);
      this.child.once('exit', () => {
        clearTimeout(hard);
        clearTimeout(giveUp);
        resolve();
      });
      this.child.stdin?.end();
    });
    return this.stopping;
  }

  private stderrTail(): string {
    const t = this.stderr.trim();
    return t ? `\nstderr: ${t.slice(-2000)}` : '';
  }

  private onLine(msg: Record<string, unknown>): void {
    const id = msg['id'];
    if (typeof id !== 'number') return;
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    clearTimeout(p.timer);
    const at = typeof msg['at'] === 'number' ? msg['at'] : Number.NaN;
    if (msg['ok'] === true) p.resolve({ result: msg['result'], at });
    else p.reject(new Error(`Marathon double: ${p.what} failed: ${String(msg['error'])}`));
  }

  private onExit(why: string): void {
    this.exitedWith = why;
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      this.pending.delete(id);
      p.reject(new Error(`Marathon double ${why} before answering ${p.what}${this.stderrTail()}`));
    }
  }
}
