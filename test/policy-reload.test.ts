/**
 * Hot reload of the policy and the inventory, in the running controller (policy watcher, state
 * store, /status and /metrics, ports 0): a broken edit keeps the last good input and is reported;
 * restoring the exact last good content (a `git revert`) clears the report, by the file watch and
 * by SIGHUP (`reload()`), and costs no recompile. The last test runs the real controller process
 * (bin/portcullis.js, built by `npm run build`).
 */
import { spawn } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { defaultInventoryPath, defaultPolicyPath, packageRoot } from '../src/package-root.js';
import { startController, type RunningController } from '../src/controller/controller-main.js';
import { StaticInventoryFeed } from '../src/controller/static-inventory-feed.js';
import { createLogger } from '../src/logging.js';
import { waitFor } from './support/cluster-harness.js';
import { logCapture } from './support/log-capture.js';
import { logged, type LoggedProcess } from './support/process-log.js';

interface StatusDoc {
  policy: { valid: boolean; lastError: { diagnostics: string[] } | null; reloadErrors: number };
  inventory: { valid: boolean; lastError: { diagnostics: string[] } | null };
  compile: { compiles: number };
}

let controller: RunningController | undefined;
let proc: LoggedProcess | undefined;
let dir = '';

afterEach(async () => {
  await controller?.stop();
  controller = undefined;
  await proc?.stop('SIGKILL');
  proc = undefined;
  if (dir !== '') rmSync(dir, { recursive: true, force: true });
  dir = '';
});

async function start(pollMs = 60_000, logger = createLogger({ component: 'controller', level: 'silent' })): Promise<{ policyDir: string; inventory: string }> {
  dir = mkdtempSync(join(tmpdir(), 'pcut-reload-'));
  const policyDir = join(dir, 'policy');
  const inventory = join(dir, 'inventory.yaml');
  cpSync(defaultPolicyPath(), policyDir, { recursive: true });
  mkdirSync(join(policyDir, 'drafts'));
  cpSync(defaultInventoryPath(), inventory);
  controller = await startController({
    policyPath: policyDir,
    feed: () => new StaticInventoryFeed({ path: inventory, debounceMs: 10, pollMs }),
    listen: { host: '127.0.0.1', port: 0 },
    statusListen: { host: '127.0.0.1', port: 0 },
    credentials: undefined,
    pollMs,
    logger,
  });
  return { policyDir, inventory };
}

async function status(address = controller!.statusAddress): Promise<StatusDoc> {
  const res = await fetch(`http://${address}/status`);
  return (await res.json()) as StatusDoc;
}

async function metric(name: string): Promise<number> {
  const text = await (await fetch(`http://${controller!.statusAddress}/metrics`)).text();
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  if (!m) throw new Error(`no metric ${name}`);
  return Number(m[1]);
}

describe('policy hot reload: a reverted edit', () => {
  it('is reported valid again, through /status and /metrics, after reload() (SIGHUP)', async () => {
    const { policyDir } = await start();
    const file = join(policyDir, '20-rules.yaml');
    const good = readFileSync(file, 'utf8');
    const compiles = (await status()).compile.compiles;

    writeFileSync(file, `${good}\nbogus: true\n`);
    await controller!.reload();
    const broken = await status();
    expect(broken.policy.valid).toBe(false);
    expect(broken.policy.lastError?.diagnostics.join('\n')).toMatch(/20-rules\.yaml:\d+:1: unknown key 'bogus'/);
    expect(await metric('portcullis_policy_valid')).toBe(0);

    writeFileSync(file, good);
    await controller!.reload();
    const restored = await status();
    expect(restored.policy.valid).toBe(true);
    expect(restored.policy.lastError).toBeNull();
    expect(restored.policy.reloadErrors).toBe(1);
    expect(await metric('portcullis_policy_valid')).toBe(1);
    // The policy in force never changed: nothing was recompiled.
    expect(restored.compile.compiles).toBe(compiles);

    // A second SIGHUP on unchanged files changes nothing.
    await controller!.reload();
    expect((await status()).policy).toEqual(restored.policy);
  });

  it('is seen by the file watch alone', async () => {
    const { policyDir } = await start();
    const file = join(policyDir, '10-groups.yaml');
    const good = readFileSync(file, 'utf8');
    writeFileSync(file, 'groups: [not, a, mapping]\n');
    await waitFor(async () => (await status()).policy.valid === false, 10_000, 'the broken edit reported');
    writeFileSync(file, good);
    await waitFor(async () => (await status()).policy.valid === true, 10_000, 'the revert reported');
    expect((await status()).policy.lastError).toBeNull();
    expect(await metric('portcullis_policy_valid')).toBe(1);
  });
});

describe('policy directory', () => {
  it('a skipped subdirectory is logged as a warning naming it, and shown in /status', async () => {
    const { logger, lines } = logCapture();
    const { policyDir } = await start(60_000, logger);
    const warning = lines.find((l) => l['level'] === 40 && String(l['msg']).includes("subdirectory 'drafts' is skipped"));
    expect(warning?.['diagnostic']).toBe(`${join(policyDir, 'drafts')}:1:1: warning: subdirectory 'drafts' is skipped: a policy directory is not read recursively; move its files up into ${policyDir}, or give this subdirectory as the policy`);
    const doc = (await status()) as unknown as { policy: { warnings: string[] } };
    expect(doc.policy.warnings).toContain(warning?.['diagnostic']);
    // The warning goes when the subdirectory does.
    rmSync(join(policyDir, 'drafts'), { recursive: true });
    await controller!.reload();
    expect(((await status()) as unknown as { policy: { warnings: string[] } }).policy.warnings).toEqual([]);
  });
});

describe('inventory hot reload: a reverted edit', () => {
  it('is reported valid again after reload()', async () => {
    const { inventory } = await start();
    const good = readFileSync(inventory, 'utf8');
    writeFileSync(inventory, `${good}\nbogus: 1\n`);
    await controller!.reload();
    expect((await status()).inventory.valid).toBe(false);
    expect(await metric('portcullis_inventory_valid')).toBe(0);
    writeFileSync(inventory, good);
    await controller!.reload();
    const restored = await status();
    expect(restored.inventory.valid).toBe(true);
    expect(restored.inventory.lastError).toBeNull();
    expect(await metric('portcullis_inventory_valid')).toBe(1);
  });
});

describe('the controller process', () => {
  it('survives a deeply nested edit and reports a reverted policy edit valid again after SIGHUP', async () => {
    dir = mkdtempSync(join(tmpdir(), 'pcut-reload-'));
    const policy = join(dir, 'policy.yaml');
    const good = 'groups:\n  web: { apps: ["/shop/web"] }\nrules:\n  - { from: any, to: web, ports: [http], action: allow }\n';
    writeFileSync(policy, good);
    const argv = [join(packageRoot(), 'bin', 'portcullis.js'), 'controller', '--insecure', '--policy', policy, '--inventory', defaultInventoryPath(),
      '--listen', '127.0.0.1:0', '--status-listen', '127.0.0.1:0', '--log-level', 'info'];
    proc = logged(spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'pipe'] }), 'controller');
    const listening = await proc.waitFor((l) => l['msg'] === 'controller listening', 15_000, 'the controller listening');
    const address = String(listening['status']);
    expect((await status(address)).policy.valid).toBe(true);

    writeFileSync(policy, good.replace('to: web', 'to: webb'));
    await proc.waitFor((l) => String(l['msg']).includes("unknown group 'webb'"), 10_000, 'the broken edit logged');
    expect((await status(address)).policy.valid).toBe(false);
    // Nested past the yaml Composer's stack (src/yaml/nesting-depth.ts): a clear error, the process stays up.
    writeFileSync(policy, `rules: ${'['.repeat(50_000)}${']'.repeat(50_000)}\n`);
    await proc.waitFor((l) => String(l['msg']).includes('YAML nesting deeper than 64 levels'), 10_000, 'the deep edit logged');

    writeFileSync(policy, good);
    proc.child.kill('SIGHUP');
    await proc.waitFor((l) => l['msg'] === 'reload requested', 10_000, 'the SIGHUP seen');
    const restored = await waitFor(async () => {
      const doc = await status(address);
      return doc.policy.valid && doc;
    }, 10_000, 'the policy valid again');
    expect(restored.policy.lastError).toBeNull();
    const metrics = await (await fetch(`http://${address}/metrics`)).text();
    expect(metrics).toMatch(/^portcullis_policy_valid 1$/m);
    expect(proc.lines().some((l) => String(l['msg']).startsWith('policy files valid again'))).toBe(true);
    expect(proc.exited()).toBe(false);
  });
});
