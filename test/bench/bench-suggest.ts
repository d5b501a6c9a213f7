/**
 * Scenario "suggest": `portcullis suggest` (src/flows/suggest.ts, pure) over 1M recorded flows
 * of a realistic mix (suggest-records.ts: outside addresses, cluster hosts' addresses, egress
 * records; ~100 hosts, 300 apps, a policy with groups and networks). The records are generated
 * once (seeded, not timed), then suggestRules is timed `runs` times in this process; reported:
 * the median (target ≤ 2 s, issue 11) with the minimum and the machine's load average in the
 * note (other processes on the machine skew every timing). No root needed.
 */
import { loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { suggestRules, type Suggestion } from '../../src/flows/suggest.js';
import { log, report } from './figures.js';
import type { BenchOptions } from './options.js';
import { median } from './stats.js';
import { suggestInput } from './suggest-records.js';

const S = 'suggest';
const RECORDS = 1_000_000;

export function benchSuggest(o: BenchOptions): void {
  const t0 = performance.now();
  const { policy, cluster, flows } = suggestInput(RECORDS, o.seed);
  log(`generated ${flows.length} records in ${((performance.now() - t0) / 1000).toFixed(1)} s (${cluster.hosts.length} hosts, ${cluster.apps.length} apps, ${cluster.tasks.length} tasks; policy: ${policy.groups.length} groups, ${policy.networks.length} networks, ${policy.rules.length} rules)`);
  const load = loadavg().map((x) => x.toFixed(2)).join(' ');
  const times: number[] = [];
  let last: Suggestion | undefined;
  for (let i = 0; i < Math.max(3, o.runs); i++) {
    const start = performance.now();
    last = suggestRules(policy, cluster, flows);
    times.push(performance.now() - start);
    log(`run ${i + 1}: ${(times[i]! / 1000).toFixed(2)} s`);
  }
  const s = last!;
  const skipped = s.skipped.reduce((n, k) => n + k.flows, 0);
  log(`suggestion: ${s.rules.length} rules, ${s.groups.length} proposed groups, ${s.networks.length} proposed networks (${s.networks.reduce((n, x) => n + x.cidrs.length, 0)} cidrs); ${s.allowedNow} allowed now, ${skipped} skipped, ${s.coveredByEgress} left to egress`);
  report({
    scenario: S,
    name: `suggest over ${RECORDS.toLocaleString('en')} records (median)`,
    value: median(times) / 1000,
    unit: 's',
    target: { op: '<=', value: 2 },
    note: `min ${(Math.min(...times) / 1000).toFixed(2)} s of ${times.length} runs; load average ${load} at start (the machine is shared with other sessions)`,
  });
}
