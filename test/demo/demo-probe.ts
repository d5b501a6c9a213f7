/**
 * Listeners and probes for the demo, inside the demo's namespaces. The same small scripts as the
 * test suite (test/support/listener.mjs, probe-client.mjs), found from the package root so this
 * works from dist/ (TypeScript does not copy .mjs files). Every wait is bounded.
 */
import type { ChildProcess } from 'node:child_process';
import path from 'node:path';
import { packageRoot } from '../../src/package-root.js';
import type { Protocol } from '../../src/policy/policy-model.js';
import type { TestNetwork } from '../support/netns.js';

const script = (name: string): string => path.join(packageRoot(), 'test', 'support', name);

function collect(child: ChildProcess): { out: () => string; err: () => string } {
  let out = '';
  let err = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (err += d));
  return { out: () => out, err: () => err };
}

/** Starts a listener and resolves once it is bound (or rejects after 10 s). */
export function startDemoListener(net: TestNetwork, ns: string, protocol: Protocol, port: number, family: 4 | 6): Promise<void> {
  const child = net.spawnIn(ns, [process.execPath, script('listener.mjs'), protocol, String(family), String(port), 'portcullis-demo']);
  const io = collect(child);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`listener ${protocol}/${port} in ${ns} did not start: ${io.err()}`)), 10_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`listener ${protocol}/${port} in ${ns} exited ${code}: ${io.err()}`));
    });
    child.stdout?.on('data', () => {
      if (/^LISTENING \d+$/m.test(io.out())) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
}

export type DemoVerdict = 'open' | 'refused' | 'timeout';

export function demoProbe(net: TestNetwork, fromNs: string, protocol: Protocol, address: string, port: number, timeoutMs: number): Promise<DemoVerdict> {
  const child = net.spawnIn(fromNs, [process.execPath, script('probe-client.mjs'), protocol, address, String(port), String(timeoutMs)]);
  const io = collect(child);
  return new Promise((resolve, reject) => {
    const hard = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`probe ${protocol} ${address}:${port} did not finish`));
    }, timeoutMs + 15_000);
    child.once('exit', (code) => {
      clearTimeout(hard);
      const v = io.out().trim();
      if (code === 0 && (v === 'open' || v === 'refused' || v === 'timeout')) resolve(v);
      else reject(new Error(`probe ${protocol} ${address}:${port} failed (exit ${code}): ${io.err().trim() || v}`));
    });
  });
}
