/**
 * suggest judges one flow per verdict class (src/flows/suggest-classes.ts): on random policies
 * and clusters (test/support/random-cluster.ts: groups by id, glob and label, networks with
 * excepts, pass and deny rules, allow-from labels, guardrails, audit groups, hosts with several
 * or no addresses of a family) and random recorded flows in them (egress from tasks, ingress
 * from hosts' and outside addresses, some inside the policy's networks), every two flows of one
 * class get the same judgement from the reference evaluator (what suggest takes of it: allowed,
 * the deciding rule, or the default). And the classes do merge flows (the test is not vacuous).
 */
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { judged } from '../src/flows/suggest.js';
import { VerdictClasses } from '../src/flows/suggest-classes.js';
import { NetworkIndex } from '../src/flows/suggest-names.js';
import { recordedOwners } from '../src/flows/plan-judge.js';
import { claimOwners } from '../src/evaluate/egress-evaluator.js';
import { parseCidr, LENIENT } from '../src/net/cidr.js';
import { ipv6Text } from '../src/net/address.js';
import type { ClusterState } from '../src/inventory/cluster-state.js';
import type { Policy } from '../src/policy/policy-model.js';
import type { ObservedFlow } from '../src/flows/observed-flow.js';
import { scenarioArb } from './support/random-cluster.js';
import { randomFlows } from './support/random-flows.js';

const OUTSIDE = ['203.0.113.1', '203.0.113.2', '10.0.0.200', '2001:db8::9', 'fd00::1:7'];

/** Outside addresses, and the first and last address of every CIDR and except of the policy. */
function addressesOf(policy: Policy, cluster: ClusterState): string[] {
  const edges = policy.networks.flatMap((n) =>
    [...n.cidrs, ...n.except].flatMap((c) => {
      const p = parseCidr(c, LENIENT);
      if (!p.ok) return [];
      const text = (v: bigint) => (p.family === 4 ? [24, 16, 8, 0].map((s) => String((v >> BigInt(s)) & 255n)).join('.') : ipv6Text(v));
      return [text(p.first), text(p.last)];
    }),
  );
  return [...cluster.hosts.flatMap((h) => h.addresses), ...OUTSIDE, ...edges];
}

const totals = { classed: 0, classes: 0 };

describe('suggest: one judgement per verdict class', () => {
  afterAll(() => {
    // Not vacuous: most flows are classed, and classes hold several flows.
    expect(totals.classed).toBeGreaterThan(500);
    expect(totals.classes).toBeLessThan(totals.classed * 0.8);
  });

  it("every flow's own judgement is its class's", () => {
    fc.assert(
      fc.property(scenarioArb, fc.array(fc.tuple(fc.integer({ min: 0, max: 1 }), fc.nat(8), fc.nat(60)), { minLength: 1, maxLength: 60 }), ({ policy, cluster }, picks) => {
        const classes = new VerdictClasses(policy, cluster, new NetworkIndex(policy));
        const seen = new Map<string, { flow: ObservedFlow; why: ReturnType<typeof judged> }>();
        for (const f of randomFlows(cluster, addressesOf(policy, cluster), picks)) {
          const owners = recordedOwners(cluster, f);
          if (typeof owners === 'string') continue;
          const cls = classes.classOf(f, owners, claimOwners(cluster, f.destination.hostId, f.destination.protocol, f.destination.port));
          if (cls === undefined) continue;
          totals.classed++;
          const why = judged(policy, cluster, f);
          const first = seen.get(cls);
          if (!first) {
            seen.set(cls, { flow: f, why });
            totals.classes++;
          } else expect({ cls, why, flow: f.key }).toEqual({ cls, why: first.why, flow: f.key });
        }
      }),
      { numRuns: 500 },
    );
  });
});
