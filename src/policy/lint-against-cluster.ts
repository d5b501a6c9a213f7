/**
 * lintPolicyAgainstCluster: checks a valid Policy against one ClusterState (static inventory or a
 * Marathon snapshot) for mistakes only the apps reveal. Pure.
 *  - error: a rule names a port that no app of its target groups defines (at the name's location;
 *    lists the names those apps do define). Skipped when the groups select no app at all.
 *  - error: a rule's `protocol` excludes every protocol the named port uses.
 *  - warning: a group selects no app.
 * `sites` (from parsePolicy's result) gives the location of each port spec; without it, errors
 * point at the rule.
 */
import type { Diagnostic } from '../diagnostic.js';
import { sortDiagnostics } from '../diagnostic.js';
import type { App, ClusterState } from '../inventory/cluster-state.js';
import { appMatchesGroup } from './app-selector.js';
import type { PortSpec, Protocol, SourceLocation, Policy } from './policy-model.js';
import type { PolicySites } from './parse-policy.js';

export function lintPolicyAgainstCluster(policy: Policy, cluster: ClusterState, sites?: PolicySites): Diagnostic[] {
  const out: Diagnostic[] = [];
  const push = (at: SourceLocation, message: string, severity: 'error' | 'warning'): void => {
    out.push({ file: at.file, line: at.line, col: at.col, message, severity });
  };
  const members = new Map<string, App[]>();
  for (const g of policy.groups) {
    const apps = cluster.apps.filter((a) => appMatchesGroup(a, g));
    members.set(g.name, apps);
    if (apps.length === 0) {
      const sel = [g.apps.length > 0 ? `apps ${g.apps.join(', ')}` : '', Object.keys(g.labels).length > 0 ? `labels ${JSON.stringify(g.labels)}` : '']
        .filter(Boolean)
        .join(' and ');
      push(g.at, `group '${g.name}' selects no app of the cluster (${sel}); check its patterns and labels`, 'warning');
    }
  }
  for (const rule of policy.rules) {
    const apps = [...new Set(rule.to.flatMap((g) => members.get(g) ?? []))];
    if (apps.length === 0) continue;
    const ruleSites = sites?.rules.get(rule.name);
    rule.ports.forEach((spec: PortSpec, i) => {
      if (spec.kind !== 'name') return;
      const at = ruleSites?.ports[i] ?? rule.at;
      const withName = apps.flatMap((a) => a.ports.filter((p) => p.name === spec.name));
      if (withName.length === 0) {
        const defined = [...new Set(apps.flatMap((a) => a.ports.map((p) => p.name).filter((n): n is string => n !== undefined)))].sort();
        push(
          at,
          `port name '${spec.name}' in rule '${rule.name}' is not defined by any app of ${groupsText(rule.to)} ` +
            `(apps: ${apps.map((a) => a.id).sort().join(', ')}); names they define: ${defined.length > 0 ? defined.join(', ') : '(none)'}`,
          'error',
        );
        return;
      }
      if (rule.protocols === null) return;
      const used = new Set<Protocol>(withName.flatMap((p) => p.protocols));
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
