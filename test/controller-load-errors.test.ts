/**
 * Failed loads of the policy and of the inventory are reported one way (src/controller/load-errors.ts):
 * every diagnostic logged at error level, bounded, a summary line, the same lines in /status.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { LOGGED_ERRORS, reportLoadFailure } from '../src/controller/load-errors.js';
import { StaticInventoryFeed } from '../src/controller/static-inventory-feed.js';
import { logCapture } from './support/log-capture.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function errors(n: number) {
  return Array.from({ length: n }, (_, i) => ({ file: 'f.yaml', line: i + 1, col: 1, message: `problem ${i}`, severity: 'error' as const }));
}

describe('reportLoadFailure', () => {
  it('logs every diagnostic and a summary, bounded, with the check that lists them all', () => {
    const { logger, lines } = logCapture();
    const shown = reportLoadFailure(logger, { input: 'inventory', path: '/etc/inv.yaml', errors: errors(LOGGED_ERRORS + 7), message: 'kept' });
    expect(shown).toHaveLength(LOGGED_ERRORS + 1);
    expect(shown[0]).toBe('f.yaml:1:1: problem 0');
    expect(shown[LOGGED_ERRORS]).toBe('… and 7 more errors (portcullis check --inventory /etc/inv.yaml lists them all)');
    expect(lines.filter((l) => l.level === 50 && typeof l.diagnostic === 'string').map((l) => l.diagnostic)).toEqual(shown);
    expect(lines.at(-1)).toMatchObject({ level: 50, msg: 'kept', path: '/etc/inv.yaml', errors: LOGGED_ERRORS + 7 });
  });

  it('a short list has no hint line', () => {
    expect(reportLoadFailure(undefined, { input: 'policy', path: 'p', errors: errors(2), message: 'm' })).toEqual(['f.yaml:1:1: problem 0', 'f.yaml:2:1: problem 1']);
  });
});

describe('the static inventory feed reports a failed load through it', () => {
  it('logs the diagnostics and the summary, and /status shows the same lines', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pcu-load-errors-'));
    dirs.push(dir);
    const path = join(dir, 'inventory.yaml');
    writeFileSync(path, 'hosts: 3\n');
    const { logger, lines } = logCapture();
    const feed = new StaticInventoryFeed({ path, logger, pollMs: 60_000 });
    const clusters: unknown[] = [];
    await feed.start((c) => clusters.push(c));
    try {
      expect(clusters).toHaveLength(0);
      const status = feed.status();
      expect(status.valid).toBe(false);
      const diagnostics = lines.filter((l) => typeof l.diagnostic === 'string').map((l) => l.diagnostic);
      expect(diagnostics.length).toBeGreaterThan(0);
      expect(status.lastError?.diagnostics).toEqual(diagnostics);
      expect(lines.at(-1)).toMatchObject({ level: 50, path, msg: 'inventory is invalid: no state is served until it is fixed' });
    } finally {
      await feed.stop();
    }
  });
});
