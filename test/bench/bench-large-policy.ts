/**
 * Scenario "compile", large-policy part (its own child process, `--child compile-policy`): a
 * large but valid policy as YAML (large-policy.ts: `--policy-rules` rules and
 * `--policy-networks` networks, default 10,000 each) on the synthetic cluster.
 *
 * 1. What `portcullis check` does: parse (YAML text → Policy), lint against the cluster,
 *    compile. Each phase timed once in this fresh process; memory is the peak RSS of the process
 *    up to the end of the compile (sampled after each phase and by a 20 ms timer).
 * 2. What a controller reload does, on a DesiredStateStore that already serves the cluster under
 *    a small policy: the files parsed in the parse worker (policy-parser.ts) and compiled in
 *    slices (DesiredStateStore.loadPolicy). Timed from the start of the parse to the new states;
 *    the longest event-loop delay in that time (perf_hooks, 5 ms resolution) is what an agent
 *    stream, a ping or /status would have waited at worst.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { compile } from '../../src/compile/compile.js';
import { DesiredStateStore } from '../../src/controller/desired-state-store.js';
import { workerPolicyParser } from '../../src/controller/policy-parser.js';
import { parsePolicy } from '../../src/policy/parse-policy.js';
import { lintPolicyAgainstCluster } from '../../src/policy/lint-against-cluster.js';
import { DEFAULT_POLICY_LIMITS } from '../../src/policy/policy-limits.js';
import { log, report } from './figures.js';
import { largePolicyFiles, policyBytes } from './large-policy.js';
import type { BenchOptions } from './options.js';
import { mb } from './stats.js';
import { allowMemberCount, syntheticCluster } from './synthetic-cluster.js';

const S = 'compile';

export async function benchLargePolicy(o: BenchOptions): Promise<void> {
  const size = { hosts: o.hosts, apps: o.apps, tasks: o.tasks, groups: o.groups, rules: o.policyRules, networks: o.policyNetworks };
  const cluster = syntheticCluster(size, o.seed);
  const files = largePolicyFiles(size, o.seed + 2);
  const bytes = policyBytes(files);
  let peak = process.memoryUsage().rss;
  const sample = () => (peak = Math.max(peak, process.memoryUsage().rss));
  const timer = setInterval(sample, 20);
  const rssBefore = peak;
  const what = `${size.rules} rules, ${size.networks} networks (${(bytes / 1e6).toFixed(1)} MB YAML)`;
  log(`large policy: ${what} in ${files.length} files; cluster ${size.hosts} hosts, ${size.tasks} tasks (rss ${mb(rssBefore).toFixed(0)} MB)`);
  try {
    const phase = <T>(name: string, fn: () => T): { value: T; ms: number } => {
      const t = performance.now();
      const value = fn();
      const ms = performance.now() - t;
      sample();
      log(`${name}: ${ms.toFixed(0)} ms (peak rss ${mb(peak).toFixed(0)} MB)`);
      return { value, ms };
    };
    const parsed = phase('parse', () => parsePolicy(files));
    if (!parsed.value.ok) throw new Error(`the generated policy does not parse: ${parsed.value.errors[0]?.message}`);
    const policy = parsed.value.policy;
    const sites = parsed.value.sites;
    const lint = phase('lint', () => lintPolicyAgainstCluster(policy, cluster, sites));
    const compiled = phase('compile', () => compile(policy, cluster, { maxMembers: DEFAULT_POLICY_LIMITS.maxMembers }));
    const members = allowMemberCount(compiled.value.states.values());
    const total = parsed.ms + lint.ms + compiled.ms;
    const lintErrors = lint.value.filter((d) => d.severity !== 'warning').length;
    report({ scenario: S, name: 'large policy: compile', value: compiled.ms, unit: 'ms', target: { op: '<=', value: 3000 }, note: `compile() of the parsed policy: ${members} allow members on ${compiled.value.states.size} hosts` });
    report({ scenario: S, name: 'large policy: parse + lint + compile', value: total, unit: 'ms', target: { op: '<=', value: 3000 }, note: `${what}, ${members} allow members; parse ${parsed.ms.toFixed(0)} + lint ${lint.ms.toFixed(0)} + compile ${compiled.ms.toFixed(0)} ms; ${lintErrors} lint errors` });
    report({ scenario: S, name: 'large policy: peak RSS (check)', value: mb(peak), unit: 'MB', target: { op: '<=', value: 1024 }, note: `fresh process, parse to compile; the generated inputs alone ${mb(rssBefore).toFixed(0)} MB` });

    // 2. A controller reload onto a store that serves the cluster under a small policy.
    const small = parsePolicy(largePolicyFiles({ ...size, rules: 10, networks: 10 }, o.seed + 2));
    if (!small.ok) throw new Error('the small policy does not parse');
    const store = new DesiredStateStore({ maxMembers: DEFAULT_POLICY_LIMITS.maxMembers });
    store.setCluster(cluster);
    store.setPolicy(small.policy);
    const parse = workerPolicyParser('large', DEFAULT_POLICY_LIMITS);
    const delay = monitorEventLoopDelay({ resolution: 5 });
    delay.enable();
    const t = performance.now();
    const reparsed = await parse(files);
    const parsedMs = performance.now() - t;
    if (!reparsed.ok) throw new Error(`the worker did not parse the policy: ${reparsed.errors[0]?.message}`);
    const changed = await store.loadPolicy(reparsed.policy);
    const reloadMs = performance.now() - t;
    delay.disable();
    sample();
    log(`controller reload: ${reloadMs.toFixed(0)} ms (parse in the worker ${parsedMs.toFixed(0)} ms), ${changed?.length ?? 0} hosts changed; longest event-loop delay ${(delay.max / 1e6).toFixed(0)} ms`);
    report({ scenario: S, name: 'large policy: controller reload', value: reloadMs, unit: 'ms', note: `parse in a worker ${parsedMs.toFixed(0)} ms, then the compile in slices (DesiredStateStore.loadPolicy)` });
    report({ scenario: S, name: 'large policy: longest event-loop stall in a reload', value: delay.max / 1e6, unit: 'ms', target: { op: '<=', value: 100 }, note: `p99 ${(delay.percentile(99) / 1e6).toFixed(0)} ms; what a stream or /status waits at worst; peak RSS of the scenario ${mb(peak).toFixed(0)} MB` });
  } finally {
    clearInterval(timer);
  }
}
