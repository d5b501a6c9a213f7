/**
 * `suggest --top N` (src/flows/suggest-select.ts): the capped answer is the first N rules of the
 * whole answer, with exactly the groups and networks they use (names included: the proposed
 * peers are named for the kept rules only, family by family), the rest summed in `leftOut`;
 * on random policies, clusters and flows (fast-check), on slices of the benchmark's random
 * mix, and on names that collide (one base, `-2`) with equal counts at the cut. Through the
 * CLI: the default cap, the LEFT OUT comment and the JSON field, and the capped YAML saved as a
 * policy file passes the real `portcullis check`.
 */
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { suggestRules, type Suggestion } from '../src/flows/suggest.js';
import { suggestionYaml } from '../src/flows/suggest-yaml.js';
import type { ClusterState } from '../src/inventory/cluster-state.js';
import type { Policy } from '../src/policy/policy-model.js';
import type { ObservedFlow } from '../src/flows/observed-flow.js';
import { DEFAULT_TOP } from '../src/cli/commands/suggest.js';
import { egressFlow, flowsAnswer, ingressFlow } from './support/flow-records.js';
import { scenarioArb } from './support/random-cluster.js';
import { randomFlows } from './support/random-flows.js';
import { runCli } from './support/run-cli.js';
import { SUGGEST_FIXTURE, loadSuggestFixture } from './support/suggest-fixture.js';
import { suggestInput } from './bench/suggest-records.js';

const FIXTURE = SUGGEST_FIXTURE;
const OUTSIDE = ['203.0.113.1', '203.0.113.2', '10.0.0.200', '2001:db8::9', 'fd00::1:7'];

/** The first `n` rules of `full` and what they use; the rest as leftOut. */
function prefix(full: Suggestion, n: number): Suggestion {
  const rules = full.rules.slice(0, n);
  const rest = full.rules.slice(n);
  const used = new Set(rules.flatMap((r) => [r.from, r.to]));
  return {
    ...full,
    groups: full.groups.filter((g) => used.has(g.name)),
    networks: full.networks.filter((x) => used.has(x.name)),
    rules,
    leftOut: {
      rules: rest.length,
      connections: rest.reduce((s, r) => s + r.evidence.connections, 0),
      bytes: rest.reduce((s, r) => s + r.evidence.bytes, 0),
      flows: rest.reduce((s, r) => s + r.evidence.flows, 0),
    },
  };
}

function expectPrefix(policy: Policy, cluster: ClusterState, flows: readonly ObservedFlow[], tops: readonly number[]): Suggestion {
  const full = suggestRules(policy, cluster, flows);
  expect(full.leftOut).toBeUndefined();
  expect(suggestRules(policy, cluster, flows, { top: 0 })).toEqual({ ...full, leftOut: { rules: 0, connections: 0, bytes: 0, flows: 0 } });
  for (const n of tops) expect(suggestRules(policy, cluster, flows, { top: n }), `top ${n}`).toEqual(prefix(full, n));
  return full;
}

describe('suggest --top N: the first N rules of the whole answer', () => {
  it('on random policies, clusters and recorded flows, for every N', () => {
    let capped = 0;
    fc.assert(
      fc.property(scenarioArb, fc.array(fc.tuple(fc.integer({ min: 0, max: 1 }), fc.nat(30), fc.nat(30)), { minLength: 1, maxLength: 60 }), fc.array(fc.integer({ min: 1, max: 3 }), { minLength: 1, maxLength: 7 }), (scenario, picks, counts) => {
        const { policy, cluster } = scenario;
        // Few distinct counts: ties at the cut are the rule, not the exception.
        const flows = randomFlows(cluster, [...cluster.hosts.flatMap((h) => h.addresses), ...OUTSIDE], picks).map((f, i) => ({ ...f, verdict: 'denied' as const, packets: counts[i % counts.length]! }));
        const full = suggestRules(policy, cluster, flows);
        const tops = Array.from({ length: full.rules.length + 1 }, (_, i) => i + 1);
        if (full.rules.length > 1) capped++;
        expectPrefix(policy, cluster, flows, tops);
      }),
      { numRuns: 150 },
    );
    expect(capped).toBeGreaterThan(20);
  });

  it('on 20,000 records of the benchmark random mix (thousands of rules, proposed groups and networks)', () => {
    const { policy, cluster, flows } = suggestInput(20_000, 3);
    const full = expectPrefix(policy, cluster, flows, [1, 7, 100, 1000]);
    expect(full.rules.length).toBeGreaterThan(1000);
    expect(full.networks.length).toBeGreaterThan(100);
    expect(full.groups.length).toBeGreaterThan(100);
  });

  describe('with the adoption fixture', () => {
    let policy: Policy;
    let cluster: ClusterState;
    let tmp: string;
    beforeAll(async () => {
      ({ policy, cluster } = await loadSuggestFixture());
      tmp = mkdtempSync(join(tmpdir(), 'pcut-suggest-top-'));
    });
    afterAll(() => rmSync(tmp, { recursive: true, force: true }));

    /** Two outside pairs sharing their first address: two proposed networks of one name base, to api's http and grpc. */
    const colliding = (http: number, grpc: number, extra: readonly ObservedFlow[] = []) => [
      ingressFlow(cluster, '203.0.113.5', 'n3', 'tcp', 31100, { verdict: 'denied', packets: http }),
      ingressFlow(cluster, '203.0.113.9', 'n3', 'tcp', 31100, { verdict: 'denied', packets: http }),
      ingressFlow(cluster, '203.0.113.5', 'n3', 'tcp', 31101, { verdict: 'denied', packets: grpc }),
      ingressFlow(cluster, '203.0.113.8', 'n3', 'tcp', 31101, { verdict: 'denied', packets: grpc }),
      ...extra,
    ];

    it('names a kept proposed network as the whole answer does when an earlier one of its name family is left out', () => {
      const kept: string[] = [];
      for (const [http, grpc] of [[1, 5], [5, 1], [3, 3]] as const) {
        const flows = colliding(http, grpc);
        const full = expectPrefix(policy, cluster, flows, [1, 2, 3]);
        expect(full.networks.map((n) => n.name).sort()).toEqual(['seen-203-0-113-5-and-1-more', 'seen-203-0-113-5-and-1-more-2']);
        kept.push(suggestRules(policy, cluster, flows, { top: 1 }).networks[0]!.name);
      }
      // One of the orders keeps only the second-named network: its name has the -2 of the whole answer.
      expect(kept).toContain('seen-203-0-113-5-and-1-more-2');
      expect(kept).toContain('seen-203-0-113-5-and-1-more');
    });

    it('the CLI caps at --top (default 1000), says what it left out, and the capped YAML passes check', async () => {
      const flows = colliding(1, 5, [egressFlow(cluster, '/shop/api', 'n3', 'n2', 'tcp', 31400, { verdict: 'denied', packets: 9 })]);
      const file = join(tmp, 'flows.json');
      writeFileSync(file, JSON.stringify(flowsAnswer(flows)));
      const args = ['suggest', '--flows', file, '--inventory', join(FIXTURE, 'inventory.yaml'), '--policy', join(FIXTURE, 'policy')];
      expect(DEFAULT_TOP).toBe(1000);
      const all = await runCli(args);
      expect(all.code, all.err).toBe(0);
      expect(all.out).toMatch(/^# portcullis suggest: 3 rules for 21 connections/);
      expect(all.out).not.toContain('LEFT OUT');
      const top = await runCli([...args, '--top', '2']);
      expect(top.code, top.err).toBe(0);
      expect(top.out).toMatch(/^# portcullis suggest: 2 rules \(the first by connections of 3\) for 19 connections/);
      expect(top.out).toContain('# LEFT OUT: 1 more rule for 2 connections (120 bytes, 2 flows), none with more\n# connections than the last rule below; `portcullis suggest --top 0` prints them all');
      expect(top.out).not.toContain('seen-203-0-113-5-and-1-more:');
      expect(top.out).toContain('seen-203-0-113-5-and-1-more-2:');
      expect((await runCli([...args, '--top', '0'])).out).toBe(all.out);
      const json = JSON.parse((await runCli([...args, '--top', '1', '--format', 'json'])).out) as Suggestion & { top: number };
      expect(json.top).toBe(1);
      expect(json.rules.map((r) => [r.from, r.to, r.port])).toEqual([['seen-203-0-113-5-and-1-more-2', 'api', 'grpc']]);
      expect(json.networks).toEqual([{ name: 'seen-203-0-113-5-and-1-more-2', cidrs: ['203.0.113.5/32', '203.0.113.8/32'] }]);
      expect(json.groups).toEqual([]);
      expect(json.leftOut).toEqual({ rules: 2, connections: 11, bytes: 660, flows: 3 });
      expect(JSON.parse((await runCli([...args, '--format', 'json'])).out)).toMatchObject({ top: 1000, leftOut: { rules: 0, connections: 0 } });
      for (const bad of ['-1', 'x', '1.5', '']) {
        const r = await runCli([...args, `--top=${bad}`]);
        expect(r.code, bad).toBe(2);
        expect(r.err).toContain('--top must be a whole number');
      }

      const dir = join(tmp, 'policy');
      cpSync(join(FIXTURE, 'policy'), dir, { recursive: true });
      writeFileSync(join(dir, '99-suggested.yaml'), top.out);
      const check = await runCli(['check', '--policy', dir, '--inventory', join(FIXTURE, 'inventory.yaml')]);
      expect(check.code, check.out + check.err).toBe(0);
      expect(check.out).toMatch(/policy ok: 5 groups, 3 networks, 5 rules/);
      expect(suggestionYaml(suggestRules(policy, cluster, flows, { top: 2 }))).toContain('LEFT OUT: 1 more rule');
    });
  });
});
