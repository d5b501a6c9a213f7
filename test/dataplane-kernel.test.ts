/**
 * KernelDataplane against the real kernel (root), inside a throwaway network namespace: apply,
 * change, idempotence, drift and repair, foreign objects left alone, uninstall, refusal of a bad
 * state. IPv4 and IPv6.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SET_KINDS, type DesiredState, type SetKind } from '../src/compile/desired-state.js';
import { stateVersion } from '../src/compile/state-version.js';
import { ipsetName, setKindsOf } from '../src/render/owned-names.js';
import type { Family } from '../src/net/family.js';
import { renderChains } from '../src/render/render-chains.js';
import { setMembers } from '../src/render/render-ipsets.js';
import { appendLine, argsText } from '../src/render/restore-text.js';
import { ruleArgs } from '../src/render/rule-model.js';
import { ExecCommandRunner, type CommandRunner } from '../agent/dataplane/command-runner.js';
import { KernelDataplane } from '../agent/dataplane/kernel-dataplane.js';
import { parseIpsetSave } from '../agent/dataplane/kernel-read.js';
import { normalizeMember } from '../src/net/member.js';

const isRoot = process.getuid?.() === 0;
if (!isRoot) console.warn('dataplane-kernel.test.ts skipped: needs root (network namespaces, iptables, ipset)');

function makeState(partial: Partial<Record<SetKind, readonly string[]>>, mode: 'enforce' | 'audit' = 'enforce'): DesiredState {
  const sets = Object.fromEntries(SET_KINDS.map((k) => [k, partial[k] ?? []])) as Record<SetKind, string[]>;
  return { hostId: 'host-a', mode, sets, version: stateVersion(mode, sets) };
}

const S1 = makeState({
  'managed-tcp': ['31000', '31001'],
  'managed-udp': ['31002'],
  'failsafe-tcp': ['22'],
  'allow-ip4': ['10.0.1.5,tcp:31000', '10.0.1.6,tcp:31001'],
  'allow-net4': ['10.0.100.0/24,udp:31002'],
  'allow-ip6': ['2001:db8::5,tcp:31000'],
  'allow-net6': ['2001:db8:1::/48,tcp:31001'],
});
const S2 = makeState(
  {
    'managed-tcp': ['31000', '31003'],
    'failsafe-tcp': ['22'],
    'failsafe-udp': ['53'],
    'allow-ip4': ['10.0.1.5,tcp:31000', '10.0.1.7,tcp:31003'],
    'allow-net4': ['0.0.0.0/0,tcp:31003'],
    'allow-ip6': ['2001:db8::6,tcp:31003'],
    'allow-net6': [],
  },
  'audit',
);

const host = new ExecCommandRunner();
const ns = `pcut-dp-${process.pid}-${Math.floor(Math.random() * 1e6)}`;
const inNs = new ExecCommandRunner({ prefix: ['ip', 'netns', 'exec', ns] });
const logger = pino({ level: 'silent' });
const SAVE: Record<Family, string> = { 4: 'iptables-save', 6: 'ip6tables-save' };
const CMD: Record<Family, string> = { 4: 'iptables', 6: 'ip6tables' };
let stateDir = '';

async function sh(argv: string[]): Promise<string> {
  const r = await inNs.run(argv);
  if (r.code !== 0) throw new Error(`${argv.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

/** The mangle table's rule lines (`-A ...`), without the dated comments iptables-save adds. */
async function mangleRules(family: Family): Promise<string[]> {
  return (await sh([SAVE[family], '-t', 'mangle'])).split('\n').filter((l) => l.startsWith('-A '));
}

async function ownedSets(): Promise<string[]> {
  return (await sh(['ipset', 'list', '-n'])).split('\n').filter((n) => n.startsWith('pcu'));
}

const JUMP = argsText(ruleArgs(renderChains(S1, 4).jump));

/** The kernel holds exactly `state` in our objects, with one jump. */
async function expectKernelEquals(state: DesiredState): Promise<void> {
  for (const family of [4, 6] as const) {
    const rules = await mangleRules(family);
    const chains = renderChains(state, family).chains;
    expect(rules.filter((l) => l.startsWith('-A PCU-'))).toHaveLength(chains.reduce((n, c) => n + c.rules.length, 0));
    for (const chain of chains) {
      expect(rules.filter((l) => l.startsWith(`-A ${chain.name} `))).toEqual(chain.rules.map((r) => appendLine(chain.name, r)));
    }
    expect(rules.filter((l) => l.includes('-j PCU-PREROUTING'))).toEqual([`-A PREROUTING ${JUMP}`]);
    for (const kind of setKindsOf(family)) {
      const name = ipsetName(kind, family) as string;
      const actual = parseIpsetSave(await sh(['ipset', 'save', name])).get(name) ?? [];
      const want = setMembers(kind, family, state.sets[kind]).map(normalizeMember);
      expect(actual.map(normalizeMember).sort()).toEqual(want.sort());
    }
  }
  expect((await ownedSets()).filter((n) => n.endsWith('-tmp'))).toEqual([]);
}

function dataplane(): KernelDataplane {
  return new KernelDataplane({ runner: inNs, stateDir, logger });
}

describe.skipIf(!isRoot)('KernelDataplane in a network namespace', () => {
  beforeAll(async () => {
    stateDir = mkdtempSync(path.join(tmpdir(), 'pcut-dp-kernel-'));
    const add = await host.run(['ip', 'netns', 'add', ns]);
    if (add.code !== 0) throw new Error(`ip netns add ${ns}: ${add.stderr}`);
    await sh(['ip', 'link', 'set', 'lo', 'up']);
    // Foreign objects that must survive everything we do.
    for (const family of [4, 6] as const) {
      await sh([CMD[family], '-w', '-t', 'mangle', '-A', 'PREROUTING', '-p', 'tcp', '--dport', '9', '-j', 'ACCEPT']);
    }
    await sh(['ipset', 'create', 'foreign-set', 'hash:ip']);
    await sh(['ipset', 'add', 'foreign-set', '192.0.2.1']);
  });

  afterAll(async () => {
    try {
      await host.run(['ip', 'netns', 'del', ns]);
    } finally {
      rmSync(stateDir, { recursive: true, force: true });
    }
  });

  it('applies a state: the kernel shows exactly it, v4 and v6, with no drift', async () => {
    const dp = dataplane();
    const report = await dp.apply(S1);
    expect(report.families.map((f) => f.jumpInserted)).toEqual([true, true]);
    await expectKernelEquals(S1);
    expect(await dp.checkDrift()).toEqual([]);
    // The jump went above the foreign rule that was there first.
    expect((await mangleRules(4)).filter((l) => l.startsWith('-A PREROUTING'))[0]).toBe(`-A PREROUTING ${JUMP}`);
  });

  it('applies a changed state (members, audit) and back', async () => {
    const dp = dataplane();
    await dp.apply(S2);
    await expectKernelEquals(S2);
    expect((await mangleRules(4)).some((l) => l.includes('-j NFLOG --nflog-prefix pcu-audit'))).toBe(true);
    expect(await dp.checkDrift()).toEqual([]);
    await dp.apply(S1);
    await expectKernelEquals(S1);
    expect(await dp.checkDrift()).toEqual([]);
  });

  it('is idempotent: applying twice keeps the rule count and one jump', async () => {
    const dp = dataplane();
    await dp.apply(S1);
    const before = [await mangleRules(4), await mangleRules(6)];
    const report = await dp.apply(S1);
    expect(report.families.map((f) => f.jumpInserted)).toEqual([false, false]);
    expect([await mangleRules(4), await mangleRules(6)]).toEqual(before);
  });

  it('detects drift and repairs it', async () => {
    const dp = dataplane();
    await dp.apply(S1);
    await sh(['iptables', '-w', '-t', 'mangle', '-F', 'PCU-PREROUTING']);
    await sh(['ip6tables', '-w', '-t', 'mangle', '-D', 'PREROUTING', ...renderChains(S1, 6).jump.match, '-m', 'comment', '--comment', renderChains(S1, 6).jump.comment, '-j', 'PCU-PREROUTING']);
    await sh(['ipset', 'del', 'pcu4-allow-ip', '10.0.1.6,tcp:31001']);
    await sh(['ipset', 'add', 'pcu6-allow-ip', '2001:db8::99,tcp:31000']);
    const drift = await dp.checkDrift();
    const kinds = new Set(drift.map((d) => `${d.kind}/${d.family}/${d.object}`));
    expect(kinds).toEqual(
      new Set(['missing-rule/4/PCU-PREROUTING', 'missing-jump/6/PREROUTING', 'missing-member/4/pcu4-allow-ip', 'extra-member/6/pcu6-allow-ip']),
    );
    expect(drift.filter((d) => d.kind === 'missing-rule')).toHaveLength(renderChains(S1, 4).chains[0]!.rules.length);
    expect(drift.find((d) => d.kind === 'extra-member')?.item).toBe('2001:db8::99,tcp:31000');

    const again = await dp.checkAndRepair();
    expect(again?.drift).toHaveLength(drift.length);
    expect(dp.counters.repairs).toBe(1);
    expect(dp.counters.repairsByKind['missing-jump']).toBe(1);
    await expectKernelEquals(S1);
    expect(await dp.checkDrift()).toEqual([]);
  });

  it('reports a flushed set and a foreign rule in our chain, and repairs them', async () => {
    const dp = dataplane();
    await dp.apply(S1);
    await sh(['iptables', '-w', '-t', 'mangle', '-A', 'PCU-MANAGED', '-s', '192.0.2.7', '-j', 'ACCEPT']);
    await sh(['ipset', 'flush', 'pcu6-failsafe-tcp']);
    const drift = await dp.checkDrift();
    expect(drift).toContainEqual({ kind: 'missing-member', family: 6, object: 'pcu6-failsafe-tcp', item: '22' });
    expect(drift).toContainEqual({ kind: 'extra-rule', family: 4, object: 'PCU-MANAGED', item: '-s 192.0.2.7/32 -j ACCEPT' });
    expect((await dp.checkAndRepair())?.drift).toEqual(drift);
    expect(await dp.checkDrift()).toEqual([]);
  });

  it('refuses a state with a bad member and leaves the kernel unchanged', async () => {
    const dp = dataplane();
    await dp.apply(S1);
    const snapshot = async () => [await mangleRules(4), await mangleRules(6), await sh(['ipset', 'save'])];
    const before = await snapshot();
    const bad = makeState({ ...S2.sets, 'allow-ip4': ['10.0.1.5,tcp:31000', '10.0.1.8 ,tcp:1'] });
    await expect(dp.apply(bad)).rejects.toThrow(/invalid member/);
    expect(await snapshot()).toEqual(before);
  });

  it('keeps the previous chains when iptables-restore fails half-way, and says why', async () => {
    const dp = dataplane();
    await dp.apply(S1);
    const before = [await mangleRules(4), await mangleRules(6)];
    // A runner that corrupts the last line of the v4 rules, after our chains were rewritten.
    const faulty: CommandRunner = {
      run: (argv, input) =>
        inNs.run(argv, argv[0] === 'iptables-restore' && input ? input.replace('COMMIT', '-A PCU-MANAGED -j NO-SUCH-TARGET\nCOMMIT') : input),
    };
    const broken = new KernelDataplane({ runner: faulty, stateDir, logger });
    await expect(broken.apply(S2)).rejects.toThrow(/iptables-restore[^]*(NO-SUCH-TARGET|line \d+ failed)/);
    expect(await mangleRules(4)).toEqual(before[0]);
    expect(existsSync(path.join(stateDir, 'failed-apply.iptables4'))).toBe(true);
    await dp.apply(S1);
    await expectKernelEquals(S1);
  });

  it('writes a one-member change in place (delta path), and back', async () => {
    const dp = dataplane();
    expect((await dp.apply(S1)).path).toBe('full');
    const rules = [await mangleRules(4), await mangleRules(6)];
    const B = makeState({ ...S1.sets, 'allow-ip4': [...S1.sets['allow-ip4'], '10.0.1.9,tcp:31000'].sort() });
    expect((await dp.apply(B)).path).toBe('delta');
    const listed = parseIpsetSave(await sh(['ipset', 'save', 'pcu4-allow-ip'])).get('pcu4-allow-ip') ?? [];
    expect(listed.sort()).toEqual([...B.sets['allow-ip4']].sort());
    await expectKernelEquals(B);
    expect([await mangleRules(4), await mangleRules(6)]).toEqual(rules);
    expect(await dp.checkDrift()).toEqual([]);
    expect((await dp.apply(S1)).path).toBe('delta');
    await expectKernelEquals(S1);
    expect(await dp.checkDrift()).toEqual([]);
    expect(dp.counters).toMatchObject({ deltaApplies: 2, deltaFallbacks: 0, applyFailures: 0 });
  });

  it('writes a change over every kind in place, other spellings of a kept entry included', async () => {
    const dp = dataplane();
    const base = makeState({ ...S1.sets, 'allow-net4': ['10.0.100.0/24,udp:31002', '10.0.100.1/24,udp:31002'], 'allow-ip6': ['2001:DB8::5,tcp:31000', '2001:db8::5,tcp:31000'] });
    await dp.apply(base);
    const next = makeState({
      'managed-tcp': ['31000', '31003'],
      'managed-udp': ['31002'],
      'failsafe-tcp': ['22'],
      'failsafe-udp': ['53'],
      'allow-ip4': ['10.0.1.5,tcp:31000', '10.0.1.7,tcp:31003'],
      'allow-net4': ['0.0.0.0/0,tcp:31003', '10.0.100.0/24,udp:31002'],
      'allow-ip6': ['2001:db8::5,tcp:31000', '2001:db8::6,tcp:31003'],
      'allow-net6': ['2001:db8:1::/48,tcp:31001'],
    });
    expect((await dp.apply(next)).path).toBe('delta');
    await expectKernelEquals(next);
    expect(await dp.checkDrift()).toEqual([]);
    expect((await dp.apply(base)).path).toBe('delta');
    // Two spellings of one entry are one kernel entry: compare distinct entries.
    for (const family of [4, 6] as const) {
      for (const kind of setKindsOf(family)) {
        const name = ipsetName(kind, family) as string;
        const actual = parseIpsetSave(await sh(['ipset', 'save', name])).get(name) ?? [];
        const want = new Set(setMembers(kind, family, base.sets[kind]).map(normalizeMember));
        expect(actual.map(normalizeMember).sort()).toEqual([...want].sort());
      }
    }
    expect(await dp.checkDrift()).toEqual([]);
  });

  it('keeps last-apply.* describing the kernel after deltas: replayed in a fresh namespace it gives the same sets', async () => {
    const dp = dataplane();
    expect((await dp.apply(S1)).path).toBe('full');
    const B = makeState({ ...S1.sets, 'allow-ip4': [...S1.sets['allow-ip4'], '10.0.1.9,tcp:31000'].sort() });
    const C = makeState({ ...B.sets, 'managed-tcp': ['31000'], 'allow-ip6': ['2001:db8::7,tcp:31000'] });
    expect((await dp.apply(B)).path).toBe('delta');
    expect((await dp.apply(C)).path).toBe('delta');
    const fresh = `${ns}-r`;
    const replayNs = new ExecCommandRunner({ prefix: ['ip', 'netns', 'exec', fresh] });
    const added = await host.run(['ip', 'netns', 'add', fresh]);
    if (added.code !== 0) throw new Error(`ip netns add ${fresh}: ${added.stderr}`);
    try {
      for (const family of [4, 6] as const) {
        const deltas = path.join(stateDir, `last-apply.deltas${family}`);
        for (const file of [path.join(stateDir, `last-apply.ipset${family}`), deltas]) {
          const r = await replayNs.run(['ipset', 'restore'], readFileSync(file, 'utf8'));
          expect(r.code, r.stderr).toBe(0);
        }
        for (const kind of setKindsOf(family)) {
          const name = ipsetName(kind, family) as string;
          const replayed = parseIpsetSave((await replayNs.run(['ipset', 'save', name])).stdout).get(name) ?? [];
          const live = parseIpsetSave(await sh(['ipset', 'save', name])).get(name) ?? [];
          expect(replayed.sort()).toEqual(live.sort());
        }
      }
    } finally {
      await host.run(['ip', 'netns', 'del', fresh]);
    }
    await expectKernelEquals(C);
  });

  it('uninstalls exactly what it owns, idempotently; foreign objects survive', async () => {
    const dp = dataplane();
    await dp.apply(S2);
    await dp.uninstall();
    await dp.uninstall();
    for (const family of [4, 6] as const) {
      const text = await sh([SAVE[family], '-t', 'mangle']);
      expect(text).not.toMatch(/PCU-|pcu:/);
      expect(await mangleRules(family)).toEqual(['-A PREROUTING -p tcp -m tcp --dport 9 -j ACCEPT']);
    }
    expect(await ownedSets()).toEqual([]);
    expect(parseIpsetSave(await sh(['ipset', 'save', 'foreign-set'])).get('foreign-set')).toEqual(['192.0.2.1']);
  });
});
