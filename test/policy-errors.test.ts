/**
 * Every malformed policy under test/fixtures/policy-errors/ (a file, or a directory of files read
 * as one policy) must fail with exactly the diagnostics its `# expect: line:col substring` header
 * lines list, in that file. Fixtures with a `# lint: <inventory>` line parse clean and are linted
 * against that inventory instead.
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { Diagnostic } from '../src/diagnostic.js';
import { formatDiagnostic } from '../src/diagnostic.js';
import { lintPolicyAgainstCluster } from '../src/policy/lint-against-cluster.js';
import { parsePolicy } from '../src/policy/parse-policy.js';
import { parseStaticInventory } from '../src/inventory/static-inventory.js';
import { loadPolicy } from '../src/sources/policy-files.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const FIXTURES = join(ROOT, 'test/fixtures/policy-errors');

interface Expectation {
  file: string;
  line: number;
  col: number;
  text: string;
}

function fixtureFiles(name: string): { path: string; text: string }[] {
  const p = join(FIXTURES, name);
  const paths = statSync(p).isDirectory() ? readdirSync(p).sort().map((n) => join(p, n)) : [p];
  return paths.map((path) => ({ path, text: readFileSync(path, 'utf8') }));
}

function expectations(files: readonly { path: string; text: string }[]): Expectation[] {
  const out: Expectation[] = [];
  for (const f of files) {
    for (const m of f.text.matchAll(/^# expect: (\d+):(\d+) (.+)$/gm)) {
      out.push({ file: f.path, line: Number(m[1]), col: Number(m[2]), text: m[3]! });
    }
  }
  return out;
}

function diagnosticsOf(files: readonly { path: string; text: string }[]): { parsedOk: boolean; diags: Diagnostic[] } {
  const result = parsePolicy(files);
  const lintWith = files.map((f) => /^# lint: (\S+)$/m.exec(f.text)?.[1]).find((x) => x !== undefined);
  if (!result.ok) return { parsedOk: false, diags: result.errors };
  if (!lintWith) return { parsedOk: true, diags: [] };
  const invPath = join(ROOT, lintWith);
  const inv = parseStaticInventory(invPath, readFileSync(invPath, 'utf8'));
  if (!inv.ok) throw new Error(`inventory ${lintWith} does not parse`);
  return { parsedOk: true, diags: lintPolicyAgainstCluster(result.policy, inv.cluster, result.sites).filter((d) => d.severity !== 'warning') };
}

const names = readdirSync(FIXTURES).sort();

describe('malformed policy fixtures', () => {
  it('has at least 30 fixtures, each with at least one expectation', () => {
    expect(names.length).toBeGreaterThanOrEqual(30);
    for (const name of names) expect(expectations(fixtureFiles(name)).length, name).toBeGreaterThan(0);
  });

  it.each(names)('%s reports exactly the expected diagnostics', (name) => {
    const files = fixtureFiles(name);
    const wanted = expectations(files);
    const isLint = files.some((f) => /^# lint: /m.test(f.text));
    const { parsedOk, diags } = diagnosticsOf(files);
    expect(parsedOk, `${name} should ${isLint ? '' : 'not '}parse`).toBe(isLint);
    const shown = diags.map(formatDiagnostic).join('\n');
    for (const w of wanted) {
      const hit = diags.find((d) => d.file === w.file && d.line === w.line && d.col === w.col && d.message.includes(w.text));
      expect(hit, `expected ${w.line}:${w.col} '${w.text}' in ${name}; got:\n${shown}`).toBeDefined();
    }
    expect(diags.length, `unexpected extra diagnostics in ${name}:\n${shown}`).toBe(wanted.length);
  });

  it('reports every error of a file with many errors, sorted by position', () => {
    const files = fixtureFiles('38-many-errors.yaml');
    const result = parsePolicy(files);
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.errors.length).toBe(9);
    const positions = result.errors.map((d) => d.line * 1000 + d.col);
    expect(positions).toEqual([...positions].sort((a, b) => a - b));
    expect(new Set(result.errors.map((d) => d.line)).size).toBe(9);
  });

  it('cites both places for a name defined in two files', () => {
    const result = parsePolicy(fixtureFiles('26-duplicate-across-files'));
    expect(result.ok).toBe(false);
    if (result.ok) return;
    const [e] = result.errors;
    expect(e!.file).toBe(join(FIXTURES, '26-duplicate-across-files/20-more-groups.yaml'));
    expect(e!.message).toContain(`${join(FIXTURES, '26-duplicate-across-files/10-groups.yaml')}:3:3`);
  });

  it('formats a diagnostic as file:line:col: message', () => {
    const result = parsePolicy(fixtureFiles('12-unknown-group-in-from.yaml'));
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(formatDiagnostic(result.errors[0]!)).toMatch(
      /12-unknown-group-in-from\.yaml:10:11: unknown group or network 'apii' in 'from' of rule 'web-to-api' \(did you mean 'api'\?\); defined groups: api, web/,
    );
  });

  it('does not depend on the order files are given in', () => {
    const files = fixtureFiles('26-duplicate-across-files');
    const a = parsePolicy(files);
    const b = parsePolicy([...files].reverse());
    expect(b).toEqual(a);
  });
});

describe('loading policy paths', () => {
  it('reports a directory without policy files', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pcut-policy-'));
    try {
      writeFileSync(join(dir, 'README.md'), '# not a policy\n');
      const result = await loadPolicy(dir);
      expect(result.ok).toBe(false);
      if (result.ok) return;
      expect(result.errors).toEqual([expect.objectContaining({ file: dir, line: 1, col: 1 })]);
      expect(result.errors[0]!.message).toContain('no policy files');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reports a missing path at line 1 col 1', async () => {
    const missing = join(tmpdir(), 'pcut-policy-does-not-exist', 'x.yaml');
    const result = await loadPolicy(missing);
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.errors[0]).toMatchObject({ file: missing, line: 1, col: 1 });
    expect(result.errors[0]!.message).toContain('no such file');
  });

  it('reads a directory non-recursively, *.yaml and *.yml only, sorted', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pcut-policy-'));
    try {
      writeFileSync(join(dir, 'b.yml'), 'rules:\n  - { from: any, to: web, action: deny }\n');
      writeFileSync(join(dir, 'a.yaml'), 'groups:\n  web: { apps: ["/web"] }\nrules:\n  - { from: any, to: web, action: allow }\n');
      writeFileSync(join(dir, 'c.txt'), 'not: [yaml\n');
      const result = await loadPolicy(dir);
      expect(result.ok).toBe(true);
      if (!result.ok) return;
      expect(result.policy.rules.map((r) => r.name)).toEqual(['a.yaml#1', 'b.yml#1']);
      expect(result.policy.rules[1]!.at.file).toBe(join(dir, 'b.yml'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('a policy with thousands of errors', () => {
  it('is reported with bounded work and memory: name lists are capped, suggestions bounded in number', () => {
    // Every error listed every defined name (3,000 names x 6,000 errors = 336M characters) and
    // computed an edit distance to each: 73 s and a heap that a larger file exhausted.
    const n = 3_000;
    const groups = Array.from({ length: n }, (_, i) => `  group-number-${i}: { apps: ["/a/${i}"] }`).join('\n');
    const rules = Array.from({ length: n }, (_, i) => `  - { from: nope-${i}, to: group-numbr-${i}, action: allow }`).join('\n');
    const result = parsePolicy([{ path: 'p.yaml', text: `groups:\n${groups}\nrules:\n${rules}\n` }]);
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.errors).toHaveLength(2 * n);
    expect(Math.max(...result.errors.map((e) => e.message.length))).toBeLessThan(1_000);
    const to = result.errors.find((e) => e.message.startsWith("unknown group 'group-numbr-7' "));
    expect(result.errors.filter((e) => e.message.includes('did you mean')).length).toBeLessThanOrEqual(200);
    expect(to?.message).toMatch(/\(did you mean 'group-number-7'\?\); defined groups: group-number-0, .*, … \(2980 more\)$/);
  });
});
