/**
 * Group membership: which Marathon apps a group selects.
 *
 * App-id patterns are globs over Marathon ids: `*` matches any run of characters except `/`
 * (one path segment), `**` any run including `/`; every other character is literal. An app is in
 * a group when (the group has no patterns, or its id matches one) and it carries every label of
 * the group's `labels` with exactly that value.
 */
import type { App } from '../inventory/cluster-state.js';
import type { GroupDef, Policy } from './policy-model.js';

const compiled = new Map<string, RegExp>();

/** The RegExp a pattern compiles to; cached, since patterns are few and apps many. */
export function appIdPattern(pattern: string): RegExp {
  let re = compiled.get(pattern);
  if (!re) {
    let source = '';
    for (let i = 0; i < pattern.length; i++) {
      const ch = pattern[i]!;
      if (ch === '*' && pattern[i + 1] === '*') {
        source += '.*';
        i++;
      } else if (ch === '*') {
        source += '[^/]*';
      } else {
        source += ch.replace(/[\\^$.|?+()[\]{}]/g, '\\$&');
      }
    }
    re = new RegExp(`^${source}$`, 's');
    compiled.set(pattern, re);
  }
  return re;
}

export function appMatchesGroup(app: Pick<App, 'id' | 'labels'>, group: Pick<GroupDef, 'apps' | 'labels'>): boolean {
  if (group.apps.length > 0 && !group.apps.some((p) => appIdPattern(p).test(app.id))) return false;
  for (const [key, value] of Object.entries(group.labels)) {
    if (!Object.hasOwn(app.labels, key) || app.labels[key] !== value) return false;
  }
  return true;
}

/**
 * `(app) => names of the groups it belongs to, in policy order`, for many apps and groups. Each
 * pattern's literal prefix (the text before its first `*`; a pattern without `*` is its own
 * literal) must start the id of a matching app, so patterns are indexed by that prefix and an app
 * looks up each prefix of its id: only the groups found so (and those without patterns, which
 * select by labels) get the full test of appMatchesGroup. Cost per app: its id's length plus its
 * candidate groups, not the number of groups.
 */
export function groupMatcher(policy: Pick<Policy, 'groups'>): (app: Pick<App, 'id' | 'labels'>) => string[] {
  const exact = new Map<string, number[]>();
  const byPrefix = new Map<string, number[]>();
  const always: number[] = [];
  const add = (map: Map<string, number[]>, key: string, i: number) => {
    const list = map.get(key);
    if (!list) map.set(key, [i]);
    else if (list[list.length - 1] !== i) list.push(i);
  };
  policy.groups.forEach((group, i) => {
    if (group.apps.length === 0) always.push(i);
    for (const p of group.apps) {
      const star = p.indexOf('*');
      if (star < 0) add(exact, p, i);
      else add(byPrefix, p.slice(0, star), i);
    }
  });
  return (app) => {
    const candidates = new Set<number>(always);
    for (const i of exact.get(app.id) ?? []) candidates.add(i);
    for (let k = 0; k <= app.id.length; k++) for (const i of byPrefix.get(app.id.slice(0, k)) ?? []) candidates.add(i);
    const out: string[] = [];
    for (const i of [...candidates].sort((a, b) => a - b)) {
      const group = policy.groups[i]!;
      if (appMatchesGroup(app, group)) out.push(group.name);
    }
    return out;
  };
}
