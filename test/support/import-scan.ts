/**
 * The import scanner the architecture tests share (test/purity.test.ts, test/layering.test.ts):
 * every import specifier of a TypeScript source (static, `export … from`, dynamic `import()`,
 * `require()` and bare `import '…'`), and relative specifiers resolved to the repository file
 * they name. A regular expression, not the compiler: the tests check their own patterns.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';

export const repoRoot = path.resolve(import.meta.dirname, '..', '..');

const importPattern = /(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)|require\(\s*['"]([^'"]+)['"]\s*\)|^\s*import\s*['"]([^'"]+)['"]/gm;

export function importsOf(source: string): string[] {
  return [...source.matchAll(importPattern)].map((m) => m[1] ?? m[2] ?? m[3] ?? m[4] ?? '');
}

/** The `.ts` files under `dir` (relative to the repository root), recursively; none when it is absent. */
export function tsFiles(dir: string): string[] {
  let entries: string[];
  try {
    entries = readdirSync(path.join(repoRoot, dir));
  } catch {
    return [];
  }
  return entries.flatMap((name) => {
    const rel = path.join(dir, name);
    if (statSync(path.join(repoRoot, rel)).isDirectory()) return tsFiles(rel);
    return name.endsWith('.ts') ? [rel] : [];
  });
}

/** The specifiers `file` imports (its text read from the repository). */
export function importsOfFile(file: string): string[] {
  return importsOf(readFileSync(path.join(repoRoot, file), 'utf8'));
}

/** The repository file a relative specifier of `file` names (`./x.js` → `dir/x.ts`), or undefined when none exists. */
export function resolveRelative(file: string, spec: string): string | undefined {
  if (!spec.startsWith('.')) return undefined;
  const target = path.join(path.dirname(file), spec).replace(/\.js$/, '.ts');
  try {
    statSync(path.join(repoRoot, target));
  } catch {
    return undefined;
  }
  return target;
}
