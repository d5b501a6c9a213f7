/**
 * What a host should enforce when tasks come from Marathon: a live controller process follows a
 * Marathon double, and the CLI reads its read-only views (/hosts, /hosts/<id>/state, /cluster).
 *  - `compile --controller` prints exactly what a local `compile` of the same inputs prints (the
 *    policy, and the cluster the controller serves, saved as an inventory file): both formats.
 *  - `explain` / `diff --controller` compile the local policy against the live cluster, with a
 *    note when the local policy is not the one in force.
 *  - The views are JSON with nosniff whatever Marathon's text holds; nothing reflects the request.
 */
import { spawn } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clusterDocument, clusterFromDocument } from '../src/inventory/cluster-document.js';
import { parseStaticInventory } from '../src/inventory/static-inventory.js';
import { BIN, ROOT, ensureBuilt } from './support/built-cli.js';
import { MarathonDouble } from './support/marathon-double.js';
import { logged, type LoggedProcess } from './support/process-log.js';
import { runCli as cli } from './support/run-cli.js';

const HOSTILE = '</script><script>alert(1)</script>\u001b[2J';
let double: MarathonDouble;
let controller: LoggedProcess | undefined;
let base = '';
let dir = '';
let inventoryFile = '';

const get = (path: string): Promise<Response> => fetch(new URL(path, base), { signal: AbortSignal.timeout(5000) });

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pcut-controller-views-'));
  double = await MarathonDouble.start();
  // Host names that are IP addresses give the hosts their addresses without agents (README).
  double.addApp({ id: '/shop/web', network: 'host', labels: { tier: 'frontend', note: HOSTILE }, ports: [{ name: 'http' }, { name: 'metrics' }] });
  double.addApp({ id: '/shop/api', network: 'bridge', ports: [{ name: 'http', containerPort: 8080 }, { name: 'metrics', containerPort: 9100 }] });
  double.addApp({ id: '/shop/payments', network: 'host', labels: { pci: 'true' }, ports: [{ name: 'https' }, { name: 'metrics' }] });
  double.addApp({ id: '/shop/db', network: 'bridge', ports: [{ name: 'postgres', containerPort: 5432 }, { name: 'metrics', containerPort: 9187 }] });
  double.addApp({ id: '/tools/reports', network: 'bridge', ports: [{ name: 'http', containerPort: 8000, labels: { 'portcullis.allow-from': 'api, admin' } }] });
  double.startTask('/shop/web', '10.0.1.11', [31000, 31001]);
  double.startTask('/shop/api', '10.0.1.11', [31100, 31101]);
  double.startTask('/shop/api', '10.0.1.12', [31100, 31101]);
  double.startTask('/shop/payments', '10.0.1.14', [31200, 31201]);
  double.startTask('/shop/db', '10.0.1.13', [31300, 31301]);
  double.startTask('/tools/reports', '10.0.1.13', [31600]);
  await ensureBuilt();
  const child = spawn(
    process.execPath,
    [BIN, 'controller', '--insecure', '--policy', join(ROOT, 'policies/shop'), '--marathon', double.url, '--listen', '127.0.0.1:0', '--status-listen', '127.0.0.1:0', '--log-level', 'info'],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  controller = logged(child, 'controller');
  const line = await controller.waitFor((l) => l['msg'] === 'controller listening', 20_000, '"controller listening"');
  base = `http://${String(line['status'])}`;
  await controller.waitFor((l) => l['msg'] === 'states compiled', 20_000, '"states compiled"');
  const cluster = await (await get('/cluster')).text();
  inventoryFile = join(dir, 'live-cluster.json');
  writeFileSync(inventoryFile, cluster);
}, 60_000);

afterAll(async () => {
  await controller?.stop('SIGTERM', 5000);
  await double?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('compile --controller', () => {
  it.each([[[]], [['--format', 'json']], [['--host', '10.0.1.13']], [['--host', '10.0.1.12', '--format', 'json']]])('%j equals a local compile of the same policy and cluster', async (extra) => {
    const remote = await cli(['compile', '--controller', base, ...extra]);
    const local = await cli(['compile', '--policy', 'policies/shop', '--inventory', inventoryFile, ...extra]);
    expect(remote.code, remote.err).toBe(0);
    expect(local.code, local.err).toBe(0);
    expect(remote.out).toBe(local.out);
    expect(remote.out.length).toBeGreaterThan(100);
  });

  it('serves every host of Marathon, each state as its agent gets it', async () => {
    const hosts = (await (await get('/hosts')).json()) as { ready: boolean; hosts: { hostId: string; version: string }[] };
    expect(hosts.ready).toBe(true);
    expect(hosts.hosts.map((h) => h.hostId)).toEqual(['10.0.1.11', '10.0.1.12', '10.0.1.13', '10.0.1.14']);
    const state = (await (await get('/hosts/10.0.1.13/state')).json()) as { version: string; sets: Record<string, string[]> };
    expect(state.version).toBe(hosts.hosts[2]!.version);
    expect(state.sets['managed-tcp']).toEqual(expect.arrayContaining(['31300', '31600']));
  });

  it('an unknown host exits 1 and lists the controller\'s hosts; --policy with --controller is a usage error', async () => {
    const r = await cli(['compile', '--controller', base, '--host', 'node-9']);
    expect(r.code).toBe(1);
    expect(r.err).toContain("unknown host 'node-9'; hosts the controller has a state for: 10.0.1.11, 10.0.1.12, 10.0.1.13, 10.0.1.14");
    const u = await cli(['compile', '--controller', base, '--policy', 'policies/shop']);
    expect(u.code).toBe(2);
    expect(u.err).toMatch(/--policy and --controller exclude each other/);
  });

  it('an unreachable controller exits 1 with the URL and what to check', async () => {
    const r = await cli(['compile', '--controller', 'http://127.0.0.1:1']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/cannot read http:\/\/127\.0\.0\.1:1\/hosts: .*--status-listen/);
  });
});

describe('explain, diff and check against the live cluster', () => {
  it('explain --controller answers as explain --inventory on the same cluster, silently when the policy is the one in force', async () => {
    const argv = ['--from', '/shop/web', '--to', '/shop/api', '--port', 'http'];
    const remote = await cli(['explain', '--controller', base, ...argv]);
    const local = await cli(['explain', '--inventory', inventoryFile, ...argv]);
    expect(remote.code, remote.err).toBe(0);
    expect(remote.out).toBe(local.out);
    expect(remote.out).toMatch(/^task \S+ of \/shop\/web on 10\.0\.1\.11 \(10\.0\.1\.11\) → \/shop\/api on 10\.0\.1\.12:31100\/tcp \(http\): ALLOW\n {4}egress at 10\.0\.1\.11: ALLOW — rule web-to-api.*\n.*\n {4}destination 10\.0\.1\.12: ALLOW — rule web-to-api/m);
    expect(remote.err).toBe('');
  });

  it('a local policy that differs from the one in force gets a note naming the hosts', async () => {
    const edited = join(dir, 'shop-edited');
    cpSync(join(ROOT, 'policies/shop'), edited, { recursive: true });
    const rules = join(edited, '20-rules.yaml');
    writeFileSync(rules, readFileSync(rules, 'utf8').replace(/^(\s+- name: to-db\n\s+from: )\[api, payments\]/m, '$1[api]'));
    const r = await cli(['explain', '--controller', base, '--policy', edited, '--from', '/shop/payments', '--to', '/shop/db', '--port', 'postgres']);
    expect(r.code, r.err).toBe(0);
    expect(r.err).toMatch(/^note: the local --policy is not the policy the controller enforces: the states differ on 10\.0\.1\.13/m);
    expect(r.out).toMatch(/DENY/);
    const d = await cli(['diff', 'policies/shop', edited, '--controller', base]);
    expect(d.code, d.err).toBe(0);
    expect(d.err).toBe('');
    expect(d.out).toMatch(/^  = 10\.0\.1\.13: \/shop\/db postgres\/tcp 31300 no longer allows 10\.0\.1\.14$/m);
  });

  it('check --controller lints the policy against the live cluster', async () => {
    const r = await cli(['check', '--controller', base]);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/inventory: 4 hosts, 5 apps, 6 tasks; 0 errors/);
    expect((await cli(['check', '--controller', base, '--inventory', inventoryFile])).code).toBe(2);
  });
});

describe('the views are data, never markup', () => {
  it('JSON with nosniff, Marathon text kept as JSON strings; the 404 repeats nothing of the request', async () => {
    for (const path of ['/hosts', '/cluster', '/hosts/10.0.1.11/state', '/hosts/nope/state', '/hosts/%E0%A4%A/state']) {
      const r = await get(path);
      expect(r.headers.get('content-type'), path).toBe('application/json');
      expect(r.headers.get('x-content-type-options'), path).toBe('nosniff');
      const body = await r.text();
      expect(() => JSON.parse(body), path).not.toThrow();
      expect(body).not.toContain('nope');
    }
    const cluster = clusterFromDocument(await (await get('/cluster')).json());
    expect(cluster.ok && cluster.cluster.apps.find((a) => a.id === '/shop/web')?.labels['note']).toBe(HOSTILE);
    const missing = await get(`/${encodeURIComponent('<script>x</script>')}`);
    expect(missing.status).toBe(404);
    expect(await missing.text()).not.toContain('script');
  });
});

describe('the cluster document', () => {
  it('round-trips a ClusterState, and is a valid static inventory file', async () => {
    const parsed = parseStaticInventory('policies/inventory.yaml', readFileSync(join(ROOT, 'policies/inventory.yaml'), 'utf8'));
    if (!parsed.ok) throw new Error('shipped inventory does not parse');
    const doc = clusterDocument(parsed.cluster);
    expect(clusterFromDocument(JSON.parse(JSON.stringify(doc)))).toEqual({ ok: true, cluster: parsed.cluster });
    expect(parseStaticInventory('doc.json', JSON.stringify(doc))).toEqual({ ok: true, cluster: parsed.cluster });
  });

  it('names what is wrong with something that is not one', () => {
    expect(clusterFromDocument({ hosts: [], apps: [{ id: '/a', ports: [{ protocol: 'sctp' }] }], tasks: [] })).toEqual({ ok: false, error: 'apps[0].ports[0].protocol: not tcp, udp or tcp,udp' });
    expect(clusterFromDocument([])).toMatchObject({ ok: false });
  });
});
