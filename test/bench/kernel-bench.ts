/** The start every kernel scenario shares: root or a skip line, the load average, stale namespaces swept. */
import { loadavg } from 'node:os';
import { sweepStaleNamespaces } from '../support/netns.js';
import { log } from './figures.js';

/** False (after a skip line) when not root; else logs the load average and sweeps namespaces left by a killed run. */
export async function kernelBenchReady(): Promise<boolean> {
  if (process.getuid?.() !== 0) {
    log('skipped: needs root (network namespaces, iptables, ipset)');
    return false;
  }
  log(`load average at start: ${loadavg().map((x) => x.toFixed(2)).join(' ')} (other processes on the machine skew every timing)`);
  await sweepStaleNamespaces();
  return true;
}
