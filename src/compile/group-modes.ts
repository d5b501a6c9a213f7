/**
 * Per-group mode (`groups.<name>.mode`, staged rollout; issue 11): the compiler's one reading of
 * it, used by both compile paths (compile.ts and the incremental compiler, through host-claims.ts
 * and host-patch.ts).
 *
 * Rules (README "Policy format", docs/architecture.md "Semantics"):
 *  - an app's mode: when some group containing it has an explicit `mode`, `audit` if any of those
 *    says audit (audit wins: a group being staged is never enforced because the app is also in an
 *    enforcing group), else `enforce`; with no explicit mode among its groups, `defaults.mode`;
 *  - a claim (host, protocol, host port) is in audit only when every owner is (a port shared by
 *    an audited and an enforced app enforces: the enforced app asked for it);
 *  - egress: a connection is judged at its source in the source app's mode.
 * Per host, over its claims and (egress on) its local apps, the apps of `egress-task`:
 *  - none at all → `defaults.mode`, no audit member;
 *  - all audit → mode `audit`; all enforce → mode `enforce`; no audit member either way, so with
 *    no explicit group mode anywhere a state is byte for byte (version too) what it was before;
 *  - mixed → mode `enforce`, `audit-tcp` / `audit-udp` = the ports of the audited claims,
 *    `egress-audit` = the local apps in audit.
 * `GroupModes.of(policy)` is undefined when no group has a mode: then every host takes
 * `defaults.mode` and nothing here runs.
 */
import type { App } from '../inventory/cluster-state.js';
import { groupMatcher } from '../policy/app-selector.js';
import type { Mode, Policy, Protocol } from '../policy/policy-model.js';
import type { AuditKind } from './desired-state.js';
import { egressAppOf } from '../net/member-syntax.js';

/** A host's claim as the mode sees it: audited when every owner is. */
export interface ModeClaim {
  readonly protocol: Protocol;
  readonly port: number;
  readonly audit: boolean;
}

/** A host's mode and its audit lists (sorted, empty unless mixed). */
export interface HostMode {
  readonly mode: Mode;
  readonly sets: Readonly<Record<AuditKind, readonly string[]>>;
}

const NONE: readonly string[] = Object.freeze([]);
const UNIFORM = { 'audit-tcp': NONE, 'audit-udp': NONE, 'egress-audit': NONE } as const;

export class GroupModes {
  private constructor(
    private readonly defaultMode: Mode,
    private readonly modeOf: ReadonlyMap<string, Mode>,
  ) {}

  /** The policy's group modes; undefined when no group has one (every host: defaults.mode). */
  static of(policy: Pick<Policy, 'defaults' | 'groups'>): GroupModes | undefined {
    const modeOf = new Map<string, Mode>();
    for (const g of policy.groups) if (g.mode !== undefined) modeOf.set(g.name, g.mode);
    return modeOf.size === 0 ? undefined : new GroupModes(policy.defaults.mode, modeOf);
  }

  /** The mode of an app in `groups` (its groups' names), per the rules of the header. */
  appMode(groups: readonly string[]): Mode {
    let explicit = false;
    for (const name of groups) {
      const m = this.modeOf.get(name);
      if (m === 'audit') return 'audit';
      if (m === 'enforce') explicit = true;
    }
    return explicit ? 'enforce' : this.defaultMode;
  }

  /**
   * A host's mode and audit lists from its claims and its `egress-task` members (whose apps'
   * modes `appAudit` gives).
   */
  host(claims: readonly ModeClaim[], egressTask: readonly string[], appAudit: (appId: string) => boolean): HostMode {
    const ports = { tcp: [] as number[], udp: [] as number[] };
    let enforced = 0;
    for (const c of claims) {
      if (c.audit) ports[c.protocol].push(c.port);
      else enforced++;
    }
    const apps: string[] = [];
    let last: string | undefined;
    for (const member of egressTask) {
      const appId = egressAppOf(member);
      if (appId === last) continue; // egress-task is sorted: an app's tasks are adjacent
      last = appId;
      if (appAudit(appId)) apps.push(appId);
      else enforced++;
    }
    const audited = ports.tcp.length + ports.udp.length + apps.length;
    if (audited === 0) return { mode: enforced === 0 ? this.defaultMode : 'enforce', sets: UNIFORM };
    if (enforced === 0) return { mode: 'audit', sets: UNIFORM };
    const text = (list: number[]) => [...new Set(list.map(String))].sort();
    return { mode: 'enforce', sets: { 'audit-tcp': text(ports.tcp), 'audit-udp': text(ports.udp), 'egress-audit': [...new Set(apps)].sort() } };
  }
}

/** A group with an explicit mode, and how many apps of the cluster it selects (/status `groupModes`). */
export interface GroupModeInfo {
  readonly group: string;
  readonly mode: Mode;
  readonly apps: number;
}

/** The groups with an explicit mode, in policy order (by name), with their app counts among `apps`. */
export function groupModeInfo(policy: Pick<Policy, 'groups'>, apps: readonly Pick<App, 'id' | 'labels'>[]): GroupModeInfo[] {
  const moded = policy.groups.filter((g) => g.mode !== undefined);
  if (moded.length === 0) return [];
  const count = new Map(moded.map((g) => [g.name, 0]));
  const groupsOf = groupMatcher({ groups: moded });
  const seen = new Set<string>();
  for (const app of apps) {
    if (seen.has(app.id)) continue; // the first definition of an id wins (cluster-index.ts)
    seen.add(app.id);
    for (const g of groupsOf(app)) count.set(g, count.get(g)! + 1);
  }
  return moded.map((g) => ({ group: g.name, mode: g.mode!, apps: count.get(g.name)! }));
}
