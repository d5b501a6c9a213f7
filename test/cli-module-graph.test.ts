/**
 * The policy commands start fast because they load only what they use: `check`, `compile`,
 * `explain`, `diff` and `status` must never load gRPC, protobuf or pino (only `controller` and
 * `agent` need them; src/cli/main.ts imports a command's module when it runs). Each command is
 * run as its own process with a preload that, at exit, lists every package module it loaded
 * (`require.cache` holds the CommonJS ones, which these all are, also when reached by `import`).
 * Not a timing test: the module graph is what makes the time, and it does not vary with load.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, ROOT, ensureBuilt, run } from './support/built-cli.js';

const HEAVY = /node_modules\/(@grpc\/|protobufjs\/|@protobufjs\/|pino\/|consul\/)/;
let dir = '';
let recorder = '';

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pcut-module-graph-'));
  recorder = join(dir, 'record-modules.mjs');
  writeFileSync(
    recorder,
    [
      "import { createRequire } from 'node:module';",
      "import { writeFileSync } from 'node:fs';",
      'const cache = createRequire(import.meta.url).cache;',
      "process.on('exit', () => writeFileSync(process.env.PCUT_MODULES_OUT, Object.keys(cache).join('\\n')));",
      '',
    ].join('\n'),
  );
  await ensureBuilt();
}, 120_000);

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** The package modules (paths under node_modules) `portcullis <argv>` loaded. */
async function modulesLoadedBy(argv: readonly string[]): Promise<string[]> {
  const out = join(dir, `modules-${argv[0]}-${Math.random().toString(16).slice(2)}.txt`);
  await run(process.execPath, ['--import', recorder, BIN, ...argv], { cwd: ROOT, env: { ...process.env, PCUT_MODULES_OUT: out } }).catch((e: { code?: unknown }) => {
    if (typeof e.code !== 'number') throw e; // exit 1 is an answer here; a spawn failure is not
  });
  return readFileSync(out, 'utf8').split('\n').filter((f) => f.includes('node_modules'));
}

describe('what each CLI command loads', () => {
  it.each([
    [['check']],
    [['compile', '--host', 'node-1']],
    [['compile', '--controller', 'http://127.0.0.1:1', '--host', 'node-1']],
    [['explain', '--from', '/shop/web', '--to', '/shop/api', '--port', 'http']],
    [['diff', 'policies/shop', 'policies/shop']],
    [['status', '--controller-status', 'http://127.0.0.1:1', '--timeout', '1']],
    [['flows', '--controller', 'http://127.0.0.1:1', '--timeout', '1']],
    [['suggest', '--flows', 'no-such-file.json']],
    [['plan', 'policies/shop', 'policies/shop', '--flows', 'no-such-file.json']],
    [['--help']],
  ])('portcullis %j loads no gRPC, protobuf or pino', async (argv) => {
    const loaded = await modulesLoadedBy(argv);
    expect(loaded.filter((f) => HEAVY.test(f))).toEqual([]);
  }, 30_000);

  it('the recorder sees them where they are used: `controller --help` loads gRPC', async () => {
    const loaded = await modulesLoadedBy(['controller', '--help']);
    expect(loaded.some((f) => f.includes('node_modules/@grpc/grpc-js/'))).toBe(true);
  }, 30_000);
});
