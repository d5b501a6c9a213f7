/**
 * Test support for checking compiled states:
 * - `compiledVerdict`: reads a DesiredState the way the kernel would (managed? failsafe? source in
 *   an allow member?), with ip-num containment, independent of src/compile/address-set.ts;
 * - fast-check arbitraries of small random policies and clusters (`scenarioArb`);
 * - a seeded generator of large clusters for the compile smoke/benchmark (`largeScenario`).
 */
import fc from 'fast-check';
import { IPv4, IPv4CidrRange, IPv6, IPv6CidrRange } from 'ip-num';
import type { DesiredState } from '../../src/compile/desired-state.js';
import type { App, ClusterState, Host, Task } from '../../src/inventory/cluster-state.js';
import type { GroupDef, PeerRef, Policy, PortSpec, Protocol, RuleDef } from '../../src/policy/policy-model.js';
import { ALLOW_FROM_LABEL } from '../../src/policy/policy-model.js';
import { seededRandom } from './seeded-random.js';

type Ip = IPv4 | IPv6;
function parseIp(text: string): Ip {
  return text.includes(':') ? IPv6.fromString(text) : IPv4.fromDecimalDottedString(text);
}

/** 'unmanaged' = the kernel does not filter this port (no task owns it, or failsafe). */
export function compiledVerdict(
  state: DesiredState,
  source: string,
  protocol: Protocol,
  port: number,
): 'allow' | 'deny' | 'unmanaged' {
  const p = String(port);
  if (state.sets[`failsafe-${protocol}`].includes(p)) return 'unmanaged';
  if (!state.sets[`managed-${protocol}`].includes(p)) return 'unmanaged';
  const ip = parseIp(source);
  const v6 = ip instanceof IPv6;
  const suffix = `,${protocol}:${port}`;
  const members = (kind: 'allow-ip4' | 'allow-net4' | 'allow-ip6' | 'allow-net6') =>
    state.sets[kind].filter((m) => m.endsWith(suffix)).map((m) => m.slice(0, -suffix.length));
  for (const a of members(v6 ? 'allow-ip6' : 'allow-ip4')) {
    if (parseIp(a).value === ip.value) return 'allow';
  }
  for (const c of members(v6 ? 'allow-net6' : 'allow-net4')) {
    const inside = v6 ? IPv6CidrRange.fromCidr(c).contains(ip as IPv6) : IPv4CidrRange.fromCidr(c).contains(ip as IPv4);
    if (inside) return 'allow';
  }
  return 'deny';
}

// ---- small random scenarios (property test) ----

export interface Scenario {
  readonly policy: Policy;
  readonly cluster: ClusterState;
}

const AT = { file: 'random.yaml', line: 1, col: 1 };
const GROUPS = ['g0', 'g1', 'g2', 'g3'];
const NETWORKS = ['n0', 'n1', 'n2'];
const PORT_NAMES = ['http', 'admin', 'dns'];
const APP_IDS = ['/a/web', '/a/api', '/b/db', '/b/cache', '/c/job'];
const HOST_PORTS = [22, 80, 31000, 31001, 31002, 31005, 31010];

const v4Net = fc
  .tuple(fc.constantFrom(10, 192), fc.integer({ min: 0, max: 3 }), fc.constantFrom(8, 16, 24, 28, 32, 0))
  .map(([a, b, len]) => {
    const value = ((a << 24) | (b << 16)) >>> 0;
    const masked = len === 0 ? 0 : (value & (~0 << (32 - len))) >>> 0;
    return IPv4CidrRange.fromCidr(`${IPv4.fromNumber(masked).toString()}/${len}`).toCidrString();
  });
const v6Net = fc.constantFrom('fd00::/16', 'fd00::/64', 'fd00::1:0/112', 'fd00::1:1/128', '2001:db8::/32');
const exceptV4 = fc.constantFrom('10.0.0.0/24', '10.0.0.2/32', '192.0.0.0/16', '10.1.0.0/16');
const exceptV6 = fc.constantFrom('fd00::1:0/120', 'fd00::1:1/128');

const peerArb: fc.Arbitrary<PeerRef> = fc.oneof(
  { weight: 1, arbitrary: fc.constant<PeerRef>({ kind: 'any' }) },
  { weight: 3, arbitrary: fc.constantFrom(...GROUPS).map((name): PeerRef => ({ kind: 'group', name })) },
  { weight: 2, arbitrary: fc.constantFrom(...NETWORKS).map((name): PeerRef => ({ kind: 'network', name })) },
);
const portSpecArb: fc.Arbitrary<PortSpec> = fc.oneof(
  fc.constantFrom(...HOST_PORTS).map((port): PortSpec => ({ kind: 'number', port })),
  fc.tuple(fc.constantFrom(...HOST_PORTS), fc.integer({ min: 0, max: 10 })).map(([from, w]): PortSpec => ({ kind: 'range', from, to: from + w })),
  fc.constantFrom(...PORT_NAMES).map((name): PortSpec => ({ kind: 'name', name })),
);
const protocolsArb = fc.constantFrom<readonly Protocol[] | null>(null, null, ['tcp'], ['udp'], ['tcp', 'udp']);
const labelValueArb = fc.subarray([...GROUPS, ...NETWORKS, 'any', 'nope'], { maxLength: 3 }).map((xs) => xs.join(', '));

export const scenarioArb: fc.Arbitrary<Scenario> = fc
  .record({
    hostCount: fc.integer({ min: 1, max: 5 }),
    hostV6: fc.array(fc.boolean(), { minLength: 5, maxLength: 5 }),
    hostNoAddr: fc.array(fc.boolean(), { minLength: 5, maxLength: 5 }),
    /** A second IPv4 address (egress: a network peer must then hold both). */
    hostV4b: fc.array(fc.boolean(), { minLength: 5, maxLength: 5 }),
    networks: fc.tuple(
      ...NETWORKS.map(() =>
        fc.record({
          cidrs: fc.array(fc.oneof(v4Net, v6Net), { minLength: 1, maxLength: 3 }),
          except: fc.array(fc.oneof(exceptV4, exceptV6), { maxLength: 2 }),
        }),
      ),
    ),
    groups: fc.tuple(
      ...GROUPS.map(() =>
        fc.record({
          apps: fc.subarray(['/a/*', '/b/**', '/a/web', '/c/job', '/x/*'], { maxLength: 2 }),
          tier: fc.constantFrom<string | undefined>(undefined, 'front', 'back'),
        }),
      ),
    ),
    rules: fc.array(
      fc.record({
        action: fc.constantFrom('allow', 'deny', 'pass') as fc.Arbitrary<'allow' | 'deny' | 'pass'>,
        from: fc.array(peerArb, { minLength: 1, maxLength: 2 }),
        to: fc.subarray(GROUPS, { minLength: 1, maxLength: 2 }),
        ports: fc.array(portSpecArb, { maxLength: 2 }),
        protocols: protocolsArb,
      }),
      { maxLength: 6 },
    ),
    guardSources: fc.option(fc.array(peerArb, { maxLength: 3 })),
    guardTargets: fc.option(fc.subarray(GROUPS, { maxLength: 2 })),
    guardDeny: fc.array(fc.record({ from: fc.array(peerArb, { minLength: 1, maxLength: 2 }), to: fc.subarray(GROUPS, { minLength: 1, maxLength: 2 }) }), { maxLength: 2 }),
    defaultAction: fc.constantFrom('allow', 'deny') as fc.Arbitrary<'allow' | 'deny'>,
    mode: fc.constantFrom('enforce', 'audit') as fc.Arbitrary<'enforce' | 'audit'>,
    egress: fc.oneof({ weight: 4, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
    failsafe: fc.subarray([{ protocol: 'tcp' as Protocol, port: 22 }, { protocol: 'udp' as Protocol, port: 31005 }]),
    apps: fc.tuple(
      ...APP_IDS.map(() =>
        fc.record({
          tier: fc.constantFrom<string | undefined>(undefined, 'front', 'back'),
          label: fc.option(labelValueArb),
          ports: fc.array(
            fc.record({
              name: fc.option(fc.constantFrom(...PORT_NAMES)),
              protocols: fc.constantFrom<Protocol[]>(['tcp'], ['udp'], ['tcp', 'udp']),
              label: fc.option(labelValueArb, { freq: 3 }),
            }),
            { minLength: 1, maxLength: 2 },
          ),
        }),
      ),
    ),
    tasks: fc.array(
      fc.record({ app: fc.integer({ min: 0, max: APP_IDS.length - 1 }), host: fc.integer({ min: 0, max: 4 }), ports: fc.array(fc.constantFrom(...HOST_PORTS), { minLength: 2, maxLength: 2 }) }),
      { maxLength: 8 },
    ),
  })
  .map((r): Scenario => {
    const hosts: Host[] = Array.from({ length: r.hostCount }, (_, i) => ({
      id: `h${i}`,
      addresses: r.hostNoAddr[i] && i > 0 ? [] : [`10.0.${i}.${i + 1}`, ...(r.hostV4b[i] ? [`10.1.${i}.9`] : []), ...(r.hostV6[i] ? [`fd00::1:${i}`] : [])],
    }));
    const apps: App[] = APP_IDS.map((id, i) => {
      const a = r.apps[i]!;
      const labels: Record<string, string> = {};
      if (a.tier) labels['tier'] = a.tier;
      if (a.label !== null) labels[ALLOW_FROM_LABEL] = a.label;
      return {
        id,
        labels,
        networkMode: 'host',
        ports: a.ports.map((p) => ({
          ...(p.name !== null ? { name: p.name } : {}),
          protocols: p.protocols,
          labels: (p.label !== null ? { [ALLOW_FROM_LABEL]: p.label } : {}) as Record<string, string>,
        })),
      };
    });
    const tasks: Task[] = r.tasks.map((t, i) => ({
      // Every seventh task id is not member-safe (left out of egress-task, reported).
      id: i % 7 === 6 ? `t ${i}` : `t${i}`,
      appId: APP_IDS[t.app]!,
      hostId: `h${t.host % r.hostCount}`,
      hostPorts: t.ports,
    }));
    const rules: RuleDef[] = r.rules.map((x, i) => ({ name: `r${i}`, ...x, at: { ...AT, line: i + 1 } }));
    return {
      cluster: { hosts, apps, tasks },
      policy: {
        defaults: { mode: r.mode, action: r.defaultAction, failsafe: r.failsafe, egress: r.egress },
        networks: NETWORKS.map((name, i) => ({ name, ...r.networks[i]!, at: AT })),
        groups: GROUPS.map((name, i) => {
          const g = r.groups[i]!;
          const labels: Record<string, string> = g.tier ? { tier: g.tier } : {};
          return { name, apps: g.apps.length === 0 && !g.tier ? ['/a/web'] : g.apps, labels, at: AT };
        }),
        rules,
        guardrails: {
          sources: r.guardSources,
          targets: r.guardTargets,
          deny: r.guardDeny.map((d) => ({ ...d, at: AT })),
        },
      },
    };
  });

// ---- large seeded scenario (smoke / benchmark) ----


export interface LargeScenarioSize {
  readonly hosts: number;
  readonly tasks: number;
  readonly apps: number;
  readonly groups: number;
  readonly rules: number;
  readonly seed?: number;
}

/**
 * Apps `/team-<k>/app-<j>` (10 tasks each on random hosts), one group per team (every tenth also
 * narrowed by a label), rules from one group (sometimes plus a network) to another, 10% of apps
 * with an allow-from label; a quarter of the hosts also have an IPv6 address.
 */
export function largeScenario(size: LargeScenarioSize): Scenario {
  const rnd = seededRandom(size.seed ?? 1);
  const pick = (n: number) => Math.floor(rnd() * n);
  const hosts: Host[] = Array.from({ length: size.hosts }, (_, i) => ({
    id: `host-${String(i).padStart(5, '0')}`,
    addresses: [`10.${(i >> 8) & 255}.${i & 255}.1`, ...(i % 4 === 0 ? [`fd00::${i.toString(16)}:1`] : [])],
  }));
  const teams = size.groups;
  const apps: App[] = Array.from({ length: size.apps }, (_, i) => ({
    id: `/team-${i % teams}/app-${i}`,
    labels: { tier: ['front', 'back', 'data'][i % 3]!, ...(i % 10 === 0 ? { [ALLOW_FROM_LABEL]: `group-${pick(teams)}` } : {}) },
    networkMode: i % 2 === 0 ? 'host' : 'bridge',
    ports: [
      { name: 'http', protocols: ['tcp'], containerPort: 8080, labels: {} },
      { name: 'metrics', protocols: ['tcp'], labels: {} },
      ...(i % 7 === 0 ? [{ name: 'dns', protocols: ['tcp', 'udp'] as Protocol[], labels: {} }] : []),
    ],
  }));
  const nextPort = new Map<string, number>();
  const tasks: Task[] = Array.from({ length: size.tasks }, (_, i) => {
    const app = apps[i % apps.length]!;
    const hostId = hosts[pick(hosts.length)]!.id;
    const base = nextPort.get(hostId) ?? 31000;
    nextPort.set(hostId, base + app.ports.length);
    return { id: `${app.id}.${i}`, appId: app.id, hostId, hostPorts: app.ports.map((_, k) => base + k) };
  });
  const groups: GroupDef[] = Array.from({ length: size.groups }, (_, g) => ({
    name: `group-${g}`,
    apps: [`/team-${g}/*`],
    labels: (g % 10 === 9 ? { tier: 'data' } : {}) as Record<string, string>,
    at: AT,
  }));
  const actions = ['allow', 'allow', 'allow', 'deny', 'pass'] as const;
  const rules: RuleDef[] = Array.from({ length: size.rules }, (_, i) => ({
    name: `rule-${i}`,
    action: actions[pick(actions.length)]!,
    from: [{ kind: 'group', name: `group-${pick(teams)}` }, ...(i % 5 === 0 ? [{ kind: 'network' as const, name: 'office' }] : [])],
    to: [`group-${pick(teams)}`],
    ports: i % 3 === 0 ? [] : i % 3 === 1 ? [{ kind: 'name', name: 'http' }] : [{ kind: 'range', from: 31000, to: 31100 }],
    protocols: null,
    at: { ...AT, line: i + 1 },
  }));
  return {
    cluster: { hosts, apps, tasks },
    policy: {
      defaults: { mode: 'enforce', action: 'deny', failsafe: [{ protocol: 'tcp', port: 22 }], egress: false },
      networks: [{ name: 'office', cidrs: ['192.168.0.0/16', 'fd99::/16'], except: ['192.168.66.0/24'], at: AT }],
      groups,
      rules,
      guardrails: { sources: null, targets: null, deny: [] },
    },
  };
}
