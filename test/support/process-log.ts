/**
 * A child process whose stdout/stderr are pino JSON lines (the controller, an agent), kept in
 * memory so tests can wait on a line with a deadline instead of sleeping.
 */
import type { ChildProcess } from 'node:child_process';

export type LogLine = Readonly<Record<string, unknown>>;

export interface LoggedProcess {
  readonly child: ChildProcess;
  /** Every line of stdout and stderr, in arrival order. */
  readonly text: () => string;
  /** The lines that parsed as JSON objects. */
  readonly lines: () => readonly LogLine[];
  /** Resolves with the first line (past or future) matching `match`; rejects after `deadlineMs` or on exit. */
  waitFor(match: (line: LogLine) => boolean, deadlineMs: number, what?: string): Promise<LogLine>;
  readonly exited: () => boolean;
  /** Sends `signal` and waits (bounded) for the exit; SIGKILL after `graceMs`. */
  stop(signal: NodeJS.Signals, graceMs?: number): Promise<void>;
}

export function logged(child: ChildProcess, label: string): LoggedProcess {
  const raw: string[] = [];
  const parsed: LogLine[] = [];
  const wakers = new Set<() => void>();
  let exited = false;
  const feed = (stream: NodeJS.ReadableStream | null): void => {
    let buf = '';
    stream?.setEncoding('utf8');
    stream?.on('data', (chunk: string) => {
      buf += chunk;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        raw.push(line);
        try {
          const value: unknown = JSON.parse(line);
          if (value !== null && typeof value === 'object' && !Array.isArray(value)) parsed.push(value as LogLine);
        } catch {
          // not JSON: kept in raw only
        }
        for (const wake of [...wakers]) wake();
      }
    });
  };
  feed(child.stdout);
  feed(child.stderr);
  child.once('exit', () => {
    exited = true;
    for (const wake of [...wakers]) wake();
  });
  const text = (): string => raw.join('\n');
  return {
    child,
    text,
    lines: () => parsed,
    exited: () => exited,
    waitFor: (match, deadlineMs, what = 'a matching log line') =>
      new Promise<LogLine>((resolve, reject) => {
        let timer: NodeJS.Timeout | undefined;
        const done = (): void => {
          clearTimeout(timer);
          wakers.delete(check);
        };
        const check = (): void => {
          const hit = parsed.find(match);
          if (hit) {
            done();
            resolve(hit);
          } else if (exited) {
            done();
            reject(new Error(`${label} exited before ${what}:\n${text().slice(-4000)}`));
          }
        };
        timer = setTimeout(() => {
          done();
          reject(new Error(`${label}: no ${what} within ${deadlineMs} ms:\n${text().slice(-4000)}`));
        }, deadlineMs);
        wakers.add(check);
        check();
      }),
    stop: (signal, graceMs = 5000) => {
      if (exited) return Promise.resolve();
      return new Promise<void>((resolve) => {
        const hard = setTimeout(() => child.kill('SIGKILL'), graceMs);
        const giveUp = setTimeout(resolve, graceMs + 5000);
        child.once('exit', () => {
          clearTimeout(hard);
          clearTimeout(giveUp);
          resolve();
        });
        child.kill(signal);
      });
    },
  };
}
