/**
 * Per-group mode in the tools, on the golden staged-rollout policy (test/golden-group-modes/:
 * node-1 runs web (enforce), node-2 db (enforce) and the reporting api (audit), node-3 the
 * reporting batch only): `compile` (golden json, the audited ports and apps in text), `explain`
 * ("(audit: group reporting)"), `diff` ("group reporting: audit → enforce" and the hosts it
 * changes), `check` (a moded group that selects no app), and what `/status` and `portcullis
 * status` say. `UPDATE_GOLDEN=1 npx vitest run test/cli-group-modes.test.ts` rewrites the golden
 * files (review the diff!).
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { groupModeInfo } from '../src/compile/group-modes.js';
import { ControllerStatus } from '../src/controller/controller-status.js';
import { DesiredStateStore } from '../src/controller/desired-state-store.js';
import { parsePolicy } from '../src/policy/parse-policy.js';
import { parseStaticInventory } from '../src/inventory/static-inventory.js';
import { renderStatus } from '../src/cli/commands/status.js';
import { packageRoot } from '../src/package-root.js';
import { app, group } from './support/policy-builder.js';
import { runCli } from './support/run-cli.js';

const root = packageRoot();
const dir = join(import.meta.dirname, 'golden-group-modes');
const POLICY = join(dir, 'policy.yaml');
const INVENTORY = join(dir, 'inventory.yaml');
const update = process.env.UPDATE_GOLDEN === '1';
const inputs = ['--policy', POLICY, '--inventory', INVENTORY];

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'pcut-group-modes-'));
});
afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
});

function golden(name: string, text: string): void {
  const file = join(dir, name);
  if (update) writeFileSync(file, text);
  expect(existsSync(file), `${file} missing: run with UPDATE_GOLDEN=1`).toBe(true);
  expect(text).toBe(readFileSync(file, 'utf8'));
}

describe('group modes in the tools (golden staged-rollout policy)', () => {
  it('compile --format json: the golden states (node-2 mixed, node-3 all audit, node-1 enforce)', async () => {
    const r = await runCli(['compile', ...inputs, '--format', 'json'], root);
    expect(r.code).toBe(0);
    golden('expected.json', r.out);
    golden('expected.reports', r.err);
    const states = JSON.parse(r.out) as Record<string, { mode: string; sets: Record<string, string[]> }>;
    expect(states['node-1']).toMatchObject({ mode: 'enforce', sets: { 'audit-tcp': [], 'audit-udp': [], 'egress-audit': [] } });
    expect(states['node-2']).toMatchObject({ mode: 'enforce', sets: { 'audit-tcp': ['31400'], 'audit-udp': ['31401'], 'egress-audit': ['/reports/api'] } });
    expect(states['node-3']).toMatchObject({ mode: 'audit', sets: { 'audit-tcp': [], 'audit-udp': [], 'egress-audit': [] } });
  });

  it('compile (text): a mixed host ends with its audited ports and apps; a one-mode host says nothing more', async () => {
    const r = await runCli(['compile', ...inputs], root);
    expect(r.code).toBe(0);
    expect(r.out).toContain(
      '# group modes of host node-2: the state enforces, except what audits (logged, not dropped):\n# audit tcp ports: 31400\n# audit udp ports: 31401\n# audit egress of apps: /reports/api\n',
    );
    expect(r.out.match(/# group modes of host/g)).toHaveLength(1);
  });

  it('explain: a deny not enforced because of a group says "(audit: group G)"; the JSON names the group', async () => {
    const r = await runCli(['explain', ...inputs, '--from', '203.0.113.5', '--to', '/reports/api', '--port', 'http'], root);
    expect(r.code).toBe(0);
    expect(r.out).toContain('203.0.113.5 → /reports/api on node-2:31400/tcp (http): DENY (audit: group reporting): logged, not dropped — tier default');
    const enforced = await runCli(['explain', ...inputs, '--from', '203.0.113.5', '--to', '/shop/db', '--port', 'postgres'], root);
    expect(enforced.out).toContain('node-2:31300/tcp (postgres): DENY — tier default');
    expect(enforced.out).not.toContain('audit');

    // From the audited batch app: its egress only logs, the enforcing destination drops it.
    const pair = await runCli(['explain', ...inputs, '--from', '/reports/batch', '--to', '/shop/web', '--port', 'http'], root);
    expect(pair.out).toContain('DENY at the destination host (the source host only logs it (audit: group reporting))');
    expect(pair.out).toContain('egress at node-3: DENY (audit: group reporting): would be dropped');

    const json = await runCli(['explain', ...inputs, '--from', '203.0.113.5', '--to', '/reports/api', '--port', 'http', '--format', 'json'], root);
    const body = JSON.parse(json.out) as { groupModes: unknown; verdicts: { enforced: boolean; auditGroup?: string }[] };
    expect(body.verdicts[0]).toMatchObject({ enforced: false, auditGroup: 'reporting' });
    expect(body.groupModes).toEqual([
      { group: 'db', mode: 'enforce' },
      { group: 'reporting', mode: 'audit' },
      { group: 'staged-nothing', mode: 'audit' },
    ]);
  });

  it('diff: "group G: audit → enforce" with the hosts it changes, and each port and app egress that now enforces', async () => {
    const next = join(tmp, 'enforce.yaml');
    writeFileSync(next, readFileSync(POLICY, 'utf8').replace(/^( {2}reporting:\n.*\n {4}mode:) audit$/m, '$1 enforce'));
    const r = await runCli(['diff', POLICY, next, '--inventory', INVENTORY], root);
    expect(r.code).toBe(0);
    expect(r.out.split('\n')[0]).toBe('group reporting: audit → enforce (hosts whose state changes by it: node-2, node-3)');
    expect(r.out).not.toContain('group staged-nothing');
    expect(r.out).toContain('  - audit-tcp 31400\n');
    expect(r.out).toContain('  = node-2: /reports/api http/tcp 31400 now enforces (denied connections dropped)\n');
    expect(r.out).toContain('  = node-2: egress of /reports/api now enforces (denied connections dropped)\n');
    expect(r.out).toContain('node-3: 0 added, 0 removed\n  mode audit → enforce');
    expect(r.out).toContain('unchanged (1): node-1\n');

    const json = await runCli(['diff', POLICY, next, '--inventory', INVENTORY, '--format', 'json'], root);
    expect((JSON.parse(json.out) as { groupModes: unknown }).groupModes).toEqual([{ group: 'reporting', from: 'audit', to: 'enforce', hosts: ['node-2', 'node-3'] }]);

    // A group that gains a mode where it had none: said against defaults.mode.
    const added = join(tmp, 'web-audit.yaml');
    writeFileSync(added, readFileSync(POLICY, 'utf8').replace('    apps: ["/shop/web"]\n', '    apps: ["/shop/web"]\n    mode: audit\n'));
    const r2 = await runCli(['diff', POLICY, added, '--inventory', INVENTORY], root);
    expect(r2.out.split('\n')[0]).toBe('group web: none (defaults.mode enforce) → audit (hosts whose state changes by it: node-1)');
  });

  it('check warns of a group with a mode that selects no app', async () => {
    const r = await runCli(['check', ...inputs], root);
    expect(r.code).toBe(0);
    expect(r.out).toContain("warning: group 'staged-nothing' selects no app of the cluster (apps /no/such/app); check its patterns and labels; its 'mode: audit' applies to no app");
    expect(r.out).toContain('0 errors, 1 warning');
  });
});

describe('group modes on /status', () => {
  it('groupModeInfo: the groups with an explicit mode and how many apps each selects', () => {
    const groups = [group('a', ['/x/*']), { ...group('b', ['/x/*', '/y']), mode: 'audit' as const }, { ...group('c', [], { tier: 'z' }), mode: 'enforce' as const }];
    const apps = [app('/x/1'), app('/x/2', [{}], { tier: 'z' }), app('/y'), app('/x/1')];
    expect(groupModeInfo({ groups }, apps)).toEqual([
      { group: 'b', mode: 'audit', apps: 3 },
      { group: 'c', mode: 'enforce', apps: 1 },
    ]);
    expect(groupModeInfo({ groups: [group('a', ['/x/*'])] }, apps)).toEqual([]);
  });

  it('/status groupModes: the groups with a mode of the policy in force, with the apps they select among the cluster in force', () => {
    const parsed = parsePolicy([{ path: POLICY, text: readFileSync(POLICY, 'utf8') }]);
    const inv = parseStaticInventory(INVENTORY, readFileSync(INVENTORY, 'utf8'));
    if (!parsed.ok || !inv.ok) throw new Error('the golden inputs must load');
    const store = new DesiredStateStore();
    const info = { path: POLICY, valid: true, loadedAt: null, lastError: null, reloadErrors: 0, warnings: [] };
    const status = new ControllerStatus({ store, agents: () => [], feed: { start: async () => {}, stop: async () => {}, status: () => ({ source: 'file', ready: true }) }, policy: info });
    expect((status.status() as { groupModes: unknown }).groupModes).toEqual([]);
    store.setPolicy(parsed.policy);
    store.setCluster(inv.cluster);
    expect((status.status() as { groupModes: unknown }).groupModes).toEqual([
      { group: 'db', mode: 'enforce', apps: 1 },
      { group: 'reporting', mode: 'audit', apps: 2 },
      { group: 'staged-nothing', mode: 'audit', apps: 0 },
    ]);
    store.close();
  });

  it('portcullis status prints them on one line, escaping what it prints', () => {
    const text = renderStatus({ ready: true, groupModes: [{ group: 'reporting', mode: 'audit', apps: 2 }, { group: 'db\u001b[31m', mode: 'enforce', apps: 1 }] }, 'http://c');
    expect(text).toMatch(/^group modes: reporting audit \(2 apps\), db\S* enforce \(1 app\)$/m);
    expect(text).not.toContain('\u001b');
    expect(renderStatus({ ready: true, groupModes: [] }, 'http://c')).not.toContain('group modes');
  });
});
