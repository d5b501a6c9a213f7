/**
 * Reading flow recording back (agent/flow-reader.ts): pure parsers of what the kernel tools print.
 *
 * - `parseFlowEntries`: the `add` lines of `ipset save <set>` / `ipset list -o save <set>` (also
 *   as printed by `ipset -`, each output block behind an `ipset> ` prompt) of the flow sets:
 *   `add pcu4-fl-allow 10.0.0.1,tcp:31000 timeout 412 packets 3 bytes 180`. Only flow sets of ours
 *   (owned-names.ts) are read; an entry that does not parse (another protocol, a bad address or
 *   port, a count that is not a decimal ≤ 2^53, missing counters) is skipped and counted, never
 *   thrown. Addresses come out canonical (src/net/address.ts).
 * - `parseRuleCounters`: the `[packets:bytes] -A <chain> ... --comment "pcu:<8 hex>" ...` lines of
 *   `iptables-save -c -t mangle`, by chain and comment (our rules only; others are ignored).
 */
import { parseAddress } from '../net/address.js';
import { isFlowSetName } from './owned-names.js';

export interface FlowSetEntry {
  /** Canonical address: the source (ingress) or the destination (egress). */
  readonly address: string;
  readonly protocol: 'tcp' | 'udp';
  readonly port: number;
  /** Seconds the entry has left. */
  readonly timeout: number;
  readonly packets: number;
  readonly bytes: number;
}

export interface ParsedFlowSets {
  /** Entries per flow set; a set whose `create` line was printed is present even when empty. */
  readonly sets: Map<string, FlowSetEntry[]>;
  /** Lines about a flow set that did not parse. */
  readonly skipped: number;
}

const COUNT = /^(0|[1-9][0-9]{0,15})$/;
const MEMBER = /^([0-9a-fA-F:.]{2,45}),(tcp|udp):([0-9]{1,5})$/;

function count(text: string | undefined): number | undefined {
  if (text === undefined || !COUNT.test(text)) return undefined;
  const n = Number(text);
  return n <= 2 ** 53 ? n : undefined;
}

/** One `add` line's entry (the words after `add <set>`), or undefined when it does not parse. */
export function parseFlowEntry(words: readonly string[]): FlowSetEntry | undefined {
  const m = MEMBER.exec(words[0] ?? '');
  if (m === null) return undefined;
  const parsed = parseAddress(m[1] as string, { mapped: 'accept' });
  const port = Number(m[3]);
  if (!parsed.ok || port < 1 || port > 65535) return undefined;
  const option = (name: string): string | undefined => {
    for (let i = 1; i + 1 < words.length; i += 2) if (words[i] === name) return words[i + 1];
    return undefined;
  };
  const timeout = count(option('timeout'));
  const packets = count(option('packets'));
  const bytes = count(option('bytes'));
  if (timeout === undefined || packets === undefined || bytes === undefined) return undefined;
  return { address: parsed.canonical, protocol: m[2] as 'tcp' | 'udp', port, timeout, packets, bytes };
}

export function parseFlowEntries(text: string): ParsedFlowSets {
  const sets = new Map<string, FlowSetEntry[]>();
  let skipped = 0;
  for (const raw of text.split('\n')) {
    const words = (raw.startsWith('ipset> ') ? raw.replace(/^(ipset> )+/, '') : raw).trim().split(' ');
    const set = words[1];
    if (set === undefined || !isFlowSetName(set)) continue;
    if (words[0] === 'create') {
      if (!sets.has(set)) sets.set(set, []);
      continue;
    }
    if (words[0] !== 'add') continue;
    const entry = parseFlowEntry(words.slice(2));
    if (entry === undefined) {
      skipped++;
      continue;
    }
    const list = sets.get(set) ?? [];
    list.push(entry);
    sets.set(set, list);
  }
  return { sets, skipped };
}

export interface RuleCounter {
  readonly packets: number;
  readonly bytes: number;
}

const COUNTER_LINE = /^\[([0-9]{1,20}):([0-9]{1,20})\] -A (PCU-[A-Z0-9-]{1,24}) .*--comment "?(pcu:[0-9a-f]{8})"?(?: |$)/;

/** The key of one of our rules in `parseRuleCounters`' answer. */
export function counterKey(chain: string, comment: string): string {
  return `${chain} ${comment}`;
}

/** The lines (trimmed) of the `*<table>` sections of iptables-save output, without `COMMIT`. */
export function tableLines(text: string, table: string): string[] {
  const lines: string[] = [];
  let inTable = false;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('*')) inTable = line.slice(1) === table;
    else if (line === 'COMMIT') inTable = false;
    else if (inTable) lines.push(line);
  }
  return lines;
}

/** Counters of our rules in the `*<table>` section of `iptables-save -c`, by `counterKey`. */
export function parseRuleCounters(text: string, table = 'mangle'): Map<string, RuleCounter> {
  const counters = new Map<string, RuleCounter>();
  for (const line of tableLines(text, table)) {
    const m = COUNTER_LINE.exec(line);
    if (m === null) continue;
    const packets = Math.min(Number(m[1]), 2 ** 53);
    const bytes = Math.min(Number(m[2]), 2 ** 53);
    counters.set(counterKey(m[3] as string, m[4] as string), { packets, bytes });
  }
  return counters;
}
