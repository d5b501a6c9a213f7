/**
 * The egress half of the reference evaluator (issue 10): a TASK of app A on host X towards a
 * managed claim, table-driven over the semantics (group membership, not host sharing; network
 * peers over every address of the family; pass + labels; first match; guardrails; failsafe;
 * port conflicts; defaults.egress off; default allow), and explain's per-task-pair verdicts.
 */
import { describe, expect, it } from 'vitest';
import { egressAllowed, egressVerdict, type EgressTier } from '../src/evaluate/egress-evaluator.js';
import { evaluateConnection, explain } from '../src/evaluate/reference-evaluator.js';
import { ALLOW_FROM_LABEL, type Policy } from '../src/policy/policy-model.js';
import { app, cluster, group, host, network, policy, task, type PolicyInput } from './support/policy-builder.js';

// h-1 runs web and batch and has two IPv4 addresses; h-6 has IPv6 only.
const hosts = [
  host('h-1', '10.0.1.1', '10.0.1.2', 'fd00::1'),
  host('h-2', '10.0.2.1'),
  host('h-6', 'fd00::6'),
  host('h-db', '10.0.3.1', 'fd00::3'),
];
const apps = [
  app('/shop/web', [{ name: 'http' }]),
  app('/shop/batch', [{ name: 'http' }]),
  app('/shop/api', [{ name: 'http' }]),
  app('/shop/db', [{ name: 'pg', containerPort: 5432 }], {}, 'bridge'),
  app('/shop/db-labelled', [{ name: 'pg' }], { [ALLOW_FROM_LABEL]: 'web' }),
  app('/ops/other', [{ name: 'x' }]),
];
const tasks = [
  task('web.1', '/shop/web', 'h-1', [31000]),
  task('batch.1', '/shop/batch', 'h-1', [31001]),
  task('api.1', '/shop/api', 'h-2', [31100]),
  task('api.2', '/shop/api', 'h-6', [31100]),
  task('db.1', '/shop/db', 'h-db', [31300]),
  task('dbl.1', '/shop/db-labelled', 'h-db', [31310]),
];
const cl = cluster(hosts, apps, tasks);
/** The same cluster with /ops/other also claiming tcp 31300 on h-db (a port conflict). */
const conflicted = cluster(hosts, apps, [...tasks, task('other.1', '/ops/other', 'h-db', [31300])]);

const groups = [
  group('web', ['/shop/web']),
  group('batch', ['/shop/batch']),
  group('api', ['/shop/api']),
  group('db', ['/shop/db', '/shop/db-labelled']),
  group('other', ['/ops/other']),
];
const pol = (p: PolicyInput): Policy => policy({ groups, egress: true, ...p });
const egressOff = (p: Policy): Policy => ({ ...p, defaults: { ...p.defaults, egress: false } });

interface Case {
  readonly name: string;
  readonly policy: Policy;
  readonly cluster?: typeof cl;
  readonly from: string;
  readonly on?: string;
  readonly to?: { readonly host: string; readonly port: number; readonly protocol?: 'tcp' | 'udp' };
  readonly family?: 4 | 6;
  readonly want: { readonly decision: 'allow' | 'deny'; readonly tier: EgressTier; readonly rule?: string; readonly reason?: RegExp };
}

const toDb = (r: Partial<{ name: string; action: 'allow' | 'deny' | 'pass'; from: string[] }> = {}) => ({
  name: r.name ?? 'to-db',
  action: r.action ?? 'allow',
  from: r.from ?? ['web'],
  to: ['db'],
  ports: ['pg'],
});

/** A deny for batch before an allow for any. */
const denyBatchFirst = pol({ rules: [toDb({ name: 'no-batch', action: 'deny', from: ['batch'] }), toDb({ name: 'all', from: ['any'] })] });

const cases: Case[] = [
  { name: 'a member of the from group is allowed', policy: pol({ rules: [toDb()] }), from: '/shop/web', want: { decision: 'allow', tier: 'policy', rule: 'to-db' } },
  {
    name: 'sharing a host with a member is not membership',
    policy: pol({ rules: [toDb()] }),
    from: '/shop/batch',
    want: { decision: 'deny', tier: 'default', reason: /no policy rule matches .*app \/shop\/batch on h-1/ },
  },
  {
    name: 'a network peer holding every address of the family allows',
    policy: pol({ networks: [network('n1', ['10.0.1.0/24'])], rules: [toDb({ from: ['net:n1'] })] }),
    from: '/shop/batch',
    want: { decision: 'allow', tier: 'policy', rule: 'to-db' },
  },
  {
    name: 'a network peer holding one of two addresses denies (every address must be allowed)',
    policy: pol({ networks: [network('n1', ['10.0.1.0/24'], ['10.0.1.2/32'])], rules: [toDb({ from: ['net:n1'] })] }),
    from: '/shop/batch',
    want: { decision: 'deny', tier: 'default', reason: /10\.0\.1\.2 is one of 2 IPv4 addresses of h-1, and every one must be allowed/ },
  },
  {
    name: 'a network peer is read in the family of the connection (IPv6)',
    policy: pol({ networks: [network('n6', ['fd00::/64'])], rules: [toDb({ from: ['net:n6'] })] }),
    from: '/shop/batch',
    family: 6,
    want: { decision: 'allow', tier: 'policy', rule: 'to-db' },
  },
  {
    name: '... and the IPv4 side of the same host is not in it',
    policy: pol({ networks: [network('n6', ['fd00::/64'])], rules: [toDb({ from: ['net:n6'] })] }),
    from: '/shop/batch',
    family: 4,
    want: { decision: 'deny', tier: 'default' },
  },
  {
    name: 'a host with no address of the family: a network peer cannot vouch for an unknown source',
    policy: pol({ networks: [network('n1', ['10.0.0.0/8'])], rules: [toDb({ from: ['net:n1'] })] }),
    from: '/shop/api',
    on: 'h-6',
    family: 4,
    want: { decision: 'deny', tier: 'no-address' },
  },
  {
    name: '... but a group of the app does, whatever the address',
    policy: pol({ networks: [network('n1', ['10.0.0.0/8'])], rules: [toDb({ from: ['api'] })] }),
    from: '/shop/api',
    on: 'h-6',
    family: 4,
    want: { decision: 'allow', tier: 'policy', rule: 'to-db' },
  },
  {
    name: '... and a network deny before it denies (some address of the family is in the network)',
    policy: pol({ networks: [network('n1', ['10.0.0.0/8'])], rules: [{ name: 'no-n1', action: 'deny', from: ['net:n1'], to: ['db'] }, toDb({ from: ['api'] })] }),
    from: '/shop/api',
    on: 'h-6',
    family: 4,
    want: { decision: 'deny', tier: 'no-address' },
  },
  {
    name: 'pass, then a label naming a group of the source app',
    policy: pol({ rules: [{ name: 'labels', action: 'pass', from: ['any'], to: ['db'] }] }),
    from: '/shop/web',
    to: { host: 'h-db', port: 31310 },
    want: { decision: 'allow', tier: 'labels', rule: 'labels', reason: /declares portcullis\.allow-from 'web', which contains app \/shop\/web/ },
  },
  {
    name: 'pass, then a label naming a group the source app is not in',
    policy: pol({ rules: [{ name: 'labels', action: 'pass', from: ['any'], to: ['db'] }] }),
    from: '/shop/batch',
    to: { host: 'h-db', port: 31310 },
    want: { decision: 'deny', tier: 'default', rule: 'labels' },
  },
  {
    name: 'a label with no rule (remaining scope)',
    policy: pol({}),
    from: '/shop/web',
    to: { host: 'h-db', port: 31310 },
    want: { decision: 'allow', tier: 'labels' },
  },
  {
    name: 'the first match decides: a deny before a broader allow',
    policy: denyBatchFirst,
    from: '/shop/batch',
    want: { decision: 'deny', tier: 'policy', rule: 'no-batch', reason: /is the first match and denies app \/shop\/batch/ },
  },
  {
    name: '... and the app next to it on the same host gets the allow',
    policy: denyBatchFirst,
    from: '/shop/web',
    want: { decision: 'allow', tier: 'policy', rule: 'all' },
  },
  {
    name: 'a guardrail deny rejects the label declaration',
    policy: pol({ guardrails: { deny: [{ from: ['web'], to: ['db'] }] } }),
    from: '/shop/web',
    to: { host: 'h-db', port: 31310 },
    want: { decision: 'deny', tier: 'default' },
  },
  {
    name: 'guardrails.sources without the name rejects it too',
    policy: pol({ guardrails: { sources: ['api'] } }),
    from: '/shop/web',
    to: { host: 'h-db', port: 31310 },
    want: { decision: 'deny', tier: 'default' },
  },
  {
    name: 'a failsafe port is never egress-checked',
    policy: pol({ failsafe: [{ protocol: 'tcp', port: 31300 }] }),
    from: '/shop/batch',
    want: { decision: 'allow', tier: 'failsafe' },
  },
  {
    name: 'a port no task claims is not managed',
    policy: pol({}),
    from: '/shop/batch',
    to: { host: 'h-db', port: 4444 },
    want: { decision: 'allow', tier: 'unmanaged' },
  },
  {
    name: 'a conflicted port: an owner that denies denies',
    policy: pol({ rules: [toDb()] }),
    cluster: conflicted,
    from: '/shop/web',
    want: { decision: 'deny', tier: 'default', reason: /tcp 31300 on h-db is claimed by 2 task ports \(port conflict; also db\.1 \(\/shop\/db\)\)/ },
  },
  {
    name: 'a conflicted port: allowed when every owner allows',
    policy: pol({ rules: [toDb(), { name: 'other', action: 'allow', from: ['web'], to: ['other'] }] }),
    cluster: conflicted,
    from: '/shop/web',
    want: { decision: 'allow', tier: 'policy', rule: 'to-db' },
  },
  { name: 'defaults.egress off: no egress half', policy: egressOff(pol({})), from: '/shop/batch', want: { decision: 'allow', tier: 'off' } },
  { name: 'default allow', policy: pol({ action: 'allow' }), from: '/shop/batch', want: { decision: 'allow', tier: 'default' } },
  {
    name: 'default allow, except a network deny that holds one of the addresses',
    policy: pol({ action: 'allow', networks: [network('n', ['10.0.1.2/32'])], rules: [toDb({ action: 'deny', from: ['net:n'] })] }),
    from: '/shop/batch',
    want: { decision: 'deny', tier: 'policy', rule: 'to-db', reason: /10\.0\.1\.2 is one of 2/ },
  },
];

describe('egress verdict of a task of app A on host X', () => {
  it.each(cases)('$name', (c) => {
    const to = c.to ?? { host: 'h-db', port: 31300 };
    const v = egressVerdict(c.policy, c.cluster ?? cl, {
      appId: c.from,
      sourceHostId: c.on ?? 'h-1',
      destHostId: to.host,
      protocol: to.protocol ?? 'tcp',
      hostPort: to.port,
      family: c.family ?? 4,
    });
    expect({ decision: v.decision, tier: v.tier, rule: v.rule }).toEqual({ decision: c.want.decision, tier: c.want.tier, rule: c.want.rule });
    if (c.want.reason) expect(v.reason).toMatch(c.want.reason);
    expect(v.enforced).toBe(true);
  });

  it('a source task whose ids cannot be named in egress sets is unmapped: host-level, as its agent treats it', () => {
    const p = pol({ rules: [toDb()] });
    const q = { appId: '/shop/batch', sourceHostId: 'h-1', destHostId: 'h-db', protocol: 'tcp', hostPort: 31300, family: 4 } as const;
    expect(egressVerdict(p, cl, { ...q, sourceTaskId: 'batch.1' })).toMatchObject({ decision: 'deny', tier: 'default' });
    const odd = egressVerdict(p, cl, { ...q, sourceTaskId: 'batch 1;x' });
    expect(odd).toMatchObject({ decision: 'allow', tier: 'unmapped' });
    expect(odd.reason).toMatch(/cannot be named in egress sets .*unmapped: host-level/);
  });

  it('group peers: the destination side admits the host, the egress side tells the apps apart', () => {
    const p = pol({ rules: [toDb()] });
    const db = tasks.find((t) => t.id === 'db.1')!;
    // Host level: 10.0.1.1 runs a web task, so it is in `web` for everyone on h-1.
    expect(evaluateConnection(p, cl, { source: '10.0.1.1', task: db, portIndex: 0, protocol: 'tcp' }).decision).toBe('allow');
    const check = { sourceHostId: 'h-1', destHostId: 'h-db', protocol: 'tcp', hostPort: 31300 } as const;
    expect(egressAllowed(p, cl, { ...check, appId: '/shop/web' })).toBe(true);
    expect(egressAllowed(p, cl, { ...check, appId: '/shop/batch' })).toBe(false);
  });

  it('egressAllowed without a family asks every family of the destination host', () => {
    const p = pol({ networks: [network('n6', ['fd00::/64'])], rules: [toDb({ from: ['net:n6'] })] });
    const check = { appId: '/shop/batch', sourceHostId: 'h-1', destHostId: 'h-db', protocol: 'tcp', hostPort: 31300 } as const;
    expect(egressAllowed(p, cl, { ...check, family: 6 })).toBe(true);
    expect(egressAllowed(p, cl, { ...check, family: 4 })).toBe(false);
    expect(egressAllowed(p, cl, check)).toBe(false);
  });

  it('audit mode: a deny is not enforced and says it would be dropped', () => {
    const v = egressVerdict(pol({ mode: 'audit' }), cl, { appId: '/shop/batch', sourceHostId: 'h-1', destHostId: 'h-db', protocol: 'tcp', hostPort: 31300, family: 4 });
    expect(v).toMatchObject({ decision: 'deny', enforced: false });
    expect(v.reason).toMatch(/audit mode: logged as pcu-egress, would be dropped/);
  });

  it('refuses unknown apps and hosts', () => {
    const q = { appId: '/shop/web', sourceHostId: 'h-1', destHostId: 'h-db', protocol: 'tcp', hostPort: 31300, family: 4 } as const;
    expect(() => egressVerdict(pol({}), cl, { ...q, appId: '/nope' })).toThrow(/unknown source app/);
    expect(() => egressVerdict(pol({}), cl, { ...q, destHostId: 'h-nope' })).toThrow(/unknown host h-nope/);
  });
});

describe('explain from an app: per task pair', () => {
  const p = pol({ rules: [toDb({ from: ['web', 'api'] })] });

  it('denies batch at the source host although its host is allowed, and allows web on the same host', () => {
    const batch = explain(p, cl, { from: { appId: '/shop/batch' }, toAppId: '/shop/db', port: 'pg' });
    if (!batch.ok) throw new Error(batch.error);
    // The destination side alone (host level) would allow both addresses of h-1 (and fd00::1).
    expect(batch.verdicts.map((v) => [v.source, v.decision])).toEqual([
      ['10.0.1.1', 'allow'],
      ['10.0.1.2', 'allow'],
      ['fd00::1', 'allow'],
    ]);
    expect(batch.pairs!.map((x) => [x.sourceTaskId, x.source, x.taskId, x.decision, x.deniedAt, x.egress.tier, x.destination.rule])).toEqual([
      ['batch.1', '10.0.1.1', 'db.1', 'deny', 'source', 'default', 'to-db'],
      ['batch.1', '10.0.1.2', 'db.1', 'deny', 'source', 'default', 'to-db'],
      ['batch.1', 'fd00::1', 'db.1', 'deny', 'source', 'default', 'to-db'],
    ]);
    const web = explain(p, cl, { from: { appId: '/shop/web' }, toAppId: '/shop/db', port: 'pg' });
    if (!web.ok) throw new Error(web.error);
    expect(web.pairs!.map((x) => [x.source, x.decision, x.egress.rule, x.egress.family])).toEqual([
      ['10.0.1.1', 'allow', 'to-db', 4],
      ['10.0.1.2', 'allow', 'to-db', 4],
      ['fd00::1', 'allow', 'to-db', 6],
    ]);
  });

  it('lists only the address families the destination host has, per source task', () => {
    const r = explain(p, cl, { from: { appId: '/shop/api' }, toAppId: '/shop/web', port: 'http' });
    if (!r.ok) throw new Error(r.error);
    // h-1 has IPv4 and IPv6: api.1 (h-2, IPv4) and api.2 (h-6, IPv6) both have a family in common.
    expect(r.pairs!.map((x) => [x.sourceTaskId, x.sourceHostId, x.source, x.deniedAt])).toEqual([
      ['api.1', 'h-2', '10.0.2.1', 'source'],
      ['api.2', 'h-6', 'fd00::6', 'source'],
    ]);
    const same = explain(p, cl, { from: { appId: '/shop/api' }, toAppId: '/shop/api', port: 'http' });
    if (!same.ok) throw new Error(same.error);
    // h-2 (IPv4 only) and h-6 (IPv6 only) share no family: each task reaches only its own host.
    expect(same.pairs!.map((x) => `${x.sourceTaskId} ${x.source} -> ${x.taskId}`)).toEqual(['api.1 10.0.2.1 -> api.1', 'api.2 fd00::6 -> api.2']);
  });

  it('says where a connection is dropped: a host-level deny at the destination hits web next to batch', () => {
    const r = explain(denyBatchFirst, cl, { from: { appId: '/shop/web' }, toAppId: '/shop/db', port: 'pg' });
    if (!r.ok) throw new Error(r.error);
    expect(r.pairs!.map((x) => [x.source, x.egress.decision, x.egress.rule, x.destination.rule, x.decision, x.deniedAt])).toEqual([
      ['10.0.1.1', 'allow', 'all', 'no-batch', 'deny', 'destination'],
      ['10.0.1.2', 'allow', 'all', 'no-batch', 'deny', 'destination'],
      ['fd00::1', 'allow', 'all', 'no-batch', 'deny', 'destination'],
    ]);
    const off = explain(egressOff(p), cl, { from: { appId: '/shop/batch' }, toAppId: '/shop/db', port: 'pg' });
    expect(off.ok && off.pairs).toBe(undefined);
    const address = explain(p, cl, { from: { address: '10.0.1.1' }, toAppId: '/shop/db', port: 'pg' });
    expect(address.ok && address.pairs).toBe(undefined);
  });

  it('audit mode: a pair denied at the source host is not enforced', () => {
    const r = explain(pol({ mode: 'audit', rules: [toDb()] }), cl, { from: { appId: '/shop/batch' }, toAppId: '/shop/db', port: 'pg' });
    if (!r.ok) throw new Error(r.error);
    expect(r.pairs!.every((x) => x.decision === 'deny' && x.deniedAt === 'source' && !x.enforced)).toBe(true);
  });
});
