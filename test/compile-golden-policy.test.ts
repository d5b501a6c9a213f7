/**
 * Goldens from policy to rules, as ferm keeps them: each case under test/golden-policy/ is a
 * policy and an inventory beside the exact `portcullis compile --format iptables` output they
 * must produce (every host, both families: ipset and iptables-restore input), and the compile
 * reports it prints on stderr (rejected labels, ...) beside them. A change in the
 * parser, the compiler or the renderer that alters what a host enforces shows here as a diff a
 * reviewer can read. `UPDATE_GOLDEN=1 npx vitest run test/compile-golden-policy.test.ts`
 * rewrites the expected files (review the diff!).
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../src/package-root.js';
import { runCli } from './support/run-cli.js';

const root = packageRoot();
const goldenDir = path.join(import.meta.dirname, 'golden-policy');
const update = process.env.UPDATE_GOLDEN === '1';

interface GoldenCase {
  readonly name: string;
  readonly policy: string;
  readonly inventory: string;
}

function localCase(name: string): GoldenCase {
  return { name, policy: path.join(goldenDir, name, 'policy.yaml'), inventory: path.join(goldenDir, name, 'inventory.yaml') };
}

const cases: readonly GoldenCase[] = [
  // The shipped example: editing it is a change of what its hosts enforce, and shows here.
  { name: 'shop', policy: path.join(root, 'policies/shop'), inventory: path.join(root, 'policies/inventory.yaml') },
  localCase('audit-default-allow'),
  localCase('labels-guardrails'),
  localCase('bridge-udp-v6'),
];

describe('golden files from policy to rules (portcullis compile --format iptables)', () => {
  for (const c of cases) {
    it(c.name, async () => {
      const run = await runCli(['compile', '--policy', c.policy, '--inventory', c.inventory, '--format', 'iptables'], root);
      expect(run.code).toBe(0);
      for (const [ext, text] of [['iptables', run.out], ['reports', run.err]] as const) {
        const file = path.join(goldenDir, c.name, `expected.${ext}`);
        if (update) writeFileSync(file, text);
        expect(existsSync(file), `${file} missing: run with UPDATE_GOLDEN=1`).toBe(true);
        expect(text).toBe(readFileSync(file, 'utf8'));
      }
    });
  }

  it('every case compiles something different (no case is a copy of another)', () => {
    const outputs = cases.map((c) => readFileSync(path.join(goldenDir, c.name, 'expected.iptables'), 'utf8'));
    expect(new Set(outputs).size).toBe(cases.length);
  });
});
