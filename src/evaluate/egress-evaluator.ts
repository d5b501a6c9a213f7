/**
 * The egress half of the reference evaluator: may a TASK of app A on host X open a new
 * connection to the managed claim (host Y, protocol, host port), judged by X's agent?
 *
 * Contract (/work's issue 10 design, "Semantics"; README "Apps as sources"): the same tier walk as
 * the destination side (policy-walk.ts), except that a `from` peer contains the source when
 *   - `group: G`: A itself is a member of G (not "X runs some task of G");
 *   - `network: N`: X's address of the connection's family is in N. When X has several
 *     addresses of that family the verdict is ALLOW only when it is ALLOW for every one of them
 *     (the kernel may pick any as source); when X has none, its source address is unknown, so
 *     the verdict is ALLOW only when it is ALLOW for every address of the family (tier
 *     `no-address` names that reading; in practice only group and `any` peers can allow);
 *   - `any`: always.
 * A claim is every (protocol, host port) of a valid task port on Y (known host and app, host
 * port 1-65535, port index within the app's ports), except failsafe ports, which are never
 * managed and so never egress-checked. A claim with several owners (a port conflict) is allowed
 * only when every owner's walk allows A. A destination no task claims is not managed: nothing to
 * check. With `defaults.egress: off` there is no egress half at all.
 *
 * Naive on purpose (every question walks the rules and the tasks), independent of src/compile.
 */
import type { App, ClusterState, Task } from '../inventory/cluster-state.js';
import type { PeerRef, Policy, Protocol } from '../policy/policy-model.js';
import type { SourceLocation } from '../diagnostic.js';
import { isMemberAppId, isMemberTaskId } from '../net/member-syntax.js';
import { appModeReading, auditNote } from './group-mode.js';
import {
  appInGroup,
  findApp,
  everyAddressOf,
  hostIps,
  inNetwork,
  ipFamily,
  ipText,
  isFailsafe,
  isTaskPort,
  targetText,
  walkTiers,
  type Ip,
  type WalkResult,
} from './policy-walk.js';

/**
 * `unmanaged`: no task claims the destination port; `off`: `defaults.egress` is off;
 * `no-address`: the source host has no address of the family, and some address of the family is denied;
 * `unmapped`: the source task's ids cannot be named in an egress member, so its agent does not know it.
 */
export type EgressTier = 'failsafe' | 'policy' | 'labels' | 'default' | 'unmanaged' | 'off' | 'no-address' | 'unmapped';

export interface EgressQuery {
  /** The source app A (its tasks are judged, wherever they run). */
  readonly appId: string;
  /** The host X the source task runs on. */
  readonly sourceHostId: string;
  /** The host Y of the destination claim. */
  readonly destHostId: string;
  readonly protocol: Protocol;
  readonly hostPort: number;
  /** The address family of the connection. */
  readonly family: 4 | 6;
  /** The owner (task id, port index) whose verdict to report when every owner allows (explain). */
  readonly prefer?: { readonly taskId: string; readonly portIndex: number };
  /**
   * The source task, when one is judged (explain): a task whose ids cannot stand in an egress
   * member is never named to its agent, which treats it as unmapped (tier `unmapped`).
   */
  readonly sourceTaskId?: string;
}

export interface EgressVerdict {
  readonly appId: string;
  readonly sourceHostId: string;
  readonly family: 4 | 6;
  /** X's addresses of the family, canonical: the walk ran for each. */
  readonly sourceAddresses: readonly string[];
  readonly destHostId: string;
  readonly protocol: Protocol;
  readonly hostPort: number;
  /** Every task port claiming (protocol, host port) on Y, as "<task id>#<port index>", by task id. */
  readonly owners: readonly string[];
  /** The owner whose walk is reported (the first that denies, else the preferred or first one). */
  readonly owner?: string;
  readonly decision: 'allow' | 'deny';
  /** False in audit mode for a deny: the packet is logged (NFLOG pcu-egress), not dropped. */
  readonly enforced: boolean;
  /** The group whose `mode: audit` puts the source app in audit (group-mode.ts), when one does. */
  readonly auditGroup?: string;
  readonly tier: EgressTier;
  readonly rule?: string;
  readonly at?: SourceLocation;
  readonly reason: string;
}

/** Whether the policy has the egress half (`defaults.egress`, default true). */
export function egressEnabled(policy: Policy): boolean {
  return policy.defaults.egress;
}

interface Owner {
  readonly task: Task;
  readonly app: App;
  readonly portIndex: number;
}

function byId(a: Task, b: Task): number {
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/** The task ports on `hostId` that claim (protocol, hostPort), by task id then port index. */
export function claimOwners(cluster: ClusterState, hostId: string, protocol: Protocol, hostPort: number): Owner[] {
  const out: Owner[] = [];
  if (!cluster.hosts.some((h) => h.id === hostId)) return out;
  for (const task of cluster.tasks.filter((t) => t.hostId === hostId).sort(byId)) {
    const app = findApp(cluster, task.appId);
    if (!app) continue;
    for (let i = 0; i < Math.min(task.hostPorts.length, app.ports.length); i++) {
      const p = task.hostPorts[i];
      if (isTaskPort(p) && p === hostPort && app.ports[i]!.protocols.includes(protocol)) out.push({ task, app, portIndex: i });
    }
  }
  return out;
}

/** Does `peer` contain the task of `source` that leaves from address `ip`? */
function egressPeer(policy: Policy, source: App, ip: Ip): (peer: PeerRef) => boolean {
  return (peer) => {
    if (peer.kind === 'any') return true;
    if (peer.kind === 'group') return appInGroup(policy, source, peer.name);
    return inNetwork(policy, ip, peer.name);
  };
}

/** The egress verdict of app A's task on X towards the claim (Y, protocol, host port). */
export function egressVerdict(policy: Policy, cluster: ClusterState, q: EgressQuery): EgressVerdict {
  const source = findApp(cluster, q.appId);
  if (!source) throw new Error(`unknown source app ${q.appId}`);
  for (const h of [q.sourceHostId, q.destHostId]) if (!cluster.hosts.some((x) => x.id === h)) throw new Error(`unknown host ${h}`);
  const ips = hostIps(cluster, q.sourceHostId).filter((ip) => ipFamily(ip) === q.family);
  const owners = claimOwners(cluster, q.destHostId, q.protocol, q.hostPort);
  const ownerName = (o: Owner) => `${o.task.id}#${o.portIndex}`;
  const claim = `${q.protocol} ${q.hostPort} on ${q.destHostId}`;
  const base = {
    appId: q.appId,
    sourceHostId: q.sourceHostId,
    family: q.family,
    sourceAddresses: ips.map(ipText),
    destHostId: q.destHostId,
    protocol: q.protocol,
    hostPort: q.hostPort,
    owners: owners.map(ownerName),
  };
  // Judged at the source in the source app's mode.
  const mode = appModeReading(policy, source);
  const audit = mode.mode === 'audit';
  const verdict = (decision: 'allow' | 'deny', tier: EgressTier, reason: string, extra: Partial<EgressVerdict> = {}): EgressVerdict => ({
    ...base,
    ...extra,
    decision,
    enforced: decision === 'allow' || !audit,
    ...(mode.group !== undefined ? { auditGroup: mode.group } : {}),
    tier,
    reason: decision === 'deny' && audit ? `${reason}${auditNote(mode, 'logged as pcu-egress, would be dropped')}` : reason,
  });

  if (!egressEnabled(policy)) return verdict('allow', 'off', 'defaults.egress is off: the source host does not check its tasks (destination side only).');
  if (q.sourceTaskId !== undefined && !(isMemberAppId(q.appId) && isMemberTaskId(q.sourceTaskId))) {
    return verdict('allow', 'unmapped', `task ${JSON.stringify(q.sourceTaskId)} of ${JSON.stringify(q.appId)}: its ids cannot be named in egress sets (egress-unsafe-id), so its agent treats it as unmapped: host-level with --egress-unmapped host (the default), the destination side judges it.`);
  }
  if (isFailsafe(policy, q.protocol, q.hostPort)) {
    return verdict('allow', 'failsafe', `${q.protocol} ${q.hostPort} is a failsafe port, never managed, so no source host checks it.`);
  }
  if (owners.length === 0) return verdict('allow', 'unmanaged', `no task claims ${claim}: not a managed destination, so no source host checks it.`);
  // No address of the family: the source is unknown, so judge every address of the family.
  const unknownSource = ips.length === 0;
  if (unknownSource) ips.push(...everyAddressOf(policy, q.family));

  // Per owner: the walk of the first address that denies, else of the first address.
  const results = owners.map((owner) => {
    const target = targetText(owner.app, owner.portIndex, q.protocol, q.hostPort, q.destHostId);
    let first: { owner: Owner; ip: Ip; walk: WalkResult } | undefined;
    for (const ip of ips) {
      const who = `app ${source.id} on ${q.sourceHostId} (${ipText(ip)})`;
      const walk = walkTiers({ policy, app: owner.app, portIndex: owner.portIndex, hostPort: q.hostPort, protocol: q.protocol, matches: egressPeer(policy, source, ip), who, target });
      if (walk.decision === 'deny') return { owner, ip, walk };
      first ??= { owner, ip, walk };
    }
    return first!;
  });
  const preferred = (o: Owner) => q.prefer !== undefined && o.task.id === q.prefer.taskId && o.portIndex === q.prefer.portIndex;
  const reported = results.find((r) => r.walk.decision === 'deny') ?? results.find((r) => preferred(r.owner)) ?? results[0];
  const { owner, ip, walk } = reported!;
  const notes: string[] = [];
  if (unknownSource) {
    const note = `${q.sourceHostId} has no IPv${q.family} address in the inventory, so its tasks are allowed only where every IPv${q.family} source would be`;
    if (walk.decision === 'deny') return verdict('deny', 'no-address', `${note}; ${ipText(ip)} would not be: ${walk.reason}`, { owner: ownerName(owner) });
    notes.push(note);
  } else if (walk.decision === 'deny' && ips.length > 1) {
    notes.push(`${ipText(ip)} is one of ${ips.length} IPv${q.family} addresses of ${q.sourceHostId}, and every one must be allowed`);
  }
  if (owners.length > 1) {
    const others = owners.filter((o) => o !== owner).map((o) => `${o.task.id} (${o.app.id})`).join(', ');
    notes.push(`${claim} is claimed by ${owners.length} task ports (port conflict; also ${others}): allowed only when every owner allows`);
  }
  const reason = notes.length === 0 ? walk.reason : `${notes.join('; ')}: ${walk.reason}`;
  return verdict(walk.decision, walk.tier, reason, { owner: ownerName(owner), ...(walk.rule ? { rule: walk.rule.name, at: walk.rule.at } : {}) });
}

export interface EgressCheck {
  readonly appId: string;
  readonly sourceHostId: string;
  readonly destHostId: string;
  readonly protocol: Protocol;
  readonly hostPort: number;
  /** The connection's family; absent = every family in which the destination host has an address. */
  readonly family?: 4 | 6;
}

/**
 * For the compiler's property test: is a task of `appId` on `sourceHostId` allowed by egress to
 * reach (`destHostId`, protocol, host port)? True when there is nothing to check (egress off, a
 * failsafe or unclaimed port). Without `family`, true only when allowed for every family of the
 * destination host's addresses (the compiler lists an `egress-ip<family>` member per address).
 */
export function egressAllowed(policy: Policy, cluster: ClusterState, c: EgressCheck): boolean {
  const families = c.family !== undefined ? [c.family] : [...new Set(hostIps(cluster, c.destHostId).map(ipFamily))];
  return families.every((family) => egressVerdict(policy, cluster, { ...c, family }).decision === 'allow');
}
