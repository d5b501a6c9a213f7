/**
 * The pure core (address text, policy, inventory model, compiler, renderer, evaluator) does no I/O: it may not
 * import the filesystem, child processes, sockets, gRPC or Consul. This walks every module of the
 * core and every relative import it reaches, so a forbidden import anywhere below fails here.
 */
import { describe, expect, it } from 'vitest';
import { importsOf, importsOfFile, resolveRelative, tsFiles } from './support/import-scan.js';

const pureDirs = ['src/net', 'src/policy', 'src/inventory', 'src/compile', 'src/render', 'src/evaluate', 'src/flows'];
const forbidden = [
  /^(node:)?fs(\/promises)?$/,
  /^(node:)?child_process$/,
  /^(node:)?net$/,
  /^(node:)?dgram$/,
  /^(node:)?https?$/,
  /^@grpc\/grpc-js$/,
  /^consul$/,
];

/** Every module reachable from `file` through relative imports, with its own imports. */
function reachable(file: string, seen = new Map<string, string[]>()): Map<string, string[]> {
  if (seen.has(file)) return seen;
  const specs = importsOfFile(file);
  seen.set(file, specs);
  for (const spec of specs) {
    const target = resolveRelative(file, spec);
    if (target !== undefined) reachable(target, seen);
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
