/**
 * Group membership: which Marathon apps a group selects.
 *
 * App-id patterns are globs over Marathon ids: `*` matches any run of characters except `/`
 * (one path segment), `**` any run including `/`; every other character is literal. An app is in
 * a group when (the group has no patterns, or its id matches one) and it carries every label of
 * the group's `labels` with exactly that value.
 */
import type { App } from '../inventory/cluster-state.js';
import type { GroupDef } from './policy-model.js';

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
