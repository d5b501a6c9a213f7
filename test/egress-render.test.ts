/**
 * The per-app egress rendering (src/render/render-egress.ts and its place in render-chains,
 * render-ipsets, render-iptables; the agent's delta lines and difference): golden text of one host
 * with HOST, nested and BRIDGE tasks in both modes and families, and the rules of the spec one by
 * one. `UPDATE_GOLDEN=1 npx vitest run test/egress-render.test.ts` rewrites the golden files.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { kernelDifference } from '../agent/dataplane/kernel-difference.js';
import { memberChanges, renderDeltaRestore } from '../agent/dataplane/member-delta.js';
import { planFullWrite, staleEgressSets } from '../agent/dataplane/write-plan.js';
import { parseIptablesSave } from '../agent/dataplane/kernel-read.js';
import type { DesiredState } from '../src/compile/desired-state.js';
import type { Family } from '../src/net/family.js';
import { appHash, egressAppChainName, egressAppSetName, isOwnedChainName, isOwnedSetName, tmpSetName } from '../src/render/owned-names.js';
import { renderChains } from '../src/render/render-chains.js';
import { egressTaskCounts, renderEgress, type EgressMapping, type TaskSource } from '../src/render/render-egress.js';
import { renderIpsetRestore } from '../src/render/render-ipsets.js';
import { renderIptablesRestore } from '../src/render/render-iptables.js';
import { makeState } from './support/memory-state-source.js';

const goldenDir = path.join(import.meta.dirname, 'golden-egress');
const update = process.env.UPDATE_GOLDEN === '1';

const DB4 = '10.0.0.20,tcp:5432';
const DB6 = 'fd00::20,tcp:5432';
const CACHE4 = '10.0.0.21,udp:11211';

function state(mode: 'enforce' | 'audit' = 'enforce', extra: Partial<Record<'egress-task' | 'egress-ip4', string[]>> = {}): DesiredState {
  return makeState(
    'h1',
    {
      'managed-tcp': ['31000'],
      'allow-ip4': ['10.0.0.5,tcp:31000'],
      'egress-task': ['/shop/batch|batch.1', '/shop/bridged|br.1', '/shop/web|web.1', '/shop/web|web.2', '/shop/web/sidecar|side.1', ...(extra['egress-task'] ?? [])],
      'egress-managed4': [DB4, CACHE4],
      'egress-managed6': [DB6],
      'egress-ip4': [`/shop/bridged|${DB4}`, `/shop/web/sidecar|${CACHE4}`, `/shop/web|${CACHE4}`, `/shop/web|${DB4}`, ...(extra['egress-ip4'] ?? [])],
      'egress-ip6': [`/shop/web|${DB6}`],
    },
    mode,
  );
}

function mapping(tasks: Record<string, TaskSource>, unmapped: 'host' | 'deny' = 'host', cgroupsRoot: string | undefined = 'mesos'): EgressMapping {
  return { tasks: new Map(Object.entries(tasks)), unmapped, cgroupsRoot };
}

const MAP = mapping(
  {
    'web.1': { kind: 'host', cgroupPath: 'mesos/c-web-1' },
    'web.2': { kind: 'host', cgroupPath: 'mesos/c-web-2' },
    // A nested container (task group) of web.1's executor container: must come first.
    'side.1': { kind: 'host', cgroupPath: 'mesos/c-web-1/mesos/c-side' },
    'br.1': { kind: 'bridge', addresses: ['172.17.0.2', 'fd17::2'] },
  },
  'deny',
);

const outputs: { ext: string; render: (s: DesiredState) => string }[] = ([4, 6] as Family[]).flatMap((family) => [
  { ext: `ipset${family}`, render: (s: DesiredState) => renderIpsetRestore(s, family, { egress: true }) },
  { ext: `iptables${family}`, render: (s: DesiredState) => renderIptablesRestore(s, family, { insertJump: true, insertOutputJump: true, egress: MAP }) },
]);

describe('egress golden rendering', () => {
  for (const mode of ['enforce', 'audit'] as const) {
    for (const { ext, render } of outputs) {
      it(`${mode}.${ext}`, () => {
        const file = path.join(goldenDir, `${mode}.${ext}`);
        const text = render(state(mode));
        if (update) writeFileSync(file, text);
        expect(existsSync(file), `${file} missing: run with UPDATE_GOLDEN=1`).toBe(true);
        expect(text).toBe(readFileSync(file, 'utf8'));
      });
    }
  }
});

describe('egress rules', () => {
  it('renders nothing of egress without a local task map or without egress members: the host-level text exactly', () => {
    const s = state();
    const plain = makeState('h1', { 'managed-tcp': ['31000'], 'allow-ip4': ['10.0.0.5,tcp:31000'] });
    expect(renderChains(s, 4)).toEqual(renderChains(plain, 4));
    expect(renderChains(plain, 4, MAP)).toEqual(renderChains(plain, 4));
    expect(renderIpsetRestore(plain, 4, { egress: true })).toBe(renderIpsetRestore(plain, 4));
    expect(renderChains(s, 4, MAP).egress).toBeDefined();
  });

  it('names sets and chains from a hash of the app id, inside the owned prefix; no id reaches a rule', () => {
    expect(appHash('/shop/web')).toMatch(/^[0-9a-f]{16}$/);
    expect(egressAppChainName('/shop/web')).toBe(`PCU-EG-${appHash('/shop/web').toUpperCase()}`);
    const long = `/${'a'.repeat(512)}`;
    for (const f of [4, 6] as Family[]) {
      expect(isOwnedSetName(tmpSetName(egressAppSetName(long, f)))).toBe(true);
      expect(tmpSetName(egressAppSetName(long, f)).length).toBeLessThanOrEqual(31);
    }
    expect(isOwnedChainName(egressAppChainName(long))).toBe(true);
    const text = [4, 6].map((f) => renderIptablesRestore(state(), f as Family, { insertJump: true, egress: MAP }) + renderIpsetRestore(state(), f as Family, { egress: true })).join('');
    expect(text).not.toMatch(/shop|web\.1|batch|side\.1|br\.1/);
  });

  it('orders HOST rules deeper paths first, one per cgroup; BRIDGE rules per address of the family', () => {
    const r4 = renderEgress(state(), 4, MAP);
    const output = r4.chains.find((c) => c.name === 'PCU-OUTPUT')!;
    const paths = output.rules.filter((r) => r.match.includes('--path')).map((r) => r.match[r.match.indexOf('--path') + 1]);
    expect(paths).toEqual(['mesos/c-web-1/mesos/c-side', 'mesos/c-web-1', 'mesos/c-web-2', 'mesos']);
    expect(output.rules.at(-1)!.action).toEqual(['-g', 'PCU-EG-DENY']); // --egress-unmapped deny: the root last
    const bridge4 = r4.chains.find((c) => c.name === 'PCU-EG-BRIDGE')!.rules.map((r) => r.match);
    expect(bridge4).toEqual([['-s', '172.17.0.2/32']]);
    const bridge6 = renderEgress(state(), 6, MAP).chains.find((c) => c.name === 'PCU-EG-BRIDGE')!.rules.map((r) => r.match);
    expect(bridge6).toEqual([['-s', 'fd17::2/128']]);
    expect(r4).toMatchObject({ mapped: 4, unmapped: 1 }); // batch.1 has no source in the map
    expect(egressTaskCounts(state(), MAP)).toEqual({ mapped: 4, unmapped: 1 });
    expect(egressTaskCounts(state(), undefined)).toEqual({ mapped: 0, unmapped: 5 });
  });

  it('--egress-unmapped host (or a missing cgroups root) writes no root rule', () => {
    for (const m of [mapping({}, 'host'), { ...mapping({}, 'deny'), cgroupsRoot: undefined }]) {
      const output = renderEgress(state(), 4, m).chains.find((c) => c.name === 'PCU-OUTPUT')!;
      expect(output.rules.map((r) => r.action)).toEqual([['-j', 'RETURN'], ['-j', 'RETURN']]);
    }
  });

  it('every local app has its set and chain, an app with no allowed destination an empty set (denied)', () => {
    const r = renderEgress(state(), 4, MAP);
    const batchSet = r.sets.find((s) => s.name === egressAppSetName('/shop/batch', 4));
    expect(batchSet?.members).toEqual([]);
    expect(r.sets.find((s) => s.name === egressAppSetName('/shop/web', 4))?.members).toEqual([DB4, CACHE4]);
    expect(r.chains.find((c) => c.name === egressAppChainName('/shop/batch'))?.rules.map((x) => x.action)).toEqual([['-j', 'RETURN'], ['-j', 'PCU-EG-DENY']]);
  });

  it('refuses a cgroup path or an address that could not come from local-tasks.ts', () => {
    expect(() => renderEgress(state(), 4, mapping({ 'web.1': { kind: 'host', cgroupPath: '../etc' } }))).toThrow(/cgroup path/);
    expect(() => renderEgress(state(), 4, mapping({ 'web.1': { kind: 'host', cgroupPath: 'a b' } }))).toThrow(/cgroup path/);
    expect(() => renderEgress(state(), 4, mapping({ 'br.1': { kind: 'bridge', addresses: ['1.2.3.4 -j ACCEPT'] } }))).toThrow(/container address/);
  });

  it('delta lines: egress-ip adds and egress-managed removals first, into the app set without the app id', () => {
    const from = state();
    const to = state('enforce', { 'egress-ip4': ['/shop/batch|10.0.0.20,tcp:5432'] });
    const more = makeState('h1', { ...to.sets, 'egress-managed4': [...to.sets['egress-managed4'], '10.0.0.22,tcp:80'] });
    const changes = memberChanges(from, more, 100);
    expect(changes.ok).toBe(true);
    if (!changes.ok) return;
    const text = renderDeltaRestore(4, changes.kinds, more, true);
    expect(text).toBe(`add ${egressAppSetName('/shop/batch', 4)} 10.0.0.20,tcp:5432 -exist\nadd pcu4-eg-managed 10.0.0.22,tcp:80 -exist\n`);
    expect(renderDeltaRestore(4, changes.kinds, more, false)).toBe(''); // egress not rendered: nothing of it
    expect(renderDeltaRestore(6, changes.kinds, more, true)).toBe('');
  });

  it('a new egress layout is a full write; member changes under one layout stay a delta', () => {
    const held = { state: state(), exact: true, sorted: true };
    const next = state('enforce', { 'egress-ip4': ['/shop/batch|10.0.0.20,tcp:5432'] });
    expect(kernelDifference({ held, next, limit: 100, repair: false, layout: { held: 'a', next: 'a' } }).path).toBe('delta');
    expect(kernelDifference({ held, next, limit: 100, repair: false, layout: { held: 'a', next: 'b' } })).toEqual({ path: 'full', reason: 'egress layout changed' });
    // The same state with another local task map: only the chains.
    expect(kernelDifference({ held, next: held.state, limit: 100, repair: false, layout: { held: 'a', next: 'b' } })).toEqual({ path: 'chains', reason: 'local task map changed' });
    // Egress turned on or off: sets appear or go, a full write.
    expect(kernelDifference({ held, next: held.state, limit: 100, repair: false, layout: { held: '', next: 'b' } }).path).toBe('full');
    expect(kernelDifference({ held: { ...held, exact: false }, next: held.state, limit: 100, repair: false, layout: { held: 'a', next: 'b' } }).path).toBe('full');
  });

  it('a full write keeps one jump of each kind, drops stale ones, deletes chains and egress sets no longer rendered', () => {
    const saved = parseIptablesSave(
      [
        '*mangle',
        ':PREROUTING ACCEPT [0:0]',
        ':OUTPUT ACCEPT [0:0]',
        ':PCU-PREROUTING - [0:0]',
        ':PCU-OUTPUT - [0:0]',
        ':PCU-EG-0123456789ABCDEF - [0:0]',
        '-A PREROUTING -m comment --comment "pcu:x" -j PCU-PREROUTING',
        '-A OUTPUT -m comment --comment "pcu:y" -j PCU-OUTPUT',
        '-A OUTPUT -m comment --comment "pcu:y" -j PCU-OUTPUT',
        'COMMIT',
      ].join('\n'),
      'mangle',
    );
    const withEgress = planFullWrite(saved, renderChains(state(), 4, MAP));
    expect(withEgress).toMatchObject({ insertJump: false, deleteJumps: [], insertOutputJump: false, removeChains: ['PCU-EG-0123456789ABCDEF'] });
    expect(withEgress.deleteOutputJumps).toHaveLength(1);
    const without = planFullWrite(saved, renderChains(state(), 4));
    expect(without.deleteOutputJumps).toHaveLength(2);
    expect(without.removeChains).toEqual(['PCU-OUTPUT', 'PCU-EG-0123456789ABCDEF']);
    const text = renderIptablesRestore(state(), 4, without);
    expect(text).toMatch(/-D OUTPUT .*-j PCU-OUTPUT\n-D OUTPUT .*-j PCU-OUTPUT\n-X PCU-EG-0123456789ABCDEF\n-X PCU-OUTPUT\nCOMMIT\n$/);
    expect(staleEgressSets(['pcu4-managed-tcp', 'pcu4-eg-managed', 'pcu4-eg-0123456789abcdef', 'pcu4-eg-0123456789abcdef-tmp', 'foreign'], new Set(['pcu4-eg-managed']))).toEqual([
      'pcu4-eg-0123456789abcdef',
      'pcu4-eg-0123456789abcdef-tmp',
    ]);
  });
});
