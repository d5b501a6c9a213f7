/**
 * `npm run demo` end to end: the compiled demo entry brings up the shop on namespaced hosts with
 * mTLS, probes, prints the table and tears down. It must exit 0 (every probe agrees with the
 * policy), show both ALLOWED and REFUSED rows, and leave no namespace of its run behind.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../../src/package-root.js';
import { listNamespaces } from '../support/netns.js';
import { isRoot } from './e2e-support.js';

const entry = path.join(packageRoot(), 'dist', 'test', 'demo', 'main.js');

function runDemo(timeoutMs: number): Promise<{ code: number | null; out: string; pid: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [entry], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
    const timer = setTimeout(() => {
      child.kill('SIGINT');
      reject(new Error(`demo did not finish within ${timeoutMs} ms:\n${out}`));
    }, timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out, pid: child.pid ?? -1 });
    });
  });
}

describe.skipIf(!isRoot)('e2e: npm run demo', () => {
  it('runs the shop demo, every probe agrees with the policy, and cleans up', async () => {
    expect(existsSync(entry), `${entry} is missing: build first (npm run build)`).toBe(true);
    const { code, out, pid } = await runDemo(110_000);
    expect(code, out).toBe(0);
    expect(out).toMatch(/^.*\bALLOWED\b.*\bok$/m);
    expect(out).toMatch(/^.*\bREFUSED\b.*\bok$/m);
    expect(out).not.toMatch(/MISMATCH/);
    expect(out).toMatch(/All \d+ probes agree with the policy/);
    expect((await listNamespaces()).filter((n) => n.startsWith(`pcut-${pid}-`))).toEqual([]);
  }, 120_000);
});
