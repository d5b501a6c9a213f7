import { describe, expect, it } from 'vitest';
import { evaluateConnection } from '../src/evaluate/reference-evaluator.js';
import { egressVerdict } from '../src/evaluate/egress-evaluator.js';
import type { FlowEntry } from '../src/flows/flow-types.js';
import { FlowResolver, decidedByOf, flowKey, keyOf, observedFlow, type FlowResolution } from '../src/flows/resolve-flow.js';
import { app, cluster, group, host, network, policy, task } from './support/policy-builder.js';

const HOSTILE = '/x/"><script>alert(1)</script>';
const cl = cluster(
  [host('h-web', '10.0.1.1', 'fd00::1:1'), host('h-api', '10.0.2.1'), host('h-odd', '10.0.3.1')],
  [app('/shop/web', [{ name: 'http' }]), app('/shop/api', [{ name: 'http' }, { name: 'dns', protocols: ['tcp', 'udp'] }]), app('/shop/other', [{}]), app(HOSTILE, [{ name: 'x' }])],
  [
    task('web.1', '/shop/web', 'h-web', [31000]),
    task('api.1', '/shop/api', 'h-api', [31001, 31053]),
    task('other.1', '/shop/other', 'h-api', [31053]),
    task('evil.1', HOSTILE, 'h-odd', [32000]),
  ],
);
const pol = policy({
  egress: true,
  groups: [group('web', ['/shop/web']), group('api', ['/shop/api'])],
  networks: [network('office', ['192.168.0.0/16']), network('all-private', ['10.0.0.0/8', '192.168.0.0/16'])],
  rules: [
    { name: 'web-to-api', action: 'allow', from: ['web'], to: ['api'] },
    { name: 'office-to-api', action: 'allow', from: ['net:office'], to: ['api'], ports: ['http'] },
  ],
});

const decided = (r: FlowResolution) => decidedByOf(r);

function entry(e: Partial<FlowEntry>): FlowEntry {
  return { direction: 'ingress', verdict: 'allowed', source: '10.0.1.1', destination: '', protocol: 'tcp', port: 31001, packets: 3, bytes: 180, firstSeenMs: 1_000, lastSeenMs: 2_000, ...e };
}

describe('FlowResolver: ingress', () => {
  const r = new FlowResolver(pol, cl);

  it('names a cluster host source by its host and apps, the destination app, task and port name, and the deciding rule as explain does', () => {
    const res = r.resolve('h-api', entry({}));
    expect(res.source).toEqual({ address: '10.0.1.1', kind: 'host', hostId: 'h-web', apps: ['/shop/web'], networks: ['all-private'] });
    expect(res.destination).toEqual({ hostId: 'h-api', address: '', protocol: 'tcp', port: 31001, apps: [{ appId: '/shop/api', taskIds: ['api.1'] }], portName: 'http' });
    const v = evaluateConnection(pol, cl, { source: '10.0.1.1', task: cl.tasks[1]!, portIndex: 0, protocol: 'tcp' });
    expect(decided(res)).toEqual({ tier: v.tier, rule: 'web-to-api', at: 'test.yaml:1:1', reason: v.reason });
  });

  it('names a source in a network of the policy, and one outside every network', () => {
    const office = r.resolve('h-api', entry({ source: '192.168.4.5', verdict: 'allowed' }));
    expect(office.source).toEqual({ address: '192.168.4.5', kind: 'network', apps: [], networks: ['office', 'all-private'] });
    expect(decided(office)).toMatchObject({ tier: 'policy', rule: 'office-to-api' });
    const outside = r.resolve('h-api', entry({ source: '8.8.8.8', verdict: 'denied' }));
    expect(outside.source).toEqual({ address: '8.8.8.8', kind: 'outside', apps: [], networks: [] });
    expect(decided(outside).tier).toBe('default');
    expect(decided(outside).reason).toContain('8.8.8.8');
  });

  it('shares one evaluation among outside addresses of the same networks, each sentence exactly the evaluator\'s for its own address', () => {
    const exact = (source: string, port = 31001) => evaluateConnection(pol, cl, { source, task: cl.tasks[1]!, portIndex: port === 31001 ? 0 : 1, protocol: 'tcp' });
    const a = r.resolve('h-api', entry({ source: '8.8.8.8', verdict: 'denied' }));
    const b = r.resolve('h-api', entry({ source: '9.9.9.9', verdict: 'denied' }));
    const c = r.resolve('h-api', entry({ source: '192.168.7.7' }));
    expect(b.decided).toBe(a.decided);
    expect(c.decided).not.toBe(a.decided);
    for (const [res, addr] of [[a, '8.8.8.8'], [b, '9.9.9.9'], [c, '192.168.7.7']] as const) expect(decided(res).reason).toBe(exact(addr).reason);
    // 8.8.8.88 holds '8.8.8.8' as text but is another token: the sentence names it whole.
    expect(decided(r.resolve('h-api', entry({ source: '8.8.8.88', verdict: 'denied' }))).reason).toBe(exact('8.8.8.88').reason);
  });

  it('evaluates alone an address that some other text of the sentence holds (a host id, a rule name)', () => {
    const odd = cluster([...cl.hosts, host('9.9.9.9', '10.0.9.9')], cl.apps, [...cl.tasks, task('api.9', '/shop/api', '9.9.9.9', [31001])]);
    const named = policy({ ...{ groups: [group('api', ['/shop/api'])] }, rules: [{ name: 'deny-1.2.3.4', action: 'deny', from: ['any'], to: ['api'] }] });
    const ro = new FlowResolver(pol, odd);
    const x = ro.resolve('9.9.9.9', entry({ source: '9.9.9.9', verdict: 'denied' }));
    const y = ro.resolve('9.9.9.9', entry({ source: '8.8.8.8', verdict: 'denied' }));
    expect(decided(x).reason).toBe(evaluateConnection(pol, odd, { source: '9.9.9.9', task: odd.tasks[4]!, portIndex: 0, protocol: 'tcp' }).reason);
    expect(decided(y).reason).toBe(evaluateConnection(pol, odd, { source: '8.8.8.8', task: odd.tasks[4]!, portIndex: 0, protocol: 'tcp' }).reason);
    expect(x.decided).not.toBe(y.decided);
    const rn = new FlowResolver(named, cl);
    const p = rn.resolve('h-api', entry({ source: '1.2.3.4', verdict: 'denied' }));
    expect(decided(p).reason).toBe(evaluateConnection(named, cl, { source: '1.2.3.4', task: cl.tasks[1]!, portIndex: 0, protocol: 'tcp' }).reason);
    expect(decided(rn.resolve('h-api', entry({ source: '5.6.7.8', verdict: 'denied' }))).reason).toContain('5.6.7.8');
  });

  it('reads an IPv6 source of a cluster host', () => {
    expect(r.resolve('h-api', entry({ source: 'fd00::1:1' })).source).toMatchObject({ kind: 'host', hostId: 'h-web', apps: ['/shop/web'] });
  });

  it('lists both owners of a claim with two, and reports the owner that denies', () => {
    const res = r.resolve('h-api', entry({ port: 31053, verdict: 'denied' }));
    expect(res.destination.apps).toEqual([
      { appId: '/shop/api', taskIds: ['api.1'] },
      { appId: '/shop/other', taskIds: ['other.1'] },
    ]);
    expect(res.destination.portName).toBe('dns');
    expect(decided(res).tier).toBe('default');
    expect(decided(res).reason).toMatch(/claimed by 2 task ports/);
  });

  it('says a port no task claims is unmanaged, with the empty app', () => {
    const res = r.resolve('h-api', entry({ port: 40000, verdict: 'denied' }));
    expect(res.destination.apps).toEqual([{ appId: '', taskIds: [] }]);
    expect(res.destination.portName).toBeUndefined();
    expect(decided(res)).toEqual({ tier: 'unmanaged', reason: expect.stringMatching(/no task claims tcp 40000 on h-api/) });
  });

  it('carries a hostile app id as data, unchanged', () => {
    const res = r.resolve('h-api', entry({ source: '10.0.3.1', verdict: 'denied' }));
    expect(res.source.apps).toEqual([HOSTILE]);
    const back = JSON.parse(JSON.stringify(observedFlow(res, 'denied', 1, 60, 1_000, 2_000))) as { source: { apps: string[] } };
    expect(back.source.apps[0]).toBe(HOSTILE);
    const dest = r.resolve('h-odd', entry({ source: '10.0.1.1', port: 32000 }));
    expect(dest.destination.apps).toEqual([{ appId: HOSTILE, taskIds: ['evil.1'] }]);
  });

  it('resolves one flow once: the same object for its verdicts, a 16-hex key per verdict', () => {
    const a = r.resolve('h-api', entry({ verdict: 'allowed' }));
    const b = r.resolve('h-api', entry({ verdict: 'denied', packets: 9 }));
    expect(b).toBe(a);
    expect(keyOf(a, 'allowed')).toMatch(/^[0-9a-f]{16}$/);
    expect(keyOf(a, 'allowed')).not.toBe(keyOf(a, 'denied'));
    expect(keyOf(a, 'allowed')).toBe(flowKey(a, 'allowed'));
    expect(r.resolve('h-web', entry({}))).not.toBe(a);
  });
});

describe('FlowResolver: egress', () => {
  const r = new FlowResolver(pol, cl);

  it('names the source app on its host and the destination by host, claim and port name, decided by the egress half', () => {
    const res = r.resolve('h-web', entry({ direction: 'egress', source: '/shop/web', destination: '10.0.2.1', port: 31001 }));
    expect(res.source).toEqual({ address: '10.0.1.1', kind: 'app', hostId: 'h-web', apps: ['/shop/web'], networks: ['all-private'] });
    expect(res.destination).toEqual({ hostId: 'h-api', address: '10.0.2.1', protocol: 'tcp', port: 31001, apps: [{ appId: '/shop/api', taskIds: ['api.1'] }], portName: 'http' });
    const v = egressVerdict(pol, cl, { appId: '/shop/web', sourceHostId: 'h-web', destHostId: 'h-api', protocol: 'tcp', hostPort: 31001, family: 4 });
    expect(decided(res)).toEqual({ tier: v.tier, rule: v.rule, at: 'test.yaml:1:1', reason: v.reason });
  });

  it('says a destination outside the cluster is unmanaged, and an app gone from the cluster is unknown', () => {
    expect(decided(r.resolve('h-web', entry({ direction: 'egress', source: '/shop/web', destination: '1.1.1.1', port: 443 }))).tier).toBe('unmanaged');
    const gone = r.resolve('h-web', entry({ direction: 'egress', source: '/gone/app', destination: '10.0.2.1', port: 31001 }));
    expect(decided(gone).tier).toBe('unknown');
    expect(gone.source.apps).toEqual(['/gone/app']);
  });

  it('takes the source address of the destination family (none: empty)', () => {
    const v6 = r.resolve('h-web', entry({ direction: 'egress', source: '/shop/web', destination: 'fd00::9', port: 80 }));
    expect(v6.source.address).toBe('fd00::1:1');
    const none = r.resolve('h-api', entry({ direction: 'egress', source: '/shop/api', destination: 'fd00::9', port: 80 }));
    expect(none.source.address).toBe('');
    expect(none.source.networks).toEqual([]);
  });
});
