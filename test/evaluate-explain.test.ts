import { describe, expect, it } from 'vitest';
import { explain } from '../src/evaluate/reference-evaluator.js';
import { ALLOW_FROM_LABEL } from '../src/policy/policy-model.js';
import { app, cluster, group, host, network, policy, task } from './support/policy-builder.js';

const cl = cluster(
  [host('h-web', '10.0.1.1', 'fd00:0:0:0:0:0:1:1'), host('h-web2', '10.0.1.2'), host('h-api', '10.0.2.1'), host('h-db', '10.0.3.1')],
  [
    app('/shop/web', [{ name: 'http' }]),
    app('/shop/api', [{ name: 'http' }, { name: 'dns', protocols: ['tcp', 'udp'] }], { [ALLOW_FROM_LABEL]: 'db' }),
    app('/shop/db', [{ name: 'pg', containerPort: 5432 }], {}, 'bridge'),
  ],
  [
    task('web.1', '/shop/web', 'h-web', [31000]),
    task('web.2', '/shop/web', 'h-web2', [31000]),
    task('api.1', '/shop/api', 'h-api', [31001, 31053]),
    task('db.1', '/shop/db', 'h-db', [31003]),
  ],
);
const base = {
  groups: [group('web', ['/shop/web']), group('api', ['/shop/api']), group('db', ['/shop/db'])],
  networks: [network('office', ['192.168.0.0/16'])],
  rules: [
    { name: 'web-to-api', action: 'allow', from: ['web'], to: ['api'], ports: ['http'] },
    { name: 'office-to-db', action: 'deny', from: ['net:office'], to: ['db'] },
  ],
} as const;
const pol = policy(base);

describe('explain', () => {
  it('answers from an app: one verdict per source address and destination task port', () => {
    const r = explain(pol, cl, { from: { appId: '/shop/web' }, toAppId: '/shop/api', port: 'http' });
    if (!r.ok) throw new Error(r.error);
    expect(r.verdicts.map((v) => [v.source, v.decision, v.tier, v.rule])).toEqual([
      ['10.0.1.1', 'allow', 'policy', 'web-to-api'],
      ['10.0.1.2', 'allow', 'policy', 'web-to-api'],
      ['fd00::1:1', 'allow', 'policy', 'web-to-api'],
    ]);
    expect(r.verdicts[0]).toMatchObject({ hostId: 'h-api', hostPort: 31001, protocol: 'tcp', portName: 'http', taskId: 'api.1', enforced: true });
    expect(r.verdicts[0]!.at).toEqual({ file: 'test.yaml', line: 1, col: 1 });
    expect(r.verdicts[0]!.reason).toMatch(/web-to-api.*allows 10\.0\.1\.1/);
  });

  it('accepts a host port number, a numeric string and a containerPort', () => {
    const byHostPort = explain(pol, cl, { from: { address: '10.0.3.1' }, toAppId: '/shop/api', port: 31053, protocol: 'udp' });
    expect(byHostPort).toMatchObject({ ok: true, verdicts: [{ decision: 'allow', tier: 'labels', protocol: 'udp', hostPort: 31053 }] });
    const both = explain(pol, cl, { from: { address: '10.0.3.1' }, toAppId: '/shop/api', port: '31053' });
    expect(both.ok && both.verdicts.map((v) => v.protocol)).toEqual(['tcp', 'udp']);
    const container = explain(pol, cl, { from: { address: '192.168.1.1' }, toAppId: '/shop/db', port: 5432 });
    expect(container).toMatchObject({ ok: true, verdicts: [{ decision: 'deny', tier: 'policy', rule: 'office-to-db', hostPort: 31003 }] });
  });

  it('says the default decides, and that audit mode does not enforce a deny', () => {
    const audit = policy({ ...base, mode: 'audit', rules: [] });
    const r = explain(audit, cl, { from: { address: '8.8.8.8' }, toAppId: '/shop/web', port: 'http' });
    if (!r.ok) throw new Error(r.error);
    expect(r.verdicts).toHaveLength(2);
    expect(r.verdicts.every((v) => v.decision === 'deny' && v.tier === 'default' && !v.enforced)).toBe(true);
    expect(r.verdicts[0]!.reason).toMatch(/audit mode/);
  });

  it('reports failsafe ports', () => {
    const fs = policy({ ...base, failsafe: [{ protocol: 'tcp', port: 31000 }] });
    const r = explain(fs, cl, { from: { address: '8.8.8.8' }, toAppId: '/shop/web', port: 31000 });
    expect(r).toMatchObject({ ok: true, verdicts: [{ tier: 'failsafe', decision: 'allow' }, { tier: 'failsafe' }] });
  });

  it('gives clear errors', () => {
    expect(explain(pol, cl, { from: { address: '10.0.1.1' }, toAppId: '/nope', port: 1 })).toEqual({ ok: false, error: "unknown destination app '/nope'" });
    expect(explain(pol, cl, { from: { appId: '/ghost' }, toAppId: '/shop/api', port: 'http' })).toEqual({ ok: false, error: "unknown source app '/ghost'" });
    const badAddr = explain(pol, cl, { from: { address: '10.0.0.300' }, toAppId: '/shop/api', port: 'http' });
    expect(badAddr.ok === false && badAddr.error).toMatch(/not an IPv4 or IPv6 address/);
    const badPort = explain(pol, cl, { from: { address: '10.0.1.1' }, toAppId: '/shop/api', port: 'grpc' });
    expect(badPort.ok === false && badPort.error).toMatch(/no task port matching 'grpc'.*http \(tcp\), dns \(tcp\/udp\)/);
    const badProto = explain(pol, cl, { from: { address: '10.0.1.1' }, toAppId: '/shop/api', port: 'http', protocol: 'udp' });
    expect(badProto.ok === false && badProto.error).toMatch(/does not use udp/);
  });
});
