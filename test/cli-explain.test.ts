/** `portcullis explain` on the shipped example and on edited copies (failsafe, audit). */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli as cli } from './support/run-cli.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

/** The verdict lines (not the reason lines nor the summary). */
const verdicts = (out: string): string[] => out.split('\n').filter((l) => l.includes(' → '));

let tmp: string;
/** A copy of the shop policy with 00-defaults.yaml edited by `edit`. */
function policyCopy(name: string, edit: (text: string) => string): string {
  const dir = join(tmp, name);
  cpSync(join(ROOT, 'policies/shop'), dir, { recursive: true });
  const file = join(dir, '00-defaults.yaml');
  const before = readFileSync(file, 'utf8');
  const after = edit(before);
  expect(after).not.toBe(before);
  writeFileSync(file, after);
  return dir;
}

/** The shipped inventory plus /shop/batch, which shares node-1 with web and api (both allowed somewhere batch is not). */
let batchInventory: string;

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'pcut-cli-explain-'));
  const text = readFileSync(join(ROOT, 'policies/inventory.yaml'), 'utf8');
  const edited = text
    .replace('\napps:\n', '\napps:\n  - id: /shop/batch\n    ports:\n      - { name: work }\n')
    .replace('\ntasks:\n', '\ntasks:\n  - { app: /shop/batch, host: node-1, ports: [31700] }\n');
  expect(edited.split('/shop/batch')).toHaveLength(3);
  batchInventory = join(tmp, 'inventory-batch.yaml');
  writeFileSync(batchInventory, edited);
});
afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
});

describe('portcullis explain', () => {
  it('allows web to reach api http by rule web-to-api, for every web task, its host address and api task', async () => {
    const r = await cli(['explain', '--from', '/shop/web', '--to', '/shop/api', '--port', 'http']);
    expect(r.code, r.err).toBe(0);
    const lines = verdicts(r.out);
    // web runs on node-1, node-2 (canary is not /shop/web): 2 tasks x 2 addresses; api has 3 tasks.
    expect(lines).toHaveLength(12);
    for (const l of lines) expect(l).toMatch(/^task shop_web\.[12] of \/shop\/web on node-[12] \(\S+\) → \/shop\/api on node-\d:\d+\/tcp \(http\): ALLOW$/);
    expect(lines).toContain('task shop_web.1 of /shop/web on node-1 (10.0.1.11) → /shop/api on node-2:31100/tcp (http): ALLOW');
    // Each verdict shows both halves: egress at the source host, then the destination.
    const halves = r.out.split('\n').filter((l) => /^ {4}(egress at|destination) /.test(l));
    expect(halves).toHaveLength(24);
    expect(halves).toContain('    egress at node-1: ALLOW — rule web-to-api (policies/shop/20-rules.yaml:20:5), tier policy');
    expect(halves).toContain('    destination node-2: ALLOW — rule web-to-api (policies/shop/20-rules.yaml:20:5), tier policy');
    expect(r.out).toMatch(/12 connections allowed, 0 denied\n$/);
  });

  it('denies batch at the source host (egress) although it shares node-1 with api, and allows api on that host', async () => {
    const batch = await cli(['explain', '--inventory', batchInventory, '--from', '/shop/batch', '--to', '/shop/db', '--port', 'postgres']);
    expect(batch.code, batch.err).toBe(0);
    expect(verdicts(batch.out)).toEqual([
      'task shop_batch.1 of /shop/batch on node-1 (10.0.1.11) → /shop/db on node-3:31300/tcp (postgres): DENY at the source host (egress)',
      'task shop_batch.1 of /shop/batch on node-1 (fd00:1::11) → /shop/db on node-3:31300/tcp (postgres): DENY at the source host (egress)',
    ]);
    // The destination alone admits node-1 (it runs api): the host-level answer of before issue 10.
    expect(batch.out).toContain('    egress at node-1: DENY — tier default\n');
    expect(batch.out).toContain('    destination node-3: ALLOW — rule to-db (policies/shop/20-rules.yaml:30:5), tier policy\n');
    expect(batch.out).toMatch(/contains app \/shop\/batch on node-1 \(10\.0\.1\.11\), so the default \(deny\) decides/);
    expect(batch.out).toMatch(/0 connections allowed, 2 denied \(2 at the source host, 0 at the destination host\)\n$/);

    const api = await cli(['explain', '--inventory', batchInventory, '--from', '/shop/api', '--to', '/shop/db', '--port', 'postgres']);
    const onNode1 = verdicts(api.out).filter((l) => l.includes(' on node-1 '));
    expect(onNode1).toEqual([
      'task shop_api.1 of /shop/api on node-1 (10.0.1.11) → /shop/db on node-3:31300/tcp (postgres): ALLOW',
      'task shop_api.1 of /shop/api on node-1 (fd00:1::11) → /shop/db on node-3:31300/tcp (postgres): ALLOW',
    ]);
    expect(api.out).toMatch(/6 connections allowed, 0 denied\n$/);
  });

  it('tells batch from web on the same host: web-to-api admits web only', async () => {
    const ask = (from: string) => cli(['explain', '--inventory', batchInventory, '--from', from, '--to', '/shop/api', '--port', 'http', '--protocol', 'tcp']);
    const batch = verdicts((await ask('/shop/batch')).out);
    expect(batch).toHaveLength(6);
    for (const l of batch) expect(l).toMatch(/^task shop_batch\.1 of \/shop\/batch on node-1 .*: DENY at the source host \(egress\)$/);
    const web = verdicts((await ask('/shop/web')).out).filter((l) => l.includes(' on node-1 ('));
    expect(web).toHaveLength(6);
    for (const l of web) expect(l).toMatch(/: ALLOW$/);
  });

  it('says an address is judged at the destination only', async () => {
    const r = await cli(['explain', '--inventory', batchInventory, '--from', '10.0.1.11', '--to', '/shop/db', '--port', 'postgres']);
    expect(r.out.split('\n')[0]).toBe(
      "10.0.1.11 is an address, not a task: judged at the destination host only (egress checks the tasks of apps; ask with --from /app for an app's tasks)",
    );
    expect(verdicts(r.out)).toEqual(['10.0.1.11 → /shop/db on node-3:31300/tcp (postgres): ALLOW — rule to-db (policies/shop/20-rules.yaml:30:5), tier policy']);
  });

  it('with defaults.egress off answers per host address, as before issue 10, and says so', async () => {
    const dir = policyCopy('egress-off', (t) => t.replace(/^  mode: enforce$/m, '  mode: enforce\n  egress: off'));
    const r = await cli(['explain', '--policy', dir, '--inventory', batchInventory, '--from', '/shop/batch', '--to', '/shop/db', '--port', 'postgres']);
    expect(r.code, r.err).toBe(0);
    expect(r.out.split('\n')[0]).toBe('egress is off (defaults.egress: off): the tasks of /shop/batch are judged by their host addresses at the destination only');
    expect(verdicts(r.out)).toEqual([
      '10.0.1.11 → /shop/db on node-3:31300/tcp (postgres): ALLOW — rule to-db (policies/shop/20-rules.yaml:30:5), tier policy',
      'fd00:1::11 → /shop/db on node-3:31300/tcp (postgres): ALLOW — rule to-db (policies/shop/20-rules.yaml:30:5), tier policy',
    ].map((l) => l.replace('policies/shop/', `${dir}/`)));
    const json = JSON.parse((await cli(['explain', '--format', 'json', '--policy', dir, '--inventory', batchInventory, '--from', '/shop/batch', '--to', '/shop/db', '--port', 'postgres'])).out);
    expect(json).toMatchObject({ egress: false, note: expect.stringContaining('egress is off') });
    expect(json.pairs).toBeUndefined();
  });

  it('denies the retired LB subnet by rule, and allows the rest of the LB network', async () => {
    const retired = await cli(['explain', '--from', '10.0.100.200', '--to', '/shop/web', '--port', 'http']);
    expect(retired.code).toBe(0);
    for (const l of verdicts(retired.out)) expect(l).toMatch(/: DENY — rule retired-lb-denied .*tier policy$/);
    const lb = await cli(['explain', '--from', '10.0.100.5', '--to', '/shop/web', '--port', 'http']);
    for (const l of verdicts(lb.out)) expect(l).toMatch(/: ALLOW — rule lb-to-web .*tier policy$/);
    expect(verdicts(lb.out)).toHaveLength(2);
  });

  it('falls to the default deny when no rule matches', async () => {
    const r = await cli(['explain', '--from', '192.0.2.1', '--to', '/shop/api', '--port', '8080', '--protocol', 'tcp']);
    expect(r.code).toBe(0);
    const lines = verdicts(r.out);
    expect(lines).toHaveLength(3); // 8080 is the containerPort of http: every api task
    for (const l of lines) expect(l).toMatch(/\(http\): DENY — tier default$/);
  });

  it('applies a developer label within the guardrails (tier labels), and the lock after it', async () => {
    const label = await cli(['explain', '--from', '10.0.1.11', '--to', '/tools/reports', '--port', 'http']);
    expect(verdicts(label.out)).toEqual([
      '10.0.1.11 → /tools/reports on node-4:31600/tcp (http): ALLOW — rule tools-by-labels (policies/shop/20-rules.yaml:56:5), tier labels',
    ]);
    expect(label.out).toContain("declares portcullis.allow-from 'api'");
    const locked = await cli(['explain', '--from', '10.0.1.11', '--to', '/tools/reports', '--port', 'debug']);
    expect(verdicts(locked.out)).toEqual([
      '10.0.1.11 → /tools/reports on node-4:31601/tcp (debug): DENY — rule tools-locked (policies/shop/20-rules.yaml:62:5), tier policy',
    ]);
  });

  it('allows a failsafe port whatever the rules', async () => {
    const dir = policyCopy('failsafe', (t) => t.replace('failsafe: [tcp/22, tcp/5051, tcp/7443]', 'failsafe: [tcp/22, tcp/31100]'));
    const r = await cli(['explain', '--policy', dir, '--from', '192.0.2.1', '--to', '/shop/api', '--port', '31100']);
    expect(r.code, r.err).toBe(0);
    const lines = verdicts(r.out);
    expect(lines.map((l) => l.split(' on ')[1]!.split('/')[0])).toEqual(['node-1:31100', 'node-2:31100']);
    for (const l of lines) expect(l).toMatch(/: ALLOW — tier failsafe$/);
  });

  it('says a denial is only logged in audit mode', async () => {
    const dir = policyCopy('audit', (t) => t.replace(/^  mode: enforce$/m, '  mode: audit'));
    const r = await cli(['explain', '--policy', dir, '--from', '192.0.2.1', '--to', '/shop/db', '--port', 'postgres']);
    expect(verdicts(r.out)).toEqual(['192.0.2.1 → /shop/db on node-3:31300/tcp (postgres): DENY (audit: logged, not dropped) — tier default']);
    const batch = await cli(['explain', '--policy', dir, '--inventory', batchInventory, '--from', '/shop/batch', '--to', '/shop/db', '--port', 'postgres']);
    expect(verdicts(batch.out)[0]).toBe(
      'task shop_batch.1 of /shop/batch on node-1 (10.0.1.11) → /shop/db on node-3:31300/tcp (postgres): DENY at the source host (egress): would be dropped (audit)',
    );
    expect(batch.out).toContain('    egress at node-1: DENY (would be dropped (audit)) — tier default\n');
    expect(batch.out).toContain('(audit mode: logged as pcu-egress, would be dropped)');
  });

  it('prints verdicts as JSON', async () => {
    const r = await cli(['explain', '--format', 'json', '--from', '10.0.1.13', '--to', '/monitoring/statsd', '--port', 'statsd']);
    expect(r.code).toBe(0);
    const body = JSON.parse(r.out);
    // statsd is udp,tcp on node-1 and node-3; the rule covers udp only.
    const byProto = body.verdicts.map((v: { hostId: string; protocol: string; decision: string; rule?: string }) => `${v.hostId} ${v.protocol} ${v.decision} ${v.rule ?? '-'}`);
    expect(byProto).toEqual(['node-1 tcp deny -', 'node-1 udp allow statsd', 'node-3 tcp deny -', 'node-3 udp allow statsd']);
    expect(body).toMatchObject({ egress: true, note: expect.stringContaining('judged at the destination host only') });
    expect(body.pairs).toBeUndefined();
  });

  it('prints both halves per task pair as JSON', async () => {
    const r = await cli(['explain', '--format', 'json', '--inventory', batchInventory, '--from', '/shop/batch', '--to', '/shop/db', '--port', 'postgres']);
    expect(r.code, r.err).toBe(0);
    const body = JSON.parse(r.out);
    expect(body.egress).toBe(true);
    expect(body.verdicts.map((v: { source: string; decision: string }) => `${v.source} ${v.decision}`)).toEqual(['10.0.1.11 allow', 'fd00:1::11 allow']);
    expect(body.pairs).toHaveLength(2);
    expect(body.pairs[0]).toMatchObject({
      sourceAppId: '/shop/batch',
      sourceTaskId: 'shop_batch.1',
      sourceHostId: 'node-1',
      source: '10.0.1.11',
      hostId: 'node-3',
      hostPort: 31300,
      protocol: 'tcp',
      portName: 'postgres',
      taskId: 'shop_db.1',
      decision: 'deny',
      enforced: true,
      deniedAt: 'source',
      egress: { decision: 'deny', tier: 'default', family: 4, sourceAddresses: ['10.0.1.11'], owners: ['shop_db.1#0'] },
      destination: { decision: 'allow', tier: 'policy', rule: 'to-db' },
    });
  });

  it('exits 1 with the reason for an unknown app or port, 2 for a missing option', async () => {
    const app = await cli(['explain', '--from', '/shop/web', '--to', '/shop/nope', '--port', 'http']);
    expect(app.code).toBe(1);
    expect(app.err).toContain("unknown destination app '/shop/nope'");
    const port = await cli(['explain', '--from', '/shop/web', '--to', '/shop/api', '--port', 'grpc']);
    expect(port.code).toBe(1);
    expect(port.err).toContain("no task port matching 'grpc'");
    const src = await cli(['explain', '--from', '10.0.1.999', '--to', '/shop/api', '--port', 'http']);
    expect(src.code).toBe(1);
    expect(src.err).toContain('not an IPv4 or IPv6 address');
    expect((await cli(['explain', '--from', '/shop/web', '--port', 'http'])).code).toBe(2);
    expect((await cli(['explain', '--from', '/shop/web', '--to', '/shop/api', '--port', 'http', '--protocol', 'icmp'])).code).toBe(2);
    const help = await cli(['explain', '--help']);
    for (const opt of ['--from', '--to', '--port', '--protocol', '--format', '--policy', '--inventory', 'Example']) expect(help.out).toContain(opt);
  });
});
