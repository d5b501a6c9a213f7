/**
 * Reading flow recording back, without a kernel: the pure parsers of `ipset save` entries and
 * `iptables-save -c` counters (src/render/flow-read.ts) with hostile input, the flow set plan of
 * the dataplane (agent/dataplane/flow-sets.ts), and the FlowReader's diff (agent/flow-reader.ts):
 * new, grown and re-added entries, overflow counters across a chain rewrite, bounded pending and
 * `take`. The same against the real kernel: test/flow-kernel.test.ts.
 */
import { describe, expect, it } from 'vitest';
import pino from 'pino';
import { FlowReader } from '../agent/flow-reader.js';
import { parseSetHeaders, planFlowSets, staleOwnedSets } from '../agent/dataplane/flow-sets.js';
import type { CommandRunner } from '../agent/dataplane/command-runner.js';
import { KernelDataplane } from '../agent/dataplane/kernel-dataplane.js';
import { RecordingRunner } from './support/recording-runner.js';
import { makeState } from './support/memory-state-source.js';
import { counterKey, parseFlowEntries, parseRuleCounters } from '../src/render/flow-read.js';
import type { FlowSet, RenderedFlows } from '../src/render/render-flows.js';

const log = pino({ level: 'silent' });
const REC = { maxEntries: 4, timeoutSeconds: 600 };

describe('parseFlowEntries', () => {
  it('reads entries of flow sets, canonical addresses, and skips (and counts) what does not parse', () => {
    const text = [
      'create pcu4-fl-allow hash:ip,port family inet hashsize 1024 maxelem 65536 timeout 600 counters bucketsize 12 initval 0x1',
      'add pcu4-fl-allow 10.0.0.1,tcp:31000 timeout 412 packets 3 bytes 180',
      'ipset> add pcu6-fl-deny FD00:0:0::0001,udp:53 timeout 5 packets 1 bytes 60',
      'add pcu4-fl-allow 10.0.0.2,icmp:8/0 timeout 5 packets 1 bytes 60',
      'add pcu4-fl-allow 10.0.0.300,tcp:1 timeout 5 packets 1 bytes 60',
      'add pcu4-fl-allow 10.0.0.3,tcp:0 timeout 5 packets 1 bytes 60',
      'add pcu4-fl-allow 10.0.0.3,tcp:70000 timeout 5 packets 1 bytes 60',
      'add pcu4-fl-allow 10.0.0.4,tcp:80 timeout 5 packets 99999999999999999999 bytes 60',
      'add pcu4-fl-allow 10.0.0.4,tcp:80 timeout 5 packets -1 bytes 60',
      'add pcu4-fl-allow 10.0.0.4,tcp:80 timeout 5',
      'add pcu4-fl-allow <script>,tcp:80 timeout 5 packets 1 bytes 1',
      'add pcu4-fl-allow',
      'add pcu4-allow-ip 10.0.0.9,tcp:80',
      'add foreign 10.0.0.9,tcp:80 timeout 1 packets 1 bytes 1',
      '\u0000\u0001 garbage',
      '',
    ].join('\n');
    const parsed = parseFlowEntries(text);
    expect(parsed.sets.get('pcu4-fl-allow')).toEqual([{ address: '10.0.0.1', protocol: 'tcp', port: 31000, timeout: 412, packets: 3, bytes: 180 }]);
    expect(parsed.sets.get('pcu6-fl-deny')).toEqual([{ address: 'fd00::1', protocol: 'udp', port: 53, timeout: 5, packets: 1, bytes: 60 }]);
    expect(parsed.skipped).toBe(9);
    expect([...parsed.sets.keys()].sort()).toEqual(['pcu4-fl-allow', 'pcu6-fl-deny']);
  });

  it('never throws on random bytes', () => {
    let seed = 7;
    const rnd = (): number => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
    for (let i = 0; i < 200; i++) {
      const line = 'add pcu4-fl-allow ' + Array.from({ length: 40 }, () => String.fromCharCode(Math.floor(rnd() * 128))).join('');
      expect(() => parseFlowEntries(line)).not.toThrow();
    }
  });
});

describe('parseRuleCounters', () => {
  it('reads the counters of our rules by chain and comment, in the asked table only', () => {
    const text = [
      '*filter',
      '[9:9] -A PCU-FL-DENY -m comment --comment "pcu:7b1c766a" -j DROP',
      'COMMIT',
      '*mangle',
      ':PCU-FL-DENY - [0:0]',
      '[5:300] -A PCU-FL-DENY -m set --match-set pcu4-fl-deny src,dst -m comment --comment "pcu:f5e85722" -j DROP',
      '[2:120] -A PCU-FL-DENY -m comment --comment "pcu:7b1c766a" -j DROP',
      '[1:1] -A FOREIGN -m comment --comment "pcu:7b1c766a" -j DROP',
      '[x:1] -A PCU-FL-DENY -m comment --comment "pcu:00000000" -j DROP',
      'COMMIT',
    ].join('\n');
    const c = parseRuleCounters(text);
    expect(c.get(counterKey('PCU-FL-DENY', 'pcu:7b1c766a'))).toEqual({ packets: 2, bytes: 120 });
    expect(c.get(counterKey('PCU-FL-DENY', 'pcu:f5e85722'))).toEqual({ packets: 5, bytes: 300 });
    expect(c.size).toBe(2);
  });
});

describe('flow sets in the dataplane', () => {
  const set: FlowSet = { name: 'pcu4-fl-allow', family: 4, direction: 'ingress', verdict: 'allowed' };
  it('creates a missing set, keeps a matching one, recreates (swap) one with other parameters', () => {
    const present = parseSetHeaders(
      [
        'create pcu4-fl-allow hash:ip,port family inet hashsize 1024 maxelem 4 timeout 600 counters bucketsize 12 initval 0x1',
        'create pcu4-fl-deny hash:ip,port family inet hashsize 1024 maxelem 4 timeout 300 counters bucketsize 12 initval 0x1',
      ].join('\n'),
    );
    const deny: FlowSet = { ...set, name: 'pcu4-fl-deny', verdict: 'denied' };
    const audit: FlowSet = { ...set, name: 'pcu4-fl-audit', verdict: 'audit' };
    const plan = planFlowSets([set, deny, audit], present, REC);
    expect(plan.text).toBe(
      [
        'create pcu4-fl-deny-tmp hash:ip,port family inet timeout 600 counters maxelem 4',
        'swap pcu4-fl-deny-tmp pcu4-fl-deny',
        'destroy pcu4-fl-deny-tmp',
        'create pcu4-fl-audit hash:ip,port family inet timeout 600 counters maxelem 4',
        '',
      ].join('\n'),
    );
    expect(plan.recreated).toEqual(['pcu4-fl-deny']);
    expect(plan.created).toEqual(['pcu4-fl-audit']);
  });

  it('stale sets: egress and flow sets not rendered, -tmp leftovers included, nothing foreign', () => {
    const listed = ['pcu4-fl-allow', 'pcu4-fl-deny', 'pcu4-fa-0123456789abcdef', 'pcu4-fa-0123456789abcdef-tmp', 'pcu4-allow-ip', 'foreign', 'pcu4-eg-managed'];
    expect(staleOwnedSets(listed, new Set(['pcu4-fl-allow']))).toEqual(['pcu4-fl-deny', 'pcu4-fa-0123456789abcdef', 'pcu4-fa-0123456789abcdef-tmp', 'pcu4-eg-managed']);
  });
});

describe('a kernel that refuses the recording rules', () => {
  it('the state is enforced without recording, and the reader says why', async () => {
    const runner = new RecordingRunner().on((argv, input) => (argv[0] === 'iptables-restore' && input?.includes('--add-set') ? { code: 2, stderr: "iptables-restore: Couldn't load target `SET'" } : undefined));
    const dp = new KernelDataplane({ runner, families: [4], logger: log, flows: REC });
    const report = await dp.apply(makeState('h1', { 'managed-tcp': ['31000'] }));
    expect(report.path).toBe('full');
    expect(dp.flowLayout).toBeUndefined();
    expect(dp.flowsRefused).toMatch(/refused the flow recording rules.*SET/);
    const restores = runner.callsTo(['iptables-restore', '--noflush']).map((c) => c.input ?? '');
    expect(restores).toHaveLength(2);
    expect(restores[1]).not.toMatch(/PCU-FL-|--add-set/);
    expect(dp.counters.applyFailures).toBe(0);
    const reader = new FlowReader({ runner, layout: () => dp.flowLayout, refused: () => dp.flowsRefused, intervalSeconds: 10, recording: REC, logger: log });
    expect(reader.status()).toMatchObject({ recording: false, reason: expect.stringMatching(/refused the flow recording rules/) });
  });
});

function readerWith(layout: RenderedFlows[], outputs: Map<string, string>, clock: { now: number }): FlowReader {
  const runner: CommandRunner = {
    run: async (argv) => {
      const key = argv.join(' ');
      const out = outputs.get(key);
      return out === undefined ? { code: 1, stdout: '', stderr: `no ${key}` } : { code: 0, stdout: out, stderr: '' };
    },
  };
  return new FlowReader({ runner, layout: () => layout, intervalSeconds: 10, recording: REC, logger: log, now: () => clock.now });
}

describe('FlowReader', () => {
  const allow: FlowSet = { name: 'pcu4-fl-allow', family: 4, direction: 'ingress', verdict: 'allowed' };
  const egress: FlowSet = { name: 'pcu4-fd-0123456789abcdef', family: 4, direction: 'egress', verdict: 'denied', appId: '/shop/web' };
  const layout: RenderedFlows[] = [
    { sets: [allow, egress], overflow: [{ chain: 'PCU-FL-ALLOW', comment: 'pcu:7619bed5', family: 4, direction: 'ingress', verdict: 'allowed' }] },
  ];
  const add = (set: string, member: string, timeout: number, packets: number): string => `add ${set} ${member} timeout ${timeout} packets ${packets} bytes ${packets * 60}`;
  const save = (set: string, ...lines: string[]): [string, string] => [`ipset list -o save ${set}`, [`create ${set} hash:ip,port family inet`, ...lines].join('\n')];
  const counters = (n: number): [string, string] => ['iptables-save -c -t mangle', `*mangle\n[${n}:0] -A PCU-FL-ALLOW -m comment --comment "pcu:7619bed5" -j RETURN\nCOMMIT\n`];

  it('reports new entries, then only growth, then a re-added entry whole; each connection once', async () => {
    const clock = { now: 1_000_000 };
    const outputs = new Map([save(allow.name, add(allow.name, '10.0.0.1,tcp:31000', 590, 2)), save(egress.name, add(egress.name, '10.0.0.20,tcp:5432', 600, 1)), counters(0)]);
    const reader = readerWith(layout, outputs, clock);
    await reader.read();
    const first = reader.take(100);
    expect(first.entries.map((e) => [e.direction, e.verdict, e.source, e.destination, e.protocol, e.port, e.packets])).toEqual([
      ['ingress', 'allowed', '10.0.0.1', '', 'tcp', 31000, 2],
      ['egress', 'denied', '/shop/web', '10.0.0.20', 'tcp', 5432, 1],
    ]);
    expect(first.entries[0]!.firstSeenMs).toBe(1_000_000 - 10_000);
    expect(first.more).toBe(false);
    // Nothing changed: nothing reported.
    clock.now += 10_000;
    outputs.set(...save(allow.name, add(allow.name, '10.0.0.1,tcp:31000', 580, 2)));
    outputs.set(...save(egress.name, add(egress.name, '10.0.0.20,tcp:5432', 590, 1)));
    await reader.read();
    expect(reader.take(100).entries).toEqual([]);
    // Grown by 3.
    clock.now += 10_000;
    outputs.set(...save(allow.name, add(allow.name, '10.0.0.1,tcp:31000', 570, 5)));
    outputs.set(...save(egress.name, add(egress.name, '10.0.0.20,tcp:5432', 580, 1)));
    await reader.read();
    const grown = reader.take(100).entries;
    expect(grown.map((e) => e.packets)).toEqual([3]);
    expect(grown[0]!.firstSeenMs).toBe(1_000_000 - 10_000);
    // Expired and re-added between two reads with fewer packets than before: counted whole.
    clock.now += 10_000;
    outputs.set(...save(allow.name, add(allow.name, '10.0.0.1,tcp:31000', 598, 1)));
    outputs.set(...save(egress.name, add(egress.name, '10.0.0.20,tcp:5432', 570, 1)));
    await reader.read();
    expect(reader.take(100).entries.map((e) => e.packets)).toEqual([1]);
  });

  it('overflow: growth of the counter, a smaller counter (chain rewritten) counts from zero', async () => {
    const clock = { now: 5_000_000 };
    const outputs = new Map([save(allow.name), save(egress.name), counters(4)]);
    const reader = readerWith(layout, outputs, clock);
    await reader.read();
    expect(reader.take(10).overflow).toEqual([{ direction: 'ingress', verdict: 'allowed', family: 4, packets: 4 }]);
    outputs.set(...counters(6));
    await reader.read();
    expect(reader.take(10).overflow.map((o) => o.packets)).toEqual([2]);
    outputs.set(...counters(1));
    await reader.read();
    expect(reader.take(10).overflow.map((o) => o.packets)).toEqual([1]);
    await reader.read();
    expect(reader.take(10).overflow).toEqual([]);
  });

  it('take(max) leaves the rest for the next call; pending merges by key and is bounded', async () => {
    const clock = { now: 9_000_000 };
    const members = Array.from({ length: 4 }, (_, i) => add(allow.name, `10.0.1.${i + 1},tcp:31000`, 600, 1));
    const outputs = new Map([save(allow.name, ...members), save(egress.name), counters(0)]);
    const reader = readerWith(layout, outputs, clock);
    await reader.read();
    const a = reader.take(3);
    expect(a.entries).toHaveLength(3);
    expect(a.more).toBe(true);
    // A second read before the rest is taken: the pending one merges, nothing is lost or doubled.
    clock.now += 1000;
    outputs.set(...save(allow.name, ...members.slice(0, 3), add(allow.name, '10.0.1.4,tcp:31000', 599, 3)));
    await reader.read();
    const b = reader.take(10);
    expect(b.entries.map((e) => [e.source, e.packets])).toEqual([['10.0.1.4', 3]]);
    expect(b.more).toBe(false);
    // More entries than maxEntries in a set: only maxEntries are known.
    const many = Array.from({ length: 10 }, (_, i) => add(allow.name, `10.0.2.${i + 1},tcp:31000`, 600, 1));
    outputs.set(...save(allow.name, ...many));
    await reader.read();
    expect(reader.take(100).entries).toHaveLength(4);
  });

  it('the sets and overflow rules of an app that left the host are forgotten once read: what is known stays bounded by the sets held', async () => {
    const clock = { now: 3_000_000 };
    const rule = { chain: 'PCU-EGD-0123456789ABCDEF', comment: 'pcu:0badcafe', family: 4 as const, direction: 'egress' as const, verdict: 'denied' as const };
    const held: RenderedFlows[] = [{ sets: [allow, egress], overflow: [layout[0]!.overflow[0]!, rule] }];
    const members = Array.from({ length: 4 }, (_, i) => add(egress.name, `10.0.3.${i + 1},tcp:5432`, 600, 1));
    const egressCounter = `[3:0] -A ${rule.chain} -m comment --comment "${rule.comment}" -j DROP`;
    const outputs = new Map([save(allow.name), save(egress.name, ...members), ['iptables-save -c -t mangle', `*mangle\n${egressCounter}\nCOMMIT\n`] as [string, string]]);
    const reader = readerWith(held, outputs, clock);
    // The reader's private bookkeeping: there is no public view of it.
    const inside = reader as unknown as { known: Map<string, Map<string, unknown>>; ruleCounts: Map<string, number> };
    await reader.read();
    expect(reader.take(10).entries).toHaveLength(4);
    expect(inside.known.get(egress.name)?.size).toBe(4);
    // The app leaves: the next write no longer renders its set, reads it once more, destroys it.
    await reader.read([egress.name]);
    held[0] = { sets: [allow], overflow: [layout[0]!.overflow[0]!] };
    outputs.delete(`ipset list -o save ${egress.name}`);
    outputs.set(...counters(0));
    clock.now += 10_000;
    await reader.read();
    expect([...inside.known.keys()]).toEqual([allow.name]);
    expect([...inside.ruleCounts.keys()]).toEqual([`4 ${counterKey('PCU-FL-ALLOW', 'pcu:7619bed5')}`]);
  });

  it('a set that cannot be read keeps what was known (no double report afterwards)', async () => {
    const clock = { now: 2_000_000 };
    const outputs = new Map([save(allow.name, add(allow.name, '10.0.0.1,tcp:31000', 600, 1)), counters(0)]);
    const reader = readerWith(layout, outputs, clock);
    await reader.read();
    expect(reader.take(10).entries).toHaveLength(1);
    outputs.delete(`ipset list -o save ${allow.name}`);
    clock.now += 1000;
    await reader.read();
    outputs.set(...save(allow.name, add(allow.name, '10.0.0.1,tcp:31000', 598, 1)));
    clock.now += 1000;
    await reader.read();
    expect(reader.take(10).entries).toEqual([]);
    expect(reader.status()).toMatchObject({ recording: true, intervalSeconds: 10, maxEntries: 4 });
  });
});
