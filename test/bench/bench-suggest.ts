/**
 * Scenario "suggest": `portcullis suggest` (src/flows/suggest.ts, pure) over 1M recorded flows,
 * of two mixes (suggest-records.ts; ~100 hosts, 300 apps, a policy with groups and networks):
 * the dependency-graph mix (a few thousand (source, destination, port) pairs repeated over a
 * day of time windows: an answer of hundreds of rules) and the random mix (outside addresses,
 * cluster hosts' addresses, egress records, nearly every record its own pair: an answer of
 * 100,000s of rules). Each mix is measured alone (the other's records are not in the heap). The records are generated
 * once (seeded, not timed) and passed through JSON (in slices), so that every record is its own
 * objects and strings, as the CLI gets them from /flows or a file: nothing is shared between
 * records that the parser would not share. Timed, `runs` times in this process: suggestRules
 * and the YAML of its answer (suggest-yaml.ts), records in to YAML out; not timed: reading the
 * JSON (the CLI takes at most 100,000 records per answer). Both mixes are timed as the CLI runs
 * them by default, at most DEFAULT_TOP rules (`--top`, 1,000: the graph mix's answer is whole
 * under it, the random mix's is cut); the random mix also whole (`--top 0`, no target: the
 * cost of printing 100,000s of rules). Reported: the median (target ≤ 2 s,
 * issue 11) with the minimum, the answer's size and the machine's load average in the note (other processes on the
 * machine skew every timing); and, same run, the per-record walk suggest was before
 * (test/support/suggest-oracle.ts) against the aggregation on the first 100,000 records, once
 * each, with the ratio. No root needed.
 */
import { loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { suggestRules, type Suggestion } from '../../src/flows/suggest.js';
import { suggestionYaml } from '../../src/flows/suggest-yaml.js';
import type { ObservedFlow } from '../../src/flows/observed-flow.js';
import { suggestRulesPerRecord } from '../support/suggest-oracle.js';
import { log, report } from './figures.js';
import type { BenchOptions } from './options.js';
import { DEFAULT_TOP } from '../../src/cli/commands/suggest.js';
import { median } from './stats.js';
import { suggestGraphInput, suggestInput, type SuggestInput } from './suggest-records.js';

const S = 'suggest';
const RECORDS = 1_000_000;
const BEFORE = 100_000;
/** The mix of the first figure (its name is kept as it was). */
const RANDOM = 'random mix';

/** The records as JSON.parse gives them back: each its own objects (slices: one string stays small). */
function asParsed(flows: readonly ObservedFlow[]): ObservedFlow[] {
  const out: ObservedFlow[] = [];
  for (let i = 0; i < flows.length; i += 10_000) out.push(...(JSON.parse(JSON.stringify(flows.slice(i, i + 10_000))) as ObservedFlow[]));
  return out;
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

/** The records of a mix, generated and passed through JSON (the generated copy dropped). */
function generated(mix: string, make: () => SuggestInput): { input: SuggestInput; flows: ObservedFlow[] } {
  const t0 = performance.now();
  const input = make();
  const { policy, cluster } = input;
  const flows = asParsed(input.flows);
  input.flows.length = 0;
  log(`${mix}: generated ${flows.length} records in ${((performance.now() - t0) / 1000).toFixed(1)} s (${cluster.hosts.length} hosts, ${cluster.apps.length} apps, ${cluster.tasks.length} tasks; policy: ${policy.groups.length} groups, ${policy.networks.length} networks, ${policy.rules.length} rules)`);
  return { input, flows };
}

/** Times suggestRules at `--top` `top` plus the YAML of its answer over `flows`, `runs` times (at least 3), and reports the median. */
function timed(o: BenchOptions, mix: string, { input, flows }: { input: SuggestInput; flows: ObservedFlow[] }, top: number): void {
  const { policy, cluster } = input;
  const load = loadavg().map((x) => x.toFixed(2)).join(' ');
  const times: number[] = [];
  const cpu: number[] = [];
  let last: Suggestion | undefined;
  let bytes = 0;
  for (let i = 0; i < Math.max(3, o.runs); i++) {
    const start = performance.now();
    const c0 = process.cpuUsage();
    last = suggestRules(policy, cluster, flows, { top });
    bytes = suggestionYaml(last).length;
    times.push(performance.now() - start);
    const c = process.cpuUsage(c0);
    cpu.push((c.user + c.system) / 1000);
    log(`${mix} --top ${top} run ${i + 1}: ${seconds(times[i]!)} (CPU ${seconds(cpu[i]!)})`);
  }
  const s = last!;
  const skipped = s.skipped.reduce((n, k) => n + k.flows, 0);
  const out = s.leftOut !== undefined && s.leftOut.rules > 0 ? ` printed, ${s.leftOut.rules} left out (${s.leftOut.connections} connections, ${s.leftOut.flows} flows)` : '';
  const answer = `${s.rules.length} rules${out}, ${s.groups.length} proposed groups, ${s.networks.length} proposed networks (${s.networks.reduce((n, x) => n + x.cidrs.length, 0)} cidrs), ${(bytes / 1e6).toFixed(2)} MB of YAML; ${s.allowedNow} allowed now, ${skipped} skipped, ${s.coveredByEgress} left to egress`;
  log(`${mix} --top ${top} suggestion: ${answer}`);
  const loadAfter = loadavg().map((x) => x.toFixed(2)).join(' ');
  const whole = top === 0;
  report({
    scenario: S,
    name: `suggest over ${RECORDS.toLocaleString('en')} records${mix === RANDOM ? '' : ` (${mix})`}${whole ? ', the whole answer (--top 0)' : ''}, records in to YAML out (median)`,
    value: median(times) / 1000,
    unit: 's',
    ...(whole ? {} : { target: { op: '<=' as const, value: 2 } }),
    note: `${whole ? 'every rule printed, no target' : `the CLI's default cap, --top ${top}`}; min ${seconds(Math.min(...times))} of ${times.length} runs, CPU median ${seconds(median(cpu))}; answer: ${answer}; load average ${load} at start, ${loadAfter} after (the machine is shared with other sessions)`,
  });
}

export function benchSuggest(o: BenchOptions): void {
  timed(o, 'dependency-graph mix', generated('dependency-graph mix', () => suggestGraphInput(RECORDS, o.seed)), DEFAULT_TOP);
  const random = generated(RANDOM, () => suggestInput(RECORDS, o.seed));
  timed(o, RANDOM, random, DEFAULT_TOP);
  timed(o, RANDOM, random, 0);
  const { input, flows } = random;
  const { policy, cluster } = input;

  // Before and after, same run, same records: the first 100,000, once each.
  const some = flows.slice(0, BEFORE);
  let start = performance.now();
  suggestionYaml(suggestRulesPerRecord(policy, cluster, some));
  const before = performance.now() - start;
  start = performance.now();
  suggestionYaml(suggestRules(policy, cluster, some));
  const after = performance.now() - start;
  log(`first ${BEFORE.toLocaleString('en')} records: per-record walk ${seconds(before)}, aggregation ${seconds(after)}`);
  report({
    scenario: S,
    name: `suggest over ${BEFORE.toLocaleString('en')} records (random mix): the per-record walk (before) / the aggregation`,
    value: before / after,
    unit: 'x',
    note: `before ${seconds(before)}, after ${seconds(after)}, once each, same process, load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`,
  });
}
