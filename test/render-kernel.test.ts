/**
 * Acceptance of the rendered text by the real kernel (nf_tables iptables, ipset), inside a
 * throwaway namespace: --test accepts it, ipset restore loads it, a changed state (including
 * 100,000 members and back) swaps cleanly, iptables-save shows our rules byte for byte, and the
 * uninstall text removes everything we own and nothing else. Needs root.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { emptySets, type DesiredState, type SetContents } from '../src/compile/desired-state.js';
import { ENTRY_CHAIN, MANAGED_CHAIN, ipsetName, setKindsOf } from '../src/render/owned-names.js';
import type { Family } from '../src/net/family.js';
import { renderChains } from '../src/render/render-chains.js';
import { renderIpsetUninstall } from '../src/render/render-ipsets.js';
import { renderIptablesRestore, renderUninstallIptables, restoreCommand } from '../src/render/render-iptables.js';
import { appendLine } from '../src/render/restore-text.js';
import { applyRendered, ipsetMembers, ipsetNames, ipsetSave, ownedIptables, ownedSets, saveAll, saveTable } from './support/kernel-state.js';
import { createTestNetwork, sweepStaleNamespaces, type TestNetwork } from './support/netns.js';

const isRoot = process.getuid?.() === 0;
if (!isRoot) console.warn('render-kernel.test.ts skipped: needs root for network namespaces');

const EMPTY: SetContents = emptySets();

function state(mode: 'enforce' | 'audit', sets: Partial<SetContents>, version = '00000000000000aa'): DesiredState {
  return { hostId: 'kernel-test', mode, sets: { ...EMPTY, ...sets }, version };
}

const first = state('enforce', {
  'managed-tcp': ['31000', '31001'],
  'managed-udp': ['31053'],
  'failsafe-tcp': ['22'],
  'allow-ip4': ['10.0.1.11,tcp:31000', '10.0.1.12,tcp:31001'],
  'allow-net4': ['10.0.100.0/24,udp:31053', '0.0.0.0/0,tcp:31001'],
  'allow-ip6': ['fd00:1::11,tcp:31000'],
  'allow-net6': ['fd00:100::/64,udp:31053', '::/0,tcp:31001'],
});

const big = state('audit', {
  'managed-tcp': ['31000'],
  'allow-ip4': Array.from({ length: 100_000 }, (_, i) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255},tcp:31000`),
  'allow-ip6': Array.from({ length: 100_000 }, (_, i) => `fd00::${(i >> 16).toString(16)}:${(i & 0xffff).toString(16)},tcp:31000`),
}, '00000000000000bb');

const second = state('enforce', {
  'managed-tcp': ['31002'],
  'failsafe-udp': ['53'],
  'allow-ip4': ['10.0.1.99,tcp:31002'],
  'allow-ip6': ['fd00:1::99,tcp:31002'],
}, '00000000000000cc');

describe.skipIf(!isRoot)('rendered text on the real kernel', () => {
  let net: TestNetwork | undefined;
  let ns = '';
  const before: Record<string, string> = {};

  async function ok(argv: string[], input?: string): Promise<string> {
    const r = await net!.exec(ns, argv, input === undefined ? {} : { input });
    if (r.code !== 0) throw new Error(`${argv.join(' ')} exited ${r.code}: ${r.stderr}`);
    return r.stdout;
  }

  const apply = (s: DesiredState, family: Family): Promise<void> => applyRendered(net!, ns, s, family);

  beforeAll(async () => {
    await sweepStaleNamespaces();
    net = await createTestNetwork({ hosts: 1, ipv6: true });
    ns = net.hosts[0]!.ns;
    // Foreign objects that must survive everything we do.
    await ok(['ipset', 'create', 'foreign-set', 'hash:ip']);
    await ok(['ipset', 'add', 'foreign-set', '192.0.2.1']);
    for (const cmd of ['iptables', 'ip6tables']) {
      await ok([cmd, '-t', 'mangle', '-A', 'PREROUTING', '-p', 'tcp', '--dport', '9999', '-m', 'comment', '--comment', 'foreign', '-j', 'ACCEPT']);
      await ok([cmd, '-t', 'mangle', '-N', 'FOREIGN-CHAIN']);
      await ok([cmd, '-t', 'mangle', '-A', 'FOREIGN-CHAIN', '-j', 'RETURN']);
      await ok([cmd, '-t', 'filter', '-A', 'INPUT', '-p', 'udp', '--dport', '9998', '-j', 'DROP']);
    }
    before.v4 = await saveAll(net, ns, 4);
    before.v6 = await saveAll(net, ns, 6);
    before.ipset = await ipsetSave(net, ns);
  });

  afterAll(async () => {
    await net?.destroy();
  });

  for (const family of [4, 6] as const) {
    it(`IPv${family}: first apply loads the sets and the rules exactly as rendered`, async () => {
      await apply(first, family);
      const saved = await saveTable(net!, ns, family);
      const { chains, jump } = renderChains(first, family);
      for (const chain of chains) {
        expect(saved).toContain(`:${chain.name} - [0:0]`);
        for (const rule of chain.rules) expect(saved.split('\n')).toContain(appendLine(chain.name, rule));
      }
      expect(saved.split('\n')).toContain(appendLine('PREROUTING', jump));
      const prerouting = saved.split('\n').filter((l) => l.startsWith('-A PREROUTING '));
      expect(prerouting[0]).toBe(appendLine('PREROUTING', jump));
      const p = family === 4 ? 'pcu4' : 'pcu6';
      expect(await ipsetMembers(net!, ns, `${p}-managed-tcp`)).toEqual(['31000', '31001']);
      expect(await ipsetMembers(net!, ns, `${p}-allow-net`)).toEqual(
        family === 4
          ? ['0.0.0.0/1,tcp:31001', '10.0.100.0/24,udp:31053', '128.0.0.0/1,tcp:31001']
          : ['8000::/1,tcp:31001', '::/1,tcp:31001', 'fd00:100::/64,udp:31053'],
      );
      expect(await ownedSets(net!, ns)).toEqual(expect.arrayContaining(setKindsOf(family).map((kind) => ipsetName(kind, family))));
    });
  }

  for (const family of [4, 6] as const) {
    it(`IPv${family}: 100,000 members in audit mode, then a small state, swap cleanly without a second jump`, async () => {
      await apply(big, family);
      const p = family === 4 ? 'pcu4' : 'pcu6';
      const header = await ok(['ipset', 'list', '-t', `${p}-allow-ip`]);
      expect(header).toContain('Number of entries: 100000');
      let saved = await saveTable(net!, ns, family);
      expect(saved).toContain('-j NFLOG --nflog-prefix pcu-audit');
      expect(saved).not.toMatch(/-j DROP/);

      await apply(second, family);
      saved = await saveTable(net!, ns, family);
      const lines = saved.split('\n');
      expect(lines.filter((l) => l.startsWith('-A PREROUTING ') && l.endsWith(`-j ${ENTRY_CHAIN}`))).toHaveLength(1);
      const ours = lines.filter((l) => l.startsWith(`-A ${ENTRY_CHAIN} `) || l.startsWith(`-A ${MANAGED_CHAIN} `));
      expect(ours).toHaveLength(renderChains(second, family).chains.flatMap((c) => c.rules).length);
      expect(saved).toContain(`-j DROP`);
      expect(await ipsetMembers(net!, ns, `${p}-allow-ip`)).toEqual([family === 4 ? '10.0.1.99,tcp:31002' : 'fd00:1::99,tcp:31002']);
      expect(await ipsetMembers(net!, ns, `${p}-managed-tcp`)).toEqual(['31002']);
      expect((await ipsetNames(net!, ns)).filter((n) => n.endsWith('-tmp'))).toEqual([]);
    });
  }

  it('a stale jump is replaced through deleteJumps, leaving exactly one', async () => {
    const stale = ['-m', 'comment', '--comment', 'pcu:00000000', '-j', ENTRY_CHAIN];
    await ok(['iptables', '-t', 'mangle', '-I', 'PREROUTING', '1', ...stale]);
    const text = renderIptablesRestore(second, 4, { insertJump: true, deleteJumps: ownedIptables(await saveTable(net!, ns, 4)).jumps });
    await ok(['iptables-restore', '--noflush'], text);
    const jumps = ownedIptables(await saveTable(net!, ns, 4)).jumps;
    expect(jumps).toEqual([['-m', 'comment', '--comment', renderChains(second, 4).jump.comment, '-j', ENTRY_CHAIN]]);
  });

  it('uninstall removes everything we own and nothing else', async () => {
    for (const family of [4, 6] as const) {
      const present = ownedIptables(await saveTable(net!, ns, family));
      expect(present.chains.sort()).toEqual([MANAGED_CHAIN, ENTRY_CHAIN].sort());
      const text = renderUninstallIptables(family, present);
      await ok([restoreCommand(family), '--test', '--noflush'], text);
      await ok([restoreCommand(family), '--noflush'], text);
    }
    await ok(['ipset', 'restore'], renderIpsetUninstall(await ownedSets(net!, ns)));
    expect(await saveAll(net!, ns, 4)).toBe(before.v4);
    expect(await saveAll(net!, ns, 6)).toBe(before.v6);
    expect(await ipsetSave(net!, ns)).toBe(before.ipset);
    expect(before.ipset).toContain('foreign-set');
    expect(before.v4).toContain('FOREIGN-CHAIN');
  });
});
