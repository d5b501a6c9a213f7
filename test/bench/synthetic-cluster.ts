/**
 * A large, realistically shaped policy and cluster for benchmarks, built directly as model
 * objects (no YAML), deterministic for a given seed.
 *
 * Cluster: `hosts` hosts (one IPv4 address each; every 4th host also has an IPv6 address),
 * `apps` apps spread over teams (`/team-T/app-I`, teams = groups / 3), each with ports `http`
 * (tcp) and `metrics` (tcp), every 5th app also `stats` (udp); `tasks` tasks placed on random
 * hosts with distinct host ports per host (31000 upwards).
 *
 * Policy (the shape of a real one: most rules between small groups, a few broad ones):
 *  - one group per team (`team-T` = `/team-T/*`, ~apps/teams apps), the rest "service" groups of
 *    1-3 app ids each (`svc-G`);
 *  - 90 % of rules: `svc → svc` on http (or metrics), allow (9 in 10) or deny;
 *  - 8 %: `svc → team` or `team → svc` on http;
 *  - 2 % (broad): `team → team` on http, or the `office`/`monitoring` networks to a team on
 *    metrics;
 *  - failsafe tcp/22, default deny, enforce.
 */
import type { App, ClusterState, Host, Task } from '../../src/inventory/cluster-state.js';
import type { GroupDef, NetworkDef, PeerRef, Policy, PortSpec, RuleAction, RuleDef } from '../../src/policy/policy-model.js';
import { seededRandom } from '../support/seeded-random.js';

export interface SyntheticSize {
  readonly hosts: number;
  readonly apps: number;
  readonly tasks: number;
  readonly groups: number;
  readonly rules: number;
}

export const FULL_SIZE: SyntheticSize = { hosts: 1000, apps: 2000, tasks: 20_000, groups: 300, rules: 1000 };


const at = { file: 'synthetic.yaml', line: 1, col: 1 };

export function hostAddress(i: number): string {
  return `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
}

export function hostId(i: number): string {
  return `host-${String(i).padStart(5, '0')}`;
}

function teamCount(size: SyntheticSize): number {
  return Math.max(1, Math.floor(size.groups / 3));
}

export function syntheticHosts(count: number): Host[] {
  const hosts: Host[] = [];
  for (let i = 0; i < count; i++) {
    const v4 = hostAddress(i + 256);
    hosts.push({ id: hostId(i), addresses: i % 4 === 0 ? [v4, `fd00::${(i + 256).toString(16)}`] : [v4] });
  }
  return hosts;
}

export function syntheticCluster(size: SyntheticSize, seed = 1): ClusterState {
  const rand = seededRandom(seed);
  const pick = (n: number) => Math.floor(rand() * n);
  const hosts = syntheticHosts(size.hosts);
  const teams = teamCount(size);
  const apps: App[] = [];
  for (let i = 0; i < size.apps; i++) {
    apps.push({
      id: `/team-${i % teams}/app-${i}`,
      labels: { team: `team-${i % teams}` },
      networkMode: rand() < 0.5 ? 'host' : 'bridge',
      ports: [
        { name: 'http', protocols: ['tcp'], labels: {} },
        { name: 'metrics', protocols: ['tcp'], labels: {} },
        ...(i % 5 === 0 ? [{ name: 'stats', protocols: ['udp' as const], labels: {} }] : []),
      ],
    });
  }
  const nextPort = new Map<string, number>();
  const tasks: Task[] = [];
  for (let i = 0; i < size.tasks; i++) {
    const app = apps[i % apps.length]!;
    const host = hosts[pick(hosts.length)]!;
    const base = nextPort.get(host.id) ?? 31000;
    nextPort.set(host.id, base + app.ports.length);
    // Marathon task ids: the app id without its leading slash, slashes as underscores, then ".<n>" (member-safe).
    tasks.push({ id: `${app.id.slice(1).replaceAll("/", "_")}.${i}`, appId: app.id, hostId: host.id, hostPorts: app.ports.map((_, k) => base + k) });
  }
  return { hosts, apps, tasks };
}

export function syntheticPolicy(size: SyntheticSize, seed = 2): Policy {
  const rand = seededRandom(seed);
  const pick = (n: number) => Math.floor(rand() * n);
  const teams = teamCount(size);
  const groups: GroupDef[] = [];
  const svc: string[] = [];
  const team: string[] = [];
  for (let t = 0; t < teams; t++) {
    groups.push({ name: `team-${t}`, apps: [`/team-${t}/*`], labels: {}, at });
    team.push(`team-${t}`);
  }
  for (let g = teams; g < size.groups; g++) {
    const ids = Array.from({ length: 1 + pick(3) }, () => {
      const app = pick(size.apps);
      return `/team-${app % teams}/app-${app}`;
    });
    groups.push({ name: `svc-${g}`, apps: [...new Set(ids)].sort(), labels: {}, at });
    svc.push(`svc-${g}`);
  }
  const networks: NetworkDef[] = [
    { name: 'office', cidrs: ['172.16.0.0/12', 'fd10::/64'], except: ['172.16.13.0/24'], at },
    { name: 'monitoring', cidrs: ['192.168.50.0/28'], except: [], at },
  ];
  const one = (list: readonly string[]) => list[pick(list.length)] ?? team[0]!;
  const g = (name: string): PeerRef => ({ kind: 'group', name });
  const named = (name: string): PortSpec[] => [{ kind: 'name', name }];
  const rules: RuleDef[] = [];
  for (let i = 0; i < size.rules; i++) {
    const r = rand();
    let from: PeerRef[];
    let to: string;
    let ports: PortSpec[];
    let action: RuleAction = 'allow';
    if (r < 0.9) {
      from = [g(one(svc))];
      to = one(svc);
      ports = named(rand() < 0.8 ? 'http' : 'metrics');
      action = rand() < 0.9 ? 'allow' : 'deny';
    } else if (r < 0.98) {
      const outward = rand() < 0.5;
      from = [g(outward ? one(team) : one(svc))];
      to = outward ? one(svc) : one(team);
      ports = named('http');
    } else if (rand() < 0.5) {
      from = [g(one(team))];
      to = one(team);
      ports = named('http');
    } else {
      from = [{ kind: 'network', name: rand() < 0.5 ? 'office' : 'monitoring' }];
      to = one(team);
      ports = named('metrics');
    }
    rules.push({ name: `rule-${i}`, from, to: [to], ports, protocols: null, action, at });
  }
  return {
    defaults: { mode: 'enforce', action: 'deny', failsafe: [{ protocol: 'tcp', port: 22 }], egress: true },
    networks,
    groups,
    rules,
    guardrails: { sources: null, targets: null, deny: [] },
  };
}

/** Allow-set members summed over all hosts (the size of what the agents write). */
export function allowMemberCount(states: Iterable<{ readonly sets: Readonly<Record<string, readonly string[]>> }>): number {
  let n = 0;
  for (const s of states) n += s.sets['allow-ip4']!.length + s.sets['allow-net4']!.length + s.sets['allow-ip6']!.length + s.sets['allow-net6']!.length;
  return n;
}
