/**
 * The compiled egress agrees with the reference evaluator on random policies and clusters: for
 * every source task (app A on host X), every destination task port (host Y, protocol, host port)
 * and every address of Y, the source host's state lets A open the connection exactly when the
 * evaluator's egress half allows it (src/evaluate/egress-evaluator.ts, independent of the
 * compiler), read as the kernel reads the sets: a destination in X's egress-managed<family> is
 * checked, and then allowed only when "<A>|<destination>" is in X's egress-ip<family>. X's
 * egress-managed lists are every managed destination of the cluster. Groups get random modes:
 * for every denied connection, the kernel's reading of X's state (A in egress-audit → audit, else
 * the state's mode) agrees with the egress verdict's `enforced` (judged in A's mode).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compile } from '../src/compile/compile.js';
import type { DesiredState } from '../src/compile/desired-state.js';
import { egressAllowed, egressVerdict } from '../src/evaluate/egress-evaluator.js';
import { hostIps, ipFamily, ipText, isFailsafe, isTaskPort } from '../src/evaluate/policy-walk.js';
import { isMemberAppId, isMemberTaskId } from '../src/net/member-syntax.js';
import { kernelEgressMode, modedScenarioArb } from './support/group-mode-scenario.js';

function compiledEgress(state: DesiredState, appId: string, family: 4 | 6, destination: string): boolean {
  if (!state.sets[`egress-managed${family}`].includes(destination)) return true;
  return state.sets[`egress-ip${family}`].includes(`${appId}|${destination}`);
}

describe('compiled egress vs reference evaluator (property)', () => {
  it('every source task and destination address: egress sets allow exactly what the evaluator allows', () => {
    let checked = 0;
    let denied = 0;
    const modes = { audit: 0, enforce: 0 };
    let mixedHosts = 0;
    fc.assert(
      fc.property(modedScenarioArb, ({ policy: base, cluster }) => {
        const policy = { ...base, defaults: { ...base.defaults, egress: true } };
        const result = compile(policy, cluster);
        for (const state of result.states.values()) if (state.sets['egress-audit'].length > 0) mixedHosts++;
        const appIds = new Set(cluster.apps.map((a) => a.id));
        const hostIds = new Set(cluster.hosts.map((h) => h.id));
        const valid = cluster.tasks.filter((t) => appIds.has(t.appId) && hostIds.has(t.hostId));
        // Every managed destination of the cluster, per family.
        const managed = { 4: new Set<string>(), 6: new Set<string>() };
        const destinations: { hostId: string; protocol: 'tcp' | 'udp'; hostPort: number; text: string; family: 4 | 6 }[] = [];
        for (const task of valid) {
          const app = cluster.apps.find((a) => a.id === task.appId)!;
          task.hostPorts.forEach((hostPort, i) => {
            if (i >= app.ports.length || !isTaskPort(hostPort)) return;
            for (const protocol of new Set(app.ports[i]!.protocols)) {
              if (isFailsafe(policy, protocol, hostPort)) continue;
              for (const ip of hostIps(cluster, task.hostId)) {
                const family = ipFamily(ip);
                const text = `${ipText(ip)},${protocol}:${hostPort}`;
                if (!managed[family].has(text)) destinations.push({ hostId: task.hostId, protocol, hostPort, text, family });
                managed[family].add(text);
              }
            }
          });
        }
        for (const state of result.states.values()) {
          expect(new Set(state.sets['egress-managed4'])).toEqual(managed[4]);
          expect(new Set(state.sets['egress-managed6'])).toEqual(managed[6]);
        }
        const seen = new Set<string>();
        for (const task of valid) {
          const state = result.states.get(task.hostId)!;
          if (!isMemberAppId(task.appId) || !isMemberTaskId(task.id)) {
            // Cannot stand in a member: not mapped (the agent treats it as unmapped) and reported.
            expect(state.sets['egress-task'].some((m) => m.endsWith(`|${task.id}`) && m.startsWith(`${task.appId}|`))).toBe(false);
            expect(result.reports.some((r) => r.kind === 'egress-unsafe-id')).toBe(true);
            continue;
          }
          const key = `${task.appId}@${task.hostId}`;
          if (seen.has(key)) continue;
          seen.add(key);
          expect(state.sets['egress-task']).toContain(`${task.appId}|${task.id}`);
          for (const d of destinations) {
            const expected = egressAllowed(policy, cluster, { appId: task.appId, sourceHostId: task.hostId, destHostId: d.hostId, protocol: d.protocol, hostPort: d.hostPort, family: d.family });
            const compiled = compiledEgress(state, task.appId, d.family, d.text);
            if (compiled !== expected) {
              throw new Error(`${task.appId} on ${task.hostId} → ${d.text} (${d.hostId}): compiled ${compiled}, evaluator ${expected}`);
            }
            checked++;
            if (!expected) {
              denied++;
              const v = egressVerdict(policy, cluster, { appId: task.appId, sourceHostId: task.hostId, destHostId: d.hostId, protocol: d.protocol, hostPort: d.hostPort, family: d.family });
              const mode = kernelEgressMode(state, task.appId);
              if (v.decision === 'deny' && v.enforced !== (mode === 'enforce')) {
                throw new Error(`${task.appId} on ${task.hostId} → ${d.text}: kernel reads ${mode}, evaluator enforced=${v.enforced} (${v.reason})`);
              }
              modes[mode]++;
            }
          }
        }
      }),
      { numRuns: 400, interruptAfterTimeLimit: 40_000 },
    );
    console.log(`compile-egress-property: ${checked} (source app, destination) pairs checked, ${denied} denied`);
    expect(checked).toBeGreaterThan(1000);
    expect(denied).toBeGreaterThan(100);
    expect(checked - denied).toBeGreaterThan(100);
    console.log(`compile-egress-property: denied connections ${modes.enforce} enforced, ${modes.audit} audited`);
    expect(modes.enforce).toBeGreaterThan(50);
    expect(modes.audit).toBeGreaterThan(50);
    expect(mixedHosts).toBeGreaterThan(5);
  });
});
