/**
 * Scenario "compile", large-policy part: a large but valid policy as YAML (large-policy.ts:
 * `--policy-rules` rules, `--policy-networks` networks, default 10,000 each) on the synthetic
 * cluster, loaded the way `portcullis check` and a controller reload load it: parse (YAML text →
 * Policy), lint against the cluster, compile. Each phase is timed once in this fresh process;
 * memory is the peak RSS of the process (sampled after each phase and by a 50 ms timer) and the
 * V8 heap after a forced GC when `--expose-gc` is on.
 */
import { compile } from '../../src/compile/compile.js';
import { IncrementalCompiler } from '../../src/compile/incremental-compiler.js';
import { parsePolicy } from '../../src/policy/parse-policy.js';
import { lintPolicyAgainstCluster } from '../../src/policy/lint-against-cluster.js';
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
  const timer = setInterval(sample, 50);
  const rssBefore = peak;
  log(`large policy: ${size.rules} rules, ${size.networks} networks, ${files.length} files, ${(bytes / 1e6).toFixed(1)} MB of YAML (rss ${mb(rssBefore).toFixed(0)} MB)`);
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
    const lint = phase('lint', () => lintPolicyAgainstCluster(policy, cluster, parsed.value.ok ? parsed.value.sites : undefined));
    const lintErrors = lint.value.filter((d) => d.severity !== 'warning').length;
    const compiled = phase('compile', () => compile(policy, cluster));
    const members = allowMemberCount(compiled.value.states.values());
    const inc = phase('incremental compiler (controller reload)', () => new IncrementalCompiler(policy, cluster));
    const total = parsed.ms + lint.ms + compiled.ms;
    const note = `${size.rules} rules, ${size.networks} networks (${(bytes / 1e6).toFixed(1)} MB YAML), ${members} allow members; parse ${parsed.ms.toFixed(0)} + lint ${lint.ms.toFixed(0)} + compile ${compiled.ms.toFixed(0)} ms; lint errors ${lintErrors}`;
    report({ scenario: S, name: `large policy: parse + lint + compile`, value: total, unit: 'ms', target: { op: '<=', value: 3000 }, note });
    report({ scenario: S, name: `large policy: controller reload compile`, value: inc.ms, unit: 'ms', note: `IncrementalCompiler built from scratch; ${inc.value.hostIds().length} hosts` });
    report({ scenario: S, name: 'large policy: peak RSS', value: mb(peak), unit: 'MB', target: { op: '<=', value: 1024 }, note: `fresh process; inputs before parse ${mb(rssBefore).toFixed(0)} MB` });
  } finally {
    clearInterval(timer);
  }
}
