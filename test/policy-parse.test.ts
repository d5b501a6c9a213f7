/** Valid policy snippets → the exact Policy fields parsePolicy must produce. */
import { describe, expect, it } from 'vitest';
import { parsePolicy } from '../src/policy/parse-policy.js';
import type { ParseResult } from '../src/policy/parse-policy.js';
import type { Policy } from '../src/policy/policy-model.js';

function ok(files: { path: string; text: string }[] | string): Extract<ParseResult, { ok: true }> {
  const list = typeof files === 'string' ? [{ path: 'p.yaml', text: files }] : files;
  const result = parsePolicy(list);
  if (!result.ok) throw new Error(`unexpected errors:\n${result.errors.map((e) => `${e.line}:${e.col} ${e.message}`).join('\n')}`);
  return result;
}

const GROUPS = 'groups:\n  web: { apps: ["/shop/web"] }\n  api: { apps: ["/shop/api"] }\n';

describe('parsePolicy on valid input', () => {
  const cases: { name: string; text: string; pick: (p: Policy) => unknown; want: unknown }[] = [
    { name: "a file holding only 'version: 1' gives the defaults", text: 'version: 1\n', pick: (p) => p, want: {
      defaults: { mode: 'enforce', action: 'deny', failsafe: [{ protocol: 'tcp', port: 22 }], egress: true },
      networks: [], groups: [], rules: [], guardrails: { sources: null, targets: null, deny: [] },
    } },
    { name: 'a placeholder file, version 1 and comments', text: '# nothing yet\nversion: 1\n', pick: (p) => p.rules, want: [] },
    { name: 'defaults, failsafe sorted and deduplicated', text: 'defaults:\n  mode: audit\n  action: allow\n  failsafe: [udp/53, tcp/7443, tcp/22, tcp/22]\n',
      pick: (p) => p.defaults, want: { mode: 'audit', action: 'allow', failsafe: [
        { protocol: 'tcp', port: 22 }, { protocol: 'tcp', port: 7443 }, { protocol: 'udp', port: 53 }], egress: true } },
    { name: 'egress off', text: 'defaults:\n  egress: off\n', pick: (p) => p.defaults.egress, want: false },
    { name: 'egress false (a YAML boolean reads the same)', text: 'defaults:\n  egress: false\n', pick: (p) => p.defaults.egress, want: false },
    { name: 'egress on', text: 'defaults:\n  egress: on\n', pick: (p) => p.defaults.egress, want: true },
    { name: 'partial defaults keep the other defaults', text: 'defaults:\n  mode: audit\n',
      pick: (p) => p.defaults, want: { mode: 'audit', action: 'deny', failsafe: [{ protocol: 'tcp', port: 22 }], egress: true } },
    { name: 'canonical IPv4 and IPv6 CIDRs, single addresses', text:
      'networks:\n  n:\n    cidrs: [10.20.0.0/24, "FD00:0020:0000::/64", 10.1.1.1, "2001:DB8:0:0:1:0:0:1", "::/0", 0.0.0.0/0, "fd00::1:0:0:0:0"]\n',
      pick: (p) => p.networks[0]!.cidrs,
      want: ['10.20.0.0/24', 'fd00:20::/64', '10.1.1.1/32', '2001:db8::1:0:0:1/128', '::/0', '0.0.0.0/0', 'fd00:0:0:1::/128'] },
    { name: 'except inside cidrs, v4 and v6', text:
      'networks:\n  admin:\n    cidrs: [10.20.0.0/24, "fd00:20::/64"]\n    except: [10.20.0.13, 10.20.0.128/25, "fd00:20::ff"]\n',
      pick: (p) => p.networks[0]!.except, want: ['10.20.0.13/32', '10.20.0.128/25', 'fd00:20::ff/128'] },
    { name: 'a single CIDR without a list', text: 'networks:\n  lb:\n    cidrs: 10.0.100.0/24\n',
      pick: (p) => p.networks[0]!.cidrs, want: ['10.0.100.0/24'] },
    { name: 'port numbers, strings, ranges, names', text:
      `${GROUPS}rules:\n  - { from: web, to: api, ports: [80, "8080", 9000-9100, "7000-7000", http, grpc.v1, metrics_2], action: allow }\n`,
      pick: (p) => p.rules[0]!.ports, want: [
        { kind: 'number', port: 80 }, { kind: 'number', port: 8080 }, { kind: 'range', from: 9000, to: 9100 },
        { kind: 'number', port: 7000 }, { kind: 'name', name: 'http' }, { kind: 'name', name: 'grpc.v1' }, { kind: 'name', name: 'metrics_2' }] },
    { name: 'a single port without a list; 1 and 65535 are in range', text:
      `${GROUPS}rules:\n  - { from: web, to: api, ports: 65535, action: allow }\n  - { from: web, to: api, ports: 1-65535, action: allow }\n`,
      pick: (p) => p.rules.map((r) => r.ports), want: [[{ kind: 'number', port: 65535 }], [{ kind: 'range', from: 1, to: 65535 }]] },
    { name: 'absent ports and protocol', text: `${GROUPS}rules:\n  - { from: web, to: api, action: deny }\n`,
      pick: (p) => [p.rules[0]!.ports, p.rules[0]!.protocols], want: [[], null] },
    { name: 'protocol lists sorted, single protocol', text:
      `${GROUPS}rules:\n  - { from: web, to: api, protocol: [udp, tcp, udp], action: allow }\n  - { from: web, to: api, protocol: udp, action: pass }\n`,
      pick: (p) => p.rules.map((r) => [r.protocols, r.action]), want: [[['tcp', 'udp'], 'allow'], [['udp'], 'pass']] },
    { name: 'from: any, networks and groups; to as a string or list', text:
      `networks:\n  admin: { cidrs: [10.0.0.0/8] }\n${GROUPS}rules:\n  - { from: [any, admin, web, web], to: api, action: allow }\n  - { from: web, to: [api, web], action: allow }\n`,
      pick: (p) => p.rules.map((r) => [r.from, r.to]), want: [
        [[{ kind: 'any' }, { kind: 'network', name: 'admin' }, { kind: 'group', name: 'web' }], ['api']],
        [[{ kind: 'group', name: 'web' }], ['api', 'web']]] },
    { name: 'default rule names, explicit names kept', text:
      `${GROUPS}rules:\n  - { from: web, to: api, action: allow }\n  - { name: named_rule-1, from: web, to: api, action: deny }\n  - { from: web, to: api, action: deny }\n`,
      pick: (p) => p.rules.map((r) => r.name), want: ['p.yaml#1', 'named_rule-1', 'p.yaml#3'] },
    { name: 'groups by labels only, apps as a string; sorted by name', text:
      'groups:\n  zeta:\n    labels: { tier: frontend, pci: "true" }\n  alpha:\n    apps: "/a/**"\n',
      pick: (p) => p.groups.map((g) => [g.name, g.apps, g.labels]), want: [
        ['alpha', ['/a/**'], {}], ['zeta', [], { pci: 'true', tier: 'frontend' }]] },
    { name: 'guardrails absent', text: GROUPS, pick: (p) => p.guardrails, want: { sources: null, targets: null, deny: [] } },
    { name: 'guardrails resolved', text:
      `networks:\n  admin: { cidrs: [10.0.0.0/8] }\n${GROUPS}guardrails:\n  sources: [web, admin, any]\n  targets: api\n  deny:\n    - { from: any, to: api }\n    - { from: [admin, web], to: [web, api] }\n`,
      pick: (p) => ({ ...p.guardrails, deny: p.guardrails.deny.map((d) => ({ from: d.from, to: d.to })) }), want: {
        sources: [{ kind: 'group', name: 'web' }, { kind: 'network', name: 'admin' }, { kind: 'any' }],
        targets: ['api'],
        deny: [{ from: [{ kind: 'any' }], to: ['api'] }, { from: [{ kind: 'network', name: 'admin' }, { kind: 'group', name: 'web' }], to: ['web', 'api'] }] } },
    { name: 'YAML anchors and aliases', text:
      'groups:\n  web: { apps: &shop ["/shop/web", "/shop/web-*"] }\n  web2: { apps: *shop }\n',
      pick: (p) => p.groups.map((g) => g.apps), want: [['/shop/web', '/shop/web-*'], ['/shop/web', '/shop/web-*']] },
  ];

  it.each(cases)('$name', ({ text, pick, want }) => {
    expect(pick(ok(text).policy)).toEqual(want);
  });

  it('records where each rule, group and network was defined', () => {
    const { policy } = ok(`networks:\n  admin: { cidrs: [10.0.0.0/8] }\n${GROUPS}rules:\n  - from: web\n    to: api\n    action: allow\n`);
    expect(policy.networks[0]!.at).toEqual({ file: 'p.yaml', line: 2, col: 3 });
    expect(policy.groups.find((g) => g.name === 'api')!.at).toEqual({ file: 'p.yaml', line: 5, col: 3 });
    expect(policy.rules[0]!.at).toEqual({ file: 'p.yaml', line: 7, col: 5 });
  });

  it('keeps the location of every port spec and protocol in sites', () => {
    const result = ok(`${GROUPS}rules:\n  - name: r\n    from: web\n    to: api\n    ports: [http, 80]\n    protocol: tcp\n    action: allow\n`);
    expect(result.sites.rules.get('r')).toEqual({
      ports: [{ file: 'p.yaml', line: 8, col: 13 }, { file: 'p.yaml', line: 8, col: 19 }],
      protocol: { file: 'p.yaml', line: 9, col: 15 },
    });
  });

  it('merges a directory: sorted by path, rules concatenated, one namespace', () => {
    const files = [
      { path: 'dir/20-rules.yaml', text: 'rules:\n  - { from: admin, to: web, action: allow }\n  - { from: any, to: web, action: deny }\n' },
      { path: 'dir/00-defaults.yaml', text: 'defaults:\n  mode: audit\nnetworks:\n  admin: { cidrs: ["fd00:20::/64"] }\n' },
      { path: 'dir/10-groups.yaml', text: 'groups:\n  web: { apps: ["/web"] }\nrules:\n  - { from: web, to: web, action: pass }\n' },
      { path: 'dir/15-placeholder.yaml', text: '# more rules later\nversion: 1\n' },
    ];
    const { policy } = ok(files);
    expect(policy.defaults.mode).toBe('audit');
    expect(policy.rules.map((r) => [r.name, r.action, r.at.file])).toEqual([
      ['10-groups.yaml#1', 'pass', 'dir/10-groups.yaml'],
      ['20-rules.yaml#1', 'allow', 'dir/20-rules.yaml'],
      ['20-rules.yaml#2', 'deny', 'dir/20-rules.yaml'],
    ]);
    expect(policy.rules[1]!.from).toEqual([{ kind: 'network', name: 'admin' }]);
    expect(ok([...files].reverse()).policy).toEqual(policy);
  });

  it('uses the full path in default rule names when two files share a basename', () => {
    const { policy } = ok([
      { path: 'a/rules.yaml', text: `${GROUPS}rules:\n  - { from: web, to: api, action: allow }\n` },
      { path: 'b/rules.yaml', text: 'rules:\n  - { from: web, to: api, action: deny }\n' },
    ]);
    expect(policy.rules.map((r) => r.name)).toEqual(['a/rules.yaml#1', 'b/rules.yaml#1']);
  });

  it('warns, without failing, about an empty failsafe list', () => {
    const result = ok('defaults:\n  failsafe: []\n');
    expect(result.policy.defaults.failsafe).toEqual([]);
    expect(result.warnings).toEqual([expect.objectContaining({ file: 'p.yaml', line: 2, col: 13, severity: 'warning' })]);
    expect(result.warnings[0]!.message).toContain('lock you out');
  });
});

describe('parsePolicy on empty files', () => {
  // An emptied file must not silently drop its rules on a hot reload (README, "Policy format").
  it.each([
    ['nothing at all', ''],
    ['blank lines', '\n  \n\n'],
    ['comments only', '# rules:\n#   - { from: any, to: web, action: allow }\n'],
    ['a document marker only', '---\n'],
  ])('refuses a file holding %s, at 1:1, alone or next to good files', (_what, text) => {
    for (const files of [[{ path: 'p.yaml', text }], [{ path: 'a.yaml', text: GROUPS }, { path: 'p.yaml', text }]]) {
      const result = parsePolicy(files);
      expect(result.ok).toBe(false);
      if (result.ok) return;
      expect(result.errors).toEqual([expect.objectContaining({ file: 'p.yaml', line: 1, col: 1 })]);
      expect(result.errors[0]!.message).toMatch(/policy file is empty .*write 'version: 1' to keep it as a placeholder/);
    }
  });
});

describe('parsePolicy on empty sections', () => {
  it('treats sections left empty as empty', () => {
    const { policy } = ok('defaults:\nnetworks:\ngroups:\nrules:\nguardrails:\n');
    expect(policy.rules).toEqual([]);
    expect(policy.defaults).toEqual({ mode: 'enforce', action: 'deny', failsafe: [{ protocol: 'tcp', port: 22 }], egress: true });
    expect(policy.guardrails).toEqual({ sources: null, targets: null, deny: [] });
  });
});
