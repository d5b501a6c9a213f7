/**
 * `portcullis compile` and `portcullis diff` speak of apps as sources (issue 10), on the shipped
 * example (whose tasks get Marathon-style ids by default, so every task is in egress-task).
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli as cli } from './support/run-cli.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const SHOP = join(ROOT, 'policies/shop');

let tmp: string;
let inventory: string;

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'pcut-egress-cli-'));
  inventory = join(ROOT, 'policies/inventory.yaml');
});
afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
});

describe('portcullis compile with per-app egress', () => {
  it('JSON states carry the egress kinds; no task is reported', async () => {
    const r = await cli(['compile', '--inventory', inventory, '--format', 'json']);
    expect(r.code, r.err).toBe(0);
    expect(r.err).not.toContain('egress-unsafe-id');
    const states = JSON.parse(r.out);
    const node3 = states['node-3'];
    expect(node3.sets['egress-task']).toEqual(['/monitoring/prometheus|monitoring_prometheus.1', '/monitoring/statsd|monitoring_statsd.1', '/shop/db|shop_db.1', '/shop/payments|shop_payments.2']);
    // payments may reach the db (20-rules.yaml: from [api, payments] to db, postgres), on its own host too.
    expect(node3.sets['egress-ip4']).toContain('/shop/payments|10.0.1.13,tcp:31300');
    expect(node3.sets['egress-ip4']).not.toContain('/monitoring/prometheus|10.0.1.13,tcp:31300');
    expect(states['node-1'].sets['egress-managed4']).toEqual(node3.sets['egress-managed4']);
  });

  it('the iptables format ends each host with "# egress" comment lines (the agent renders those chains)', async () => {
    const r = await cli(['compile', '--inventory', inventory, '--host', 'node-3']);
    expect(r.code, r.err).toBe(0);
    const egress = r.out.split('\n').filter((l) => l.startsWith('# egress'));
    expect(egress[0]).toBe('# egress of host node-3: rendered by the agent (its chains and per-app sets depend on the local task map)');
    expect(egress).toContain('# egress local tasks: /monitoring/prometheus|monitoring_prometheus.1, /monitoring/statsd|monitoring_statsd.1, /shop/db|shop_db.1, /shop/payments|shop_payments.2');
    expect(egress.find((l) => l.startsWith('# egress /shop/payments may reach: '))).toContain('10.0.1.13,tcp:31300');
    // An id that cannot stand in a member ('/' is not allowed in a task id): reported, not an egress task.
    const odd = join(tmp, 'odd-ids.yaml');
    writeFileSync(odd, readFileSync(inventory, 'utf8').replace('id: shop_db.1,', 'id: /shop/db.1,'));
    const plain = await cli(['compile', '--inventory', odd, '--host', 'node-3']);
    expect(plain.err).toContain('task "/shop/db.1" of app "/shop/db" on host node-3: a task id must be 1-255 of [A-Za-z0-9_.-]');
    expect(plain.err).toContain('[egress-unsafe-id]');
    expect(plain.out).toContain('# egress local tasks: /monitoring/prometheus|monitoring_prometheus.1, /monitoring/statsd|monitoring_statsd.1, /shop/payments|shop_payments.2\n');
  });
});

describe('portcullis diff with per-app egress', () => {
  it('says which app on which host may now reach which app port, and no longer', async () => {
    const dir = join(tmp, 'batch-db');
    cpSync(SHOP, dir, { recursive: true });
    const rules = join(dir, '20-rules.yaml');
    const before = readFileSync(rules, 'utf8');
    const after = before.replace('    from: [api, payments]\n    to: db\n', '    from: [api]\n    to: db\n');
    expect(after).not.toBe(before);
    writeFileSync(rules, after);
    const r = await cli(['diff', SHOP, dir, '--inventory', inventory]);
    expect(r.code, r.err).toBe(0);
    // payments runs on node-2 and node-3; db (postgres 31300) on node-3.
    expect(r.out).toContain('  = node-2: /shop/payments may no longer reach /shop/db postgres/tcp 31300 on node-3 (10.0.1.13, fd00:1::13)\n');
    expect(r.out).toContain('  = node-3: /shop/payments may no longer reach /shop/db postgres/tcp 31300 on node-3 (10.0.1.13, fd00:1::13)\n');
    expect(r.out).toContain('  - egress-ip4 /shop/payments|10.0.1.13,tcp:31300\n');
    expect(r.out).not.toContain('may now reach');
    const back = await cli(['diff', dir, SHOP, '--inventory', inventory]);
    expect(back.out).toContain('  = node-2: /shop/payments may now reach /shop/db postgres/tcp 31300 on node-3 (10.0.1.13, fd00:1::13)\n');
  });
});
