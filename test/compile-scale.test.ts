import { describe, expect, it } from 'vitest';
import { compile } from '../src/compile/compile.js';
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
