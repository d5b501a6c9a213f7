/**
 * The rendered rules filter real traffic as docs/architecture.md says, over IPv4 and IPv6:
 * three hosts on a bridge; host 2 runs listeners and applies a state that lets host 1 (only) reach
 * some managed ports. Checks allow, default drop, failsafe, unmanaged ports, a Docker-like DNAT'd
 * host port (filtered on the host port, before DNAT) and audit mode (logged, not dropped). Root only.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { emptySets, type DesiredState, type SetContents } from '../src/compile/desired-state.js';
import { applyRendered, saveTable } from './support/kernel-state.js';
import { createTestNetwork, sweepStaleNamespaces, type TestNetwork } from './support/netns.js';
import { probe, startListener, type ProbeProtocol, type ProbeVerdict } from './support/probe.js';

const isRoot = process.getuid?.() === 0;
if (!isRoot) console.warn('render-traffic.test.ts skipped: needs root for network namespaces');

const ALLOWED = 18080; // managed, host 1 allowed (allow-ip)
const DENIED = 18081; // managed, nobody allowed
const FAILSAFE = 18022; // managed and failsafe
const UNMANAGED = 18090; // no task: untouched
const BRIDGED = 18085; // managed host port, DNAT'd to 18086 like Docker does; host 1 allowed
const BRIDGED_TARGET = 18086;
const UDP = 18053; // managed udp, host 1 allowed through allow-net

function hostState(mode: 'enforce' | 'audit'): DesiredState {
  const sets: SetContents = {
    ...emptySets(),
    'managed-tcp': [String(ALLOWED), String(DENIED), String(FAILSAFE), String(BRIDGED)],
    'managed-udp': [String(UDP)],
    'failsafe-tcp': [String(FAILSAFE)],
    'failsafe-udp': [],
    'allow-ip4': [`10.77.0.11,tcp:${ALLOWED}`, `10.77.0.11,tcp:${BRIDGED}`],
    'allow-net4': [`10.77.0.10/31,udp:${UDP}`],
    'allow-ip6': [`fd77::11,tcp:${ALLOWED}`, `fd77::11,tcp:${BRIDGED}`],
    'allow-net6': [`fd77::10/127,udp:${UDP}`],
  };
  return { hostId: 'h2', mode, sets, version: mode === 'enforce' ? '000000000000e001' : '000000000000a001' };
}

describe.skipIf(!isRoot)('rendered rules filter real traffic', () => {
  let net: TestNetwork | undefined;

  beforeAll(async () => {
    await sweepStaleNamespaces();
    net = await createTestNetwork({ hosts: 3, ipv6: true });
    const h2 = net.hosts[1]!.ns;
    for (const family of [4, 6] as const) {
      for (const port of [ALLOWED, DENIED, FAILSAFE, UNMANAGED, BRIDGED_TARGET]) {
        await startListener(net, h2, { protocol: 'tcp', port, family });
      }
      await startListener(net, h2, { protocol: 'udp', port: UDP, family });
      const nat = family === 4 ? 'iptables' : 'ip6tables';
      const r = await net.exec(h2, [nat, '-t', 'nat', '-A', 'PREROUTING', '-p', 'tcp', '--dport', String(BRIDGED), '-j', 'REDIRECT', '--to-ports', String(BRIDGED_TARGET)]);
      expect(r.code, r.stderr).toBe(0);
    }
  });

  afterAll(async () => {
    await net?.destroy();
  });

  type Case = [from: 'h1' | 'h3', protocol: ProbeProtocol, port: number, enforce: ProbeVerdict];
  const cases: Case[] = [
    ['h1', 'tcp', ALLOWED, 'open'],
    ['h3', 'tcp', ALLOWED, 'timeout'],
    ['h1', 'tcp', DENIED, 'timeout'],
    ['h3', 'tcp', FAILSAFE, 'open'],
    ['h3', 'tcp', UNMANAGED, 'open'],
    ['h1', 'tcp', BRIDGED, 'open'],
    ['h3', 'tcp', BRIDGED, 'timeout'],
    ['h1', 'udp', UDP, 'open'],
    ['h3', 'udp', UDP, 'timeout'],
  ];

  async function probeAll(family: 4 | 6): Promise<string[]> {
    const n = net!;
    const target = n.hosts[1]!;
    const address = family === 4 ? target.v4 : target.v6;
    return Promise.all(
      cases.map(async ([from, protocol, port]) => {
        const ns = n.hosts.find((h) => h.id === from)!.ns;
        return `${from} ${protocol}/${port} ${await probe(n, ns, { protocol, address, port, timeoutMs: 700 })}`;
      }),
    );
  }

  for (const family of [4, 6] as const) {
    it(`IPv${family} enforce: only what the sets allow gets through`, async () => {
      await applyRendered(net!, net!.hosts[1]!.ns, hostState('enforce'), family);
      expect(await probeAll(family)).toEqual(cases.map(([f, p, port, v]) => `${f} ${p}/${port} ${v}`));
    });

    it(`IPv${family} audit: everything gets through and would-be drops are logged`, async () => {
      await applyRendered(net!, net!.hosts[1]!.ns, hostState('audit'), family);
      expect(await probeAll(family)).toEqual(cases.map(([f, p, port]) => `${f} ${p}/${port} open`));
      const cmd = family === 4 ? 'iptables-save' : 'ip6tables-save';
      const saved = await net!.exec(net!.hosts[1]!.ns, [cmd, '-c', '-t', 'mangle']);
      const nflog = saved.stdout.split('\n').find((l) => l.includes('-j NFLOG --nflog-prefix pcu-audit'));
      const packets = Number(/^\[(\d+):/.exec(nflog ?? '')?.[1] ?? 0);
      expect(packets).toBeGreaterThan(0);
      expect(await saveTable(net!, net!.hosts[1]!.ns, family)).not.toContain('-j DROP');
    });
  }
});
