/**
 * What per-app egress (egress.ts) reads of the cluster: the cluster index and each host's claims,
 * for both compile paths (compile.ts: HostClaims; the incremental compiler: its ClaimUses), a
 * host's tasks as egress names them, and the small list helpers egress.ts is built with.
 */
import { memberSuffix } from '../net/member.js';
import { isMemberAppId, isMemberTaskId } from '../net/member-syntax.js';
import type { ParsedAddress } from '../net/address.js';
import type { Task } from '../inventory/cluster-state.js';
import type { ClusterIndex } from './cluster-index.js';
import type { CompileReport } from './compile-report.js';
import type { EgressSets } from './desired-state.js';
import type { HostClaim, PortMatch } from './host-claims.js';

/** One managed claim of a host as egress sees it: its member suffix and its owners' PortMatches. */
export interface EgressClaim {
  readonly suffix: string;
  readonly matches: readonly PortMatch[];
}

/** What egress reads of the cluster (the cluster index and the hosts' claims). */
export interface EgressInput {
  addresses(hostId: string): readonly ParsedAddress[];
  tasksOn(hostId: string): readonly Task[];
  groupsOf(appId: string): readonly string[];
  claims(hostId: string): readonly EgressClaim[];
}

/** A host's claims as egress reads them. */
export function egressClaims(claims: readonly HostClaim[]): EgressClaim[] {
  return claims.map((c) => ({ suffix: memberSuffix(c.protocol, c.port), matches: c.matches }));
}

/** The EgressInput of a cluster index and a claims reader. */
export function egressInput(index: ClusterIndex, claims: (hostId: string) => readonly EgressClaim[]): EgressInput {
  return {
    addresses: (hostId) => index.addresses(hostId),
    tasksOn: (hostId) => index.tasksOn(hostId),
    groupsOf: (appId) => index.app(appId).groups,
    claims,
  };
}

/**
 * What egress reads of a host's tasks: the egress-task members "<app>|<task>" of the tasks whose
 * ids are member-safe (src/net/member-syntax.ts), their apps (the local apps), and an
 * `egress-unsafe-id` report for each other task (left out: the agent treats it as unmapped).
 */
export function hostTasks(hostId: string, tasks: readonly Task[]): { members: string[]; local: Set<string>; reports: CompileReport[] } {
  const members: string[] = [];
  const reports: CompileReport[] = [];
  const local = new Set<string>();
  for (const t of tasks) {
    if (isMemberAppId(t.appId) && isMemberTaskId(t.id)) {
      members.push(`${t.appId}|${t.id}`);
      local.add(t.appId);
    } else {
      reports.push({
        kind: 'egress-unsafe-id',
        hostId,
        appId: t.appId,
        taskId: t.id,
        message: `task ${JSON.stringify(t.id)} of app ${JSON.stringify(t.appId)} on host ${hostId}: ${isMemberAppId(t.appId) ? 'a task id must be 1-255 of [A-Za-z0-9_.-]' : "an app id must be '/' and 1-512 of [A-Za-z0-9._/-]"} to be named in egress sets; the agent treats the task as unmapped (host-level)`,
      });
    }
  }
  return { members, local, reports };
}

/** Members removed from `from` and added (each sorted), giving the list they are recorded for. */
export interface ListEdits {
  readonly from: readonly string[];
  readonly removes: readonly string[];
  readonly adds: readonly string[];
}

export function byString(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function sortedUnique(list: string[]): string[] {
  list.sort(byString);
  return list.filter((m, i) => i === 0 || m !== list[i - 1]);
}

/**
 * The edits that made each patched list from its base (for its hosts' deltas), one step deep:
 * keeping the edits of a list drops those that made its base. Only one step is ever read, and a
 * chain of them (each entry holds its base list) would keep every earlier list alive, ~0.5 MB a
 * task move with 55,000 managed destinations (test/compile-egress-memory.test.ts).
 */
export class ListEditLog {
  private readonly of = new WeakMap<readonly string[], ListEdits>();

  keep(next: readonly string[], edits: ListEdits): void {
    this.of.delete(edits.from);
    this.of.set(next, edits);
  }

  /** The edits that made `after` from `before`, when `keep` recorded exactly that step. */
  from(before: readonly string[], after: readonly string[]): ListEdits | undefined {
    const e = this.of.get(after);
    return e && e.from === before ? e : undefined;
  }
}

export function sortedEdits(from: readonly string[], removes: string[], adds: string[]): ListEdits {
  return { from, removes: removes.sort(byString), adds: adds.sort(byString) };
}

export function addTo(map: Map<string, Set<string>>, key: string, value: string): void {
  let set = map.get(key);
  if (!set) map.set(key, (set = new Set()));
  set.add(value);
}

export function removeFrom(map: Map<string, Set<string>>, key: string, value: string): void {
  const set = map.get(key);
  if (set?.delete(value) && set.size === 0) map.delete(key);
}

export function countIn<K>(map: Map<K, number>, key: K, delta: number): void {
  const n = (map.get(key) ?? 0) + delta;
  if (n > 0) map.set(key, n);
  else map.delete(key);
}

/** A host's egress sets as one object literal (every host gets new ones on every move that changes egress-managed: a literal, not a spread of the previous object). */
export function egressSets(task: readonly string[], managed: readonly (readonly string[])[], ip4: readonly string[], ip6: readonly string[]): EgressSets {
  return { 'egress-task': task, 'egress-managed4': managed[0]!, 'egress-managed6': managed[1]!, 'egress-ip4': ip4, 'egress-ip6': ip6 };
}
