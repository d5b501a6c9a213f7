/**
 * Reading policy and inventory paths from disk (src/sources): special files are refused before
 * anything blocks on them, a subdirectory of a policy directory is skipped with a warning naming
 * it, and an emptied file is an error, in `portcullis check` (in-process) and in the loaders.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, constants, mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { defaultInventoryPath } from '../src/package-root.js';
import { loadInventory } from '../src/sources/inventory-file.js';
import { loadPolicy } from '../src/sources/policy-files.js';
import { runCli as cli } from './support/run-cli.js';

const GOOD = 'groups:\n  web: { apps: ["/shop/web"] }\nrules:\n  - { from: any, to: web, ports: [http], action: allow }\n';

let dir = '';
const fifos: string[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'pcut-policy-files-'));
});

afterEach(() => {
  // A reader still blocked on a FIFO (the bug this guards against) is released by a writer's close.
  for (const fifo of fifos.splice(0)) {
    try {
      closeSync(openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK));
    } catch {
      // ENXIO: nobody is reading it.
    }
  }
  rmSync(dir, { recursive: true, force: true });
});

function mkfifo(path: string): string {
  execFileSync('mkfifo', [path]);
  fifos.push(path);
  return path;
}

/** Resolves with `promise`, or rejects when it takes longer than `ms` (it blocked). */
function within<T>(ms: number, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`still blocked after ${ms} ms`)), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

describe('special files', () => {
  it('check refuses a FIFO given as the policy, at once', async () => {
    const fifo = mkfifo(join(dir, 'policy.yaml'));
    const r = await within(3000, cli(['check', '--policy', fifo]));
    expect(r.code).toBe(1);
    expect(r.out).toContain(`${fifo}:1:1: cannot read policy file: it is a FIFO (named pipe), not a regular file`);
  });

  it('check refuses a FIFO among the files of a policy directory', async () => {
    writeFileSync(join(dir, '10-good.yaml'), GOOD);
    const fifo = mkfifo(join(dir, '20-pipe.yaml'));
    const r = await within(3000, cli(['check', '--policy', dir]));
    expect(r.code).toBe(1);
    expect(r.out).toContain(`${fifo}:1:1: cannot read policy file: it is a FIFO (named pipe), not a regular file`);
  });

  it('check refuses a FIFO or a device given as the inventory', async () => {
    const fifo = mkfifo(join(dir, 'inventory.yaml'));
    const r = await within(3000, cli(['check', '--inventory', fifo]));
    expect(r.code).toBe(1);
    expect(r.out).toContain(`${fifo}:1:1: cannot read inventory file: it is a FIFO (named pipe), not a regular file`);
    const zero = await within(3000, loadInventory('/dev/zero'));
    expect(zero).toEqual({ ok: false, errors: [expect.objectContaining({ file: '/dev/zero', line: 1, col: 1 })] });
    expect(!zero.ok && zero.errors[0]!.message).toBe('cannot read inventory file: it is a device, not a regular file');
  });

  it('a directory given as the inventory is an error, not a crash', async () => {
    const result = await loadInventory(dir);
    expect(!result.ok && result.errors[0]!.message).toBe('cannot read inventory file: it is a directory, not a regular file');
  });
});

describe('subdirectories of a policy directory', () => {
  it('are skipped with a warning naming them, in check output and in the load result', async () => {
    writeFileSync(join(dir, '10-good.yaml'), GOOD);
    mkdirSync(join(dir, 'team-b'));
    writeFileSync(join(dir, 'team-b', '10-more.yaml'), 'rules:\n  - { from: any, to: web, action: deny }\n');
    mkdirSync(join(dir, '.git')); // hidden: skipped silently
    const result = await loadPolicy(dir);
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.policy.rules).toHaveLength(1);
    expect(result.warnings).toEqual([
      expect.objectContaining({ file: join(dir, 'team-b'), line: 1, col: 1, severity: 'warning' }),
    ]);
    expect(result.warnings[0]!.message).toMatch(/^subdirectory 'team-b' is skipped: a policy directory is not read recursively/);

    const r = await cli(['check', '--policy', dir]);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toContain(`${join(dir, 'team-b')}:1:1: warning: subdirectory 'team-b' is skipped`);
    expect(r.out).toMatch(/; 0 errors, \d+ warnings\n$/);
  });
});

describe('empty policies', () => {
  it('an empty file and an empty directory are both errors', async () => {
    const file = join(dir, 'policy.yaml');
    writeFileSync(file, '');
    const r = await cli(['check', '--policy', file, '--inventory', defaultInventoryPath()]);
    expect(r.code).toBe(1);
    expect(r.out).toContain(`${file}:1:1: the policy file is empty`);

    const empty = join(dir, 'empty');
    mkdirSync(empty);
    const d = await cli(['check', '--policy', empty]);
    expect(d.code).toBe(1);
    expect(d.out).toContain(`${empty}:1:1: no policy files in this directory`);
  });
});
