/**
 * `suggest` is never broader than its evidence (fast-check, random policies and clusters of
 * test/support/random-cluster.ts, random recorded flows in them): with every suggested group,
 * network and rule added to the policy (rules at the end), each connection the reference
 * evaluator allows now and did not allow before — the destination side for every source address
 * and task port, the egress side for every task and claim — is one the evidence names: the same
 * destination app (for a port conflict: one owner of the claim), port (by name or host port)
 * and protocol, from a source the evidence names
 * (an app seen, or a host running one, for app sources; the address seen, or the smallest
 * network of the policy holding it, for outside sources; a source host without an address of
 * the family passes such a network when it holds every address). And every evidence flow the policy
 * denies by its default tier is allowed afterwards, or reported as skipped.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { suggestRules } from '../src/flows/suggest.js';
import { smallestNetwork } from '../src/flows/suggest-names.js';
import { judgeFlow } from '../src/flows/plan-judge.js';
import { evaluateConnection } from '../src/evaluate/reference-evaluator.js';
import { claimOwners, egressVerdict } from '../src/evaluate/egress-evaluator.js';
import type { ClusterState } from '../src/inventory/cluster-state.js';
import type { PeerRef, Policy, PortSpec, Protocol } from '../src/policy/policy-model.js';
import type { ObservedFlow } from '../src/flows/observed-flow.js';
import { scenarioArb } from './support/random-cluster.js';
import { randomFlows } from './support/random-flows.js';

const AT = { file: 'suggested.yaml', line: 1, col: 1 };
const OUTSIDE = ['203.0.113.1', '203.0.113.2', '10.0.0.200', '2001:db8::9', 'fd00::1:7'];

/** Flows of the picks: egress from a task, ingress from a host address or an outside one. */
function flowsOf(cluster: ClusterState, picks: readonly (readonly [number, number, number])[]): ObservedFlow[] {
  return randomFlows(cluster, [...cluster.hosts.flatMap((h) => h.addresses), ...OUTSIDE], picks);
}

/** The policy with the suggestion pasted: groups, networks, and the rules at the end. */
function withSuggestion(policy: Policy, s: ReturnType<typeof suggestRules>): Policy {
  const networks = new Set([...policy.networks.map((n) => n.name), ...s.networks.map((n) => n.name)]);
  const peer = (name: string): PeerRef => (networks.has(name) ? { kind: 'network', name } : { kind: 'group', name });
  const port = (p: string | number): PortSpec => (typeof p === 'number' ? { kind: 'number', port: p } : { kind: 'name', name: p });
  return {
    ...policy,
    groups: [...policy.groups, ...s.groups.map((g) => ({ name: g.name, apps: g.apps, labels: {}, at: AT }))],
    networks: [...policy.networks, ...s.networks.map((n) => ({ name: n.name, cidrs: n.cidrs, except: [], at: AT }))],
    rules: [...policy.rules, ...s.rules.map((r) => ({ name: r.name, from: [peer(r.from)], to: [r.to], ports: [port(r.port)], protocols: r.protocol ? [r.protocol] : null, action: 'allow' as const, at: AT }))],
  };
}

describe('suggest: never broader than the evidence', () => {
  it('every connection newly allowed by the suggested rules is one of the evidence', () => {
    fc.assert(
      fc.property(scenarioArb, fc.array(fc.tuple(fc.integer({ min: 0, max: 1 }), fc.nat(50), fc.nat(50)), { minLength: 1, maxLength: 8 }), ({ policy, cluster }, picks) => {
        const flows = flowsOf(cluster, picks);
        const s = suggestRules(policy, cluster, flows);
        const after = withSuggestion(policy, s);
        const evidence = flows.filter((f) => {
          const j = judgeFlow(policy, cluster, f);
          return j.ok && j.judgement.verdict !== 'allowed' && j.judgement.rule === undefined;
        });
        const hostsRunning = (apps: readonly string[]) => new Set(cluster.tasks.filter((t) => apps.includes(t.appId)).map((t) => t.hostId));
        const sourceNamed = (address: string | undefined, appId: string | undefined, e: ObservedFlow): boolean => {
          if (e.direction === 'egress' || (e.source.kind === 'host' && e.source.apps.length > 0)) {
            if (appId !== undefined) return e.source.apps.includes(appId);
            return cluster.hosts.some((h) => h.addresses.includes(address!) && hostsRunning(e.source.apps).has(h.id));
          }
          const net = smallestNetwork(policy, e.source.address);
          const inNet = (a: string) => net !== undefined && smallestNetwork({ ...policy, networks: policy.networks.filter((n) => n.name === net) }, a) === net;
          return address !== undefined && (address === e.source.address || inNet(address));
        };
        const named = (appId: string, portIndex: number, hostPort: number, protocol: Protocol, source: { address?: string; appId?: string; hostAddresses?: readonly string[] }) =>
          evidence.some((e) => {
            if (!e.destination.apps.some((a) => a.appId === appId) || e.destination.protocol !== protocol) return false;
            const name = cluster.apps.find((a) => a.id === appId)?.ports[portIndex]?.name;
            if (!(hostPort === e.destination.port || (e.destination.portName !== undefined && name === e.destination.portName))) return false;
            if (source.appId !== undefined) {
              if (sourceNamed(undefined, source.appId, e)) return true;
              const addresses = source.hostAddresses ?? [];
              // A host without an address of the family passes a network peer that holds them all.
              if (addresses.length === 0) return e.direction === 'ingress' && !(e.source.kind === 'host' && e.source.apps.length > 0) && smallestNetwork(policy, e.source.address) !== undefined;
              return addresses.some((a) => sourceNamed(a, undefined, e));
            }
            return sourceNamed(source.address, undefined, e);
          });

        // A claim of several task ports (a port conflict) opens when every owner does: the
        // connection is one of the evidence when it is for one of them.
        const byOwner = (hostId: string, protocol: Protocol, hostPort: number, source: Parameters<typeof named>[4]) =>
          claimOwners(cluster, hostId, protocol, hostPort).some((o) => named(o.app.id, o.portIndex, hostPort, protocol, source));
        const sources = [...new Set([...cluster.hosts.flatMap((h) => h.addresses), ...OUTSIDE])];
        for (const task of cluster.tasks) {
          const app = cluster.apps.find((a) => a.id === task.appId);
          if (!app || !cluster.hosts.some((h) => h.id === task.hostId)) continue;
          app.ports.forEach((p, portIndex) => {
            const hostPort = task.hostPorts[portIndex];
            if (hostPort === undefined) return;
            for (const protocol of p.protocols) {
              for (const source of sources) {
                const c = { source, task, portIndex, protocol };
                if (evaluateConnection(policy, cluster, c).decision === 'allow' || evaluateConnection(after, cluster, c).decision === 'deny') continue;
                expect(byOwner(task.hostId, protocol, hostPort, { address: source }), `${source} → ${app.id}#${portIndex} ${protocol}/${hostPort}`).toBe(true);
              }
              for (const st of cluster.tasks) {
                const from = cluster.hosts.find((h) => h.id === st.hostId);
                if (!from || !cluster.apps.some((a) => a.id === st.appId)) continue;
                for (const family of [4, 6] as const) {
                  const q = { appId: st.appId, sourceHostId: st.hostId, destHostId: task.hostId, protocol, hostPort, family };
                  if (egressVerdict(policy, cluster, q).decision === 'allow' || egressVerdict(after, cluster, q).decision === 'deny') continue;
                  const hostAddresses = from.addresses.filter((a) => a.includes(':') === (family === 6));
                  expect(byOwner(task.hostId, protocol, hostPort, { appId: st.appId, hostAddresses }), `${st.appId} on ${st.hostId} → ${app.id}#${portIndex} ${protocol}/${hostPort}`).toBe(true);
                }
              }
            }
          });
        }
        // And what it was for: every evidence flow is allowed now, unless reported as skipped.
        const stillDenied = evidence.filter((f) => {
          const j = judgeFlow(after, cluster, f);
          return j.ok && j.judgement.verdict !== 'allowed';
        });
        const skipped = s.skipped.reduce((n, k) => n + k.flows, 0);
        expect(stillDenied.length).toBeLessThanOrEqual(skipped);
      }),
      { numRuns: 60 },
    );
  });
});
