/**
 * The kernel facts per-app egress rests on, checked on this machine with real cgroups, real
 * namespaces and real TCP: an `iptables -m cgroup --path` rule in a host's OUTPUT chain tells two
 * processes of one host address apart by the cgroup their socket was made in; a process outside
 * every matched cgroup is untouched; and a rule on a path that is removed and created again no
 * longer matches the new cgroup (the match holds the cgroup it resolved when the rule was
 * written), which is why an agent must rewrite its rules when a container restarts. Root only.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cgroup2Mount, createTestCgroup, sweepStaleCgroups, type TestCgroup } from './support/cgroup.js';
import { createTestNetwork, sweepStaleNamespaces, type TestNetwork } from './support/netns.js';
import { probe, startListener } from './support/probe.js';

const isRoot = process.getuid?.() === 0;
const hasCgroup2 = isRoot && cgroup2Mount() !== undefined;
if (!isRoot) console.warn('cgroup-kernel.test.ts skipped: needs root for network namespaces and cgroups');
else if (!hasCgroup2) console.warn('cgroup-kernel.test.ts skipped: this host has no cgroup2 mount');

const PORT = 18443;

describe.skipIf(!hasCgroup2)('iptables tells processes of one host apart by cgroup', () => {
  let net: TestNetwork | undefined;
  const cgroups: TestCgroup[] = [];
  let allowed: TestCgroup;
  let refused: TestCgroup;

  beforeAll(async () => {
    await sweepStaleNamespaces();
    sweepStaleCgroups();
    net = await createTestNetwork({ hosts: 2, ipv6: false });
    await startListener(net, net.hosts[1]!.ns, { protocol: 'tcp', port: PORT, family: 4 });
    allowed = createTestCgroup('web');
    refused = createTestCgroup('batch');
    cgroups.push(allowed, refused);
    const r = await net.exec(net.hosts[0]!.ns, ['iptables', '-A', 'OUTPUT', '-p', 'tcp', '-m', 'cgroup', '--path', refused.path, '-j', 'REJECT', '--reject-with', 'tcp-reset']);
    expect(r.code, r.stderr).toBe(0);
  });

  afterAll(async () => {
    await net?.destroy();
    for (const c of cgroups) c.destroy();
  });

  const target = () => ({ protocol: 'tcp' as const, address: net!.hosts[1]!.v4, port: PORT });

  it('the same host address: the process in the matched cgroup is refused, the other connects', async () => {
    const h1 = net!.hosts[0]!.ns;
    expect(await probe(net!, h1, { ...target(), cgroup: allowed })).toBe('open');
    expect(await probe(net!, h1, { ...target(), cgroup: refused })).toBe('refused');
    expect(await probe(net!, h1, target())).toBe('open'); // a host process in no task cgroup
  });

  it('a cgroup removed and created again at the same path is no longer matched by the old rule', async () => {
    const h1 = net!.hosts[0]!.ns;
    refused.destroy();
    cgroups.splice(cgroups.indexOf(refused), 1);
    const again = createTestCgroup('batch');
    cgroups.push(again);
    expect(again.path).toBe(refused.path);
    expect(await probe(net!, h1, { ...target(), cgroup: again })).toBe('open');
    // Writing the rule again resolves the new cgroup.
    const r = await net!.exec(h1, ['iptables', '-I', 'OUTPUT', '1', '-p', 'tcp', '-m', 'cgroup', '--path', again.path, '-j', 'REJECT', '--reject-with', 'tcp-reset']);
    expect(r.code, r.stderr).toBe(0);
    expect(await probe(net!, h1, { ...target(), cgroup: again })).toBe('refused');
  });
});
