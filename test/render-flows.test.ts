/**
 * Flow recording rendering (src/render/render-flows.ts and its place in render-chains and
 * render-egress): golden text of a host with and without per-app egress in both modes, R(S, X)
 * rule by rule, the sets and overflow rules the agent reads, and that without recording nothing
 * changes. `UPDATE_GOLDEN=1 npx vitest run test/render-flows.test.ts` rewrites the golden files.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { DesiredState } from '../src/compile/desired-state.js';
import type { Family } from '../src/net/family.js';
import {
  appHash,
  egressAppChainName,
  egressFlowDenyChainName,
  egressFlowSetName,
  flowSetName,
  isFlowSetName,
  isOwnedChainName,
  isOwnedSetName,
  parseFlowSetName,
  tmpSetName,
} from '../src/render/owned-names.js';
import { renderChains } from '../src/render/render-chains.js';
import type { EgressMapping } from '../src/render/render-egress.js';
import { DEFAULT_FLOW_RECORDING, flowSetTypeArgs, recordRules } from '../src/render/render-flows.js';
import { renderIptablesRestore } from '../src/render/render-iptables.js';
import { renderIpsetRestore } from '../src/render/render-ipsets.js';
import { appendLine } from '../src/render/restore-text.js';
import { makeState } from './support/memory-state-source.js';

const goldenDir = path.join(import.meta.dirname, 'golden-flows');
const update = process.env.UPDATE_GOLDEN === '1';
const REC = { maxEntries: 1024, timeoutSeconds: 300 };

function hostState(mode: 'enforce' | 'audit'): DesiredState {
  return makeState('h1', { 'managed-tcp': ['31000'], 'managed-udp': ['31053'], 'allow-ip4': ['10.0.0.5,tcp:31000'], 'allow-net6': ['fd00::/64,udp:31053'] }, mode);
}

function egressState(mode: 'enforce' | 'audit'): DesiredState {
  return makeState(
    'h1',
    {
      'managed-tcp': ['31000'],
      'allow-ip4': ['10.0.0.5,tcp:31000'],
      'egress-task': ['/shop/batch|batch.1', '/shop/web|web.1'],
      'egress-managed4': ['10.0.0.20,tcp:5432'],
      'egress-ip4': ['/shop/web|10.0.0.20,tcp:5432'],
    },
    mode,
  );
}

const MAP: EgressMapping = {
  tasks: new Map([
    ['web.1', { kind: 'host', cgroupPath: 'mesos/c-web-1' }],
    ['batch.1', { kind: 'host', cgroupPath: 'mesos/c-batch-1' }],
  ]),
  unmapped: 'host',
  cgroupsRoot: 'mesos',
};

function golden(name: string, text: string): void {
  const file = path.join(goldenDir, name);
  if (update) writeFileSync(file, text);
  expect(existsSync(file), `${file} missing: run with UPDATE_GOLDEN=1`).toBe(true);
  expect(text).toBe(readFileSync(file, 'utf8'));
}

describe('flow recording: golden text', () => {
  for (const mode of ['enforce', 'audit'] as const) {
    for (const family of [4, 6] as Family[]) {
      it(`host-level ${mode} IPv${family}`, () => {
        golden(`host-${mode}.iptables${family}`, renderIptablesRestore(hostState(mode), family, { insertJump: true, flows: REC }));
      });
    }
    it(`per-app egress ${mode} IPv4`, () => {
      golden(`egress-${mode}.iptables4`, renderIptablesRestore(egressState(mode), 4, { insertJump: true, egress: MAP, insertOutputJump: true, flows: REC }));
    });
  }
});

describe('group modes: audit ports and audit apps of a state that enforces', () => {
  const staged = (): DesiredState =>
    makeState('h1', { ...egressState('enforce').sets, 'managed-tcp': ['31000', '31001'], 'audit-tcp': ['31001'], 'egress-audit': ['/shop/batch'] });
  for (const recording of [false, true]) {
    it(`golden ${recording ? 'recorded' : 'unrecorded'} IPv4, and the ipset text`, () => {
      const opts = { insertJump: true, egress: MAP, insertOutputJump: true, ...(recording ? { flows: REC } : {}) };
      golden(`staged${recording ? '-recorded' : ''}.iptables4`, renderIptablesRestore(staged(), 4, opts));
    });
  }
  it('the audit port set is written with the state sets; without audit ports nothing of it', () => {
    expect(renderIpsetRestore(staged(), 6)).toContain('create pcu6-audit-tcp bitmap:port range 0-65535 -exist\n');
    expect(renderIpsetRestore(staged(), 6)).toContain('add pcu6-audit-tcp-tmp 31001\n');
    expect(renderIpsetRestore(staged(), 4)).not.toContain('audit-udp');
    expect(renderIpsetRestore(egressState('enforce'), 4)).not.toContain('audit');
  });
  it('unrecorded: audit ports go to PCU-AUDIT (NFLOG, RETURN), the audit app to PCU-EG-AUDIT; the others as before', () => {
    const r = renderChains(staged(), 4, MAP);
    const managed = r.chains.find((c) => c.name === 'PCU-MANAGED')!;
    expect(managed.rules.map((x) => [...x.match, ...x.action].join(' '))).toEqual([
      '-m set --match-set pcu4-allow-ip src,dst -j RETURN',
      '-m set --match-set pcu4-allow-net src,dst -j RETURN',
      '-p tcp -m set --match-set pcu4-audit-tcp dst -g PCU-AUDIT',
      '-j DROP',
    ]);
    expect(r.chains.find((c) => c.name === 'PCU-AUDIT')!.rules.map((x) => x.action.join(' '))).toEqual(['-j NFLOG --nflog-prefix pcu-audit', '-j RETURN']);
    const chainOf = (app: string) => r.chains.find((c) => c.name === egressAppChainName(app))!;
    expect(chainOf('/shop/batch').rules[1]!.action).toEqual(['-j', 'PCU-EG-AUDIT']);
    expect(chainOf('/shop/web').rules[1]!.action).toEqual(['-j', 'PCU-EG-DENY']);
    // In a state whose mode is audit every port and app audits: the kinds change nothing.
    const allAudit = makeState('h1', { ...staged().sets }, 'audit');
    expect(renderChains(allAudit, 4, MAP).chains.map((c) => c.name)).toEqual(renderChains(egressState('audit'), 4, MAP).chains.map((c) => c.name));
  });
  it('recorded: the audit app records its would-be drops in fw-<h>, the other its drops in fd-<h>', () => {
    const r = renderChains(staged(), 4, MAP, REC);
    expect(r.flows!.sets.filter((s) => s.direction === 'egress').map((s) => `${s.appId} ${s.verdict}`)).toEqual(['/shop/batch allowed', '/shop/batch audit', '/shop/web allowed', '/shop/web denied']);
    expect(r.chains.find((c) => c.name === 'PCU-MANAGED')!.rules[2]!.action).toEqual(['-g', 'PCU-FL-AUDIT']);
  });
});

describe('flow recording: rules', () => {
  it('R(S, X): counted match, SET add without --exist, the just-added match without counting, the overflow rule', () => {
    const lines = recordRules('pcu4-fl-allow', 'src,dst', 'RETURN').map((r) => appendLine('C', r).replace(/ -m comment --comment "pcu:[0-9a-f]{8}"/, ''));
    expect(lines).toEqual([
      '-A C -m set --match-set pcu4-fl-allow src,dst -j RETURN',
      '-A C -j SET --add-set pcu4-fl-allow src,dst',
      '-A C -m set --match-set pcu4-fl-allow src,dst ! --update-counters -j RETURN',
      '-A C -j RETURN',
    ]);
  });

  it('without recording the chains are exactly the unrecorded ones (no flows, no new chain)', () => {
    for (const s of [hostState('enforce'), hostState('audit'), egressState('enforce')]) {
      const plain = renderChains(s, 4, MAP);
      expect(plain.flows).toBeUndefined();
      expect(plain.chains.map((c) => c.name).some((n) => n.startsWith('PCU-FL-') || n.startsWith('PCU-EGD-'))).toBe(false);
      expect(renderIptablesRestore(s, 4, { insertJump: true, egress: MAP })).not.toMatch(/SET|fl-|fa-|fd-|fw-/);
    }
  });

  it('PCU-MANAGED goes to the recording chains: allowed, then denied (enforce) or audit', () => {
    for (const [mode, tail] of [['enforce', 'PCU-FL-DENY'], ['audit', 'PCU-FL-AUDIT']] as const) {
      const managed = renderChains(hostState(mode), 4, undefined, REC).chains.find((c) => c.name === 'PCU-MANAGED')!;
      expect(managed.rules.map((r) => r.action.join(' '))).toEqual(['-g PCU-FL-ALLOW', '-g PCU-FL-ALLOW', `-g ${tail}`]);
    }
  });

  it('lists the flow sets and the overflow rules of each (direction, verdict), egress per local app', () => {
    const r = renderChains(egressState('enforce'), 4, MAP, REC);
    expect(r.flows!.sets.map((s) => `${s.name} ${s.direction} ${s.verdict} ${s.appId ?? ''}`)).toEqual([
      'pcu4-fl-allow ingress allowed ',
      'pcu4-fl-deny ingress denied ',
      'pcu4-fl-audit ingress audit ',
      `pcu4-fa-${appHash('/shop/batch')} egress allowed /shop/batch`,
      `pcu4-fd-${appHash('/shop/batch')} egress denied /shop/batch`,
      `pcu4-fa-${appHash('/shop/web')} egress allowed /shop/web`,
      `pcu4-fd-${appHash('/shop/web')} egress denied /shop/web`,
    ]);
    for (const o of r.flows!.overflow) {
      const chain = r.chains.find((c) => c.name === o.chain)!;
      const last = chain.rules[chain.rules.length - 1]!;
      expect(last.comment).toBe(o.comment);
      expect(last.match).toEqual([]);
      // The overflow rule is the only rule of its chain with its comment.
      expect(chain.rules.filter((rule) => rule.comment === o.comment)).toHaveLength(1);
    }
    const audit = renderChains(egressState('audit'), 4, MAP, REC);
    expect(audit.flows!.sets.filter((s) => s.direction === 'egress').map((s) => s.verdict)).toEqual(['allowed', 'audit', 'allowed', 'audit']);
    const denyPath = audit.chains.find((c) => c.name === egressFlowDenyChainName('/shop/web'))!;
    expect(denyPath.rules[0]!.action).toEqual(['-j', 'NFLOG', '--nflog-prefix', 'pcu-egress']);
  });

  it('names: flow sets and chains are ours, within the kernel limits, and parse back', () => {
    const names = [flowSetName('allowed', 4), flowSetName('denied', 6), flowSetName('audit', 4), egressFlowSetName('/a', 'allowed', 6), egressFlowSetName('/a', 'denied', 4), egressFlowSetName('/a', 'audit', 4)];
    for (const name of names) {
      expect(isOwnedSetName(name)).toBe(true);
      expect(isOwnedSetName(tmpSetName(name))).toBe(true);
      expect(tmpSetName(name).length).toBeLessThanOrEqual(31);
      expect(isFlowSetName(name)).toBe(true);
    }
    expect(parseFlowSetName(egressFlowSetName('/a', 'audit', 6))).toEqual({ family: 6, verdict: 'audit', appHash: appHash('/a') });
    expect(parseFlowSetName('pcu4-fl-deny')).toEqual({ family: 4, verdict: 'denied' });
    for (const bad of ['pcu4-fl-allowx', 'pcu4-fa-XYZ', 'pcu4-eg-managed', 'pcu4-allow-ip', 'pcu4-fl-allow-tmp', 'pcu5-fl-deny']) expect(isFlowSetName(bad)).toBe(false);
    expect(isOwnedChainName(egressFlowDenyChainName('/a'))).toBe(true);
  });

  it('set type: hash:ip,port with timeout, counters and maxelem from the recording', () => {
    expect(flowSetTypeArgs(4, DEFAULT_FLOW_RECORDING)).toBe('hash:ip,port family inet timeout 600 counters maxelem 65536');
    expect(flowSetTypeArgs(6, REC)).toBe('hash:ip,port family inet6 timeout 300 counters maxelem 1024');
  });
});
