/**
 * Reading per-app egress objects back from a test namespace's kernel: the rule lines of one of our
 * chains, and the packet counter of its NFLOG rule (audit mode's would-be drops).
 */
import type { Family } from '../../src/net/family.js';
import type { TestNetwork } from './netns.js';

const SAVE: Record<Family, string> = { 4: 'iptables-save', 6: 'ip6tables-save' };

async function save(net: TestNetwork, ns: string, family: Family, counters: boolean): Promise<string> {
  const r = await net.exec(ns, [SAVE[family], ...(counters ? ['-c'] : []), '-t', 'mangle']);
  if (r.code !== 0) throw new Error(`${SAVE[family]} in ${ns} exited ${r.code}: ${r.stderr.trim()}`);
  return r.stdout;
}

/** The `-A <chain> ...` lines of `chain` in table mangle. */
export async function ruleLines(net: TestNetwork, ns: string, family: Family, chain: string): Promise<string[]> {
  return (await save(net, ns, family, false)).split('\n').filter((l) => l.startsWith(`-A ${chain} `));
}

/** Packets counted by the NFLOG rule(s) of `chain` (0 when it has none). */
export async function nflogPackets(net: TestNetwork, ns: string, family: Family, chain: string): Promise<number> {
  let packets = 0;
  for (const line of (await save(net, ns, family, true)).split('\n')) {
    const m = /^\[(\d+):\d+\] -A (\S+) .*-j NFLOG/.exec(line);
    if (m && m[2] === chain) packets += Number(m[1]);
  }
  return packets;
}
