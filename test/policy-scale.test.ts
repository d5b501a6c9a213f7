/**
 * A large policy with many mistakes still parses cheaply and reports small errors: name lists in
 * messages are cut, "did you mean" is computed once per unknown name (and bounded per parse), and
 * the bounded edit distance suggests exactly what the full one would. Before, every broken
 * reference listed every name of the policy and compared itself with each of them: a 10,000-rule
 * policy with one networks file missing took 40 s and produced 259 MB of messages.
 */
import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { compile } from '../src/compile/compile.js';
import { lintPolicyAgainstCluster } from '../src/policy/lint-against-cluster.js';
import { parsePolicy } from '../src/policy/parse-policy.js';
import { editDistance, nearest } from '../src/yaml/suggest.js';
import { largePolicyFiles } from './bench/large-policy.js';
import { syntheticCluster } from './bench/synthetic-cluster.js';

const SIZE = { hosts: 100, apps: 200, tasks: 1000, groups: 60, rules: 6000, networks: 6000 };

describe('errors of a large broken policy stay small', () => {
  it('6,000 rules with a networks file missing: one error per broken rule, each message short', () => {
    const files = largePolicyFiles(SIZE, 3).filter((f) => !f.path.endsWith('20-networks-000.yaml'));
    const r = parsePolicy(files);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.errors.length).toBeGreaterThan(4000);
    const longest = Math.max(...r.errors.map((e) => e.message.length));
    expect(longest).toBeLessThan(1000);
    expect(r.errors[0]!.message).toMatch(/^unknown group or network 'net-\d+' in 'from' of rule 'r-\d+'.*; networks: net-\d+, .*, … \(\d+ more\); or 'any'$/);
  });

  it('lint lists at most 20 app ids when a port name is unknown to a large group', () => {
    const files = largePolicyFiles({ ...SIZE, rules: 10, networks: 10 }, 3);
    const extra = { path: 'large/40-typo.yaml', text: 'groups:\n  everything: { apps: ["/**"] }\nrules:\n  - { name: typo, from: any, to: everything, ports: [htp], action: allow }\n' };
    const r = parsePolicy([...files, extra]);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    const errors = lintPolicyAgainstCluster(r.policy, syntheticCluster(SIZE, 1), r.sites).filter((d) => d.severity !== 'warning');
    expect(errors).toHaveLength(1);
    expect(errors[0]!.message).toMatch(/^port name 'htp' in rule 'typo' is not defined by any app of group 'everything' \(apps: (\/team-\d+\/app-\d+, ){20}… \(180 more\)\); names they define: http, metrics, stats$/);
  });
});

describe('group membership is found through pattern prefixes, not by testing every (app, group) pair', () => {
  afterEach(() => vi.restoreAllMocks());

  it('1,000 service groups of one app each on 200 apps: lint and compile test each app against its few groups', () => {
    const size = { hosts: 50, apps: 200, tasks: 400, groups: 1000, rules: 50, networks: 50 };
    const r = parsePolicy(largePolicyFiles(size, 3));
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    const cluster = syntheticCluster(size, 1);
    const tests = vi.spyOn(RegExp.prototype, 'test');
    lintPolicyAgainstCluster(r.policy, cluster, r.sites);
    const lintTests = tests.mock.calls.length;
    tests.mockClear();
    compile(r.policy, cluster);
    const compileTests = tests.mock.calls.length;
    // Every app is in its team's group and a few service groups; the pairs are 200 x 1,000.
    expect(lintTests).toBeLessThan(4000);
    expect(compileTests).toBeLessThan(4000);
  });
});

describe('did you mean: the bounded search suggests what the full one does', () => {
  const naive = (word: string, candidates: readonly string[]): string | undefined => {
    let best: string | undefined;
    let bestDistance = Infinity;
    for (const c of candidates) {
      const d = editDistance(word.toLowerCase(), c.toLowerCase());
      if (d < bestDistance || (d === bestDistance && best !== undefined && c < best)) {
        best = c;
        bestDistance = d;
      }
    }
    return best !== undefined && bestDistance <= Math.max(1, Math.floor(word.length / 3)) ? best : undefined;
  };
  const word = fc.stringMatching(/^[a-cA-C-]{0,9}$/);

  it('on random words and candidate lists', () => {
    fc.assert(
      fc.property(word, fc.array(word, { maxLength: 30 }), (w, candidates) => {
        expect(nearest(w, candidates)).toBe(naive(w, candidates));
      }),
      { numRuns: 2000 },
    );
  });
});
