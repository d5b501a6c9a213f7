/**
 * `portcullis check`: in-process through main(argv, io), plus one run of the built entry point.
 * Every malformed policy fixture (test/fixtures/policy-errors, `# expect: L:C text` headers)
 * must fail with exit 1 and print each expected `file:line:col: text` line.
 */
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, ROOT, ensureBuilt, run } from './support/built-cli.js';
import { egressWarnings } from '../src/cli/controller-client.js';
import { startEgressAgents, type EgressAgents } from './support/egress-agents.js';
import { runCli as cli } from './support/run-cli.js';

const FIXTURES = join(ROOT, 'test/fixtures/policy-errors');

function expectations(fixture: string): { file: string; line: number; col: number; text: string }[] {
  const p = join(FIXTURES, fixture);
  const files = statSync(p).isDirectory() ? readdirSync(p).sort().map((n) => join(p, n)) : [p];
  return files.flatMap((file) =>
    [...readFileSync(file, 'utf8').matchAll(/^# expect: (\d+):(\d+) (.+)$/gm)].map((m) => ({ file, line: Number(m[1]), col: Number(m[2]), text: m[3]! })),
  );
}

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'pcut-cli-check-'));
});
afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
});

describe('portcullis check', () => {
  it('passes the shipped examples with a one-line summary', async () => {
    const r = await cli(['check']);
    expect(r.code, r.out + r.err).toBe(0);
    expect(r.out).toMatch(/^policy ok: 7 groups, 3 networks, 11 rules; inventory: 4 hosts, 9 apps, 14 tasks; 0 errors, 0 warnings\n$/);
  });

  const fixtures = readdirSync(FIXTURES).sort();
  it('has fixtures to run', () => {
    expect(fixtures.length).toBeGreaterThanOrEqual(30);
  });

  it.each(fixtures)('fails on %s and prints every expected file:line:col line', async (fixture) => {
    const r = await cli(['check', '--policy', join(FIXTURES, fixture)]);
    expect(r.code, r.out).toBe(1);
    const lines = r.out.split('\n');
    const wanted = expectations(fixture);
    expect(wanted.length).toBeGreaterThan(0);
    for (const w of wanted) {
      const prefix = `${relative(ROOT, w.file)}:${w.line}:${w.col}: `;
      expect(lines.some((l) => l.startsWith(prefix) && l.includes(w.text)), `${prefix}${w.text} in:\n${r.out}`).toBe(true);
    }
    expect(lines.at(-2)).toMatch(/[1-9]\d* errors?, \d+ warnings?/);
  });

  it('fails on a broken inventory and prints its diagnostics', async () => {
    const inv = join(ROOT, 'test/fixtures/inventory/many-errors.yaml');
    const r = await cli(['check', '--inventory', inv]);
    expect(r.code).toBe(1);
    expect(r.out).toContain('test/fixtures/inventory/many-errors.yaml:12:17: ');
    expect(r.out).toContain("test/fixtures/inventory/many-errors.yaml:23:12: unknown app '/wbe'");
    expect(r.out).toMatch(/inventory test\/fixtures\/inventory\/many-errors\.yaml: 8 errors; 8 errors, 0 warnings/);
  });

  it('reports a missing policy path and exits 1', async () => {
    const r = await cli(['check', '--policy', join(tmp, 'nope.yaml')]);
    expect(r.code).toBe(1);
    expect(r.out).toContain(`${join(tmp, 'nope.yaml')}:1:1: cannot read policy`);
  });

  it('prints compile reports and lint warnings as warnings, located in the inventory, and exits 0', async () => {
    const inv = readFileSync(join(ROOT, 'policies/inventory.yaml'), 'utf8').replace(
      '  - id: /shop/api\n    network: bridge\n',
      '  - id: /shop/api\n    network: bridge\n    labels: { portcullis.allow-from: "lb" }\n',
    );
    expect(inv).toContain('allow-from: "lb"');
    writeFileSync(join(tmp, 'inventory.yaml'), inv);
    const dir = join(tmp, 'policy');
    cpSync(join(ROOT, 'policies/shop'), dir, { recursive: true });
    writeFileSync(join(dir, '30-extra.yaml'), 'groups:\n  ghosts:\n    apps: ["/nowhere/*"]\n');
    const r = await cli(['check', '--policy', dir, '--inventory', join(tmp, 'inventory.yaml')], tmp);
    expect(r.code, r.out).toBe(0);
    const apiLine = inv.split('\n').findIndex((l) => l.includes('id: /shop/api')) + 1;
    expect(r.out).toMatch(new RegExp(`^inventory\\.yaml:${apiLine}:5: warning: .*lb.*\\[label-rejected\\]$`, 'm'));
    expect(r.out).toMatch(/^policy\/30-extra\.yaml:2:3: warning: group 'ghosts' selects no app/m);
    expect(r.out).toMatch(/0 errors, 2 warnings\n$/);
  });

  it('prints JSON with --format json', async () => {
    const r = await cli(['check', '--format', 'json', '--policy', join(FIXTURES, '12-unknown-group-in-from.yaml')]);
    expect(r.code).toBe(1);
    const body = JSON.parse(r.out);
    expect(body.ok).toBe(false);
    expect(body.policy.ok).toBe(false);
    expect(body.inventory).toMatchObject({ ok: true, hosts: 4 });
    expect(body.diagnostics[0]).toMatchObject({ line: 10, col: 11, severity: 'error' });
  });

  it('exits 2 on an unknown option or format, 0 on --help', async () => {
    const bad = await cli(['check', '--polcy', 'x']);
    expect(bad.code).toBe(2);
    expect(bad.err).toContain('--polcy');
    expect((await cli(['check', '--format', 'xml'])).code).toBe(2);
    const help = await cli(['check', '--help']);
    expect(help.code).toBe(0);
    for (const opt of ['--policy', '--inventory', '--format', 'default', 'Example']) expect(help.out).toContain(opt);
  });
});

describe('portcullis check and the agents\' egress', () => {
  let agents: EgressAgents | undefined;
  beforeAll(async () => {
    agents = await startEgressAgents([
      { hostId: 'node-1', egress: { supported: true, enforcing: true, mappedTasks: 2 } },
      { hostId: 'node-2', egress: { supported: true, enforcing: false, reason: 'xt_cgroup missing\u001b[2J' } },
      { hostId: 'node-3' }, // a release before egress
    ]);
  }, 30_000);
  afterAll(async () => {
    await agents?.close();
  });

  it('with --controller warns of every host whose agent cannot enforce egress, with its reason, and exits 0', async () => {
    const r = await cli(['check', '--controller', agents!.base]);
    expect(r.code, r.out).toBe(0);
    const where = `${agents!.base}/status:1:1: warning: `;
    const lines = r.out.split('\n');
    expect(lines).toContain(`${where}host node-2: its agent cannot enforce egress: host-level only — xt_cgroup missing [2J`);
    expect(lines.filter((l) => l.startsWith(`${where}host node-3: its agent cannot enforce egress: host-level only — `))).toHaveLength(1);
    expect(lines.filter((l) => l.includes('cannot enforce egress'))).toHaveLength(2);
    expect(r.out).toMatch(/; 0 errors, 2 warnings\n$/);
    const json = JSON.parse((await cli(['check', '--controller', agents!.base, '--format', 'json'])).out) as { ok: boolean; warnings: number; diagnostics: { severity: string; message: string }[] };
    expect(json).toMatchObject({ ok: true, warnings: 2 });
    expect(json.diagnostics.map((d) => d.message.split(':')[0])).toEqual(['host node-2', 'host node-3']);
  });

  it('says nothing of agents for a policy with defaults.egress: false, nor without --controller', async () => {
    const dir = join(tmp, 'no-egress');
    cpSync(join(ROOT, 'policies/shop'), dir, { recursive: true });
    const defaults = join(dir, '00-defaults.yaml');
    writeFileSync(defaults, readFileSync(defaults, 'utf8').replace(/^defaults:\n/m, 'defaults:\n  egress: false\n'));
    const off = await cli(['check', '--controller', agents!.base, '--policy', dir]);
    expect(off.code, off.out).toBe(0);
    expect(off.out).not.toMatch(/egress/);
    expect(off.out).toMatch(/0 errors, 0 warnings\n$/);
    const local = await cli(['check']);
    expect(local.out).not.toMatch(/egress|agent/);
  });

  it('a controller whose /status cannot be read is a warning, never silence', async () => {
    const warnings = await egressWarnings('http://127.0.0.1:1');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ file: 'http://127.0.0.1:1/status', line: 1, col: 1, severity: 'warning' });
    expect(warnings[0]!.message).toMatch(/^cannot tell which agents enforce egress: cannot read http:\/\/127\.0\.0\.1:1\/status: /);
  });
});

describe('the built entry point', () => {
  beforeAll(ensureBuilt, 120_000);

  it('runs `node bin/portcullis.js check` on the shipped examples', async () => {
    const { stdout } = await run(process.execPath, [BIN, 'check'], { cwd: ROOT });
    expect(stdout).toMatch(/^policy ok: .*0 errors/m);
    const failed = await run(process.execPath, [BIN, 'check', '--policy', join(FIXTURES, '14-to-any.yaml')], { cwd: ROOT }).then(
      () => 0,
      (e: { code?: number }) => e.code,
    );
    expect(failed).toBe(1);
  });
});
