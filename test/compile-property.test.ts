/**
 * The compiler agrees with the reference evaluator on random policies and clusters: for every
 * managed task port of every host and every candidate source (host addresses, the edges, inside
 * and outside of every network CIDR and except, a random address), membership in the compiled
 * allow sets (read with ip-num, independent of address-set.ts) equals the evaluator's decision.
 * Groups get random modes (`groups.<name>.mode`): for every deny, the kernel's reading of the
 * state (port in audit-<proto> → audit, else the state's mode) agrees with the verdict's `enforced`.
 */
import fc from 'fast-check';
import { IPv4, IPv4CidrRange, IPv6, IPv6CidrRange } from 'ip-num';
import { describe, expect, it } from 'vitest';
import { compile } from '../src/compile/compile.js';
import { evaluateConnection } from '../src/evaluate/reference-evaluator.js';
import type { Policy } from '../src/policy/policy-model.js';
import { compiledVerdict } from './support/random-cluster.js';
import { kernelPortMode, modedScenarioArb } from './support/group-mode-scenario.js';

const MAX4 = (1n << 32n) - 1n;
const MAX6 = (1n << 128n) - 1n;

function edgeAddresses(cidr: string): string[] {
  const out: bigint[] = [];
  const v6 = cidr.includes(':');
  const range = v6 ? IPv6CidrRange.fromCidr(cidr) : IPv4CidrRange.fromCidr(cidr);
  const first = range.getFirst().value;
  const last = range.getLast().value;
  out.push(first, last, (first + last) / 2n);
  if (first > 0n) out.push(first - 1n);
  if (last < (v6 ? MAX6 : MAX4)) out.push(last + 1n);
  return out.map((v) => (v6 ? IPv6.fromBigInt(v).toString() : IPv4.fromNumber(v).toString()));
}

function candidateSources(policy: Policy, hostAddresses: string[], extra: string[]): string[] {
  const set = new Set<string>([...hostAddresses, ...extra]);
  for (const n of policy.networks) for (const c of [...n.cidrs, ...n.except]) for (const a of edgeAddresses(c)) set.add(a);
  return [...set].sort();
}

const outsideArb = fc.tuple(
  fc.integer({ min: 0, max: 0xffffffff }).map((n) => IPv4.fromNumber(n).toString()),
  fc.bigInt({ min: 0n, max: MAX6 }).map((v) => IPv6.fromBigInt(v).toString()),
);

describe('compile vs reference evaluator (property)', () => {
  it('compiled membership equals the evaluator decision for every managed port and candidate source', () => {
    let checked = 0;
    const denies = { audit: 0, enforce: 0 };
    let mixedHosts = 0;
    fc.assert(
      fc.property(modedScenarioArb, outsideArb, ({ policy, cluster }, [out4, out6]) => {
        const result = compile(policy, cluster);
        for (const state of result.states.values()) if (state.sets['audit-tcp'].length + state.sets['audit-udp'].length > 0) mixedHosts++;
        expect([...result.states.keys()]).toEqual([...new Set(cluster.hosts.map((h) => h.id))].sort());
        const sources = candidateSources(policy, cluster.hosts.flatMap((h) => h.addresses), [out4, out6]);
        const conflicts = new Set(result.reports.filter((r) => r.kind === 'port-conflict').map((r) => r.message));
        for (const task of cluster.tasks) {
          const app = cluster.apps.find((a) => a.id === task.appId)!;
          const state = result.states.get(task.hostId)!;
          app.ports.forEach((port, portIndex) => {
            const hostPort = task.hostPorts[portIndex]!;
            for (const protocol of port.protocols) {
              // Every deny: enforced exactly where the kernel reads the port as enforcing (conflicts too).
              for (const source of sources) {
                const verdict = evaluateConnection(policy, cluster, { source, task, portIndex, protocol });
                if (verdict.decision !== 'deny') continue;
                const mode = kernelPortMode(state, protocol, hostPort);
                if (verdict.enforced !== (mode === 'enforce')) {
                  throw new Error(`${source} → ${task.id} ${protocol}:${hostPort}: kernel reads ${mode}, evaluator enforced=${verdict.enforced} (${verdict.reason})`);
                }
                denies[mode]++;
              }
              // A port two task ports claim gets the intersection of their sets: judged apart.
              if ([...conflicts].some((m) => m.startsWith(`host ${task.hostId}: ${protocol}:${hostPort} `))) continue;
              const failsafe = policy.defaults.failsafe.some((f) => f.protocol === protocol && f.port === hostPort);
              expect(state.sets[`managed-${protocol}`].includes(String(hostPort))).toBe(!failsafe);
              for (const source of sources) {
                const verdict = evaluateConnection(policy, cluster, { source, task, portIndex, protocol });
                const compiled = compiledVerdict(state, source, protocol, hostPort);
                const expected = verdict.tier === 'failsafe' ? 'unmanaged' : verdict.decision;
                if (compiled !== expected) {
                  throw new Error(`${source} → ${task.id} ${protocol}:${hostPort}: compiled ${compiled}, evaluator ${verdict.decision} (${verdict.reason})`);
                }
                checked++;
              }
            }
          });
        }
      }),
      { numRuns: 250, interruptAfterTimeLimit: 45_000 },
    );
    console.log(`compile-property: ${checked} (source, port) pairs checked; denies ${denies.enforce} enforced, ${denies.audit} audited; ${mixedHosts} hosts with audited ports in an enforcing state`);
    expect(checked).toBeGreaterThan(1000);
    expect(denies.enforce).toBeGreaterThan(100);
    expect(denies.audit).toBeGreaterThan(100);
    expect(mixedHosts).toBeGreaterThan(5);
  });
});
