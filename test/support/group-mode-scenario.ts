/**
 * Random scenarios with per-group modes (`groups.<name>.mode`): scenarioArb's policies with each
 * group given no mode, `audit` or `enforce` at random, and the kernel's reading of a state's
 * modes (what the agent does with `mode`, `audit-tcp`/`audit-udp` and `egress-audit`).
 */
import fc from 'fast-check';
import type { DesiredState } from '../../src/compile/desired-state.js';
import type { Mode, Policy, Protocol } from '../../src/policy/policy-model.js';
import { scenarioArb, type Scenario } from './random-cluster.js';

const MODE_CHOICE = fc.constantFrom<Mode | undefined>(undefined, undefined, 'audit', 'enforce');

/** `policy` with group i given modes[i] (undefined: none). */
export function withGroupModes(policy: Policy, modes: readonly (Mode | undefined)[]): Policy {
  return { ...policy, groups: policy.groups.map((g, i) => (modes[i] === undefined ? g : { ...g, mode: modes[i]! })) };
}

export const modedScenarioArb: fc.Arbitrary<Scenario> = fc
  .tuple(scenarioArb, fc.array(MODE_CHOICE, { minLength: 4, maxLength: 4 }))
  .map(([s, modes]) => ({ cluster: s.cluster, policy: withGroupModes(s.policy, modes) }));

/** How the kernel reads a managed destination port of `state`: audit when listed in audit-<proto>, else the state's mode. */
export function kernelPortMode(state: DesiredState, protocol: Protocol, port: number): Mode {
  return state.sets[`audit-${protocol}`].includes(String(port)) ? 'audit' : state.mode;
}

/** How the kernel reads a local app's egress: audit when listed in egress-audit, else the state's mode. */
export function kernelEgressMode(state: DesiredState, appId: string): Mode {
  return state.sets['egress-audit'].includes(appId) ? 'audit' : state.mode;
}
