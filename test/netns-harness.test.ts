/**
 * The namespace harness itself: 3 hosts on a bridge, TCP and UDP listeners on host 2 reachable
 * from host 1 over IPv4 and IPv6, a closed TCP port refused, and nothing of this run left after
 * destroy(). Needs root (network namespaces).
 */
import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestNetwork, listNamespaces, run, sweepStaleNamespaces, type TestNetwork } from './support/netns.js';
import { probe, startListener, type Listener } from './support/probe.js';

const isRoot = process.getuid?.() === 0;
if (!isRoot) console.warn('netns-harness.test.ts skipped: needs root for network namespaces');

describe.skipIf(!isRoot)('network namespace harness', () => {
  let net: TestNetwork | undefined;
  const listeners: Listener[] = [];

  beforeAll(async () => {
    await sweepStaleNamespaces();
    net = await createTestNetwork({ hosts: 3, ipv6: true });
    const h2 = net.hosts[1]!.ns;
    for (const family of [4, 6] as const) {
      listeners.push(await startListener(net, h2, { protocol: 'tcp', port: 18080, family }));
      listeners.push(await startListener(net, h2, { protocol: 'udp', port: 18053, family }));
    }
  });

  afterAll(async () => {
    await net?.destroy();
  });

  it('creates one switch and three host namespaces with the planned addresses', async () => {
    const n = net!;
    expect(n.hosts.map((h) => [h.id, h.v4, h.v6])).toEqual([
      ['h1', '10.77.0.11', 'fd77::11'],
      ['h2', '10.77.0.12', 'fd77::12'],
      ['h3', '10.77.0.13', 'fd77::13'],
    ]);
    const names = await listNamespaces();
    for (const ns of [n.switchNs, ...n.hosts.map((h) => h.ns)]) expect(names).toContain(ns);
    const addr = await n.exec(n.hosts[0]!.ns, ['ip', '-o', 'addr', 'show', 'dev', 'eth0']);
    expect(addr.stdout).toContain('10.77.0.11/24');
    expect(addr.stdout).toContain('fd77::11/64');
    const routes = await n.exec(n.hosts[0]!.ns, ['ip', 'route', 'show', 'default']);
    expect(routes.stdout.trim()).toBe('');
  });

  it('passes stdin to exec and reports exit codes', async () => {
    const n = net!;
    const cat = await n.exec(n.hosts[0]!.ns, ['cat'], { input: 'hello\n' });
    expect(cat).toEqual({ stdout: 'hello\n', stderr: '', code: 0 });
    const bad = await n.exec(n.hosts[0]!.ns, ['ip', 'link', 'show', 'dev', 'no-such-dev']);
    expect(bad.code).not.toBe(0);
  });

  for (const family of [4, 6] as const) {
    for (const protocol of ['tcp', 'udp'] as const) {
      it(`${protocol} over IPv${family}: host 1 reaches the listener on host 2`, async () => {
        const n = net!;
        const h2 = n.hosts[1]!;
        const address = family === 4 ? h2.v4 : h2.v6;
        const port = protocol === 'tcp' ? 18080 : 18053;
        const listener = listeners.find((l) => l.family === family && l.protocol === protocol)!;
        expect(await probe(n, n.hosts[0]!.ns, { protocol, address, port, timeoutMs: 800 })).toBe('open');
        await listener.waitForPeers(1);
        expect(listener.peers).toContain(family === 4 ? n.hosts[0]!.v4 : n.hosts[0]!.v6);
      });
    }
    it(`a closed tcp port over IPv${family} is refused`, async () => {
      const n = net!;
      const address = family === 4 ? n.hosts[1]!.v4 : n.hosts[1]!.v6;
      expect(await probe(n, n.hosts[0]!.ns, { protocol: 'tcp', address, port: 18081, timeoutMs: 800 })).toBe('refused');
    });
    it(`a closed udp port over IPv${family} is refused (ICMP port unreachable)`, async () => {
      const n = net!;
      const address = family === 4 ? n.hosts[1]!.v4 : n.hosts[1]!.v6;
      expect(await probe(n, n.hosts[0]!.ns, { protocol: 'udp', address, port: 18054, timeoutMs: 800 })).toBe('refused');
    });
  }

  it('a DROP rule turns a tcp probe into a timeout', async () => {
    const n = net!;
    const h3 = n.hosts[2]!.ns;
    const drop = await n.exec(h3, ['iptables', '-A', 'INPUT', '-p', 'tcp', '--dport', '18090', '-j', 'DROP']);
    expect(drop.code).toBe(0);
    await startListener(n, h3, { protocol: 'tcp', port: 18090, family: 4 });
    expect(await probe(n, n.hosts[0]!.ns, { protocol: 'tcp', address: n.hosts[2]!.v4, port: 18090, timeoutMs: 500 })).toBe('timeout');
  });

  it('sweepStaleNamespaces removes namespaces of dead runs only', async () => {
    const dead = spawnSync('true').pid;
    expect(dead).toBeGreaterThan(0);
    const staleName = `pcut-${dead}-sweep-h1`;
    const liveName = `pcut-${process.pid}-sweep-live`;
    try {
      for (const name of [staleName, liveName]) expect((await run('ip', ['netns', 'add', name])).code).toBe(0);
      const swept = await sweepStaleNamespaces();
      expect(swept).toContain(staleName);
      const names = await listNamespaces();
      expect(names).not.toContain(staleName);
      expect(names).toContain(liveName);
      expect(names).toContain(net!.switchNs);
    } finally {
      await run('ip', ['netns', 'del', staleName]);
      await run('ip', ['netns', 'del', liveName]);
    }
  });

  it('destroy kills spawned processes, removes every namespace of the run and is idempotent', async () => {
    const n = net!;
    const child = n.spawnIn(n.hosts[0]!.ns, ['sleep', '600']);
    await n.destroy();
    await n.destroy();
    expect(child.exitCode !== null || child.signalCode !== null).toBe(true);
    expect((await listNamespaces()).filter((name) => name.startsWith(n.prefix))).toEqual([]);
    expect(() => n.spawnIn(n.hosts[0]!.ns, ['true'])).toThrow(/destroyed/);
  });
});
