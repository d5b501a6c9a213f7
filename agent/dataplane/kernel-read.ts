/**
 * Pure parsers of what the kernel tools print: `iptables-save -t <table>` and `ipset save`.
 * They read only what the dataplane needs (chain names, rules as argv tokens, set members); the
 * form the kernel prints a member in is src/net/member.ts's normalizeMember, so desired and
 * actual compare as strings.
 */
import { tableLines } from '../../src/render/flow-read.js';

export interface SavedTable {
  /** Every chain declared in the table, built-in and user-defined, in save order. */
  readonly chains: readonly string[];
  /** Rules per chain, as the tokens after `-A <chain>`, in order. */
  readonly rules: ReadonlyMap<string, readonly (readonly string[])[]>;
}

/** Split one iptables-save line into tokens; double quotes group, backslash escapes inside them. */
export function tokenizeRule(line: string): string[] {
  const tokens: string[] = [];
  let i = 0;
  while (i < line.length) {
    while (i < line.length && /\s/.test(line[i]!)) i++;
    if (i >= line.length) break;
    let token = '';
    while (i < line.length && !/\s/.test(line[i]!)) {
      if (line[i] === '"') {
        i++;
        while (i < line.length && line[i] !== '"') {
          if (line[i] === '\\' && i + 1 < line.length) i++;
          token += line[i];
          i++;
        }
        i++; // closing quote
      } else {
        token += line[i];
        i++;
      }
    }
    tokens.push(token);
  }
  return tokens;
}

/** Parse the first `*<table>` section of iptables-save output. */
export function parseIptablesSave(text: string, table: string): SavedTable {
  const chains: string[] = [];
  const rules = new Map<string, string[][]>();
  for (const line of tableLines(text, table)) {
    if (line === '' || line.startsWith('#')) continue;
    if (line.startsWith(':')) {
      const name = line.slice(1).split(/\s+/)[0] ?? '';
      chains.push(name);
      if (!rules.has(name)) rules.set(name, []);
      continue;
    }
    const tokens = tokenizeRule(line);
    if (tokens[0] === '-A' && tokens[1] !== undefined) {
      const list = rules.get(tokens[1]) ?? [];
      list.push(tokens.slice(2));
      rules.set(tokens[1], list);
    }
  }
  return { chains, rules };
}

/** The value of `--comment` in a rule's tokens, if any. */
export function commentOf(tokens: readonly string[]): string | undefined {
  const i = tokens.indexOf('--comment');
  return i >= 0 ? tokens[i + 1] : undefined;
}

/** The jump target (`-j X`) of a rule's tokens, if any. */
export function targetOf(tokens: readonly string[]): string | undefined {
  const i = tokens.lastIndexOf('-j');
  return i >= 0 ? tokens[i + 1] : undefined;
}

/** Members per set from `ipset save` / `ipset list -o save` output. */
export function parseIpsetSave(text: string): Map<string, string[]> {
  const sets = new Map<string, string[]>();
  for (const raw of text.split('\n')) {
    const parts = raw.trim().split(/\s+/);
    if (parts[0] === 'create' && parts[1]) {
      if (!sets.has(parts[1])) sets.set(parts[1], []);
    } else if (parts[0] === 'add' && parts[1] && parts[2]) {
      const list = sets.get(parts[1]) ?? [];
      list.push(parts[2]);
      sets.set(parts[1], list);
    }
  }
  return sets;
}
