/**
 * Egress semantics, table-driven (docs/architecture.md "Semantics", egress): each case is a small
 * policy over one shared cluster and a list of (app, source host, destination address, proto,
 * port) checks, read from the SOURCE host's state the way its agent's kernel would: a destination
 * in egress-managed* is checked, and allowed when "<app>|<dest>" is in egress-ip*. Every case
 * also checks the shape (sorted, duplicate-free lists; egress-managed the same list object on
 * every host; every app of egress-ip* in egress-task) and that the incremental compiler emits
 * the same states.
 */
import { describe, expect, it } from 'vitest';
import { compile, type CompileReportKind } from '../src/compile/compile.js';
import { EGRESS_KINDS, INGRESS_KINDS, SET_KINDS, type DesiredState } from '../src/compile/desired-state.js';
import { IncrementalCompiler } from '../src/compile/incremental-compiler.js';
import { stateVersion } from '../src/compile/state-version.js';
import type { ClusterState } from '../src/inventory/cluster-state.js';
import { ALLOW_FROM_LABEL, type Protocol } from '../src/policy/policy-model.js';
import { app, cluster, group, host, network, policy, task, type PolicyInput } from './support/policy-builder.js';
import { compiledVerdict } from './support/random-cluster.js';

const L = ALLOW_FROM_LABEL;
const H1 = '10.0.1.1';
const H1_6 = 'fd00::1:1';
const API = '10.0.2.1';
const DB = '10.0.3.1';
const DB6 = 'fd00::3:1';

/** web and batch share h-1 (one address per family); api on h-api (IPv4 only); db on h-db. */
function baseCluster(dbLabels: Record<string, string> = {}, extra: Partial<ClusterState> = {}): ClusterState {
  return cluster(
    [host('h-1', H1, H1_6), host('h-api', API), host('h-db', DB, DB6), host('h-2', '10.0.1.2', '10.9.9.9'), ...(extra.hosts ?? [])],
    [
      app('/shop/web', [{ name: 'http' }]),
      app('/shop/batch', [{ name: 'jobs' }]),
      app('/shop/api', [{ name: 'http' }]),
      app('/shop/db', [{ name: 'postgres' }], dbLabels),
      ...(extra.apps ?? []),
    ],
    [
      task('web.1', '/shop/web', 'h-1', [31000]),
      task('batch.1', '/shop/batch', 'h-1', [31100]),
      task('api.1', '/shop/api', 'h-api', [31001]),
      task('db.1', '/shop/db', 'h-db', [31003]),
      task('batch.2', '/shop/batch', 'h-2', [31100]),
      ...(extra.tasks ?? []),
    ],
  );
}

const groups = [group('web', ['/shop/web']), group('batch', ['/shop/batch']), group('api', ['/shop/api']), group('db', ['/shop/db']), group('shop', ['/shop/*'])];
const networks = [network('office', ['10.0.1.0/24']), network('office6', ['fd00::1:0/112']), network('h2-net', ['10.0.1.2/32', '10.9.9.0/24'])];

type Expect = 'allow' | 'deny' | 'unmanaged';
interface Check {
  readonly app: string;
  readonly on: string;
  readonly to: string;
  readonly port: number;
  readonly proto?: Protocol;
  readonly expect: Expect;
}
interface Case {
  readonly name: string;
  readonly policy: PolicyInput;
  readonly cluster?: ClusterState;
  readonly checks: readonly Check[];
  readonly reports?: readonly CompileReportKind[];
}

/** What the source host's kernel decides for a new connection of `appId` (its agent's egress chains, read from the state). */
export function egressVerdict(state: DesiredState, appId: string, dest: string, protocol: Protocol, port: number): Expect {
  const six = dest.includes(':');
  const member = `${dest},${protocol}:${port}`;
  if (!state.sets[six ? 'egress-managed6' : 'egress-managed4'].includes(member)) return 'unmanaged';
  return state.sets[six ? 'egress-ip6' : 'egress-ip4'].includes(`${appId}|${member}`) ? 'allow' : 'deny';
}

const allowWebDb = { action: 'allow', from: ['web'], to: ['db'] } as const;

const cases: Case[] = [
  {
    name: 'two apps on one host, one allowed: only its egress list has db (v4 and v6)',
    policy: { rules: [allowWebDb] },
    checks: [
      { app: '/shop/web', on: 'h-1', to: DB, port: 31003, expect: 'allow' },
      { app: '/shop/web', on: 'h-1', to: DB6, port: 31003, expect: 'allow' },
      { app: '/shop/batch', on: 'h-1', to: DB, port: 31003, expect: 'deny' },
      { app: '/shop/batch', on: 'h-1', to: DB6, port: 31003, expect: 'deny' },
      { app: '/shop/batch', on: 'h-2', to: DB, port: 31003, expect: 'deny' },
    ],
  },
  {
    name: 'group membership, not host sharing: a group with both apps admits both',
    policy: { rules: [{ action: 'allow', from: ['shop'], to: ['db'] }] },
    checks: [
      { app: '/shop/web', on: 'h-1', to: DB, port: 31003, expect: 'allow' },
      { app: '/shop/batch', on: 'h-1', to: DB, port: 31003, expect: 'allow' },
      { app: '/shop/api', on: 'h-api', to: DB, port: 31003, expect: 'allow' },
    ],
  },
  {
    name: 'network peers are judged by the source host address of the destination family',
    policy: { rules: [{ action: 'allow', from: ['net:office'], to: ['db'] }] },
    checks: [
      { app: '/shop/web', on: 'h-1', to: DB, port: 31003, expect: 'allow' },
      { app: '/shop/batch', on: 'h-1', to: DB, port: 31003, expect: 'allow' },
      { app: '/shop/web', on: 'h-1', to: DB6, port: 31003, expect: 'deny' },
      { app: '/shop/api', on: 'h-api', to: DB, port: 31003, expect: 'deny' },
    ],
  },
  {
    name: 'a v6 network admits by the v6 address; a host without one is allowed only where every address would be',
    policy: { rules: [{ action: 'allow', from: ['net:office6'], to: ['db'] }, { action: 'allow', from: ['api'], to: ['db'] }] },
    checks: [
      { app: '/shop/web', on: 'h-1', to: DB6, port: 31003, expect: 'allow' },
      { app: '/shop/web', on: 'h-1', to: DB, port: 31003, expect: 'deny' },
      { app: '/shop/api', on: 'h-api', to: DB6, port: 31003, expect: 'allow' },
      { app: '/shop/batch', on: 'h-2', to: DB6, port: 31003, expect: 'deny' },
    ],
  },
  {
    name: 'several addresses of one family: every one must be allowed',
    policy: { rules: [{ action: 'allow', from: ['net:office'], to: ['db'] }, { action: 'allow', from: ['net:h2-net'], to: ['api'] }] },
    checks: [
      { app: '/shop/batch', on: 'h-2', to: DB, port: 31003, expect: 'deny' },
      { app: '/shop/batch', on: 'h-1', to: DB, port: 31003, expect: 'allow' },
      { app: '/shop/batch', on: 'h-2', to: API, port: 31001, expect: 'allow' },
    ],
  },
  {
    name: 'first match: a deny before an allow from any wins, for that app only',
    policy: { rules: [{ action: 'deny', from: ['batch'], to: ['db'] }, { action: 'allow', from: ['any'], to: ['db'] }] },
    checks: [
      { app: '/shop/batch', on: 'h-1', to: DB, port: 31003, expect: 'deny' },
      { app: '/shop/web', on: 'h-1', to: DB, port: 31003, expect: 'allow' },
      { app: '/shop/api', on: 'h-api', to: DB, port: 31003, expect: 'allow' },
    ],
  },
  {
    name: 'pass goes to the labels tier: the label names the app allowed',
    policy: { rules: [{ action: 'pass', from: ['any'], to: ['db'] }] },
    cluster: baseCluster({ [L]: 'web' }),
    checks: [
      { app: '/shop/web', on: 'h-1', to: DB, port: 31003, expect: 'allow' },
      { app: '/shop/batch', on: 'h-1', to: DB, port: 31003, expect: 'deny' },
    ],
  },
  {
    name: 'default allow admits every app but the denied one',
    policy: { action: 'allow', rules: [{ action: 'deny', from: ['batch'], to: ['db'] }] },
    checks: [
      { app: '/shop/web', on: 'h-1', to: DB, port: 31003, expect: 'allow' },
      { app: '/shop/api', on: 'h-api', to: DB, port: 31003, expect: 'allow' },
      { app: '/shop/batch', on: 'h-2', to: DB, port: 31003, expect: 'deny' },
    ],
  },
  {
    name: 'a port conflict is allowed only for an app every owner allows',
    policy: { rules: [allowWebDb, { action: 'allow', from: ['batch'], to: ['db'] }, { action: 'allow', from: ['web'], to: ['api'] }] },
    cluster: baseCluster({}, { tasks: [task('api.9', '/shop/api', 'h-db', [31003])] }),
    checks: [
      { app: '/shop/web', on: 'h-1', to: DB, port: 31003, expect: 'allow' },
      { app: '/shop/batch', on: 'h-1', to: DB, port: 31003, expect: 'deny' },
    ],
    reports: ['port-conflict'],
  },
  {
    name: 'a failsafe port is never managed, so never egress-checked',
    policy: { failsafe: [{ protocol: 'tcp', port: 31003 }] },
    checks: [{ app: '/shop/batch', on: 'h-1', to: DB, port: 31003, expect: 'unmanaged' }],
  },
  {
    name: "the source host's own ports are managed destinations too",
    policy: { rules: [{ action: 'allow', from: ['batch'], to: ['web'] }] },
    checks: [
      { app: '/shop/batch', on: 'h-1', to: H1, port: 31000, expect: 'allow' },
      { app: '/shop/web', on: 'h-1', to: H1, port: 31000, expect: 'deny' },
      { app: '/shop/web', on: 'h-1', to: H1, port: 31100, expect: 'deny' },
      { app: '/shop/web', on: 'h-1', to: H1, port: 22, expect: 'unmanaged' },
    ],
  },
  {
    name: 'a task whose id cannot stand in a member is left out and reported',
    policy: { rules: [allowWebDb] },
    cluster: baseCluster({}, { apps: [app('/shop/odd app', [{ name: 'http' }])], tasks: [task('bad id', '/shop/web', 'h-api', [31010]), task('odd.1', '/shop/odd app', 'h-api', [31011])] }),
    checks: [
      { app: '/shop/web', on: 'h-api', to: DB, port: 31003, expect: 'deny' },
      { app: '/shop/api', on: 'h-api', to: API, port: 31010, expect: 'deny' },
    ],
    reports: ['egress-unsafe-id', 'egress-unsafe-id'],
  },
];

function checkShape(states: ReadonlyMap<string, DesiredState>): void {
  const all = [...states.values()];
  for (const state of all) {
    for (const kind of SET_KINDS) expect([...new Set(state.sets[kind])].sort(), `${state.hostId} ${kind} sorted and unique`).toEqual(state.sets[kind]);
    const local = new Set(state.sets['egress-task'].map((m) => m.slice(0, m.indexOf('|'))));
    for (const kind of ['egress-ip4', 'egress-ip6'] as const) {
      for (const m of state.sets[kind]) expect(local.has(m.slice(0, m.indexOf('|'))), `${state.hostId} ${m}: app has a local task`).toBe(true);
    }
    expect(state.sets['egress-managed4']).toBe(all[0]!.sets['egress-managed4']);
    expect(state.sets['egress-managed6']).toBe(all[0]!.sets['egress-managed6']);
    expect(state.version).toBe(stateVersion(state.mode, state.sets));
  }
}

describe('compile: per-app egress', () => {
  for (const c of cases) {
    it(c.name, () => {
      const pol = policy({ networks, groups, egress: true, ...c.policy });
      const cl = c.cluster ?? baseCluster();
      const result = compile(pol, cl);
      for (const check of c.checks) {
        const proto = check.proto ?? 'tcp';
        const label = `${check.app} on ${check.on} → ${check.to} ${proto}:${check.port}`;
        expect(egressVerdict(result.states.get(check.on)!, check.app, check.to, proto, check.port), label).toBe(check.expect);
      }
      expect(result.reports.map((r) => r.kind).filter((k) => k === 'egress-unsafe-id' || k === 'port-conflict')).toEqual(c.reports ?? []);
      checkShape(result.states);
      const inc = new IncrementalCompiler(pol, cl);
      expect(inc.states()).toEqual(result.states);
    });
  }

  it('the destination side still admits every app of a source host (what egress closes)', () => {
    const result = compile(policy({ networks, groups, egress: true, rules: [allowWebDb] }), baseCluster());
    const db = result.states.get('h-db')!;
    // batch shares h-1 with web: host-level, its connection passes the destination side ...
    expect(compiledVerdict(db, H1, 'tcp', 31003)).toBe('allow');
    // ... and is refused by its own host's egress.
    expect(egressVerdict(result.states.get('h-1')!, '/shop/batch', DB, 'tcp', 31003)).toBe('deny');
  });

  it('lists the members exactly: tasks, managed destinations of the cluster, and per local app', () => {
    const result = compile(policy({ networks, groups, egress: true, rules: [allowWebDb] }), baseCluster());
    const h1 = result.states.get('h-1')!;
    expect(h1.sets['egress-task']).toEqual(['/shop/batch|batch.1', '/shop/web|web.1']);
    expect(h1.sets['egress-managed4']).toEqual([
      '10.0.1.1,tcp:31000', '10.0.1.1,tcp:31100', '10.0.1.2,tcp:31100', '10.0.2.1,tcp:31001', '10.0.3.1,tcp:31003', '10.9.9.9,tcp:31100',
    ]);
    expect(h1.sets['egress-managed6']).toEqual(['fd00::1:1,tcp:31000', 'fd00::1:1,tcp:31100', 'fd00::3:1,tcp:31003']);
    expect(h1.sets['egress-ip4']).toEqual(['/shop/web|10.0.3.1,tcp:31003']);
    expect(h1.sets['egress-ip6']).toEqual(['/shop/web|fd00::3:1,tcp:31003']);
    expect(result.states.get('h-api')!.sets['egress-ip4']).toEqual([]);
  });

  it('orders a host list by "<app>|", the sorted order of its members', () => {
    const cl = baseCluster({}, { apps: [app('/shop/web/x', [{ name: 'http' }])], tasks: [task('x.1', '/shop/web/x', 'h-1', [31200])] });
    const pol = policy({ networks, groups: [...groups, group('webs', ['/shop/web/x', '/shop/web'])], egress: true, rules: [{ action: 'allow', from: ['webs'], to: ['db'] }] });
    const h1 = compile(pol, cl).states.get('h-1')!;
    expect(h1.sets['egress-ip4']).toEqual(['/shop/web/x|10.0.3.1,tcp:31003', '/shop/web|10.0.3.1,tcp:31003']);
  });

  it('with defaults.egress off, the egress kinds are empty and every state is what it was before egress', () => {
    const input = { networks, groups, rules: [allowWebDb] };
    const off = compile(policy({ ...input, egress: false }), baseCluster());
    const on = compile(policy({ ...input, egress: true }), baseCluster());
    for (const [hostId, state] of off.states) {
      for (const kind of EGRESS_KINDS) expect(state.sets[kind]).toEqual([]);
      // The v2 version of the destination-side kinds alone (no '#egress' line).
      expect(state.version).toBe(stateVersion(state.mode, state.sets));
      const withEgress = on.states.get(hostId)!;
      for (const kind of INGRESS_KINDS) expect(withEgress.sets[kind]).toEqual(state.sets[kind]);
      expect(withEgress.version).not.toBe(state.version);
    }
    expect(off.reports.some((r) => r.kind === 'egress-unsafe-id')).toBe(false);
  });
});
