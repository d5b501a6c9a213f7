/**
 * `portcullis suggest`, the pure core: from recorded flows, the rules in the policy's own terms
 * that would allow what was observed but is not allowed now (issue 11, flows-spec section 6).
 *
 * Contract:
 *  - Evidence: the flows of the asked verdicts (default denied and audit) that the policy in
 *    force still denies, re-judged by the reference evaluator (plan-judge.ts), and denied by the
 *    default tier only (no rule matched; egress from a host without an address of the family,
 *    tier no-address, is reported: which rule decides it is not known). A flow an explicit `deny` rule decides, or a `pass`
 *    rule hands to the labels tier, cannot be fixed by a rule appended to the policy (first
 *    match wins): it is reported as skipped with that rule, never worked around. So is a flow
 *    the evaluator cannot judge (its app left the cluster), an unmanaged port, a port conflict
 *    (a claim of several task ports: each owner would need its own rule), an app id a group
 *    cannot name exactly. An ingress record whose connection an egress record of the evidence
 *    also names (same source host, destination claim) is left to the egress record, which names
 *    the exact source app.
 *  - Peers: source apps become existing groups whose apps (now) all lie among the apps seen,
 *    largest first, and one proposed group (`apps:` listing exactly the ids) for the rest; the
 *    same for destination apps (suggest-names.ts `coverApps`). A source address that is not a
 *    cluster host's becomes the smallest named network holding it, else a proposed network with
 *    `cidrs:` of exactly the /32 or /128 addresses seen (per destination and port). Ports by
 *    name when the app port has one, else the host port number; `protocol` only when the
 *    destination port takes a protocol that was not seen.
 *  - Never broader than the evidence: every app a rule's `from` group selects now was seen as a
 *    source of traffic to every app its `to` group selects on that port (test/flows-suggest*).
 *  - One rule per (source peer, destination peer, port), ordered by connections descending,
 *    each with its evidence (connections, bytes, first and last seen, hosts).
 *  - With a cap (`top` N, the CLI's `--top`, default 1,000): the first N of those rules, named
 *    as in the whole answer, with the proposed groups and networks they use, and `leftOut`
 *    (how many rules more and the sums of their evidence). Naming, protocol narrowing,
 *    evidence and YAML are then done for the kept rules only (suggest-select.ts).
 * Pasting the groups and networks under `groups:` / `networks:` and the rules at the end of
 * `rules:` (or saving the YAML of suggest-yaml.ts as a policy file sorted after the others)
 * gives a policy `portcullis check` accepts.
 *
 * How: suggest-aggregate.ts interns the records' claims and sources and judges once per (claim,
 * source class) (suggest-judging.ts, suggest-classes.ts); suggest-lists.ts makes the rules and
 * their tallies; suggest-select.ts keeps the first N and names their peers; `suggestion` below
 * narrows protocols, orders and names them. The result is the
 * per-record walk's (test/support/suggest-oracle.ts, test/flows-suggest-fast.test.ts).
 */
import type { App, ClusterState } from '../inventory/cluster-state.js';
import type { Policy } from '../policy/policy-model.js';
import type { FlowVerdict } from './flow-types.js';
import type { ObservedFlow } from './observed-flow.js';
import { aggregate } from './suggest-aggregate.js';
import { slug, type GroupMembers, type NameBook } from './suggest-names.js';
import { byTraffic, chooseRules, cmp } from './suggest-select.js';

export { judged } from './suggest-judging.js';

import type { Evidence, SuggestOptions, SuggestedGroup, SuggestedNetwork, SuggestedRule, Suggestion } from './suggest-types.js';

export { cmp } from './suggest-select.js';
export type { Evidence, LeftOut, SkippedFlows, SuggestOptions, SuggestedGroup, SuggestedNetwork, SuggestedRule, Suggestion } from './suggest-types.js';

/** A rule's peers, port, evidence and the protocols seen, before it is named. */
export interface TalliedRule {
  readonly from: string;
  readonly to: string;
  readonly port: string | number;
  readonly evidence: Evidence;
  readonly protocols: ReadonlySet<'tcp' | 'udp'>;
}

/** What the aggregation gives (suggest-aggregate.ts; the per-record walk of the tests too). */
export interface Tallied {
  readonly rules: readonly TalliedRule[];
  readonly groups: readonly GroupMembers[];
  readonly book: NameBook;
  readonly proposedGroups: ReadonlyMap<string, SuggestedGroup>;
  readonly proposedNetworks: ReadonlyMap<string, SuggestedNetwork>;
  readonly skips: ReadonlyMap<string, { readonly flows: number; readonly connections: number }>;
  readonly allowedNow: number;
  readonly coveredByEgress: number;
}

const VERDICT_ORDER: readonly FlowVerdict[] = ['allowed', 'denied', 'audit'];

/**
 * The rules that would allow the evidence in `flows` (see the contract above); with
 * `options.top` N > 0, the first N of them (suggest-select.ts), and `leftOut` says what the
 * others carry (with `top` 0, `leftOut` is there and empty).
 */
export function suggestRules(policy: Policy, cluster: ClusterState, flows: readonly ObservedFlow[], options: SuggestOptions = {}): Suggestion {
  const a = aggregate(policy, cluster, flows, options);
  const chosen = chooseRules(a, options.top);
  const rules = chosen.rules.map((r) => ({
    from: chosen.name(r.from),
    to: chosen.name(r.to),
    port: r.port,
    evidence: {
      connections: r.connections,
      bytes: r.bytes,
      flows: r.flows,
      firstSeen: r.first,
      lastSeen: r.last,
      hosts: [...r.hosts].map((h) => a.hostIds[h]!).sort(),
      verdicts: VERDICT_ORDER.filter((_, i) => (r.verdicts & (1 << i)) !== 0),
    },
    protocols: new Set<'tcp' | 'udp'>([...((r.protocols & 1) !== 0 ? ['tcp' as const] : []), ...((r.protocols & 2) !== 0 ? ['udp' as const] : [])]),
  }));
  const s = suggestion(cluster, { ...a, rules, proposedGroups: chosen.groups, proposedNetworks: chosen.networks });
  return chosen.leftOut ? { ...s, leftOut: chosen.leftOut } : s;
}

/** The suggestion of tallied rules: protocols narrowed, ordered by connections, named; the proposed groups and networks the rules use. */
export function suggestion(cluster: ClusterState, t: Tallied): Suggestion {
  const { groups, proposedGroups, proposedNetworks, book } = t;
  // The protocol narrowing of a rule depends on its destination group and port only: once each.
  const membersOf = new Map<string, ReadonlySet<string>>();
  for (const g of groups) if (!membersOf.has(g.name)) membersOf.set(g.name, g.members);
  for (const g of proposedGroups.values()) membersOf.set(g.name, new Set(g.apps));
  const narrowed = new Map<string, 'tcp' | 'udp' | undefined>();
  const index = portIndex(cluster);
  const made: SuggestedRule[] = t.rules.map((r) => {
    const key = `${r.to}\u0001${typeof r.port}\u0001${String(r.port)}\u0001${[...r.protocols].sort().join()}`;
    if (!narrowed.has(key)) narrowed.set(key, narrowProtocol(index, membersOf.get(r.to) ?? new Set(), r.port, r.protocols));
    const protocol = narrowed.get(key);
    return { name: '', from: r.from, to: r.to, port: r.port, ...(protocol ? { protocol } : {}), evidence: r.evidence };
  });
  made.sort((a, b) => byTraffic(a.evidence.connections, b.evidence.connections, a, b));
  const named = made.map((r) => ({ ...r, name: book.rule(`allow-${r.from}-to-${r.to}-${slug(String(r.port))}`) }));
  const skipped = [...t.skips].map(([reason, s]) => ({ reason, flows: s.flows, connections: s.connections })).sort((a, b) => b.connections - a.connections || cmp(a.reason, b.reason));
  const used = new Set(named.flatMap((r) => [r.from, r.to]));
  return {
    groups: [...proposedGroups.values()].filter((g) => used.has(g.name)).sort((a, b) => cmp(a.name, b.name)),
    networks: [...proposedNetworks.values()].filter((n) => used.has(n.name)).sort((a, b) => cmp(a.name, b.name)),
    rules: named,
    skipped,
    allowedNow: t.allowedNow,
    coveredByEgress: t.coveredByEgress,
  };
}

/** Per app id: its apps (the cluster may repeat an id) and, per host port, the port indexes its tasks give it. */
interface PortIndex {
  readonly apps: ReadonlyMap<string, readonly App[]>;
  readonly hostPorts: ReadonlyMap<string, ReadonlyMap<number, ReadonlySet<number>>>;
}

function portIndex(cluster: ClusterState): PortIndex {
  const apps = new Map<string, App[]>();
  for (const a of cluster.apps) {
    const list = apps.get(a.id);
    if (list) list.push(a);
    else apps.set(a.id, [a]);
  }
  const hostPorts = new Map<string, Map<number, Set<number>>>();
  for (const t of cluster.tasks) {
    let byPort = hostPorts.get(t.appId);
    if (!byPort) hostPorts.set(t.appId, (byPort = new Map()));
    t.hostPorts.forEach((hp, i) => {
      let indexes = byPort.get(hp);
      if (!indexes) byPort.set(hp, (indexes = new Set()));
      indexes.add(i);
    });
  }
  return { apps, hostPorts };
}

/**
 * The one protocol seen, when some app of the destination group takes that port with a
 * protocol that was not seen (so the rule does not open it); undefined when the port takes
 * nothing else (or both were seen).
 */
function narrowProtocol(index: PortIndex, members: ReadonlySet<string>, port: string | number, seen: ReadonlySet<'tcp' | 'udp'>): 'tcp' | 'udp' | undefined {
  if (seen.size !== 1) return undefined;
  const only = [...seen][0]!;
  const other = (p: App['ports'][number]) => p.protocols.some((x) => x !== only);
  for (const id of members) {
    const indexes = typeof port === 'string' ? undefined : index.hostPorts.get(id)?.get(port);
    for (const a of index.apps.get(id) ?? []) {
      if (typeof port === 'string' ? a.ports.some((p) => p.name === port && other(p)) : a.ports.some((p, i) => indexes?.has(i) === true && other(p))) return only;
    }
  }
  return undefined;
}
