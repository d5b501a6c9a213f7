/**
 * The pure core (policy, inventory model, compiler, renderer, evaluator) does no I/O: it may not
 * import the filesystem, child processes, sockets, gRPC or Consul. This walks every module of the
 * core and every relative import it reaches, so a forbidden import anywhere below fails here.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '..');
const pureDirs = ['src/policy', 'src/inventory', 'src/compile', 'src/render', 'src/evaluate'];
const forbidden = [
  /^(node:)?fs(\/promises)?$/,
  /^(node:)?child_process$/,
  /^(node:)?net$/,
  /^(node:)?dgram$/,
  /^(node:)?https?$/,
  /^@grpc\/grpc-js$/,
  /^consul$/,
];

function tsFiles(dir: string): string[] {
  const abs = path.join(root, dir);
  let entries: string[];
  try {
    entries = readdirSync(abs);
  } catch {
    return [];
  }
  return entries.flatMap((name) => {
    const rel = path.join(dir, name);
    if (statSync(path.join(root, rel)).isDirectory()) return tsFiles(rel);
    return name.endsWith('.ts') ? [rel] : [];
  });
}

const importPattern = /(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)|require\(\s*['"]([^'"]+)['"]\s*\)|^\s*import\s*['"]([^'"]+)['"]/gm;

export function importsOf(source: string): string[] {
  return [...source.matchAll(importPattern)].map((m) => m[1] ?? m[2] ?? m[3] ?? m[4] ?? '');
}

/** Every module reachable from `file` through relative imports, with its own imports. */
function reachable(file: string, seen = new Map<string, string[]>()): Map<string, string[]> {
  if (seen.has(file)) return seen;
  const specs = importsOf(readFileSync(path.join(root, file), 'utf8'));
  seen.set(file, specs);
  for (const spec of specs) {
    if (!spec.startsWith('.')) continue;
    const target = path.join(path.dirname(file), spec).replace(/\.js$/, '.ts');
    try {
      statSync(path.join(root, target));
    } catch {
      continue;
    }
    reachable(target, seen);
  }
  return seen;
}

describe('purity boundary of the core', () => {
  const files = pureDirs.flatMap(tsFiles);

  it('finds the core modules', () => {
    expect(files.length).toBeGreaterThan(3);
  });

  it('recognises every import form it must police', () => {
    const src = `import fs from 'node:fs';\nimport { x } from "child_process";\nexport * from 'net';\nconst g = await import('@grpc/grpc-js');\nimport 'consul';\n`;
    expect(importsOf(src)).toEqual(['node:fs', 'child_process', 'net', '@grpc/grpc-js', 'consul']);
  });

  it('no core module reaches fs, child_process, net, http, grpc or consul', () => {
    const offences: string[] = [];
    for (const file of files) {
      for (const [module, specs] of reachable(file)) {
        for (const spec of specs) {
          if (forbidden.some((re) => re.test(spec))) offences.push(`${module} imports ${spec} (reached from ${file})`);
        }
      }
    }
    expect(offences).toEqual([]);
  });
});
