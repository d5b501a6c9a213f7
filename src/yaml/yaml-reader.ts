/**
 * YAML with positions: parse one file with the `yaml` package, turn its syntax errors into
 * Diagnostics, and read typed values out of the node tree while recording a Diagnostic (pointing
 * at the offending node, or at the key for unknown keys) for everything that is not as expected.
 *
 * Contract: readers never throw on bad input; they return undefined and record an error, so a
 * caller can keep going and report every problem of a file at once. A key given twice in one
 * mapping is an error at the second one citing the first (the first one is used). An alias whose
 * anchor is missing is reported once; errors about that alias node are not repeated. Pure (no I/O).
 */
import { Composer, LineCounter, Parser, YAMLParseError, isAlias, isMap, isPair, isScalar, isSeq, visit } from 'yaml';
import type { Alias, Document, Node as YamlNode, Scalar, YAMLMap } from 'yaml';
import type { Diagnostic } from '../diagnostic.js';
import type { SourceLocation } from '../diagnostic.js';
import { didYouMean } from './suggest.js';
import { MAX_NESTING, tooDeepAt } from './nesting-depth.js';

export interface Entry {
  readonly key: string;
  readonly keyNode: YamlNode;
  /** The value node (aliases resolved); null when the key has no value at all. */
  readonly value: YamlNode | null;
}

export interface ParsedYaml {
  readonly reader: YamlReader;
  /** The top-level node; null for an empty document (or comments only). */
  readonly root: YamlNode | null;
  readonly syntaxErrors: readonly Diagnostic[];
}

/** Parses `text`; YAML syntax errors (duplicate keys and tabs included) become Diagnostics. */
export function parseYaml(file: string, text: string): ParsedYaml {
  const lineCounter = new LineCounter();
  // parseDocument(), in its steps, so that nesting is bounded before the (recursive) Composer runs.
  const tokens = [...new Parser(lineCounter.addNewLine).parse(text)];
  const deep = tooDeepAt(tokens);
  const composer = new Composer({ prettyErrors: false, uniqueKeys: false, keepSourceTokens: false });
  if (deep !== undefined) {
    const { line, col } = lineCounter.linePos(deep);
    const message = `YAML nesting deeper than ${MAX_NESTING} levels (lists and mappings inside each other) starts here; policy and inventory files nest about 5 levels: is this the right file?`;
    const empty = [...composer.compose([], true, 0)][0]!;
    return { reader: new YamlReader(file, empty, lineCounter), root: null, syntaxErrors: [{ file, line, col, message, severity: 'error' }] };
  }
  const docs = [...composer.compose(tokens, true, text.length)];
  const doc = docs[0]!;
  if (docs.length > 1) doc.errors.push(new YAMLParseError(docs[1]!.range.slice(0, 2) as [number, number], 'MULTIPLE_DOCS', 'Source contains multiple documents'));
  const syntaxErrors: Diagnostic[] = doc.errors.map((e) => {
    const { line, col } = lineCounter.linePos(e.pos[0]);
    return { file, line, col, message: `YAML syntax error: ${yamlMessage(e.code, e.message)}`, severity: 'error' };
  });
  const reader = new YamlReader(file, doc, lineCounter);
  const root = doc.contents as YamlNode | null;
  const isEmpty = root === null || (isScalar(root) && root.value === null && !root.tag);
  return { reader, root: isEmpty ? null : reader.resolve(root), syntaxErrors };
}

function yamlMessage(code: string, message: string): string {
  switch (code) {
    case 'TAB_AS_INDENT':
      return 'tab used for indentation; YAML indents with spaces only';
    case 'MULTIPLE_DOCS':
      return "the file contains more than one YAML document ('---'); put one document per file";
    default:
      return message;
  }
}

export class YamlReader {
  readonly diagnostics: Diagnostic[] = [];
  /** Aliases already reported as unresolvable. */
  private readonly brokenAliases = new WeakSet<object>();
  /** Each alias's anchored node (undefined: no such anchor before it), built on first use. */
  private aliasTargets: Map<Alias, YamlNode | undefined> | undefined;

  constructor(
    readonly file: string,
    private readonly doc: Document,
    private readonly lineCounter: LineCounter,
  ) {}

  /** 1-based location of a node's first character. */
  at(node: YamlNode | null | undefined, fallback?: SourceLocation): SourceLocation {
    const offset = node?.range?.[0];
    if (offset === undefined) return fallback ?? { file: this.file, line: 1, col: 1 };
    const { line, col } = this.lineCounter.linePos(offset);
    return { file: this.file, line, col };
  }

  error(where: YamlNode | SourceLocation | null | undefined, message: string): void {
    if (where && this.brokenAliases.has(where)) return;
    const loc = isLocation(where) ? where : this.at(where);
    this.diagnostics.push({ file: loc.file, line: loc.line, col: loc.col, message, severity: 'error' });
  }

  warning(where: YamlNode | SourceLocation | null | undefined, message: string): void {
    const loc = isLocation(where) ? where : this.at(where);
    this.diagnostics.push({ file: loc.file, line: loc.line, col: loc.col, message, severity: 'warning' });
  }

  /** Follows aliases (`*name`) to the anchored node; an unresolvable alias is an error. */
  resolve(node: unknown): YamlNode | null {
    if (isAlias(node)) {
      const target = this.aliasTarget(node);
      if (!target) {
        this.error(node, `unknown alias '*${node.source}': define the anchor '&${node.source}' before using it`);
        this.brokenAliases.add(node);
        return node as unknown as YamlNode;
      }
      return target as YamlNode;
    }
    return (node as YamlNode | null | undefined) ?? null;
  }

  /**
   * What Alias.resolve(doc) answers (the last node before the alias carrying its anchor), for all
   * aliases from one walk of the document: Alias.resolve walks the whole document on every call,
   * which made a file of a few thousand aliases take minutes (found by test/fuzz-policy.test.ts).
   */
  private aliasTarget(alias: Alias): YamlNode | undefined {
    if (!this.aliasTargets) {
      const targets = new Map<Alias, YamlNode | undefined>();
      const latest = new Map<string, YamlNode>();
      visit(this.doc, {
        Node: (_key, n) => {
          if (isAlias(n)) targets.set(n, latest.get(n.source));
          else if (n.anchor) latest.set(n.anchor, n as YamlNode);
        },
      });
      this.aliasTargets = targets;
    }
    return this.aliasTargets.get(alias);
  }

  /**
   * Reads a mapping whose keys must be among `known`; unknown keys are errors pointing at the key
   * (with the nearest known key suggested). Returns undefined, with an error, if `node` is not a mapping.
   */
  mapping(node: YamlNode | null, what: string, known: readonly string[]): Map<string, Entry> | undefined {
    const map = this.anyMapping(node, what);
    if (!map) return undefined;
    const out = new Map<string, Entry>();
    for (const entry of map) {
      if (!known.includes(entry.key)) {
        this.error(
          entry.keyNode,
          `unknown key '${entry.key}' in ${what}${didYouMean(entry.key, known)}; known keys: ${known.join(', ')}`,
        );
        continue;
      }
      out.set(entry.key, entry);
    }
    return out;
  }

  /** A mapping with arbitrary string keys (label maps, name → definition maps). */
  anyMapping(node: YamlNode | null, what: string): Entry[] | undefined {
    if (!isMap(node)) {
      this.error(node, `${what} must be a mapping (key: value lines), found ${describe(node)}`);
      return undefined;
    }
    const out: Entry[] = [];
    const seen = new Map<string, YamlNode>();
    for (const pair of (node as YAMLMap).items) {
      if (!isPair(pair)) continue;
      const keyNode = this.resolve(pair.key);
      if (!isScalar(keyNode) || (typeof keyNode.value !== 'string' && typeof keyNode.value !== 'number')) {
        this.error(keyNode, `keys in ${what} must be plain words, found ${describe(keyNode)}`);
        continue;
      }
      const key = String(keyNode.value);
      const first = seen.get(key);
      if (first) {
        const at = this.at(first);
        this.error(keyNode, `duplicate key '${key}' in ${what}: already given at ${at.file}:${at.line}:${at.col}; remove or rename one of them`);
        continue;
      }
      seen.set(key, keyNode);
      out.push({ key, keyNode, value: this.resolve(pair.value) });
    }
    return out;
  }

  /** A string scalar (numbers and booleans are not strings: the message says to quote them). */
  string(node: YamlNode | null, what: string): string | undefined {
    if (isScalar(node) && typeof node.value === 'string') return node.value;
    if (isScalar(node) && (typeof node.value === 'number' || typeof node.value === 'boolean')) {
      this.error(node, `${what} must be a string, found ${describe(node)}; quote it: "${String((node as Scalar).source ?? node.value)}"`);
      return undefined;
    }
    this.error(node, `${what} must be a string, found ${describe(node)}`);
    return undefined;
  }

  /**
   * A list, or a single value standing for a one-element list when `single` is true. Returns the
   * element nodes (aliases resolved); an empty list is an error unless `allowEmpty`.
   */
  list(node: YamlNode | null, what: string, opts: { single?: boolean; allowEmpty?: boolean } = {}): (YamlNode | null)[] | undefined {
    if (isSeq(node)) {
      const items = node.items.map((n) => this.resolve(n));
      if (items.length === 0 && !opts.allowEmpty) {
        this.error(node, `${what} is an empty list; give at least one entry`);
        return undefined;
      }
      return items;
    }
    if (opts.single && isScalar(node) && node.value !== null) return [node];
    this.error(node, `${what} must be a list${opts.single ? ' or a single value' : ''}, found ${describe(node)}`);
    return undefined;
  }
}

function isLocation(x: unknown): x is SourceLocation {
  return typeof x === 'object' && x !== null && 'file' in x && 'line' in x && 'col' in x;
}

/** A short description of what a node is, for "found ..." in messages. */
export function describe(node: unknown): string {
  if (node === null || node === undefined) return 'nothing (an empty value)';
  if (isMap(node)) return 'a mapping';
  if (isSeq(node)) return 'a list';
  if (isScalar(node)) {
    const v = node.value;
    if (v === null) return 'nothing (an empty value)';
    if (typeof v === 'string') return `the string '${v.length > 100 ? `${v.slice(0, 80)}…' (${v.length} characters)` : `${v}'`}`;
    if (typeof v === 'number') return `the number ${node.source ?? String(v)}`;
    if (typeof v === 'boolean') return `the boolean ${String(v)}`;
    return `a ${typeof v}`;
  }
  return 'an unsupported YAML node';
}
