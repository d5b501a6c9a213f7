/**
 * Unit tests of the renderer's small parts: owned names, rule hashes, quoting, jump handling and
 * the refusals that keep it from touching anything it does not own.
 */
import { describe, expect, it } from 'vitest';
import { SET_KINDS, type DesiredState } from '../src/compile/desired-state.js';
import {
  ENTRY_CHAIN, MANAGED_CHAIN, ipsetName, isOwnedChainName, isOwnedSetName, setKindsOf, tmpSetName,
} from '../src/render/owned-names.js';
import { renderChains, ruleArgs } from '../src/render/render-chains.js';
import { renderIpsetRestore, renderIpsetUninstall, hashsizeFor } from '../src/render/render-ipsets.js';
import { renderIptablesRestore, renderUninstallIptables } from '../src/render/render-iptables.js';
import { argsText, quoteArg } from '../src/render/restore-text.js';
import { splitSaveArgs } from './support/kernel-state.js';
import { makeRule } from '../src/render/rule-model.js';

const empty: DesiredState = {
  hostId: 'h',
  mode: 'enforce',
  version: '0000000000000000',
  sets: Object.fromEntries(SET_KINDS.map((k) => [k, []])) as unknown as DesiredState['sets'],
};

describe('owned names', () => {
  it('maps set kinds to per-family names', () => {
    expect(ipsetName('managed-tcp', 4)).toBe('pcu4-managed-tcp');
    expect(ipsetName('managed-tcp', 6)).toBe('pcu6-managed-tcp');
    expect(ipsetName('allow-ip4', 4)).toBe('pcu4-allow-ip');
    expect(ipsetName('allow-ip4', 6)).toBeUndefined();
    expect(ipsetName('allow-net6', 6)).toBe('pcu6-allow-net');
    expect(ipsetName('allow-net6', 4)).toBeUndefined();
    expect(setKindsOf(4).map((kind) => ipsetName(kind, 4))).toEqual([
      'pcu4-managed-tcp', 'pcu4-managed-udp', 'pcu4-failsafe-tcp', 'pcu4-failsafe-udp', 'pcu4-allow-ip', 'pcu4-allow-net',
    ]);
    for (const f of [4, 6] as const) {
      for (const name of setKindsOf(f).map((kind) => ipsetName(kind, f)!)) {
        expect(tmpSetName(name).length).toBeLessThanOrEqual(31);
        expect(isOwnedSetName(name) && isOwnedSetName(tmpSetName(name))).toBe(true);
      }
    }
  });

  it.each([
    ['pcu4-allow-ip', true], ['pcu6-managed-tcp-tmp', true], ['pcu5-x', false], ['foreign', false],
    ['pcu4-', false], ['PCU4-allow-ip', false], ['pcu4-allow ip', false],
  ])('isOwnedSetName(%j) = %s', (name, owned) => expect(isOwnedSetName(name)).toBe(owned));

  it.each([
    ['PCU-PREROUTING', true], ['PCU-MANAGED', true], ['PREROUTING', false], ['DOCKER', false], ['PCU-', false], ['pcu-x', false],
  ])('isOwnedChainName(%j) = %s', (name, owned) => expect(isOwnedChainName(name)).toBe(owned));
});

describe('rules', () => {
  it('comments are pcu:<8 hex> of match + action, unique within a family', () => {
    for (const f of [4, 6] as const) {
      for (const mode of ['enforce', 'audit'] as const) {
        const { chains, jump } = renderChains({ ...empty, mode }, f);
        const comments = [jump, ...chains.flatMap((c) => c.rules)].map((r) => r.comment);
        for (const c of comments) expect(c).toMatch(/^pcu:[0-9a-f]{8}$/);
        expect(new Set(comments).size).toBe(comments.length);
      }
    }
    expect(makeRule(['-i', 'lo'], ['-j', 'RETURN']).comment).toBe(makeRule(['-i', 'lo'], ['-j', 'RETURN']).comment);
    expect(makeRule(['-i', 'lo'], ['-j', 'RETURN']).comment).not.toBe(makeRule(['-i', 'lo'], ['-j', 'DROP']).comment);
  });

  it('ruleArgs puts the comment between match and action', () => {
    const rule = makeRule(['-i', 'lo'], ['-j', 'RETURN']);
    expect(ruleArgs(rule)).toEqual(['-i', 'lo', '-m', 'comment', '--comment', rule.comment, '-j', 'RETURN']);
  });

  it('the chain layout follows docs/architecture.md', () => {
    const { chains, jump, table } = renderChains(empty, 6);
    expect(table).toBe('mangle');
    expect(jump.action).toEqual(['-j', ENTRY_CHAIN]);
    expect(chains.map((c) => c.name)).toEqual([ENTRY_CHAIN, MANAGED_CHAIN]);
    expect(chains[1]!.rules.map((r) => r.action.join(' '))).toEqual(['-j RETURN', '-j RETURN', '-j DROP']);
    expect(renderChains({ ...empty, mode: 'audit' }, 6).chains[1]!.rules.map((r) => r.action.join(' '))).toEqual([
      '-j RETURN', '-j RETURN', '-j NFLOG --nflog-prefix pcu-audit', '-j RETURN',
    ]);
    expect(() => renderChains({ ...empty, mode: 'permissive' as 'audit' }, 4)).toThrow(/unknown mode/);
  });
});

describe('restore text', () => {
  it('quotes like iptables-save and refuses line breaks and quotes', () => {
    expect(argsText(['-m', 'comment', '--comment', 'pcu:1234abcd', '-j', 'RETURN'])).toBe('-m comment --comment "pcu:1234abcd" -j RETURN');
    expect(quoteArg('two words')).toBe('"two words"');
    expect(() => quoteArg('x\n-A PREROUTING -j ACCEPT')).toThrow(/refusing/);
    expect(() => quoteArg('a"b')).toThrow(/refusing/);
    expect(() => quoteArg('a\\b')).toThrow(/refusing/);
  });

  it('splitSaveArgs inverts argsText', () => {
    const args = ['-p', 'tcp', '-m', 'comment', '--comment', 'hello world', '-j', ENTRY_CHAIN];
    expect(splitSaveArgs(argsText(args))).toEqual(args);
    expect(splitSaveArgs('-m comment --comment "a \\"q\\"" -j X')).toEqual(['-m', 'comment', '--comment', 'a "q"', '-j', 'X']);
    expect(() => splitSaveArgs('--comment "open')).toThrow(/unterminated/);
  });
});

describe('jumps and uninstall', () => {
  const stale = ['-m', 'comment', '--comment', 'pcu:00000000', '-j', ENTRY_CHAIN];

  it('deletes stale jumps before inserting the current one', () => {
    const text = renderIptablesRestore(empty, 4, { insertJump: true, deleteJumps: [stale] });
    const lines = text.split('\n');
    const del = lines.indexOf(`-D PREROUTING ${argsText(stale)}`);
    const ins = lines.findIndex((l) => l.startsWith('-I PREROUTING 1 '));
    expect(del).toBeGreaterThan(0);
    expect(ins).toBeGreaterThan(del);
    expect(renderIptablesRestore(empty, 4, { insertJump: false })).not.toMatch(/PREROUTING 1/);
  });

  it('refuses to delete rules that do not jump to our chains', () => {
    expect(() => renderIptablesRestore(empty, 4, { insertJump: false, deleteJumps: [['-j', 'DOCKER']] })).toThrow(/not a jump/);
    expect(() => renderUninstallIptables(4, { chains: [], jumps: [['-p', 'tcp', '-j', 'ACCEPT']] })).toThrow(/not a jump/);
    expect(() => renderUninstallIptables(4, { chains: ['DOCKER'], jumps: [] })).toThrow(/not ours/);
    expect(() => renderIpsetUninstall(['docker-set'])).toThrow(/not ours/);
  });

  it('uninstall deletes jumps, flushes then removes our chains', () => {
    const text = renderUninstallIptables(6, { chains: [ENTRY_CHAIN, MANAGED_CHAIN], jumps: [stale] });
    expect(text.split('\n').filter((l) => !l.startsWith('#'))).toEqual([
      '*mangle',
      `-D PREROUTING ${argsText(stale)}`,
      `:${MANAGED_CHAIN} - [0:0]`,
      `:${ENTRY_CHAIN} - [0:0]`,
      `-X ${MANAGED_CHAIN}`,
      `-X ${ENTRY_CHAIN}`,
      'COMMIT',
      '',
    ]);
    expect(renderIpsetUninstall(['pcu4-allow-ip', 'pcu4-allow-ip-tmp'])).toBe('destroy pcu4-allow-ip\ndestroy pcu4-allow-ip-tmp\n');
  });
});

describe('ipset sizing and members', () => {
  it('sizes hashsize by member count and keeps maxelem constant', () => {
    expect([0, 1024, 1025, 100_000, 10_000_000].map(hashsizeFor)).toEqual([1024, 1024, 2048, 131072, 1048576]);
    const small = renderIpsetRestore({ ...empty, sets: { ...empty.sets, 'allow-ip4': ['10.0.0.1,tcp:80'] } }, 4);
    expect(small).toMatch(/create pcu4-allow-ip hash:ip,port family inet hashsize 1024 maxelem 4194304 -exist/);
  });

  it('expands /0 into two /1 halves and drops duplicates', () => {
    const s = { ...empty, sets: { ...empty.sets, 'allow-net4': ['0.0.0.0/0,tcp:80', '0.0.0.0/1,tcp:80'] } };
    const adds = renderIpsetRestore(s, 4).split('\n').filter((l) => l.startsWith('add pcu4-allow-net-tmp'));
    expect(adds).toEqual(['add pcu4-allow-net-tmp 0.0.0.0/1,tcp:80', 'add pcu4-allow-net-tmp 128.0.0.0/1,tcp:80']);
  });

  it('renders only the sets of the family asked for', () => {
    expect(renderIpsetRestore(empty, 4)).not.toContain('pcu6-');
    expect(renderIpsetRestore(empty, 6)).not.toContain('pcu4-');
  });
});

describe('setMembers', () => {
  it('equals expand-then-deduplicate for any list (sorted or not, duplicates, /0 nets)', async () => {
    const { setMembers } = await import('../src/render/render-ipsets.js');
    const pool = ['0.0.0.0/0,tcp:1', '0.0.0.0/1,tcp:1', '128.0.0.0/1,tcp:1', '10.0.0.0/8,tcp:1', '10.0.0.0/8,udp:1', '10.0.0.0/0,tcp:1'];
    const reference = (members: readonly string[]) =>
      [...new Set(members.flatMap((m) => (m.split(',')[0]!.endsWith('/0') ? ['0.0.0.0/1', '128.0.0.0/1'].map((h) => `${h},${m.split(',')[1]}`) : [m])))];
    const lists = [[], pool, [...pool].sort(), [...pool].reverse(), [pool[1]!, pool[1]!], [pool[3]!, pool[4]!], [pool[0]!, pool[1]!, pool[2]!]];
    for (let seed = 0; seed < 200; seed++) lists.push(Array.from({ length: seed % 9 }, (_, i) => pool[(seed * 7 + i * 5) % pool.length]!));
    for (const list of lists) expect(setMembers('allow-net4', 4, list)).toEqual(reference(list));
    expect(setMembers('allow-ip4', 4, ['10.0.0.2,tcp:1', '10.0.0.1,tcp:1', '10.0.0.2,tcp:1'])).toEqual(['10.0.0.2,tcp:1', '10.0.0.1,tcp:1']);
  });
});
