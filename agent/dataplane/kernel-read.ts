/**
 * Pure parsers of what the kernel tools print: `iptables-save -t <table>` and `ipset save`.
 * They read only what the dataplane needs (chain names, rules as argv tokens, set members) and
 * normalise set members the way the kernel prints them, so desired and actual compare as strings.
 */
import { IPv4CidrRange, IPv6CidrRange } from '../../src/policy/ip-num.js';

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
  let inTable = false;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('*')) {
      inTable = line.slice(1) === table;
      continue;
    }
    if (!inTable || line === '' || line.startsWith('#')) continue;
    if (line === 'COMMIT') {
      inTable = false;
      continue;
    }
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

function canonicalAddress(address: string): string {
  if (!address.includes(':')) return address;
  try {
    return new URL(`http://[${address}]/`).hostname.slice(1, -1);
  } catch {
    return address.toLowerCase();
  }
}

function canonicalNet(net: string): string {
  const slash = net.indexOf('/');
  if (slash < 0) return canonicalAddress(net);
  const address = net.slice(0, slash);
  const prefix = Number(net.slice(slash + 1));
  const v6 = address.includes(':');
  if (prefix === (v6 ? 128 : 32)) return canonicalAddress(address);
  try {
    const first = v6 ? IPv6CidrRange.fromCidr(net).getFirst().toString() : IPv4CidrRange.fromCidr(net).getFirst().toString();
    return `${canonicalAddress(first)}/${prefix}`;
  } catch {
    return `${canonicalAddress(address)}/${prefix}`;
  }
}

/**
 * A set member as `ipset save` prints it: IPv6 in RFC 5952 form, a network masked to its prefix, a
 * full-length prefix dropped, protocol lower-case. Port-only members are returned unchanged.
 */
export function normalizeMember(member: string): string {
  const comma = member.lastIndexOf(',');
  if (comma < 0) return member.includes('.') || member.includes(':') ? canonicalNet(member) : member;
  const source = member.slice(0, comma);
  const port = member.slice(comma + 1).toLowerCase();
  return `${canonicalNet(source)},${port}`;
}
