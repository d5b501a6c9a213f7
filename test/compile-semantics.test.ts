/**
 * Compile semantics, table-driven: each case is a small policy over one shared cluster and a list
 * of (source, host, protocol, port) checks. Every check is asserted twice: on the compiled sets
 * (read like the kernel would, see compiledVerdict) and on the reference evaluator's verdict.
 */
import { describe, expect, it } from 'vitest';
import { compile, type CompileReportKind } from '../src/compile/compile.js';
import { SET_KINDS } from '../src/compile/desired-state.js';
import { evaluateConnection, type Tier } from '../src/evaluate/reference-evaluator.js';
import type { ClusterState } from '../src/inventory/cluster-state.js';
import { ALLOW_FROM_LABEL, type Protocol } from '../src/policy/policy-model.js';
import { app, cluster, group, host, network, policy, task, type PolicyInput } from './support/policy-builder.js';
import { compiledVerdict } from './support/random-cluster.js';

const L = ALLOW_FROM_LABEL;
const WEB = '10.0.1.1';
const WEB6 = 'fd00::1:1';
const API = '10.0.2.1';
const DB = '10.0.3.1';

function baseCluster(apiLabels: Record<string, string> = {}, metricsLabels: Record<string, string> = {}): ClusterState {
  return cluster(
    [host('h-web', WEB, WEB6), host('h-api', API, 'fd00::2:1'), host('h-db', DB), host('h-empty')],
    [
      app('/shop/web', [{ name: 'http' }]),
      app(
        '/shop/api',
        [{ name: 'http' }, { name: 'metrics', labels: metricsLabels }, { name: 'dns', protocols: ['tcp', 'udp'] }],
        apiLabels,
      ),
      app('/shop/db', [{ name: 'pg', containerPort: 5432 }], {}, 'bridge'),
    ],
    [
      task('web.1', '/shop/web', 'h-web', [31000]),
      task('api.1', '/shop/api', 'h-api', [31001, 31002, 31053]),
      task('db.1', '/shop/db', 'h-db', [31003]),
    ],
  );
}

const groups = [group('web', ['/shop/web']), group('api', ['/shop/api']), group('db', ['/shop/db'])];
const networks = [network('office', ['192.168.0.0/16'], ['192.168.66.0/24']), network('office6', ['fd99::/16'])];

type Expect = 'allow' | 'deny' | 'unmanaged';
interface Check {
  readonly from: string;
  readonly host?: string;
  readonly port: number;
  readonly proto?: Protocol;
  readonly expect: Expect;
  readonly tier?: Tier;
}
interface Case {
  readonly name: string;
  readonly policy: PolicyInput;
  readonly cluster?: ClusterState;
  readonly checks: readonly Check[];
  readonly reports?: readonly CompileReportKind[];
}

const allowWebApi = { action: 'allow', from: ['web'], to: ['api'] } as const;
const denyWebApi = { action: 'deny', from: ['web'], to: ['api'] } as const;
const passAnyApi = { action: 'pass', from: ['any'], to: ['api'] } as const;

const cases: Case[] = [
  {
    name: 'allow rule: web may reach api, others fall to the default deny',
    policy: { rules: [allowWebApi] },
    checks: [
      { from: WEB, port: 31001, expect: 'allow', tier: 'policy' },
      { from: DB, port: 31001, expect: 'deny', tier: 'default' },
      { from: '8.8.8.8', port: 31001, expect: 'deny' },
    ],
  },
  { name: 'first match: deny before allow wins', policy: { rules: [denyWebApi, allowWebApi] }, checks: [{ from: WEB, port: 31001, expect: 'deny', tier: 'policy' }] },
  { name: 'first match: allow before deny wins', policy: { rules: [allowWebApi, denyWebApi] }, checks: [{ from: WEB, port: 31001, expect: 'allow', tier: 'policy' }] },
  {
    name: 'pass goes to the labels tier',
    policy: { rules: [passAnyApi] },
    cluster: baseCluster({ [L]: 'db' }),
    checks: [
      { from: DB, port: 31001, expect: 'allow', tier: 'labels' },
      { from: WEB, port: 31001, expect: 'deny', tier: 'default' },
    ],
  },
  {
    name: 'pass goes to the default (allow)',
    policy: { action: 'allow', rules: [passAnyApi, { action: 'deny', from: ['any'], to: ['api'] }] },
    checks: [{ from: WEB, port: 31001, expect: 'allow', tier: 'default' }],
  },
  {
    name: 'label allow without any rule; other peers denied',
    policy: {},
    cluster: baseCluster({ [L]: 'web, office' }),
    checks: [
      { from: WEB, port: 31001, expect: 'allow', tier: 'labels' },
      { from: WEB6, port: 31002, expect: 'allow', tier: 'labels' },
      { from: '192.168.1.1', port: 31053, proto: 'udp', expect: 'allow' },
      { from: DB, port: 31001, expect: 'deny' },
    ],
  },
  {
    name: 'label cannot override a policy deny',
    policy: { rules: [denyWebApi] },
    cluster: baseCluster({ [L]: 'web' }),
    checks: [{ from: WEB, port: 31001, expect: 'deny', tier: 'policy' }],
  },
  {
    name: 'label rejected by guardrails.deny (and reported)',
    policy: { guardrails: { deny: [{ from: ['web'], to: ['api'] }] } },
    cluster: baseCluster({ [L]: 'web, db' }),
    checks: [
      { from: WEB, port: 31001, expect: 'deny' },
      { from: DB, port: 31001, expect: 'allow', tier: 'labels' },
    ],
    reports: ['label-rejected'],
  },
  {
    name: 'guardrails.deny from any rejects every declaration for the target',
    policy: { guardrails: { deny: [{ from: ['any'], to: ['api'] }] } },
    cluster: baseCluster({ [L]: 'web, db' }),
    checks: [
      { from: WEB, port: 31001, expect: 'deny' },
      { from: DB, port: 31001, expect: 'deny' },
    ],
    reports: ['label-rejected', 'label-rejected'],
  },
  {
    name: 'label rejected by guardrails.sources',
    policy: { guardrails: { sources: ['net:office'] } },
    cluster: baseCluster({ [L]: 'web, office' }),
    checks: [
      { from: WEB, port: 31001, expect: 'deny' },
      { from: '192.168.0.9', port: 31001, expect: 'allow', tier: 'labels' },
    ],
    reports: ['label-rejected'],
  },
  {
    name: "label 'any' is rejected unless guardrails.sources lists it",
    policy: {},
    cluster: baseCluster({ [L]: 'any' }),
    checks: [{ from: '8.8.8.8', port: 31001, expect: 'deny' }],
    reports: ['label-rejected'],
  },
  {
    name: "label 'any' applies when guardrails.sources lists it",
    policy: { guardrails: { sources: ['any'] } },
    cluster: baseCluster({ [L]: 'any' }),
    checks: [{ from: '8.8.8.8', port: 31001, expect: 'allow', tier: 'labels' }, { from: '2001:db8::1', port: 31002, expect: 'allow' }],
  },
  {
    name: 'label rejected by guardrails.targets',
    policy: { guardrails: { targets: ['db'] } },
    cluster: baseCluster({ [L]: 'web' }),
    checks: [{ from: WEB, port: 31001, expect: 'deny' }],
    reports: ['label-rejected'],
  },
  {
    name: 'label naming an unknown peer is reported, not applied',
    policy: {},
    cluster: baseCluster({ [L]: 'nobody' }),
    checks: [{ from: WEB, port: 31001, expect: 'deny' }],
    reports: ['label-unknown-name'],
  },
  {
    name: 'port-definition label only affects its port',
    policy: {},
    cluster: baseCluster({}, { [L]: 'web' }),
    checks: [
      { from: WEB, port: 31002, expect: 'allow', tier: 'labels' },
      { from: WEB, port: 31001, expect: 'deny' },
    ],
  },
  {
    name: 'named ports',
    policy: { rules: [{ ...allowWebApi, ports: ['metrics'] }] },
    checks: [
      { from: WEB, port: 31002, expect: 'allow' },
      { from: WEB, port: 31001, expect: 'deny' },
    ],
  },
  {
    name: 'numeric host ports',
    policy: { rules: [{ ...allowWebApi, ports: [31001] }] },
    checks: [
      { from: WEB, port: 31001, expect: 'allow' },
      { from: WEB, port: 31002, expect: 'deny' },
    ],
  },
  {
    name: 'port ranges compare with the host port',
    policy: { rules: [{ ...allowWebApi, ports: [[31000, 31002]] }] },
    checks: [
      { from: WEB, port: 31002, expect: 'allow' },
      { from: WEB, port: 31053, expect: 'deny' },
    ],
  },
  {
    name: 'protocol filter',
    policy: { rules: [{ ...allowWebApi, ports: ['dns'], protocols: ['udp'] }] },
    checks: [
      { from: WEB, port: 31053, proto: 'udp', expect: 'allow' },
      { from: WEB, port: 31053, proto: 'tcp', expect: 'deny' },
    ],
  },
  {
    name: 'a rule without protocols covers tcp and udp of a port',
    policy: { rules: [{ ...allowWebApi, ports: ['dns'] }] },
    checks: [
      { from: WEB, port: 31053, proto: 'udp', expect: 'allow' },
      { from: WEB, port: 31053, proto: 'tcp', expect: 'allow' },
      { from: WEB, port: 31001, proto: 'udp', expect: 'unmanaged' },
    ],
  },
  {
    name: 'network with except',
    policy: { rules: [{ action: 'allow', from: ['net:office'], to: ['api'] }] },
    checks: [
      { from: '192.168.1.1', port: 31001, expect: 'allow' },
      { from: '192.168.0.0', port: 31001, expect: 'allow' },
      { from: '192.168.255.255', port: 31001, expect: 'allow' },
      { from: '192.168.66.5', port: 31001, expect: 'deny' },
      { from: '192.168.65.255', port: 31001, expect: 'allow' },
      { from: '192.169.0.1', port: 31001, expect: 'deny' },
    ],
  },
  {
    name: 'IPv6 sources: group host addresses and v6 networks',
    policy: { rules: [allowWebApi, { action: 'allow', from: ['net:office6'], to: ['api'] }] },
    checks: [
      { from: WEB6, port: 31001, expect: 'allow' },
      { from: 'fd00::2:1', port: 31001, expect: 'deny' },
      { from: 'fd99::5', port: 31001, expect: 'allow' },
      { from: 'fd98::5', port: 31001, expect: 'deny' },
    ],
  },
  {
    name: 'default allow with a deny rule (complement)',
    policy: { action: 'allow', rules: [denyWebApi] },
    checks: [
      { from: WEB, port: 31001, expect: 'deny' },
      { from: WEB6, port: 31001, expect: 'deny' },
      { from: DB, port: 31001, expect: 'allow', tier: 'default' },
      { from: '0.0.0.0', port: 31001, expect: 'allow' },
      { from: '255.255.255.255', port: 31001, expect: 'allow' },
      { from: '2001:db8::1', port: 31001, expect: 'allow' },
      { from: WEB, host: 'h-db', port: 31003, expect: 'allow' },
    ],
  },
  {
    name: 'failsafe beats deny (the port is not managed)',
    policy: { failsafe: [{ protocol: 'tcp', port: 31001 }], rules: [{ action: 'deny', from: ['any'], to: ['api'] }] },
    checks: [
      { from: WEB, port: 31001, expect: 'unmanaged', tier: 'failsafe' },
      { from: WEB, port: 31002, expect: 'deny' },
    ],
  },
  {
    name: 'audit mode keeps the sets (deny is logged by the kernel, not dropped)',
    policy: { mode: 'audit', rules: [allowWebApi] },
    checks: [
      { from: WEB, port: 31001, expect: 'allow' },
      { from: DB, port: 31001, expect: 'deny' },
    ],
  },
];

/** The destination task port on `host` with `port`/`proto` in the cluster. */
function findTaskPort(c: ClusterState, hostId: string, port: number, proto: Protocol) {
  for (const t of c.tasks) {
    if (t.hostId !== hostId) continue;
    const a = c.apps.find((x) => x.id === t.appId)!;
    const i = t.hostPorts.findIndex((p, k) => p === port && a.ports[k]?.protocols.includes(proto));
    if (i >= 0) return { task: t, portIndex: i };
  }
  return undefined;
}

describe('compile semantics (table)', () => {
  for (const c of cases) {
    it(c.name, () => {
      const pol = policy({ networks, groups, ...c.policy });
      const cl = c.cluster ?? baseCluster();
      const result = compile(pol, cl);
      for (const check of c.checks) {
        const hostId = check.host ?? 'h-api';
        const proto = check.proto ?? 'tcp';
        const state = result.states.get(hostId)!;
        const label = `${check.from} → ${hostId} ${proto}:${check.port}`;
        expect(compiledVerdict(state, check.from, proto, check.port), label).toBe(check.expect);
        const target = findTaskPort(cl, hostId, check.port, proto);
        if (!target) {
          expect(check.expect, `${label}: no task port`).toBe('unmanaged');
          continue;
        }
        const v = evaluateConnection(pol, cl, { source: check.from, ...target, protocol: proto });
        expect(v.decision, `${label}: ${v.reason}`).toBe(check.expect === 'deny' ? 'deny' : 'allow');
        if (check.tier) expect(v.tier, `${label}: ${v.reason}`).toBe(check.tier);
        expect(v.enforced).toBe(!(pol.defaults.mode === 'audit' && v.decision === 'deny'));
      }
      expect(result.reports.map((r) => r.kind).filter((k) => k.startsWith('label-'))).toEqual(c.reports ?? []);
      for (const state of result.states.values()) {
        expect(state.mode).toBe(pol.defaults.mode);
        for (const kind of SET_KINDS) {
          const list = state.sets[kind];
          expect([...new Set(list)].sort(), `${state.hostId} ${kind} sorted and unique`).toEqual(list);
        }
      }
    });
  }
});

describe('compile: cluster problems and shape', () => {
  it('gives every host a state in sorted order and reports hosts without an address', () => {
    const result = compile(policy({ groups, rules: [allowWebApi] }), baseCluster());
    expect([...result.states.keys()]).toEqual(['h-api', 'h-db', 'h-empty', 'h-web']);
    expect(result.reports).toEqual([expect.objectContaining({ kind: 'host-without-address', hostId: 'h-empty' })]);
    const api = result.states.get('h-api')!;
    expect(api.sets['managed-tcp']).toEqual(['31001', '31002', '31053']);
    expect(api.sets['managed-udp']).toEqual(['31053']);
    expect(api.sets['allow-ip4']).toEqual(['10.0.1.1,tcp:31001', '10.0.1.1,tcp:31002', '10.0.1.1,tcp:31053', '10.0.1.1,udp:31053']);
    expect(api.sets['allow-ip6']).toEqual(['fd00::1:1,tcp:31001', 'fd00::1:1,tcp:31002', 'fd00::1:1,tcp:31053', 'fd00::1:1,udp:31053']);
    expect(api.version).toMatch(/^[0-9a-f]{16}$/);
  });

  it('splits /0 into two /1 for hash:net', () => {
    const result = compile(policy({ groups, rules: [{ action: 'allow', from: ['any'], to: ['db'] }] }), baseCluster());
    const db = result.states.get('h-db')!;
    expect(db.sets['allow-net4']).toEqual(['0.0.0.0/1,tcp:31003', '128.0.0.0/1,tcp:31003']);
    expect(db.sets['allow-net6']).toEqual(['8000::/1,tcp:31003', '::/1,tcp:31003']);
  });

  it('reports tasks on unknown hosts or of unknown apps, and port conflicts', () => {
    const cl = baseCluster();
    const bad = cluster(cl.hosts, cl.apps, [
      ...cl.tasks,
      task('ghost.1', '/shop/web', 'h-nowhere', [31000]),
      task('orphan.1', '/shop/nope', 'h-web', [31009]),
      task('web.2', '/shop/web', 'h-api', [31001]),
    ]);
    const pol = policy({ groups, rules: [allowWebApi, { action: 'allow', from: ['db'], to: ['web'] }] });
    const result = compile(pol, bad);
    expect(result.reports.map((r) => r.kind)).toEqual(['host-without-address', 'port-conflict', 'task-unknown-app', 'task-unknown-host']);
    // Conflict: api allows web, web allows db: the intersection is empty (fail closed).
    expect(compiledVerdict(result.states.get('h-api')!, WEB, 'tcp', 31001)).toBe('deny');
    expect(compiledVerdict(result.states.get('h-api')!, DB, 'tcp', 31001)).toBe('deny');
    expect(result.states.get('h-web')!.sets['managed-tcp']).toEqual(['31000']);
  });

  it('a failsafe port used by a task is not managed', () => {
    const result = compile(policy({ groups, failsafe: [{ protocol: 'tcp', port: 31000 }] }), baseCluster());
    const web = result.states.get('h-web')!;
    expect(web.sets['managed-tcp']).toEqual([]);
    expect(web.sets['failsafe-tcp']).toEqual(['31000']);
  });

  it('is deterministic: same input twice, and shuffled input arrays, give the same bytes', () => {
    const pol = policy({ networks, groups, action: 'allow', rules: [denyWebApi, { action: 'allow', from: ['net:office'], to: ['db'] }] });
    const cl = baseCluster({ [L]: 'db' });
    const a = compile(pol, cl);
    const b = compile(pol, cl);
    const shuffled = cluster([...cl.hosts].reverse(), [...cl.apps].reverse(), [...cl.tasks].reverse());
    const c = compile({ ...pol, groups: [...pol.groups].reverse(), networks: [...pol.networks].reverse() }, shuffled);
    const bytes = (r: typeof a) => JSON.stringify({ states: [...r.states.entries()], reports: r.reports });
    expect(bytes(b)).toBe(bytes(a));
    expect(bytes(c)).toBe(bytes(a));
    expect([...a.states.values()].map((s) => s.version)).toEqual([...c.states.values()].map((s) => s.version));
  });

  it('changes the version when the mode changes', () => {
    const enforce = compile(policy({ groups }), baseCluster()).states.get('h-api')!;
    const audit = compile(policy({ groups, mode: 'audit' }), baseCluster()).states.get('h-api')!;
    expect(audit.mode).toBe('audit');
    expect(audit.sets).toEqual(enforce.sets);
    expect(audit.version).not.toBe(enforce.version);
  });
});
