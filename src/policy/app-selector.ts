/**
 * Group membership: which Marathon apps a group selects.
 *
 * App-id patterns are globs over Marathon ids: `*` matches any run of characters except `/`
 * (one path segment), `**` any run including `/`; every other character is literal. An app is in
 * a group when (the group has no patterns, or its id matches one) and it carries every label of
 * the group's `labels` with exactly that value.
 *
 * Matching runs in O(|id| × |pattern|) time whatever both hold (a set-of-states simulation, no
 * backtracking): app ids come from Marathon, and the RegExp this used to build failed on long
 * patterns ("regular expression too large", an uncaught throw in check and in a reload) and
 * backtracks exponentially on patterns like `/*a*a*a*a*a*b` (found by test/fuzz-policy.test.ts).
 */
import type { App } from '../inventory/cluster-state.js';
import type { GroupDef, Policy } from './policy-model.js';

/** A pattern as tokens: a literal UTF-16 code unit, STAR (`*`) or DSTAR (`**`). */
type Token = string | typeof STAR | typeof DSTAR;
const STAR = 1;
const DSTAR = 2;

/** O(|pattern|), against the O(|id| × |pattern|) match: made per call, not cached. */
function tokens(pattern: string): readonly Token[] {
  const list: Token[] = [];
  for (let i = 0; i < pattern.length; i++) {
    const ch = pattern[i]!;
    if (ch !== '*') list.push(ch);
    else if (pattern[i + 1] === '*') {
      list.push(DSTAR);
      i++;
    } else list.push(STAR);
  }
  return list;
}

/** Whether `id` matches the app-id glob `pattern`. */
export function appIdMatches(pattern: string, id: string): boolean {
  if (!pattern.includes('*')) return pattern === id;
  const toks = tokens(pattern);
  const n = toks.length;
  // state i alive = the first i tokens match the characters read so far.
  let cur = new Uint8Array(n + 1);
  let next = new Uint8Array(n + 1);
  cur[0] = 1;
  closeOverEmpty(toks, cur);
  for (let c = 0; c < id.length; c++) {
    const ch = id[c]!;
    next.fill(0);
    let alive = false;
    for (let i = 0; i < n; i++) {
      if (cur[i] === 0) continue;
      const t = toks[i]!;
      if (t === DSTAR || (t === STAR && ch !== '/')) {
        next[i] = 1;
        alive = true;
      } else if (t === ch) {
        next[i + 1] = 1;
        alive = true;
      }
    }
    if (!alive) return false;
    closeOverEmpty(toks, next);
    [cur, next] = [next, cur];
  }
  return cur[n] === 1;
}

/** A wildcard may match nothing: a live state before one makes the state after it live too. */
function closeOverEmpty(toks: readonly Token[], states: Uint8Array): void {
  for (let i = 0; i < toks.length; i++) {
    if (states[i] === 1 && typeof toks[i] !== 'string') states[i + 1] = 1;
  }
}

export function appMatchesGroup(app: Pick<App, 'id' | 'labels'>, group: Pick<GroupDef, 'apps' | 'labels'>): boolean {
  if (group.apps.length > 0 && !group.apps.some((p) => appIdMatches(p, app.id))) return false;
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
