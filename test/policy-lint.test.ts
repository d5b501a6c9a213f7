/** lintPolicyAgainstCluster: mistakes only the apps of a cluster reveal. */
import { describe, expect, it } from 'vitest';
import { lintPolicyAgainstCluster } from '../src/policy/lint-against-cluster.js';
import { parsePolicy } from '../src/policy/parse-policy.js';
import type { ClusterState } from '../src/inventory/cluster-state.js';

const cluster: ClusterState = {
  hosts: [{ id: 'h1', addresses: ['10.0.0.1'] }],
  apps: [
    { id: '/shop/api', labels: {}, networkMode: 'host', ports: [{ name: 'http', protocols: ['tcp'], labels: {} }, { name: 'metrics', protocols: ['tcp'], labels: {} }] },
    { id: '/infra/dns', labels: {}, networkMode: 'host', ports: [{ name: 'dns', protocols: ['tcp', 'udp'], labels: {} }, { protocols: ['udp'], labels: {} }] },
  ],
  tasks: [],
};

function lint(text: string, withSites = true) {
  const result = parsePolicy([{ path: 'p.yaml', text }]);
  if (!result.ok) throw new Error(result.errors.map((e) => e.message).join('\n'));
  return lintPolicyAgainstCluster(result.policy, cluster, withSites ? result.sites : undefined);
}

const GROUPS = 'groups:\n  api: { apps: ["/shop/api"] }\n  dns: { apps: ["/infra/*"] }\n  ghost: { labels: { team: nobody } }\n';

describe('lintPolicyAgainstCluster', () => {
  it('warns about a group that selects no app, and nothing else on a clean policy', () => {
    const out = lint(`${GROUPS}rules:\n  - { from: api, to: dns, ports: [dns], protocol: udp, action: allow }\n`);
    expect(out).toEqual([{ file: 'p.yaml', line: 4, col: 3, severity: 'warning', message: expect.stringContaining("group 'ghost' selects no app") }]);
  });

  it('reports an unknown port name at its location, listing the names the apps define', () => {
    const out = lint(`${GROUPS}rules:\n  - name: r\n    from: dns\n    to: [api, dns]\n    ports: [http, htps]\n    action: allow\n`);
    const errors = out.filter((d) => d.severity === 'error');
    expect(errors).toEqual([{ file: 'p.yaml', line: 9, col: 19, severity: 'error', message: expect.stringContaining("port name 'htps'") }]);
    expect(errors[0]!.message).toContain('names they define: dns, http, metrics');
  });

  it('falls back to the rule location without sites', () => {
    const out = lint(`${GROUPS}rules:\n  - name: r\n    from: dns\n    to: api\n    ports: [htps]\n    action: allow\n`, false);
    expect(out.filter((d) => d.severity === 'error').map((d) => [d.line, d.col])).toEqual([[6, 5]]);
  });

  it('reports a protocol that excludes every protocol of the named port', () => {
    const out = lint(`${GROUPS}rules:\n  - name: r\n    from: dns\n    to: api\n    ports: [http]\n    protocol: udp\n    action: allow\n`);
    expect(out.filter((d) => d.severity === 'error')).toEqual([
      { file: 'p.yaml', line: 10, col: 15, severity: 'error', message: expect.stringContaining("port 'http' of group 'api' is tcp only") },
    ]);
  });

  it('does not report port names of rules whose groups select no app (the warning covers it)', () => {
    const out = lint(`${GROUPS}rules:\n  - { from: api, to: ghost, ports: [nothing], action: allow }\n`);
    expect(out.map((d) => d.severity)).toEqual(['warning']);
  });
});
