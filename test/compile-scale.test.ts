import { afterEach, describe, expect, it, vi } from 'vitest';
import { AddressSet } from '../src/compile/address-set.js';
import { compile } from '../src/compile/compile.js';
import { IncrementalCompiler } from '../src/compile/incremental-compiler.js';
import type { Policy } from '../src/policy/policy-model.js';
import { app, cluster, group, host, network, policy, task } from './support/policy-builder.js';
import { largeScenario } from './support/random-cluster.js';

describe('compile at benchmark scale (smoke, no timing assertion)', () => {
  it('compiles 1,000 hosts, 20,000 tasks, 2,000 apps, 300 groups, 1,000 rules', () => {
    const { policy, cluster } = largeScenario({ hosts: 1000, tasks: 20000, apps: 2000, groups: 300, rules: 1000 });
    const started = performance.now();
    const result = compile(policy, cluster);
    const ms = performance.now() - started;
    let members = 0;
    for (const s of result.states.values()) members += s.sets['allow-ip4'].length + s.sets['allow-net4'].length + s.sets['allow-ip6'].length + s.sets['allow-net6'].length;
    console.log(`compile: ${ms.toFixed(0)} ms for ${result.states.size} hosts, ${members} allow members, ${result.reports.length} reports`);
    expect(result.states.size).toBe(1000);
    expect(members).toBeGreaterThan(0);
  });
});

/**
 * Growth, counted rather than timed: the interval work of the address-set merges (the sizes of
 * both operands of every union, intersect and subtract) for N networks and N rules all onto one
 * group, at N and 4N. Near-linear (O(N log N)) work grows about 4.6x; the per-rule walk it
 * replaced grew 16x (every rule merged against everything decided before it).
 */
describe('compile cost grows near-linearly in rules and networks (operation counts)', () => {
  afterEach(() => vi.restoreAllMocks());

  function hotGroupPolicy(n: number): Policy {
    const address = (i: number) => `10.${(i >> 14) & 255}.${(i >> 6) & 255}.${(i & 63) * 4}`;
    return policy({
      groups: [group('api', ['/api'])],
      networks: Array.from({ length: n }, (_, i) => network(`net-${i}`, [`${address(i)}/31`, ...(i % 8 === 0 ? [`fd00::${(i * 4).toString(16)}/127`] : [])])),
      rules: Array.from({ length: n }, (_, i) => ({ name: `r-${i}`, action: i % 5 === 4 ? ('deny' as const) : ('allow' as const), from: [`net:net-${i}`], to: ['api'], ports: ['http'] })),
    });
  }
  const apiCluster = cluster([host('h1', '192.168.0.1')], [app('/api', [{ name: 'http' }])], [task('/api.1', '/api', 'h1', [31000])]);

  function work(run: () => void): number {
    let total = 0;
    for (const op of ['union', 'intersect', 'subtract'] as const) {
      const original = AddressSet.prototype[op];
      vi.spyOn(AddressSet.prototype, op).mockImplementation(function (this: AddressSet, other: AddressSet) {
        total += this.intervalCount() + other.intervalCount();
        return original.call(this, other);
      });
    }
    run();
    vi.restoreAllMocks();
    return total;
  }

  it.each([
    ['compile', (p: Policy) => void compile(p, apiCluster)],
    ['the incremental compiler (controller)', (p: Policy) => void new IncrementalCompiler(p, apiCluster)],
  ])('%s: 4x the rules and networks costs at most 6x the interval work', (_name, run) => {
    const small = hotGroupPolicy(500);
    const large = hotGroupPolicy(2000);
    const a = work(() => run(small));
    const b = work(() => run(large));
    expect(a).toBeGreaterThan(500);
    expect(b / a, `interval work ${a} → ${b}`).toBeLessThanOrEqual(6);
    // And the output is what first match says: 4 in 5 networks allowed, each one /31 (+ every 8th a /127).
    const state = compile(large, apiCluster).states.get('h1')!;
    expect(state.sets['allow-net4']).toHaveLength(1600);
  });
});
