/**
 * lintPolicyAgainstCluster: checks a valid Policy against one ClusterState (static inventory or a
 * Marathon snapshot) for mistakes only the apps reveal. Pure.
 *  - error: a rule names a port that no app of its target groups defines (at the name's location;
 *    lists the names those apps do define). Skipped when the groups select no app at all.
 *  - error: a rule's `protocol` excludes every protocol the named port uses.
 *  - warning: a group selects no app (saying so when it has a `mode`, which then stages nothing).
 * `sites` (from parsePolicy's result) gives the location of each port spec; without it, errors
 * point at the rule.
 */
import type { Diagnostic } from '../diagnostic.js';
import { sortDiagnostics } from '../diagnostic.js';
import type { App, ClusterState } from '../inventory/cluster-state.js';
import { groupMatcher } from './app-selector.js';
import type { PortSpec, Protocol, Policy } from './policy-model.js';
import type { SourceLocation } from '../diagnostic.js';
import type { PolicySites } from './parse-policy.js';

/** What a set of apps defines: their ids, and per port name the protocols it uses. */
interface Targets {
  readonly ids: readonly string[];
  readonly ports: ReadonlyMap<string, ReadonlySet<Protocol>>;
}

function targetsOf(apps: readonly App[]): Targets {
  const ports = new Map<string, Set<Protocol>>();
  for (const a of apps) {
    for (const p of a.ports) {
      if (p.name === undefined) continue;
      let protocols = ports.get(p.name);
      if (!protocols) ports.set(p.name, (protocols = new Set()));
      for (const proto of p.protocols) protocols.add(proto);
    }
  }
  return { ids: apps.map((a) => a.id).sort(), ports };
}

/** At most this many app ids or port names are listed in one message. */
const LISTED = 20;

function listed(items: readonly string[]): string {
  if (items.length <= LISTED) return items.join(', ');
  return `${items.slice(0, LISTED).join(', ')}, … (${items.length - LISTED} more)`;
}

/**
 * Cost: each group's apps are found once and what they define is summarised once per distinct
 * `to` list, so a rule costs its own port specs, not the size of its groups; messages list at
 * most LISTED ids or names.
 */
export function lintPolicyAgainstCluster(policy: Policy, cluster: ClusterState, sites?: PolicySites): Diagnostic[] {
  const out: Diagnostic[] = [];
  const push = (at: SourceLocation, message: string, severity: 'error' | 'warning'): void => {
    out.push({ file: at.file, line: at.line, col: at.col, message, severity });
  };
  const members = new Map<string, App[]>(policy.groups.map((g) => [g.name, []]));
  const groupsOf = groupMatcher(policy);
  for (const a of cluster.apps) for (const g of groupsOf(a)) members.get(g)!.push(a);
  for (const g of policy.groups) {
    const apps = members.get(g.name)!;
    if (apps.length === 0) {
      const sel = [g.apps.length > 0 ? `apps ${g.apps.join(', ')}` : '', Object.keys(g.labels).length > 0 ? `labels ${JSON.stringify(g.labels)}` : '']
        .filter(Boolean)
        .join(' and ');
      // A staged group that selects nothing stages nothing: its apps (by a typo) still follow defaults.mode.
      const mode = g.mode !== undefined ? `; its 'mode: ${g.mode}' applies to no app (the apps meant still follow defaults.mode or their other groups)` : '';
      push(g.at, `group '${g.name}' selects no app of the cluster (${sel}); check its patterns and labels${mode}`, 'warning');
    }
  }
  const targets = new Map<string, Targets>();
  for (const rule of policy.rules) {
    const key = rule.to.join('\n');
    let t = targets.get(key);
    if (!t) targets.set(key, (t = targetsOf([...new Set(rule.to.flatMap((g) => members.get(g) ?? []))])));
    if (t.ids.length === 0) continue;
    const ruleSites = sites?.rules.get(rule.name);
    rule.ports.forEach((spec: PortSpec, i) => {
      if (spec.kind !== 'name') return;
      const at = ruleSites?.ports[i] ?? rule.at;
      const used = t.ports.get(spec.name);
      if (!used) {
        const defined = [...t.ports.keys()].sort();
        push(
          at,
          `port name '${spec.name}' in rule '${rule.name}' is not defined by any app of ${groupsText(rule.to)} ` +
            `(apps: ${listed(t.ids)}); names they define: ${defined.length > 0 ? listed(defined) : '(none)'}`,
          'error',
        );
        return;
      }
      if (rule.protocols === null) return;
      if (!rule.protocols.some((p) => used.has(p))) {
        push(
          ruleSites?.protocol ?? at,
          `rule '${rule.name}' has protocol ${rule.protocols.join(', ')}, but port '${spec.name}' of ${groupsText(rule.to)} ` +
            `is ${[...used].sort().join(' and ')} only, so the rule can never match it; fix 'protocol' or the port`,
          'error',
        );
      }
    });
  }
  return sortDiagnostics(out);
}

function groupsText(groups: readonly string[]): string {
  return groups.length === 1 ? `group '${groups[0]}'` : `groups ${groups.map((g) => `'${g}'`).join(', ')}`;
}
