/**
 * Per-group mode (`groups.<name>.mode`), table-driven: each row is a small policy over a small
 * cluster with the mode and audit lists every host's state must get, and the reference
 * evaluator's reading of a denied connection (enforced, and the group that made it audit).
 * Plus: with no group mode, or every group in the mode of defaults.mode, states are byte for
 * byte what they are without the field; the incremental compiler re-modes only the hosts a mode
 * change or a group change touches.
 */
import { describe, expect, it } from 'vitest';
import { compile } from '../src/compile/compile.js';
import type { AuditKind } from '../src/compile/desired-state.js';
import { IncrementalCompiler } from '../src/compile/incremental-compiler.js';
import { egressVerdict } from '../src/evaluate/egress-evaluator.js';
import { evaluateConnection } from '../src/evaluate/reference-evaluator.js';
import type { ClusterState } from '../src/inventory/cluster-state.js';
import type { GroupDef, Mode } from '../src/policy/policy-model.js';
import { app, cluster, group, host, policy, task, type PolicyInput } from './support/policy-builder.js';

const moded = (g: GroupDef, mode: Mode): GroupDef => ({ ...g, mode });

/** web and batch share h-a; api on h-b; db on h-c; h-d runs nothing. */
function baseCluster(webLabels: Record<string, string> = {}): ClusterState {
  return cluster(
    [host('h-a', '10.0.1.1'), host('h-b', '10.0.2.1'), host('h-c', '10.0.3.1'), host('h-d', '10.0.4.1')],
    [app('/web', [{ name: 'http' }], webLabels), app('/batch', []), app('/api', [{ name: 'http' }, { name: 'dns', protocols: ['udp'] }]), app('/db', [{ name: 'pg' }])],
    [task('web.1', '/web', 'h-a', [31000]), task('batch.1', '/batch', 'h-a', []), task('api.1', '/api', 'h-b', [31001, 31053]), task('db.1', '/db', 'h-c', [31002])],
  );
}

const web = group('web', ['/web']);
const api = group('api', ['/api']);
const db = group('db', ['/db']);
const batch = group('batch', ['/batch']);
const all = group('all', ['/**']);

interface HostExpect {
  readonly mode: Mode;
  readonly 'audit-tcp'?: readonly string[];
  readonly 'audit-udp'?: readonly string[];
  readonly 'egress-audit'?: readonly string[];
}
interface Row {
  readonly name: string;
  readonly policy: PolicyInput;
  readonly cluster?: ClusterState;
  readonly hosts: Readonly<Record<string, HostExpect>>;
  /** A denied connection from an outside address to (task, port index): enforced?, and the group named. */
  readonly denies?: readonly { readonly task: string; readonly port: number; readonly proto?: 'tcp' | 'udp'; readonly enforced: boolean; readonly group?: string }[];
}

const rows: Row[] = [
  {
    name: 'no group mode: every host in defaults.mode (audit), no audit member',
    policy: { mode: 'audit', groups: [web, api, db] },
    hosts: { 'h-a': { mode: 'audit' }, 'h-b': { mode: 'audit' }, 'h-c': { mode: 'audit' }, 'h-d': { mode: 'audit' } },
    denies: [{ task: 'api.1', port: 0, enforced: false }],
  },
  {
    name: 'one group in audit on its own host: that host audits, the others enforce',
    policy: { groups: [moded(web, 'audit'), api, db] },
    hosts: { 'h-a': { mode: 'audit' }, 'h-b': { mode: 'enforce' }, 'h-c': { mode: 'enforce' }, 'h-d': { mode: 'enforce' } },
    denies: [
      { task: 'web.1', port: 0, enforced: false, group: 'web' },
      { task: 'api.1', port: 0, enforced: true },
    ],
  },
  {
    name: 'explicit enforce beats defaults.mode audit; a host with no claim keeps defaults.mode',
    policy: { mode: 'audit', groups: [web, moded(api, 'enforce'), db] },
    hosts: { 'h-a': { mode: 'audit' }, 'h-b': { mode: 'enforce' }, 'h-c': { mode: 'audit' }, 'h-d': { mode: 'audit' } },
    denies: [
      { task: 'api.1', port: 1, proto: 'udp', enforced: true },
      { task: 'db.1', port: 0, enforced: false },
    ],
  },
  {
    name: 'an app in an audit group and an enforce group audits (audit wins)',
    policy: { groups: [moded(all, 'enforce'), moded(db, 'audit')] },
    hosts: { 'h-a': { mode: 'enforce' }, 'h-b': { mode: 'enforce' }, 'h-c': { mode: 'audit' }, 'h-d': { mode: 'enforce' } },
    denies: [{ task: 'db.1', port: 0, enforced: false, group: 'db' }],
  },
  {
    name: 'mixed on one host: mode enforce, the audited app ports in audit-tcp / audit-udp',
    policy: { groups: [moded(web, 'audit'), api] },
    cluster: cluster(
      [host('h-a', '10.0.1.1')],
      [app('/web', [{ name: 'http' }, { name: 'dns', protocols: ['udp'] }]), app('/api', [{ name: 'http' }])],
      [task('web.1', '/web', 'h-a', [31000, 31053]), task('api.1', '/api', 'h-a', [31001])],
    ),
    hosts: { 'h-a': { mode: 'enforce', 'audit-tcp': ['31000'], 'audit-udp': ['31053'] } },
    denies: [
      { task: 'web.1', port: 0, enforced: false, group: 'web' },
      { task: 'web.1', port: 1, proto: 'udp', enforced: false, group: 'web' },
      { task: 'api.1', port: 0, enforced: true },
    ],
  },
  {
    name: 'a claim shared by an audited and an enforced app enforces; shared by two audited apps it audits',
    policy: { groups: [moded(web, 'audit'), moded(batch, 'audit'), api] },
    cluster: cluster(
      [host('h-a', '10.0.1.1')],
      [app('/web', [{ name: 'http' }]), app('/batch', [{ name: 'http' }]), app('/api', [{ name: 'http' }])],
      [task('web.1', '/web', 'h-a', [31000]), task('batch.1', '/batch', 'h-a', [31000]), task('web.2', '/web', 'h-a', [31005]), task('api.1', '/api', 'h-a', [31005])],
    ),
    hosts: { 'h-a': { mode: 'enforce', 'audit-tcp': ['31000'] } },
    denies: [
      { task: 'web.1', port: 0, enforced: false, group: 'web' },
      { task: 'web.2', port: 0, enforced: true },
    ],
  },
  {
    name: 'egress on: a local app without ports counts; its egress audits while the ports enforce',
    policy: { egress: true, groups: [web, moded(batch, 'audit'), api] },
    hosts: { 'h-a': { mode: 'enforce', 'egress-audit': ['/batch'] }, 'h-b': { mode: 'enforce' }, 'h-c': { mode: 'enforce' }, 'h-d': { mode: 'enforce' } },
    denies: [{ task: 'web.1', port: 0, enforced: true }],
  },
  {
    name: 'egress on: the audited web port and enforced batch egress on one host',
    policy: { egress: true, groups: [moded(web, 'audit'), moded(batch, 'enforce')] },
    hosts: { 'h-a': { mode: 'enforce', 'audit-tcp': ['31000'], 'egress-audit': ['/web'] }, 'h-b': { mode: 'enforce' } },
  },
  {
    name: 'egress off: local apps do not count, the host mode is its claims’ mode',
    policy: { egress: false, groups: [web, moded(batch, 'audit'), api] },
    hosts: { 'h-a': { mode: 'enforce' }, 'h-b': { mode: 'enforce' } },
  },
  {
    name: 'egress on, every app of a host in audit: mode audit, no audit member',
    policy: { egress: true, groups: [moded(web, 'audit'), moded(batch, 'audit')] },
    hosts: { 'h-a': { mode: 'audit' }, 'h-b': { mode: 'enforce' } },
  },
];

describe('per-group mode (semantics table)', () => {
  for (const row of rows) {
    it(row.name, () => {
      const p = policy(row.policy);
      const c = row.cluster ?? baseCluster();
      const states = compile(p, c).states;
      for (const [hostId, want] of Object.entries(row.hosts)) {
        const s = states.get(hostId)!;
        expect(s.mode, hostId).toBe(want.mode);
        for (const kind of ['audit-tcp', 'audit-udp', 'egress-audit'] as AuditKind[]) expect(s.sets[kind], `${hostId} ${kind}`).toEqual(want[kind] ?? []);
      }
      for (const d of row.denies ?? []) {
        const t = c.tasks.find((x) => x.id === d.task)!;
        const v = evaluateConnection(p, c, { source: '203.0.113.9', task: t, portIndex: d.port, protocol: d.proto ?? 'tcp' });
        expect(v.decision).toBe('deny');
        expect(v.enforced, `${d.task}#${d.port}`).toBe(d.enforced);
        expect(v.auditGroup).toBe(d.group);
        if (d.group !== undefined) expect(v.reason).toContain(`(audit: group ${d.group}:`);
      }
    });
  }

  it('egress verdicts are judged in the source app’s mode and name its group', () => {
    const p = policy({ egress: true, groups: [web, moded(batch, 'audit'), api] });
    const c = baseCluster();
    const from = (appId: string) => egressVerdict(p, c, { appId, sourceHostId: 'h-a', destHostId: 'h-b', protocol: 'tcp', hostPort: 31001, family: 4 });
    expect(from('/batch')).toMatchObject({ decision: 'deny', enforced: false, auditGroup: 'batch' });
    expect(from('/batch').reason).toContain('(audit: group batch:');
    expect(from('/web')).toMatchObject({ decision: 'deny', enforced: true });
    expect(from('/web').auditGroup).toBeUndefined();
  });

  it('every group in the mode of defaults.mode gives the very states (versions too) of no group mode', () => {
    const c = baseCluster();
    for (const mode of ['enforce', 'audit'] as const) {
      for (const egress of [false, true]) {
        const plain = compile(policy({ mode, egress, groups: [web, api, db, batch] }), c).states;
        const explicit = compile(policy({ mode, egress, groups: [web, api, db, batch].map((g) => moded(g, mode)) }), c).states;
        expect([...explicit.values()]).toEqual([...plain.values()]);
      }
    }
    // Every app audited by a group = audit by defaults, byte for byte, on every host that runs
    // something; a host that runs nothing has no app to take a mode from: defaults.mode.
    const byGroups = compile(policy({ egress: true, groups: [moded(all, 'audit')] }), c).states;
    const byDefaults = compile(policy({ mode: 'audit', egress: true, groups: [all] }), c).states;
    for (const h of ['h-a', 'h-b', 'h-c']) expect(byGroups.get(h)).toEqual(byDefaults.get(h));
    expect(byGroups.get('h-d')!.mode).toBe('enforce');
  });
});

describe('per-group mode (incremental compiler)', () => {
  it('a group mode change re-modes only the hosts of its apps; so does an app moving between groups', () => {
    const tier = group('front', [], { tier: 'front' });
    const p0 = policy({ egress: true, groups: [web, api, db, batch, tier] });
    const inc = new IncrementalCompiler(p0, baseCluster());
    const before = inc.states();

    const r1 = inc.setPolicy(policy({ egress: true, groups: [web, moded(api, 'audit'), db, batch, tier] }));
    expect([...r1.changed.keys()]).toEqual(['h-b']);
    expect(inc.state('h-b')!.mode).toBe('audit');
    for (const h of ['h-a', 'h-c', 'h-d']) expect(inc.state(h)!.version).toBe(before.get(h)!.version);

    // /web joins the audited group 'front' by a label: only h-a (web's host) changes.
    const p2 = policy({ egress: true, groups: [web, api, db, batch, moded(tier, 'audit')] });
    expect([...inc.setPolicy(p2).changed.keys()]).toEqual(['h-b']); // api no longer audits
    const labelled = baseCluster({ tier: 'front' });
    const r3 = inc.applyClusterChange(labelled);
    expect([...r3.changed.keys()]).toEqual(['h-a']);
    expect(inc.state('h-a')).toMatchObject({ mode: 'enforce', sets: { 'audit-tcp': ['31000'], 'egress-audit': ['/web'] } });
    const full = compile(p2, labelled).states;
    for (const [h, s] of full) expect(inc.state(h)).toEqual(s);
  });
});
