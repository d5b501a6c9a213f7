/**
 * Per-app egress on the source host (issue 10; docs/architecture.md, "Per-app egress"):
 * the sets and chains that make each local task's new connections to managed destinations of the
 * cluster pass only where its app may go. Pure and deterministic.
 *
 * Input: the DesiredState's egress kinds (egress-task, egress-managed4/6, egress-ip4/6) and the
 * agent's local task map (`EgressMapping`: where each Mesos task's connections come from, learned
 * from the local Mesos agent and checked against the cgroup tree by the agent). Output, per family:
 *
 *   sets   pcu?-eg-managed  hash:ip,port  ← egress-managed4/6 (every managed destination)
 *          pcu?-eg-<h>      hash:ip,port  ← egress-ip4/6 of local app <app> ("<app>|" removed)
 *   OUTPUT (mangle): -j PCU-OUTPUT                               (the second foreign touch)
 *   PCU-OUTPUT:    established/related RETURN; ! dst,dst in eg-managed RETURN;
 *                  one `-m cgroup --path <cgroup> -g PCU-EG-<H>` per mapped HOST task (deeper
 *                  paths first: the match is by ancestor, a nested container before its parent);
 *                  `--egress-unmapped deny`: `-m cgroup --path <cgroups root> -g PCU-EG-DENY`.
 *                  Anything else (a process in no task cgroup) falls through: host-level.
 *   PCU-PREROUTING gets `dst,dst in eg-managed -j PCU-EG-BRIDGE` (render-chains.ts);
 *   PCU-EG-BRIDGE: one `-s <container address> -g PCU-EG-<H>` per mapped BRIDGE task.
 *   PCU-EG-<H>:    dst,dst in pcu?-eg-<h> RETURN; -j PCU-EG-DENY (-j PCU-EG-AUDIT: an app of
 *                  egress-audit while the state enforces; render-flows.ts, also for recording).
 *   PCU-EG-DENY:   enforce DROP; audit NFLOG prefix pcu-egress, RETURN.
 *   PCU-EG-AUDIT:  NFLOG prefix pcu-egress, RETURN (only when some app is of egress-audit).
 *
 * Rules are O(local tasks + local apps); a packet does at most two set lookups on the egress path,
 * and a new connection to a managed destination from a HOST task also crosses the cgroup rules in
 * order until its task's (O(local tasks) matches, once per connection: iptables has no lookup keyed
 * on a cgroup; BENCHMARKS.md, "Egress connection rate").
 * App and task ids never reach a kernel name or a rule: names come from a hash of the app id
 * (owned-names.ts), rules carry only cgroup paths and container addresses, which are checked
 * again here (a path of safe segments, an address of the family; anything else throws: the agent
 * builds the map from src/mesos/local-tasks.ts, which already refuses them).
 * A task of egress-task that the map does not know is unmapped; a mapped task whose app has no
 * egress-ip member still gets its chain (its traffic to managed destinations is denied).
 */
import type { DesiredState } from '../compile/desired-state.js';
import type { Family } from '../net/family.js';
import { parseAddress } from '../net/address.js';
import { egressAppOf } from '../net/member-syntax.js';
import type { Mode } from '../policy/policy-model.js';
import {
  EGRESS_BRIDGE_CHAIN,
  EGRESS_DENY_CHAIN,
  EGRESS_OUTPUT_CHAIN,
  egressAppChainName,
  egressAppSetName,
  egressManagedSetName,
} from './owned-names.js';
import { makeRule, type Chain, type Rule } from './rule-model.js';
import { EGRESS_LOG_PREFIX, egressAppChains, egressAuditApps, egressAuditChain } from './render-flows.js';

export { EGRESS_LOG_PREFIX } from './render-flows.js';

/** Where one task's connections come from. */
export type TaskSource =
  | { readonly kind: 'host'; readonly cgroupPath: string }
  | { readonly kind: 'bridge'; readonly addresses: readonly string[] };

/** What `--egress-unmapped` says about a task the agent has not mapped: host-level, or denied. */
export type UnmappedPolicy = 'host' | 'deny';

export interface EgressMapping {
  /** By Mesos task id (= the task id of egress-task members). */
  readonly tasks: ReadonlyMap<string, TaskSource>;
  readonly unmapped: UnmappedPolicy;
  /** The cgroups root relative to the cgroup2 root, when that directory exists (the deny rule needs it). */
  readonly cgroupsRoot: string | undefined;
}

export interface EgressSet {
  readonly name: string;
  /** Members as the kernel takes them (`<address>,<proto>:<port>`), ascending. */
  readonly members: readonly string[];
}

export interface RenderedEgress {
  readonly sets: readonly EgressSet[];
  readonly chains: readonly Chain[];
  /** Goes into PCU-PREROUTING after established/related (BRIDGE tasks). */
  readonly bridgeRule: Rule;
  /** The rule inserted at the top of the kernel's mangle OUTPUT chain. */
  readonly outputJump: Rule;
  /** Tasks of egress-task with a rule in this family, and those without. */
  readonly mapped: number;
  readonly unmapped: number;
}

const SAFE_PATH = /^[A-Za-z0-9_.-]{1,255}(\/[A-Za-z0-9_.-]{1,255}){0,63}$/;

/** The local apps of a state (egress-task), each with its task ids, apps ascending. */
export function localApps(state: DesiredState): Map<string, string[]> {
  const apps = new Map<string, string[]>();
  for (const member of state.sets['egress-task'] ?? []) {
    const app = egressAppOf(member);
    if (app === '') continue;
    const tasks = apps.get(app) ?? [];
    tasks.push(member.slice(app.length + 1));
    apps.set(app, tasks);
  }
  return new Map([...apps].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

function checkedPath(path: string): string {
  if (!SAFE_PATH.test(path) || path.split('/').some((s) => s === '.' || s === '..')) {
    throw new Error(`refusing cgroup path ${JSON.stringify(path.slice(0, 100))}: not a relative path of [A-Za-z0-9_.-] segments`);
  }
  return path;
}

function addressOf(address: string, family: Family): string | undefined {
  const parsed = parseAddress(address);
  if (!parsed.ok) throw new Error(`refusing container address ${JSON.stringify(address.slice(0, 64))}: ${parsed.message}`);
  return parsed.family === family ? parsed.canonical : undefined;
}

/** The per-app egress sets of one family, in render order (managed first, then apps ascending). */
export function egressSets(state: DesiredState, family: Family): EgressSet[] {
  const managed = state.sets[family === 4 ? 'egress-managed4' : 'egress-managed6'] ?? [];
  const byApp = new Map<string, string[]>([...localApps(state).keys()].map((app) => [app, []]));
  for (const member of state.sets[family === 4 ? 'egress-ip4' : 'egress-ip6'] ?? []) {
    const app = egressAppOf(member);
    byApp.get(app)?.push(member.slice(app.length + 1)); // an app not in egress-task has no set
  }
  return [
    { name: egressManagedSetName(family), members: [...managed] },
    ...[...byApp].map(([app, members]) => ({ name: egressAppSetName(app, family), members: [...members].sort() })),
  ];
}

/** The kernel set and entry of one egress member of `kind` in `family`; undefined when it has none there. */
export function egressEntry(kind: string, family: Family, member: string): { set: string; entry: string } | undefined {
  const suffix = family === 4 ? '4' : '6';
  if (kind === `egress-managed${suffix}`) return { set: egressManagedSetName(family), entry: member };
  if (kind !== `egress-ip${suffix}`) return undefined;
  const app = egressAppOf(member);
  return app === '' ? undefined : { set: egressAppSetName(app, family), entry: member.slice(app.length + 1) };
}

function matchSet(name: string): string[] {
  return ['-m', 'set', '--match-set', name, 'dst,dst'];
}

function denyChain(mode: Mode): Chain {
  const rules =
    mode === 'enforce'
      ? [makeRule([], ['-j', 'DROP'])]
      : [makeRule([], ['-j', 'NFLOG', '--nflog-prefix', EGRESS_LOG_PREFIX]), makeRule([], ['-j', 'RETURN'])];
  return { name: EGRESS_DENY_CHAIN, rules };
}

/** Deeper cgroup paths first (a nested container before its parent), then ascending. */
function byDepthThenPath(a: { path: string }, b: { path: string }): number {
  const depth = b.path.split('/').length - a.path.split('/').length;
  return depth !== 0 ? depth : a.path < b.path ? -1 : a.path > b.path ? 1 : 0;
}

/** `recording`: flow recording is rendered too (render-flows.ts). */
export function renderEgress(state: DesiredState, family: Family, mapping: EgressMapping, recording = false): RenderedEgress {
  const managedSet = egressManagedSetName(family);
  const hostRules: { path: string; chain: string }[] = [];
  const bridgeRules: { address: string; chain: string }[] = [];
  const appChains: Chain[] = [];
  const seenPaths = new Set<string>();
  const seenAddresses = new Set<string>();
  let mapped = 0;
  let unmapped = 0;
  const audited = egressAuditApps(state);
  for (const [app, tasks] of localApps(state)) {
    const chain = egressAppChainName(app);
    appChains.push(...egressAppChains(app, family, audited.has(app) ? 'audit-app' : state.mode, recording));
    for (const task of tasks) {
      const source = mapping.tasks.get(task);
      let ruled = false;
      if (source?.kind === 'host') {
        const path = checkedPath(source.cgroupPath);
        if (!seenPaths.has(path)) hostRules.push({ path, chain });
        seenPaths.add(path);
        ruled = true;
      } else if (source?.kind === 'bridge') {
        for (const a of source.addresses) {
          const address = addressOf(a, family);
          if (address === undefined) continue;
          if (!seenAddresses.has(address)) bridgeRules.push({ address, chain });
          seenAddresses.add(address);
          ruled = true;
        }
      }
      if (ruled) mapped++;
      else unmapped++;
    }
  }
  hostRules.sort(byDepthThenPath);
  bridgeRules.sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
  const unmappedRule =
    mapping.unmapped === 'deny' && mapping.cgroupsRoot !== undefined
      ? [makeRule(['-m', 'cgroup', '--path', checkedPath(mapping.cgroupsRoot)], ['-g', EGRESS_DENY_CHAIN])]
      : [];
  const output: Chain = {
    name: EGRESS_OUTPUT_CHAIN,
    rules: [
      makeRule(['-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED'], ['-j', 'RETURN']),
      makeRule(['-m', 'set', '!', '--match-set', managedSet, 'dst,dst'], ['-j', 'RETURN']),
      ...hostRules.map((r) => makeRule(['-m', 'cgroup', '--path', r.path], ['-g', r.chain])),
      ...unmappedRule,
    ],
  };
  const prefix = family === 4 ? '/32' : '/128';
  const bridge: Chain = { name: EGRESS_BRIDGE_CHAIN, rules: bridgeRules.map((r) => makeRule(['-s', r.address + prefix], ['-g', r.chain])) };
  return {
    sets: egressSets(state, family),
    chains: [output, bridge, denyChain(state.mode), ...(!recording && [...localApps(state).keys()].some((a) => audited.has(a)) ? [egressAuditChain()] : []), ...appChains],
    bridgeRule: makeRule(matchSet(managedSet), ['-j', EGRESS_BRIDGE_CHAIN]),
    outputJump: makeRule([], ['-j', EGRESS_OUTPUT_CHAIN]),
    mapped,
    unmapped,
  };
}

/** Tasks of the state's egress-task that the map places (a cgroup, or a container address), and the others. */
export function egressTaskCounts(state: DesiredState, mapping: EgressMapping | undefined): { mapped: number; unmapped: number } {
  let mapped = 0;
  let unmapped = 0;
  for (const tasks of localApps(state).values()) {
    for (const task of tasks) {
      const source = mapping?.tasks.get(task);
      if (source !== undefined && (source.kind === 'host' || source.addresses.length > 0)) mapped++;
      else unmapped++;
    }
  }
  return { mapped, unmapped };
}
