/**
 * Policy load limits (src/policy/policy-limits.ts): a policy over --max-policy-bytes,
 * --max-rules or --max-members is refused with an error naming the limit and the flag, the
 * compile stops early instead of building everything, and a running store or controller keeps
 * serving the last good policy.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { compile } from '../src/compile/compile.js';
import { startController, type RunningController } from '../src/controller/controller-main.js';
import { DesiredStateStore } from '../src/controller/desired-state-store.js';
import { StaticInventoryFeed } from '../src/controller/static-inventory-feed.js';
import { createLogger } from '../src/logging.js';
import { parsePolicy } from '../src/policy/parse-policy.js';
import { DEFAULT_POLICY_LIMITS, parsePolicyWithin, PolicyLimitError } from '../src/policy/policy-limits.js';
import type { Policy } from '../src/policy/policy-model.js';
import { loadPolicy } from '../src/sources/policy-files.js';
import { largePolicyFiles } from './bench/large-policy.js';
import { syntheticCluster } from './bench/synthetic-cluster.js';
import { packageRoot } from '../src/package-root.js';
import { runCli } from './support/run-cli.js';

const SIZE = { hosts: 40, apps: 60, tasks: 300, groups: 30, rules: 200, networks: 200 };
const cluster = syntheticCluster(SIZE, 1);

function parsed(rules: number): Policy {
  const r = parsePolicy(largePolicyFiles({ ...SIZE, rules, networks: rules }, 3));
  if (!r.ok) throw new Error(r.errors[0]!.message);
  return r.policy;
}

function members(states: Iterable<{ sets: Record<string, readonly string[]> }>): number {
  let n = 0;
  for (const s of states) n += s.sets['allow-ip4']!.length + s.sets['allow-net4']!.length + s.sets['allow-ip6']!.length + s.sets['allow-net6']!.length;
  return n;
}

describe('policy limits: the errors', () => {
  const files = largePolicyFiles(SIZE, 3);

  it('too many rules: located at the first rule over the limit, naming --max-rules', () => {
    const r = parsePolicyWithin('large', files, { ...DEFAULT_POLICY_LIMITS, maxRules: 150 });
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]!.file).toBe('large/30-rules-000.yaml');
    expect(r.errors[0]!.line).toBe(152); // 'rules:' is line 1, rule #151 is line 152
    expect(r.errors[0]!.message).toMatch(/too many rules: the policy has 200, and rule 'r-150' is number 151; the limit is 150 \(--max-rules\)/);
  });

  it('too many bytes: refused before the files are read, naming --max-policy-bytes', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pcut-limits-'));
    try {
      for (const f of files) await writeFile(join(dir, f.path.slice('large/'.length)), f.text);
      const total = files.reduce((n, f) => n + Buffer.byteLength(f.text), 0);
      const over = await loadPolicy(dir, { ...DEFAULT_POLICY_LIMITS, maxBytes: total - 1 });
      expect(over.ok).toBe(false);
      if (!over.ok) expect(over.errors[0]!.message).toBe(`policy too large: its files hold ${total} bytes; the limit is ${total - 1} (--max-policy-bytes); make the policy smaller, or raise --max-policy-bytes if the controller has the memory for it`);
      expect((await loadPolicy(dir, { ...DEFAULT_POLICY_LIMITS, maxBytes: total })).ok).toBe(true);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('too many members: the compile stops early (before the last host), naming --max-members', () => {
    const policy = parsed(200);
    const total = members(compile(policy, cluster).states.values());
    expect(total).toBeGreaterThan(1000);
    const limit = Math.floor(total / 4);
    let error: unknown;
    try {
      compile(policy, cluster, { maxMembers: limit });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(PolicyLimitError);
    const m = /more than (\d+) allow-set members \((\d+) after (\d+) of (\d+) hosts; compile stopped there\); the limit is \d+ \(--max-members\)/.exec((error as Error).message);
    expect(m, (error as Error).message).not.toBeNull();
    expect(Number(m![1])).toBe(limit);
    expect(Number(m![3])).toBeLessThan(Number(m![4]));
    expect(compile(policy, cluster, { maxMembers: total }).states.size).toBe(SIZE.hosts);
  });

  it('portcullis check exits 1 with the limit error; a limit flag must be a positive number', async () => {
    const over = await runCli(['check', '--max-members', '10']);
    expect(over.code).toBe(1);
    expect(over.out).toMatch(/policies\/shop:1:1: policy too costly to compile: it gives more than 10 allow-set members .*--max-members/);
    expect(over.out).toMatch(/over a load limit, not compiled/);
    expect((await runCli(['check', '--max-rules', '11'])).code).toBe(0);
    expect((await runCli(['check', '--max-rules', '10'])).code).toBe(1);
    const bad = await runCli(['compile', '--max-policy-bytes', '1e6']);
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/--max-policy-bytes must be a positive whole number, got '1e6'/);
  });
});

describe('policy limits: the last good policy stays', () => {
  it('a store refuses a policy over --max-members and keeps serving the previous states', async () => {
    const small = parsed(20);
    const large = parsed(200);
    const smallMembers = members(compile(small, cluster).states.values());
    const largeMembers = members(compile(large, cluster).states.values());
    expect(largeMembers).toBeGreaterThan(smallMembers);
    const store = new DesiredStateStore({ maxMembers: smallMembers + Math.floor((largeMembers - smallMembers) / 2) });
    store.setCluster(cluster);
    expect(await store.loadPolicy(small)).toHaveLength(SIZE.hosts);
    const before = store.hostIds().map((id) => store.current(id)!.version);
    const notified: string[][] = [];
    store.subscribe((changed) => notified.push([...changed]));

    await expect(store.loadPolicy(large)).rejects.toThrow(PolicyLimitError);
    expect(() => store.setPolicy(large)).toThrow(/--max-members/);
    expect(store.hostIds().map((id) => store.current(id)!.version)).toEqual(before);
    expect(notified).toEqual([]);
    // Still live: a cluster change is compiled under the kept policy.
    const moved = { ...cluster, tasks: cluster.tasks.slice(1) };
    store.setCluster(moved);
    expect(store.hostIds().map((id) => store.current(id)!.version)).toEqual([...compile(small, moved).states.values()].map((s) => s.version));
  });

  describe('a running controller', () => {
    let controller: RunningController | undefined;
    let dir = '';
    afterEach(async () => {
      await controller?.stop();
      controller = undefined;
      await rm(dir, { recursive: true, force: true });
    });

    it('logs the limit error, reports the policy invalid in /status, and keeps serving the last good states', async () => {
      dir = await mkdtemp(join(tmpdir(), 'pcut-limits-'));
      const policyFile = join(dir, 'policy.yaml');
      const inventory = join(dir, 'inventory.yaml');
      await writeFile(
        inventory,
        'hosts:\n  - { id: h1, addresses: [10.0.0.1] }\n  - { id: h2, addresses: [10.0.0.2] }\napps:\n  - { id: /a, ports: [{ name: http }] }\n  - { id: /b, ports: [{ name: http }] }\ntasks:\n  - { app: /a, host: h1, ports: [31000] }\n  - { app: /b, host: h2, ports: [31000] }\n',
      );
      const rule = (i: number) => `  - { name: r${i}, from: net${i}, to: b, ports: [http], action: allow }\n`;
      const policyText = (n: number) =>
        `groups:\n  a: { apps: [/a] }\n  b: { apps: [/b] }\nnetworks:\n${Array.from({ length: n }, (_, i) => `  net${i}: { cidrs: [192.0.${2 * i}.0/24] }\n`).join('')}rules:\n  - { name: a-to-b, from: a, to: b, action: allow }\n${Array.from({ length: n }, (_, i) => rule(i)).join('')}`;
      await writeFile(policyFile, policyText(2));
      const lines: string[] = [];
      controller = await startController({
        policyPath: policyFile,
        feed: () => new StaticInventoryFeed({ path: inventory }),
        listen: { host: '127.0.0.1', port: 0 },
        statusListen: { host: '127.0.0.1', port: 0 },
        credentials: undefined,
        pollMs: 3_600_000,
        limits: { maxBytes: 2000, maxRules: 5, maxMembers: 4 },
        logger: createLogger({ component: 'controller', level: 'info', destination: { write: (l: string) => void lines.push(l) } }),
      });
      const status = () => controller!.status.status() as { ready: boolean; policy: { valid: boolean; lastError: { diagnostics: string[] } | null }; agents: { hostId: string; desiredVersion: string }[] };
      expect(status().ready).toBe(true);
      const good = status().agents.map((a) => `${a.hostId} ${a.desiredVersion}`);

      // 6 rules > --max-rules 5.
      await writeFile(policyFile, policyText(5));
      await controller.reload();
      expect(status().policy.valid).toBe(false);
      expect(status().policy.lastError?.diagnostics.join('\n')).toMatch(/policy\.yaml:\d+:\d+: too many rules: the policy has 6, .*--max-rules/);
      expect(status().agents.map((a) => `${a.hostId} ${a.desiredVersion}`)).toEqual(good);

      // 5 allow members on h2 (a's host + 4 networks) > --max-members 4: refused after the compile started.
      await writeFile(policyFile, policyText(4));
      await controller.reload();
      const deadline = Date.now() + 10_000;
      while (!/--max-members/.test(status().policy.lastError?.diagnostics.join('\n') ?? '') && Date.now() < deadline) await new Promise((r) => setImmediate(r));
      expect(status().policy.valid).toBe(false);
      expect(status().policy.lastError?.diagnostics.join('\n')).toMatch(/more than 4 allow-set members .*--max-members/);
      expect(status().agents.map((a) => `${a.hostId} ${a.desiredVersion}`)).toEqual(good);
      expect(lines.some((l) => /policy reload failed: keeping the last good policy/.test(l))).toBe(true);

      // Over the byte limit: refused before reading.
      await writeFile(policyFile, policyText(60));
      await controller.reload();
      expect(status().policy.lastError?.diagnostics.join('\n')).toMatch(/policy too large: its files hold \d+ bytes; the limit is 2000 \(--max-policy-bytes\)/);
      expect(status().agents.map((a) => `${a.hostId} ${a.desiredVersion}`)).toEqual(good);

      // Within the limits again: applied.
      await writeFile(policyFile, policyText(3));
      await controller.reload();
      const applied = Date.now() + 10_000;
      while (!status().policy.valid && Date.now() < applied) await new Promise((r) => setImmediate(r));
      expect(status().policy.valid).toBe(true);
      expect(status().agents.map((a) => `${a.hostId} ${a.desiredVersion}`)).not.toEqual(good);
    });

    it('a policy broken in many places: /status and the log keep the first 200 errors and say how many more', async () => {
      dir = await mkdtemp(join(tmpdir(), 'pcut-limits-'));
      const policyFile = join(dir, 'policy.yaml');
      await writeFile(policyFile, `groups:\n  b: { apps: [/b] }\nrules:\n${Array.from({ length: 250 }, (_, i) => `  - { name: r${i}, from: nowhere${i}, to: b, action: allow }\n`).join('')}`);
      const lines: string[] = [];
      controller = await startController({
        policyPath: policyFile,
        feed: () => new StaticInventoryFeed({ path: join(packageRoot(), 'policies/inventory.yaml') }),
        listen: { host: '127.0.0.1', port: 0 },
        statusListen: { host: '127.0.0.1', port: 0 },
        credentials: undefined,
        pollMs: 3_600_000,
        logger: createLogger({ component: 'controller', level: 'info', destination: { write: (l: string) => void lines.push(l) } }),
      });
      const shown = (controller.status.status() as { policy: { lastError: { diagnostics: string[] } | null } }).policy.lastError?.diagnostics ?? [];
      expect(shown).toHaveLength(201);
      expect(shown[0]).toMatch(/policy\.yaml:4:\d+: unknown group or network 'nowhere0'/);
      expect(shown[200]).toMatch(/^… and 50 more errors \(portcullis check --policy .*policy\.yaml lists them all\)$/);
      expect(lines.filter((l) => /unknown group or network/.test(l))).toHaveLength(200);
      expect(lines.some((l) => /"errors":250/.test(l))).toBe(true);
    });
  });
});
