/**
 * The layers of docs/architecture.md, enforced. The list between `<!-- layers -->` markers there is
 * the order (bottom first) of the rooms (folders, or single files) of src/, agent/ and bin/. A
 * module may import its own room, a room of a lower layer, or a same-layer room listed in
 * SAME_LAYER below; nothing under src/ or agent/ may import test/ code; no two modules of src/
 * and agent/ may import each other in a cycle. Imports are scanned with the purity test's scanner
 * (test/support/import-scan.ts), type-only imports included.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { importsOfFile, repoRoot, resolveRelative, tsFiles } from './support/import-scan.js';

/** Same-layer imports the architecture allows (from → to), each explained in docs/architecture.md. */
const SAME_LAYER: readonly (readonly [string, string])[] = [
  ['src/policy', 'src/inventory'],
  ['src/inventory', 'src/policy'],
  ['src/grpc', 'src/tls'],
  ['src/tls', 'src/grpc'],
  ['src/flows', 'src/evaluate'],
];

/** The rooms of each layer, bottom first, as docs/architecture.md lists them. */
function parseLayers(markdown: string): string[][] {
  const start = markdown.indexOf('<!-- layers');
  const end = markdown.indexOf('<!-- /layers -->');
  if (start < 0 || end < start) throw new Error('docs/architecture.md has no <!-- layers --> … <!-- /layers --> list');
  return markdown
    .slice(start, end)
    .split('\n')
    .filter((line) => /^\d+\.\s/.test(line))
    .map((line) => [...(line.split(' — ')[0] ?? '').matchAll(/`([^`]+)`/g)].map((m) => m[1] as string));
}

/** The room a repository path belongs to: the longest room that is the path or a folder above it. */
function roomOf(file: string, rooms: readonly string[]): string | undefined {
  return rooms.filter((r) => file === r || file.startsWith(`${r}/`)).sort((a, b) => b.length - a.length)[0];
}

type ImportGraph = ReadonlyMap<string, readonly string[]>;

/** Every import of `graph` (file → files it imports) against the layers, as readable lines. */
function layerViolations(graph: ImportGraph, layers: readonly (readonly string[])[], sameLayer: readonly (readonly [string, string])[]): string[] {
  const rooms = layers.flat();
  const layerOf = new Map(layers.flatMap((rs, i) => rs.map((r) => [r, i] as const)));
  const allowed = new Set(sameLayer.map(([a, b]) => `${a} ${b}`));
  const out: string[] = [];
  for (const [file, targets] of graph) {
    const from = roomOf(file, rooms);
    if (from === undefined) {
      out.push(`${file} is in no layer of docs/architecture.md`);
      continue;
    }
    for (const target of targets) {
      const to = roomOf(target, rooms);
      if (to === undefined) out.push(`${file} imports ${target}, which is in no layer (test code, or a folder the layers do not list)`);
      else if (to === from) continue;
      else if ((layerOf.get(to) as number) > (layerOf.get(from) as number)) out.push(`${file} (${from}) imports ${target} (${to}), a higher layer`);
      else if (layerOf.get(to) === layerOf.get(from) && !allowed.has(`${from} ${to}`)) out.push(`${file} (${from}) imports ${target} (${to}) of the same layer, which is not an allowed pair`);
    }
  }
  return out;
}

/** The import cycles of `graph` (strongly connected components of more than one module, or a module importing itself). */
function importCycles(graph: ImportGraph): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const cycles: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, next);
    low.set(v, next);
    next++;
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v) as number, low.get(w) as number));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v) as number, index.get(w) as number));
    }
    if (low.get(v) !== index.get(v)) return;
    const component: string[] = [];
    let w: string;
    do {
      w = stack.pop() as string;
      onStack.delete(w);
      component.push(w);
    } while (w !== v);
    if (component.length > 1 || (graph.get(v) ?? []).includes(v)) cycles.push(component.sort());
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return cycles;
}

/** file → repository files it imports (relative imports only; `bin/` imports of `dist/` map to their sources). */
function repositoryGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of [...tsFiles('src'), ...tsFiles('agent')]) {
    graph.set(file, importsOfFile(file).flatMap((spec) => resolveRelative(file, spec) ?? []));
  }
  for (const name of ['portcullis.js']) {
    const file = path.join('bin', name);
    const specs = importsOfFile(file).filter((spec) => spec.startsWith('.'));
    graph.set(file, specs.map((spec) => path.join('bin', spec).replace(/^dist\//, '').replace(/\.js$/, '.ts')));
  }
  return graph;
}

describe('layers of docs/architecture.md', () => {
  const layers = parseLayers(readFileSync(path.join(repoRoot, 'docs', 'architecture.md'), 'utf8'));
  const graph = repositoryGraph();

  it('reads the layer list of the architecture document', () => {
    expect(layers.length).toBeGreaterThan(5);
    expect(layers[0]).toContain('src/diagnostic.ts');
    expect(layers.at(-1)).toEqual(['bin']);
    expect(graph.size).toBeGreaterThan(100);
    expect(graph.get('bin/portcullis.js')).toEqual(['src/cli/main.ts']);
  });

  it('catches an import against the order, a same-layer import, test code, an unplaced module and a cycle', () => {
    const order = [['a'], ['b', 'c'], ['d']];
    const bad: ImportGraph = new Map([
      ['a/x.ts', ['b/y.ts']],
      ['b/y.ts', ['c/z.ts', 'a/x.ts']],
      ['c/z.ts', ['test/support/h.ts']],
      ['d/w.ts', ['a/x.ts', 'd/v.ts']],
      ['e/u.ts', []],
    ]);
    expect(layerViolations(bad, order, [])).toEqual([
      'a/x.ts (a) imports b/y.ts (b), a higher layer',
      'b/y.ts (b) imports c/z.ts (c) of the same layer, which is not an allowed pair',
      'c/z.ts imports test/support/h.ts, which is in no layer (test code, or a folder the layers do not list)',
      'e/u.ts is in no layer of docs/architecture.md',
    ]);
    expect(layerViolations(new Map([['b/y.ts', ['c/z.ts']]]), order, [['b', 'c']])).toEqual([]);
    expect(importCycles(bad)).toEqual([['a/x.ts', 'b/y.ts']]);
    expect(importCycles(new Map([['a/x.ts', ['a/x.ts']]]))).toEqual([['a/x.ts']]);
    expect(importCycles(new Map([['a/x.ts', ['b/y.ts']], ['b/y.ts', []]]))).toEqual([]);
  });

  it('every module of src/, agent/ and bin/ imports only its own room, lower layers and the allowed same-layer rooms', () => {
    expect(layerViolations(graph, layers, SAME_LAYER)).toEqual([]);
  });

  it('every allowed same-layer pair is still used (an unused allowance is removed, not kept)', () => {
    const rooms = layers.flat();
    const used = new Set([...graph].flatMap(([file, targets]) => targets.map((t) => `${roomOf(file, rooms)} ${roomOf(t, rooms)}`)));
    expect(SAME_LAYER.filter(([a, b]) => !used.has(`${a} ${b}`))).toEqual([]);
  });

  it('no import cycle among the modules of src/ and agent/', () => {
    expect(importCycles(graph)).toEqual([]);
  });
});
