/**
 * Golden files of rendered rules: each test/golden/<name>.state.json rendered to
 * <name>.ipset4 / .ipset6 / .iptables4 / .iptables6 and diffed against the files.
 * `UPDATE_GOLDEN=1 npx vitest run test/render-golden.test.ts` rewrites them (review the diff!).
 * Also: table-driven member validation and the constant rule count.
 */
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { emptySets, type DesiredState, type SetContents, type SetKind } from '../src/compile/desired-state.js';
import type { Family } from '../src/net/family.js';
import { renderChains } from '../src/render/render-chains.js';
import { renderIpsetRestore, validateMember } from '../src/render/render-ipsets.js';
import { renderIptablesRestore } from '../src/render/render-iptables.js';

const goldenDir = path.join(import.meta.dirname, 'golden');
const update = process.env.UPDATE_GOLDEN === '1';

function loadState(name: string): DesiredState {
  return JSON.parse(readFileSync(path.join(goldenDir, `${name}.state.json`), 'utf8')) as DesiredState;
}

const outputs: { ext: string; render: (s: DesiredState) => string }[] = [
  { ext: 'ipset4', render: (s) => renderIpsetRestore(s, 4) },
  { ext: 'ipset6', render: (s) => renderIpsetRestore(s, 6) },
  { ext: 'iptables4', render: (s) => renderIptablesRestore(s, 4, { insertJump: true }) },
  { ext: 'iptables6', render: (s) => renderIptablesRestore(s, 6, { insertJump: true }) },
];

const names = readdirSync(goldenDir)
  .filter((f) => f.endsWith('.state.json'))
  .map((f) => f.slice(0, -'.state.json'.length))
  .sort();

describe('golden rendering', () => {
  it('has the expected golden states', () => {
    expect(names).toEqual(expect.arrayContaining(['audit', 'empty', 'shop', 'v6-only']));
  });

  for (const name of names) {
    for (const { ext, render } of outputs) {
      it(`${name}.${ext}`, () => {
        const file = path.join(goldenDir, `${name}.${ext}`);
        const text = render(loadState(name));
        if (update) writeFileSync(file, text);
        expect(existsSync(file), `${file} missing: run with UPDATE_GOLDEN=1`).toBe(true);
        expect(text).toBe(readFileSync(file, 'utf8'));
      });
    }
  }

  it('renders deterministically', () => {
    const state = loadState('shop');
    for (const { render } of outputs) expect(render(state)).toBe(render(structuredClone(state)));
  });
});

function stateWith(count: number, mode: 'enforce' | 'audit' = 'enforce'): DesiredState {
  const ip4 = Array.from({ length: count }, (_, i) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255},tcp:31000`);
  const ip6 = Array.from({ length: count }, (_, i) => `fd00::${(i >> 16).toString(16)}:${(i & 0xffff).toString(16)},udp:31001`);
  const sets: SetContents = {
    ...emptySets(),
    'managed-tcp': ['31000'],
    'managed-udp': ['31001'],
    'failsafe-tcp': ['22'],
    'failsafe-udp': [],
    'allow-ip4': ip4,
    'allow-net4': [],
    'allow-ip6': ip6,
    'allow-net6': [],
  };
  return { hostId: 'h', mode, sets, version: '0000000000000001' };
}

function ruleLines(text: string): string[] {
  return text.split('\n').filter((l) => /^-[AID] /.test(l));
}

describe('constant rule count', () => {
  for (const family of [4, 6] as Family[]) {
    for (const mode of ['enforce', 'audit'] as const) {
      it(`IPv${family} ${mode}: 100 and 100,000 members give the same rules`, () => {
        const small = renderIptablesRestore(stateWith(100, mode), family, { insertJump: true });
        const large = renderIptablesRestore(stateWith(100_000, mode), family, { insertJump: true });
        expect(ruleLines(large)).toEqual(ruleLines(small));
        const count = renderChains(stateWith(100_000, mode), family).chains.flatMap((c) => c.rules).length;
        expect(count).toBe(mode === 'enforce' ? 9 : 10);
      });
    }
  }

  it('the ipset text of 100,000 members holds every member once', () => {
    const text = renderIpsetRestore(stateWith(100_000), 4);
    expect(text.split('\n').filter((l) => l.startsWith('add pcu4-allow-ip-tmp ')).length).toBe(100_000);
    expect(text).toContain('create pcu4-allow-ip-tmp hash:ip,port family inet hashsize 131072 maxelem 4194304 -exist');
  });
});

const memberCases: { kind: SetKind; member: string; ok: boolean }[] = [
  { kind: 'managed-tcp', member: '31000', ok: true },
  { kind: 'managed-udp', member: '0', ok: true },
  { kind: 'failsafe-tcp', member: '65535', ok: true },
  { kind: 'failsafe-tcp', member: '65536', ok: false },
  { kind: 'managed-tcp', member: '022', ok: false },
  { kind: 'managed-tcp', member: '-1', ok: false },
  { kind: 'managed-tcp', member: '80 ', ok: false },
  { kind: 'managed-tcp', member: '', ok: false },
  { kind: 'managed-tcp', member: '80\nadd pcu4-allow-ip 0.0.0.0,tcp:22', ok: false },
  { kind: 'allow-ip4', member: '10.0.1.5,tcp:31000', ok: true },
  { kind: 'allow-ip4', member: '10.0.1.5,udp:53', ok: true },
  { kind: 'allow-ip4', member: '10.0.1.5,sctp:53', ok: false },
  { kind: 'allow-ip4', member: '10.0.1.5,tcp:70000', ok: false },
  { kind: 'allow-ip4', member: '10.0.1.256,tcp:80', ok: false },
  { kind: 'allow-ip4', member: '10.0.01.5,tcp:80', ok: false },
  { kind: 'allow-ip4', member: '10.0.1.5/32,tcp:80', ok: false },
  { kind: 'allow-ip4', member: 'fd00::1,tcp:80', ok: false },
  { kind: 'allow-ip4', member: 'evil.example.com,tcp:80', ok: false },
  { kind: 'allow-ip4', member: '10.0.1.5,tcp:80 -exist', ok: false },
  { kind: 'allow-ip4', member: '10.0.1.5,tcp:80\ndestroy x', ok: false },
  { kind: 'allow-ip4', member: '10.0.1.5', ok: false },
  { kind: 'allow-ip6', member: 'fd00:1::11,tcp:31000', ok: true },
  { kind: 'allow-ip6', member: '::1,udp:53', ok: true },
  { kind: 'allow-ip6', member: '::ffff:10.0.0.1,tcp:80', ok: true },
  { kind: 'allow-ip6', member: '2001:db8:0:0:0:0:0:1,tcp:80', ok: true },
  { kind: 'allow-ip6', member: '2001:db8::1::2,tcp:80', ok: false },
  { kind: 'allow-ip6', member: '2001:db8:0:0:0:0:0:0:1,tcp:80', ok: false },
  { kind: 'allow-ip6', member: 'fe80::1%eth0,tcp:80', ok: false },
  { kind: 'allow-ip6', member: '10.0.0.1,tcp:80', ok: false },
  { kind: 'allow-net4', member: '10.0.100.0/24,udp:53', ok: true },
  { kind: 'allow-net4', member: '0.0.0.0/0,tcp:80', ok: true },
  { kind: 'allow-net4', member: '10.0.0.0/33,tcp:80', ok: false },
  { kind: 'allow-net4', member: '10.0.0.0,tcp:80', ok: false },
  { kind: 'allow-net4', member: '10.0.0.0/08,tcp:80', ok: false },
  { kind: 'allow-net6', member: 'fd00:100::/64,tcp:31500', ok: true },
  { kind: 'allow-net6', member: '::/0,tcp:80', ok: true },
  { kind: 'allow-net6', member: 'fd00::/129,tcp:80', ok: false },
  { kind: 'allow-net6', member: '10.0.0.0/8,tcp:80', ok: false },
];

describe('validateMember', () => {
  it.each(memberCases)('$kind $member → ok=$ok', ({ kind, member, ok }) => {
    const error = validateMember(kind, member);
    if (ok) expect(error).toBeUndefined();
    else expect(error).toMatch(new RegExp(`^invalid ${kind} member `));
  });

  it('renderIpsetRestore refuses a state with an injected member', () => {
    const state = stateWith(1);
    const bad = { ...state, sets: { ...state.sets, 'managed-tcp': ['80\nflush pcu4-allow-ip'] } };
    expect(() => renderIpsetRestore(bad, 4)).toThrow(/invalid managed-tcp member/);
  });
});
