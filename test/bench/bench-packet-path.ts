/**
 * Scenario "packet": the per-packet cost of what the agent writes, inside throwaway network
 * namespaces (test/support/netns.ts: two host namespaces on a bridge in a namespace of its own;
 * nothing routes out). Root only.
 *
 * 1. Rule count: states of 100, 1,000, 10,000 and 100,000 allow members applied in turn through
 *    KernelDataplane.apply in h2; after each, our rules are counted in `iptables-save -t mangle`
 *    and `ip6tables-save -t mangle` (lines `-A PCU-*` plus our jump in PREROUTING), and the
 *    member count the kernel holds is read back (`ipset list -terse`).
 * 2. New-connection rate from h1 to a managed port of h2 with `pairs` allowed (source, tcp:port)
 *    pairs (h1's pair among them), `connectSeconds` per run, three configurations measured in the
 *    same run in the order none, portcullis, naive, naive, portcullis, none, twice (so a drift of
 *    the machine's speed cancels out); the mean of a configuration's four runs is reported:
 *      - none: no rule in h2 at all;
 *      - portcullis: the state applied by KernelDataplane (a handful of rules + hash sets);
 *      - naive: the same policy as one iptables rule per allowed pair in a chain of table mangle
 *        (loopback and established/related return first, like ours; then `-s <src>/32 -p tcp
 *        --dport <port> -j RETURN` per pair, in the state's sorted order; then a DROP per managed
 *        port).
 *    The client (packet-tcp-tool.js `rate`, in h1) opens and closes TCP connections as fast as
 *    it can; the server (in h2) accepts and closes. The rule counters read after each firewalled
 *    run show the SYNs really went through the rule that allows h1.
 */
import { loadavg } from 'node:os';
import pino from 'pino';
import { ExecCommandRunner } from '../../agent/dataplane/command-runner.js';
import { KernelDataplane } from '../../agent/dataplane/kernel-dataplane.js';
import type { DesiredState } from '../../src/compile/desired-state.js';
import { createTestNetwork, type TestNetwork } from '../support/netns.js';
import { log, report } from './figures.js';
import { kernelBenchReady } from './kernel-bench.js';
import { memberCount, syntheticHostState } from './kernel-synthetic-state.js';
import type { BenchOptions } from './options.js';
import { runRate, startServer, type RateResult, type TcpServer } from './packet-procs.js';
import { mean } from './stats.js';

const S = 'packet';
const SIZES = [100, 1000, 10_000, 100_000];
const BASE_PORT = 31000;
/** Managed ports of the connection-rate state; h1 connects to the middle one. */
const RATE_PORTS = 50;
const RATE_PORT = BASE_PORT + 25;
const CONCURRENCY = 64;
const NAIVE_CHAIN = 'BENCH-NAIVE';

type Config = 'none' | 'portcullis' | 'naive';
/** Two cycles of none, portcullis, naive, naive, portcullis, none: a drift of the machine's speed cancels out. */
const CYCLE: readonly Config[] = ['none', 'portcullis', 'naive', 'naive', 'portcullis', 'none'];
const ORDER: readonly Config[] = [...CYCLE, ...CYCLE];

export async function benchPacketPath(o: BenchOptions): Promise<void> {
  if (!(await kernelBenchReady())) return;
  let net: TestNetwork | undefined;
  try {
    net = await createTestNetwork({ hosts: 2, ipv6: true });
    const runner = new ExecCommandRunner({ prefix: ['ip', 'netns', 'exec', net.hosts[1]!.ns], timeoutMs: 300_000 });
    const dp = new KernelDataplane({ runner, logger: pino({ level: 'silent' }) });
    await ruleCounts(dp, runner, net.hosts[0]!.v4);
    await dp.uninstall();
    await connectionRates(o, net, dp, runner);
  } finally {
    await net?.destroy();
  }
}

async function must(runner: ExecCommandRunner, argv: readonly string[], input?: string): Promise<string> {
  const r = await runner.run(argv, input);
  if (r.code !== 0) throw new Error(`${argv.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
  return r.stdout;
}

async function entries(runner: ExecCommandRunner, set: string): Promise<number> {
  const m = /Number of entries: (\d+)/.exec(await must(runner, ['ipset', 'list', '-terse', set]));
  if (!m) throw new Error(`no entry count for ${set}`);
  return Number(m[1]);
}

/** Our rules in table mangle of one family: chain rules `-A PCU-*` and jumps to PCU-* in PREROUTING. */
async function ourRules(runner: ExecCommandRunner, save: string): Promise<number> {
  const text = await must(runner, [save, '-t', 'mangle']);
  return text.split('\n').filter((l) => l.startsWith('-A PCU-') || (l.startsWith('-A PREROUTING ') && / -j PCU-\S+/.test(l))).length;
}

async function ruleCounts(dp: KernelDataplane, runner: ExecCommandRunner, clientV4: string): Promise<void> {
  let first: number | undefined;
  for (const size of SIZES) {
    const state = syntheticHostState({ members: size, ports: 100, basePort: BASE_PORT, netShare: 0.05, v6Share: 0.05, include: [`${clientV4},tcp:${BASE_PORT}`] });
    const t = performance.now();
    await dp.apply(state);
    const ms = performance.now() - t;
    const v4 = await ourRules(runner, 'iptables-save');
    const v6 = await ourRules(runner, 'ip6tables-save');
    const held = (await entries(runner, 'pcu4-allow-ip')) + (await entries(runner, 'pcu4-allow-net')) + (await entries(runner, 'pcu6-allow-ip')) + (await entries(runner, 'pcu6-allow-net'));
    if (held !== memberCount(state)) throw new Error(`kernel holds ${held} allow members, state has ${memberCount(state)}`);
    first ??= v4 + v6;
    log(`${size} members: applied in ${ms.toFixed(0)} ms; ${v4} IPv4 + ${v6} IPv6 rules; sets hold ${held} members`);
    report({ scenario: S, name: `rules at ${size} members`, value: v4 + v6, unit: 'rules', target: { op: '<=', value: first }, note: `IPv4 ${v4} + IPv6 ${v6} (iptables-save, our chains + jump); kernel sets hold ${held} members` });
  }
}

/** The naive ruleset of the same policy: one rule per allowed (source, port) pair. */
function naiveRuleset(state: DesiredState): { text: string; rules: number; clientRule: (src: string) => number } {
  const pairs = state.sets['allow-ip4'].map((m) => {
    const [src, proto] = m.split(',') as [string, string];
    return { src, port: proto.slice('tcp:'.length) };
  });
  const lines = ['*mangle', `:${NAIVE_CHAIN} - [0:0]`, `-A PREROUTING -j ${NAIVE_CHAIN}`, `-A ${NAIVE_CHAIN} -i lo -j RETURN`, `-A ${NAIVE_CHAIN} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN`];
  for (const p of pairs) lines.push(`-A ${NAIVE_CHAIN} -s ${p.src}/32 -p tcp -m tcp --dport ${p.port} -j RETURN`);
  for (const port of state.sets['managed-tcp']) lines.push(`-A ${NAIVE_CHAIN} -p tcp -m tcp --dport ${port} -j DROP`);
  lines.push('COMMIT', '');
  return {
    text: lines.join('\n'),
    rules: lines.filter((l) => l.startsWith('-A ')).length,
    clientRule: (src) => 3 + pairs.findIndex((p) => p.src === src && p.port === String(RATE_PORT)) + 1,
  };
}

const NAIVE_REMOVE = ['*mangle', `-D PREROUTING -j ${NAIVE_CHAIN}`, `-F ${NAIVE_CHAIN}`, `-X ${NAIVE_CHAIN}`, 'COMMIT', ''].join('\n');

/** Packet count of the first rule line in `iptables-save -c -t mangle` containing `needle`. */
async function counter(runner: ExecCommandRunner, needle: string): Promise<number> {
  const text = await must(runner, ['iptables-save', '-c', '-t', 'mangle']);
  const line = text.split('\n').find((l) => l.includes(needle));
  const m = line === undefined ? null : /^\[(\d+):\d+\]/.exec(line);
  if (!m) throw new Error(`no counter for a rule with ${JSON.stringify(needle)}`);
  return Number(m[1]);
}

async function connectionRates(o: BenchOptions, net: TestNetwork, dp: KernelDataplane, runner: ExecCommandRunner): Promise<void> {
  const [h1, h2] = net.hosts as [(typeof net.hosts)[0], (typeof net.hosts)[0]];
  const state = syntheticHostState({ members: o.pairs, ports: RATE_PORTS, basePort: BASE_PORT, netShare: 0, v6Share: 0, include: [`${h1.v4},tcp:${RATE_PORT}`] });
  const naive = naiveRuleset(state);
  log(`policy: ${memberCount(state)} allowed (source, tcp port) pairs over ${RATE_PORTS} managed ports; h1 → h2:${RATE_PORT} is allowed; naive ruleset ${naive.rules} rules, h1's pair is rule ${naive.clientRule(h1.v4)}`);
  log(`client: ${CONCURRENCY} connections in flight, closed with RST once established; ${o.connectSeconds} s per run`);

  let server: TcpServer | undefined;
  // An object, so the finally block sees what configure() left behind.
  const active: { config: Config } = { config: 'none' };
  const rates: Record<Config, number[]> = { none: [], portcullis: [], naive: [] };
  try {
    server = await startServer(net, h2.ns, RATE_PORT);
    const configure = async (want: Config): Promise<void> => {
      if (want === active.config) return;
      if (active.config === 'naive') await must(runner, ['iptables-restore', '--noflush', '--wait'], NAIVE_REMOVE);
      if (active.config === 'portcullis') await dp.uninstall();
      active.config = 'none';
      const t = performance.now();
      if (want === 'portcullis') await dp.apply(state);
      if (want === 'naive') await must(runner, ['iptables-restore', '--noflush', '--wait'], naive.text);
      active.config = want;
      if (want !== 'none') log(`${want} ruleset loaded in ${(performance.now() - t).toFixed(0)} ms`);
    };
    for (const config of ORDER) {
      await configure(config);
      const needle = config === 'portcullis' ? '--match-set pcu4-allow-ip src,dst' : `-s ${h1.v4}/32 -p tcp -m tcp --dport ${RATE_PORT} -j RETURN`;
      const before = config === 'none' ? 0 : await counter(runner, needle);
      const result: RateResult = await runRate(net, h1.ns, h2.v4, RATE_PORT, o.connectSeconds, CONCURRENCY);
      const matched = config === 'none' ? undefined : (await counter(runner, needle)) - before;
      const failures = Object.entries(result.failures).map(([k, v]) => `${k} ${v}`).join(', ');
      log(`${config.padEnd(10)} ${result.perSecond.toFixed(0)} conn/s (${result.connections} in ${result.seconds} s${failures ? `; failed: ${failures}` : ''})${matched === undefined ? '' : `; rule allowing h1 matched ${matched} packets`}; load ${loadavg()[0]!.toFixed(2)}`);
      if (result.connections === 0) throw new Error(`no connection succeeded with configuration ${config}`);
      rates[config].push(result.perSecond);
    }
  } finally {
    try {
      if (active.config === 'naive') await must(runner, ['iptables-restore', '--noflush', '--wait'], NAIVE_REMOVE);
      if (active.config === 'portcullis') await dp.uninstall();
    } finally {
      await server?.stop();
    }
  }
  const none = mean(rates.none);
  const pcu = mean(rates.portcullis);
  const nav = mean(rates.naive);
  const each = (c: Config) => rates[c].map((x) => x.toFixed(0)).join(', ');
  report({ scenario: S, name: 'conn rate, no firewall', value: none, unit: 'conn/s', note: `runs ${each('none')}` });
  report({ scenario: S, name: `conn rate, Portcullis (${o.pairs} pairs)`, value: pcu, unit: 'conn/s', note: `runs ${each('portcullis')}` });
  report({ scenario: S, name: `conn rate, naive rule per pair (${naive.rules} rules)`, value: nav, unit: 'conn/s', note: `runs ${each('naive')}; ${(nav / none).toFixed(2)}x of no firewall` });
  report({ scenario: S, name: 'conn rate Portcullis / no firewall', value: pcu / none, unit: 'x', target: { op: '>=', value: 0.9 }, note: `naive one-rule-per-pair: ${(nav / none).toFixed(2)}x (same run)` });
}
