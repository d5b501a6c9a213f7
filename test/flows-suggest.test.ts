/**
 * `suggest` (src/flows/suggest.ts, suggest-yaml.ts) on the adoption fixture
 * (test/fixtures/flows-suggest: an audit-mode policy and its cluster) and a known flow set:
 * the exact rules (group level, port names, networks, proposed groups and cidrs, order,
 * evidence), what is skipped and why, and that the output pasted into the policy passes the
 * real `portcullis check` and allows exactly the evidence.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync, appendFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { suggestRules } from '../src/flows/suggest.js';
import { suggestionYaml } from '../src/flows/suggest-yaml.js';
import { judgeFlow } from '../src/flows/plan-judge.js';
import { loadPolicyInput } from '../src/cli/load-inputs.js';
import type { ClusterState } from '../src/inventory/cluster-state.js';
import type { Policy } from '../src/policy/policy-model.js';
import type { ObservedFlow } from '../src/flows/observed-flow.js';
import { egressFlow, ingressFlow } from './support/flow-records.js';
import { runCli } from './support/run-cli.js';
import { SUGGEST_FIXTURE, loadSuggestFixture } from './support/suggest-fixture.js';

const FIXTURE = SUGGEST_FIXTURE;
let policy: Policy;
let cluster: ClusterState;
let flows: ObservedFlow[];
let tmp: string;

beforeAll(async () => {
  ({ policy, cluster } = await loadSuggestFixture());
  tmp = mkdtempSync(join(tmpdir(), 'pcut-suggest-'));
  const e = (app: string, from: string, to: string, port: number, packets: number, extra = {}) => egressFlow(cluster, app, from, to, 'tcp', port, { packets, ...extra });
  const i = (addr: string, to: string, port: number, packets: number, extra = {}) => ingressFlow(cluster, addr, to, 'tcp', port, { packets, ...extra });
  flows = [
    e('/shop/web', 'n1', 'n3', 31100, 30, { firstSeen: '2026-12-01T09:00:00.000Z' }),
    e('/shop/web-canary', 'n2', 'n3', 31100, 10, { lastSeen: '2026-12-01T11:30:00.000Z' }),
    // The same connections as the first, seen at the destination: left to the egress record.
    i('10.0.0.1', 'n3', 31100, 30),
    e('/shop/api', 'n3', 'n3', 31300, 25),
    i('10.50.7.9', 'n3', 31100, 7, { networks: ['office', 'vpn'] }),
    i('10.50.1.1', 'n3', 31101, 5, { networks: ['office'] }),
    i('10.50.1.1', 'n3', 31300, 3, { networks: ['office'] }),
    i('203.0.113.5', 'n3', 31100, 4, { verdict: 'denied' }),
    i('203.0.113.6', 'n3', 31100, 2, { verdict: 'denied' }),
    i('2001:db8::5', 'n3', 31100, 2, { verdict: 'denied' }),
    e('/shop/api', 'n3', 'n2', 31400, 6),
    i('10.0.0.2', 'n3', 31600, 2),
    e('/shop/web', 'n1', 'n3', 31000, 99, { verdict: 'allowed' }),
    egressFlow(cluster, '/shop/web', 'n1', 'n3', 'udp', 31053, { packets: 3 }),
    // Recorded before api-scrapes-front existed: allowed now.
    e('/shop/api', 'n3', 'n1', 31001, 8),
    // No task claims tcp 31999 on n3.
    i('203.0.113.7', 'n3', 31999, 1, { verdict: 'denied' }),
  ];
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('suggestRules', () => {
  it('gives group-level rules by name, networks and exact cidrs, ordered by traffic, with their evidence', () => {
    const s = suggestRules(policy, cluster, flows);
    expect(s.rules.map((r) => [r.name, r.from, r.to, r.port, r.protocol ?? '', r.evidence.connections])).toEqual([
      ['allow-front-to-api-http', 'front', 'api', 'http', '', 40],
      ['allow-api-to-db-postgres', 'api', 'db', 'postgres', '', 25],
      ['allow-seen-2001-db8-5-and-2-more-to-api-http', 'seen-2001-db8-5-and-2-more', 'api', 'http', '', 8],
      ['allow-vpn-to-api-http', 'vpn', 'api', 'http', '', 7],
      ['allow-api-to-shop-batch-31400', 'api', 'shop-batch', 31400, '', 6],
      ['allow-office-to-api-grpc', 'office', 'api', 'grpc', '', 5],
      ['allow-shop-web-to-shop-dns-dns', 'shop-web', 'shop-dns', 'dns', 'udp', 3],
    ]);
    expect(s.groups).toEqual([
      { name: 'shop-batch', apps: ['/shop/batch'] },
      { name: 'shop-dns', apps: ['/shop/dns'] },
      { name: 'shop-web', apps: ['/shop/web'] },
    ]);
    expect(s.networks).toEqual([{ name: 'seen-2001-db8-5-and-2-more', cidrs: ['2001:db8::5/128', '203.0.113.5/32', '203.0.113.6/32'] }]);
    expect(s.rules[0]!.evidence).toEqual({
      connections: 40,
      bytes: 2400,
      flows: 2,
      firstSeen: '2026-12-01T09:00:00.000Z',
      lastSeen: '2026-12-01T11:30:00.000Z',
      hosts: ['n1', 'n2', 'n3'],
      verdicts: ['audit'],
    });
    expect(s.rules[2]!.evidence.verdicts).toEqual(['denied']);
    expect(s.allowedNow).toBe(1);
    expect(s.coveredByEgress).toBe(1);
    expect(s.skipped.map((k) => [k.connections, k.reason.split(':')[0]])).toEqual([
      [3, "denied by rule 'no-db-from-office' (" + join(FIXTURE, 'policy/20-rules.yaml')],
      [2, "rule 'tools-by-labels' (" + join(FIXTURE, 'policy/20-rules.yaml')],
      [1, 'no task claims the port now (unmanaged)'],
    ]);
  });

  it('takes only the asked verdicts and the flows seen since a time', () => {
    expect(suggestRules(policy, cluster, flows, { verdicts: ['denied'] }).rules.map((r) => r.from)).toEqual(['seen-2001-db8-5-and-2-more']);
    const late = suggestRules(policy, cluster, flows, { sinceMs: Date.parse('2026-12-01T11:15:00.000Z') });
    // Only the canary was seen since: its own group, not `front` (never broader than the evidence).
    expect(late.rules.map((r) => [r.name, r.evidence.connections])).toEqual([['allow-shop-web-canary-to-api-http', 10]]);
    expect(late.groups).toEqual([{ name: 'shop-web-canary', apps: ['/shop/web-canary'] }]);
  });

  it('prints YAML that, pasted into the policy, passes portcullis check and allows every evidence flow', async () => {
    const s = suggestRules(policy, cluster, flows);
    const yaml = suggestionYaml(s, { policy: 'the fixture', verdicts: ['denied', 'audit'] });
    expect(yaml).toContain('  # 40 connections (audit), 2400 bytes, 2 flows; first seen 2026-12-01T09:00:00.000Z, last seen 2026-12-01T11:30:00.000Z; hosts n1, n2, n3\n  - name: allow-front-to-api-http\n    from: front\n    to: api\n    ports: [http]\n    action: allow\n');
    expect(yaml).toContain('  shop-dns:\n    apps: ["/shop/dns"]\n');
    expect(yaml).toContain('    ports: [dns]\n    protocol: udp\n');
    expect(yaml).toContain('#   3 connections (1 flow): denied by rule');
    const doc = parse(yaml) as { groups: object; networks: object; rules: unknown[] };
    expect(Object.keys(doc).sort()).toEqual(['groups', 'networks', 'rules']);
    expect(doc.rules).toHaveLength(7);

    // 1. Saved as a file of the policy directory, sorted after the others.
    const asFile = join(tmp, 'as-file');
    cpSync(join(FIXTURE, 'policy'), asFile, { recursive: true });
    writeFileSync(join(asFile, '99-suggested.yaml'), yaml);
    const inventory = join(FIXTURE, 'inventory.yaml');
    const r1 = await runCli(['check', '--policy', asFile, '--inventory', inventory]);
    expect(r1.code, r1.out + r1.err).toBe(0);
    expect(r1.out).toMatch(/policy ok: 7 groups, 3 networks, 10 rules/);

    // 2. Pasted section by section: groups under groups:, networks under networks:, rules at the end of rules:.
    const pasted = join(tmp, 'pasted');
    cpSync(join(FIXTURE, 'policy'), pasted, { recursive: true });
    const section = (name: string) => {
      const lines = yaml.split('\n');
      const start = lines.indexOf(`${name}:`);
      const body: string[] = [];
      for (let k = start + 1; k < lines.length && (lines[k]!.startsWith(' ') || lines[k] === ''); k++) body.push(lines[k]!);
      return `${body.join('\n')}\n`;
    };
    appendFileSync(join(pasted, '10-groups.yaml'), section('groups'));
    appendFileSync(join(pasted, '00-defaults.yaml'), section('networks'));
    appendFileSync(join(pasted, '20-rules.yaml'), section('rules'));
    const r2 = await runCli(['check', '--policy', pasted, '--inventory', inventory]);
    expect(r2.code, r2.out + r2.err).toBe(0);
    expect(readFileSync(join(pasted, '20-rules.yaml'), 'utf8')).toContain('allow-office-to-api-grpc');

    // With them, every flow a rule was suggested for is allowed; the skipped ones are not.
    const after = await loadPolicyInput(pasted);
    if (!after.ok) throw new Error('pasted policy does not load');
    const verdict = (f: ObservedFlow) => {
      const j = judgeFlow(after.loaded.policy, cluster, f);
      return j.ok ? j.judgement.verdict : j.why;
    };
    const evidence = flows.filter((f) => f.verdict !== 'allowed' && f !== flows[2] && f !== flows[14] && f !== flows[15]);
    const skipped = [flows[6]!, flows[11]!];
    for (const f of evidence.filter((x) => !skipped.includes(x))) expect(verdict(f), JSON.stringify(f.source)).toBe('allowed');
    for (const f of skipped) expect(verdict(f)).toBe('audit');
  });

  it('keeps hostile ids as data: quoted in YAML, escaped in comments, never a line of their own', () => {
    const evil = '/shop/evil"\n  - name: pwned\n    from: any';
    const host = 'n9\n  - name: pwned2';
    const hostile: ClusterState = {
      hosts: [...cluster.hosts, { id: host, addresses: ['10.0.0.9'] }],
      apps: [...cluster.apps, { id: evil, labels: {}, networkMode: 'host', ports: [{ name: 'http', protocols: ['tcp'], labels: {} }] }],
      tasks: [...cluster.tasks, { id: 'evil.1', appId: evil, hostId: host, hostPorts: [31700] }],
    };
    const s = suggestRules(policy, hostile, [egressFlow(hostile, evil, host, 'n3', 'tcp', 31100, { packets: 5 })]);
    const yaml = suggestionYaml(s);
    const doc = parse(yaml) as { groups: Record<string, { apps: string[] }>; rules: { name: string; from: string }[] };
    expect(doc.rules.map((r) => r.name)).toEqual(['allow-shop-evil-name-pwned-from-any-to-api-http']);
    expect(Object.values(doc.groups)[0]!.apps).toEqual([evil]);
    expect(yaml).not.toMatch(/^\s*- name: pwned/m);
    expect(yaml).toContain('hosts n3, n9\\u000a  - name: pwned2');
  });
});
