/** `portcullis diff`: the example against an edited copy shows exactly the changed members. */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli as cli } from './support/run-cli.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const SHOP = join(ROOT, 'policies/shop');

let tmp: string;
function editedCopy(name: string, file: string, from: string | RegExp, to: string): string {
  const dir = join(tmp, name);
  cpSync(SHOP, dir, { recursive: true });
  const path = join(dir, file);
  const before = readFileSync(path, 'utf8');
  const after = before.replace(from, to);
  expect(after, 'the edit must change the file').not.toBe(before);
  writeFileSync(path, after);
  return dir;
}

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'pcut-cli-diff-'));
});
afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
});

describe('portcullis diff', () => {
  it('says "no change" for the same policy', async () => {
    const r = await cli(['diff', SHOP, SHOP]);
    expect(r.code).toBe(0);
    expect(r.out).toBe('no change: both policies compile to the same state on 4 hosts\n');
  });

  it('shows exactly the members an edited rule adds and removes, on the right host only', async () => {
    // payments (node-2, node-3) no longer reaches the db: node-3 (payments only) loses postgres,
    // and on both payments hosts the app's own egress loses the db (per-app egress, on by default).
    const dir = editedCopy('no-payments-db', '20-rules.yaml', '    from: [api, payments]\n    to: db\n', '    from: [api]\n    to: db\n');
    const r = await cli(['diff', SHOP, dir]);
    expect(r.code, r.err).toBe(0);
    const lines = r.out.split('\n');
    expect(lines.filter((l) => /^ {2}[+-] /.test(l))).toEqual([
      '  - egress-ip4 /shop/payments|10.0.1.13,tcp:31300',
      '  - egress-ip6 /shop/payments|fd00:1::13,tcp:31300',
      '  + allow-ip4 10.0.1.12,tcp:31300',
      '  - allow-net4 10.0.1.12/31,tcp:31300',
      '  + allow-ip6 fd00:1::12,tcp:31300',
      '  - allow-net6 fd00:1::12/127,tcp:31300',
      '  - egress-ip4 /shop/payments|10.0.1.13,tcp:31300',
      '  - egress-ip6 /shop/payments|fd00:1::13,tcp:31300',
    ]);
    expect(lines[0]).toBe('node-2: 0 added, 2 removed');
    expect(lines).toContain('node-3: 2 added, 4 removed');
    expect(r.out).toContain('node-3: /shop/db postgres/tcp 31300 no longer allows 10.0.1.13, fd00:1::13\n');
    expect(r.out).toContain('node-2: /shop/payments may no longer reach /shop/db postgres/tcp 31300 on node-3 (10.0.1.13, fd00:1::13)\n');
    expect(r.out).toContain('unchanged (2): node-1, node-4\n');
  });

  it('shows a new port opened, in words, and a mode change on every host', async () => {
    const dir = editedCopy('web-metrics', '20-rules.yaml', '    to: api\n    ports: [http]\n', '    to: api\n    ports: [http, metrics]\n');
    const r = await cli(['diff', SHOP, dir]);
    expect(r.code).toBe(0);
    // /shop/api metrics is 31101 on node-1 and node-2, 31103 on node-4. Web hosts are node-1, node-2,
    // node-4, but node-1 (10.0.1.11) runs statsd, a monitoring app, so scrape-metrics already admits it.
    expect(r.out).toContain('  = node-1: /shop/api metrics/tcp 31101 now allows 10.0.1.12, 10.0.1.14, fd00:1::12, fd00:1::14\n');
    expect(r.out).toContain('  = node-4: /shop/api metrics/tcp 31103 now allows 10.0.1.12, 10.0.1.14, fd00:1::12, fd00:1::14\n');
    expect(r.out).not.toContain('no longer allows');
    expect(r.out).toContain('unchanged (1): node-3\n');
    expect(r.out).not.toMatch(/^node-3:/m);
    const added = r.out.split('\n').filter((l) => l.startsWith('  + '));
    expect(added.length).toBeGreaterThan(0);
    for (const l of added) expect(l).toMatch(/,tcp:(31101|31103)$/);

    const audit = editedCopy('audit', '00-defaults.yaml', /^ {2}mode: enforce$/m, '  mode: audit');
    const m = await cli(['diff', SHOP, audit, '--format', 'json']);
    expect(m.code).toBe(0);
    const body = JSON.parse(m.out);
    expect(Object.keys(body.changed)).toEqual(['node-1', 'node-2', 'node-3', 'node-4']);
    expect(body.changed['node-1']).toMatchObject({ mode: { from: 'enforce', to: 'audit' }, adds: {}, removes: {} });
    expect(body.unchanged).toEqual([]);
  });

  it('exits 1 and prints the diagnostics when a policy is broken; 2 without two policies', async () => {
    const broken = join(ROOT, 'test/fixtures/policy-errors/22-bad-action.yaml');
    const r = await cli(['diff', SHOP, broken]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^test\/fixtures\/policy-errors\/22-bad-action\.yaml:\d+:\d+: /m);
    expect(r.err).toContain('NEW did not load');
    expect((await cli(['diff', SHOP])).code).toBe(2);
    expect((await cli(['diff', SHOP, SHOP, '--policy', SHOP])).code).toBe(2);
    const help = await cli(['diff', '--help']);
    for (const opt of ['OLD', 'NEW', '--inventory', '--format', 'default', 'Example']) expect(help.out).toContain(opt);
  });
});
