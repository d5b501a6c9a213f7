/** The shipped examples (the defaults of every CLI command) must parse clean and lint clean. */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { formatDiagnostic } from '../src/diagnostic.js';
import { lintPolicyAgainstCluster } from '../src/policy/lint-against-cluster.js';
import { loadInventory } from '../src/sources/inventory-file.js';
import { loadPolicy } from '../src/sources/policy-files.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

describe('shipped examples', () => {
  it('policies/shop and policies/inventory.yaml parse and lint without errors or warnings', async () => {
    const policy = await loadPolicy(join(ROOT, 'policies/shop'));
    if (!policy.ok) throw new Error(policy.errors.map(formatDiagnostic).join('\n'));
    expect(policy.warnings.map(formatDiagnostic)).toEqual([]);
    const inventory = await loadInventory(join(ROOT, 'policies/inventory.yaml'));
    if (!inventory.ok) throw new Error(inventory.errors.map(formatDiagnostic).join('\n'));
    expect(lintPolicyAgainstCluster(policy.policy, inventory.cluster, policy.sites).map(formatDiagnostic)).toEqual([]);
  });

  it('the shop example shows what the format can do', async () => {
    const result = await loadPolicy(join(ROOT, 'policies/shop'));
    if (!result.ok) throw new Error(result.errors.map(formatDiagnostic).join('\n'));
    const p = result.policy;
    expect(new Set(p.rules.map((r) => r.at.file)).size).toBeGreaterThanOrEqual(1);
    expect(new Set([...p.groups.map((g) => g.at.file), ...p.networks.map((n) => n.at.file)]).size).toBe(2);
    expect(p.groups.map((g) => g.name)).toEqual(expect.arrayContaining(['web', 'api', 'payments', 'db', 'cache', 'monitoring']));
    const admin = p.networks.find((n) => n.name === 'admin')!;
    expect(admin.cidrs.some((c) => c.includes(':'))).toBe(true);
    expect(admin.cidrs.some((c) => !c.includes(':'))).toBe(true);
    expect(new Set(p.rules.map((r) => r.action))).toEqual(new Set(['allow', 'deny', 'pass']));
    expect(p.rules.some((r) => r.protocols?.includes('udp'))).toBe(true);
    expect(p.rules.some((r) => r.from.some((f) => f.kind === 'any'))).toBe(true);
    expect(p.guardrails.deny.some((d) => d.from.some((f) => f.kind === 'any') && d.to.includes('db'))).toBe(true);
    // A deny comes before a broader allow that would also match its sources.
    const deny = p.rules.findIndex((r) => r.name === 'retired-lb-denied');
    const allow = p.rules.findIndex((r) => r.name === 'lb-to-web');
    expect(deny).toBeGreaterThanOrEqual(0);
    expect(deny).toBeLessThan(allow);
  });
});
