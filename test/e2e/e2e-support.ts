/**
 * Shared pieces of the end-to-end suite: the root check, probe expectations over both families,
 * and a probe table that runs in parallel and reports every mismatch at once.
 */
import { probe, type ProbeProtocol, type ProbeVerdict } from '../support/probe.js';
import type { TestNetwork } from '../support/netns.js';
import { waitFor } from '../support/cluster-harness.js';

export const isRoot = process.getuid?.() === 0;
export const SKIP_REASON = 'end-to-end tests need root (network namespaces, iptables, ipset): skipped';
if (!isRoot) process.stderr.write(`${SKIP_REASON}\n`);

export interface ProbeCase {
  readonly name: string;
  readonly fromNs: string;
  readonly protocol: ProbeProtocol;
  readonly address: string;
  readonly port: number;
  /** 'open' = allowed; 'timeout' = dropped by Portcullis. */
  readonly expect: ProbeVerdict;
}

const timeoutFor = (c: Pick<ProbeCase, 'expect'>): number => (c.expect === 'open' ? 1500 : 600);

/** Runs every case once, in parallel; returns the mismatches as readable lines. */
export async function runProbes(net: TestNetwork, cases: readonly ProbeCase[]): Promise<string[]> {
  const results = await Promise.all(
    cases.map(async (c) => {
      const got = await probe(net, c.fromNs, { protocol: c.protocol, address: c.address, port: c.port, timeoutMs: timeoutFor(c) });
      return got === c.expect ? undefined : `${c.name}: ${c.protocol} ${c.address}:${c.port} expected ${c.expect}, got ${got}`;
    }),
  );
  return results.filter((r): r is string => r !== undefined);
}

/** Repeats `runProbes` until every case matches (the dataplane may still be converging). */
export async function probesEventually(net: TestNetwork, cases: readonly ProbeCase[], deadlineMs: number): Promise<void> {
  let last: string[] = [];
  try {
    await waitFor(async () => {
      last = await runProbes(net, cases);
      return last.length === 0;
    }, deadlineMs, 'probes to match', 100);
  } catch {
    throw new Error(`probes still wrong after ${deadlineMs} ms:\n  ${last.join('\n  ')}`);
  }
}

/** The same case for the host's v4 and v6 address. */
export function bothFamilies(
  base: Omit<ProbeCase, 'address' | 'name'> & { readonly name: string },
  target: { readonly v4: string; readonly v6: string },
): ProbeCase[] {
  return [
    { ...base, name: `${base.name} (v4)`, address: target.v4 },
    { ...base, name: `${base.name} (v6)`, address: target.v6 },
  ];
}
