/**
 * Scenario "egress" (issue 10): per-app egress on the source host, inside throwaway network
 * namespaces and real cgroups (test/support/netns.ts, cgroup.ts). Root and a cgroup2 mount only.
 *
 * Host h1 runs 50 local apps (one task each, a cgroup each under a test cgroups root); its state
 * has the host-level sets of `members` allow members (kernel-synthetic-state.ts) plus the egress
 * kinds: 2,000 managed destinations of the cluster, 40 allowed per app, h2:RATE_PORT allowed for
 * the last app (whose cgroup rule is the last of the 50 in PCU-OUTPUT: the longest walk).
 *
 * 1. New container → its egress rule in the kernel: the agent's EgressMapper polls the Mesos
 *    agent API double (in this process, real HTTP) at the default 250 ms; a new container's
 *    cgroup is created and the double starts listing its task (the moment the Mesos agent knows
 *    it); the time until the dataplane's write of the map with that task has returned (the rule
 *    is in the kernel; checked with iptables-save) is one sample. `samples` containers in turn,
 *    at random phases of the poll. p50 and p99 reported, target p99 ≤ 1 s.
 * 2. New-connection rate from the last app's cgroup on h1 to h2 (a Node client, 64 connections in
 *    flight, each reset once established) in four configurations of h1: no firewall; one
 *    conntrack match only (the floor of any stateful rule set: with it loaded the kernel tracks
 *    every connection of the namespace); the state without the local task map (host-level rules
 *    only, to tell egress's own cost from the source host's ingress rules); the state applied by
 *    KernelDataplane with the map (egress on). CYCLES cycles, each running every configuration
 *    twice in mirrored order (none, conntrack, host, egress, egress, host, conntrack, none), so a
 *    linear drift of the machine's speed cancels within a cycle. The target figure is the median
 *    over cycles of (egress runs' rates / no-firewall runs' rates) in that cycle; the means of all
 *    runs are reported too. The CPU time of the client and the server (their cgroups' cpu.stat)
 *    per connection is reported beside it, a second view of the same cost (it moves with the
 *    machine's load too: caches). The counter of that app's cgroup rule shows the SYNs went
 *    through it.
 */
import { writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import pino from 'pino';
import { ExecCommandRunner } from '../../agent/dataplane/command-runner.js';
import { KernelDataplane } from '../../agent/dataplane/kernel-dataplane.js';
import { EgressMapper } from '../../agent/egress-mapper.js';
import type { DesiredState } from '../../src/compile/desired-state.js';
import { stateVersion } from '../../src/compile/state-version.js';
import { MesosAgentApi } from '../../src/mesos/agent-api.js';
import type { EgressMapping } from '../../src/render/render-egress.js';
import { cgroup2Mount, createTestCgroup, sweepStaleCgroups, type TestCgroup } from '../support/cgroup.js';
import { MesosAgentDouble, type ScriptedTask } from '../support/mesos-agent-double.js';
import { createTestNetwork, sweepStaleNamespaces, type TestNetwork } from '../support/netns.js';
import { log, report } from './figures.js';
import { cpuUsec, CYCLES, cycleRatios, middle, mirroredCycle, type CycleRun } from './mirrored-cycles.js';
import { syntheticHostState } from './kernel-synthetic-state.js';
import type { BenchOptions } from './options.js';
import { runRate, startServer, type TcpServer } from './packet-procs.js';
import { mean, percentile } from './stats.js';

const S = 'egress';
/** Local apps, managed destinations of the cluster, and allowed destinations per app. */
const [APPS, MANAGED, PER_APP] = [50, 2000, 40];
/** h2's port the rate client connects to; new containers timed; rate client connections in flight. */
const [RATE_PORT, SAMPLES, CONCURRENCY] = [32000, 30, 64];
const app = (i: number) => `/bench/app-${String(i).padStart(2, '0')}`;
const managed = (k: number) => `10.50.${k >> 8}.${k & 255},tcp:${30000 + (k % 100)}`;

function egressState(h2: string, members: number): DesiredState {
  const base = syntheticHostState({ members, ports: 100, basePort: 31000, netShare: 0.05, v6Share: 0.05, include: [] });
  const rate = `${h2},tcp:${RATE_PORT}`;
  const tasks = Array.from({ length: APPS }, (_, i) => `${app(i)}|t-${i}`);
  const fresh = Array.from({ length: SAMPLES }, (_, i) => `${app(i % APPS)}|new-${i}`);
  const ip4: string[] = [`${app(APPS - 1)}|${rate}`];
  for (let i = 0; i < APPS; i++) for (let j = 0; j < PER_APP; j++) ip4.push(`${app(i)}|${managed((i * 37 + j * 11) % MANAGED)}`);
  const sets = {
    ...base.sets,
    'egress-task': [...tasks, ...fresh].sort(),
    'egress-managed4': [rate, ...Array.from({ length: MANAGED }, (_, k) => managed(k))].sort(),
    'egress-ip4': [...new Set(ip4)].sort(),
  };
  return { hostId: 'h1', mode: 'enforce', sets, version: stateVersion('enforce', sets) };
}

export async function benchEgress(o: BenchOptions): Promise<void> {
  if (process.getuid?.() !== 0 || cgroup2Mount() === undefined) {
    log('skipped: needs root (network namespaces, iptables, ipset) and a cgroup2 mount');
    return;
  }
  log(`load average at start: ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  await sweepStaleNamespaces();
  sweepStaleCgroups();
  let net: TestNetwork | undefined;
  const cgroups: TestCgroup[] = [];
  const double = new MesosAgentDouble();
  let mapper: EgressMapper | undefined;
  try {
    net = await createTestNetwork({ hosts: 2, ipv6: false });
    const [h1, h2] = net.hosts as [(typeof net.hosts)[0], (typeof net.hosts)[0]];
    const runner = new ExecCommandRunner({ prefix: ['ip', 'netns', 'exec', h1.ns], timeoutMs: 300_000 });
    const dp = new KernelDataplane({ runner, families: [4], logger: pino({ level: 'silent' }) });
    const root = createTestCgroup('mesos');
    cgroups.push(root);
    const apps = Array.from({ length: APPS }, (_, i) => {
      const c = createTestCgroup(`mesos/c-${String(i).padStart(2, '0')}`);
      cgroups.push(c);
      return c;
    });
    double.cgroupsRoot = root.path;
    double.tasks = apps.map((_, i): ScriptedTask => ({ taskId: `t-${i}`, containerId: `c-${String(i).padStart(2, '0')}`, executorPid: null }));
    const serverCgroup = createTestCgroup('rate-server');
    cgroups.push(serverCgroup);
    const url = await double.start();
    const state = egressState(h2.v4, o.members);
    // One local task map for the rate runs (what the mapper finds for the 50 apps).
    const mapping: EgressMapping = { tasks: new Map(apps.map((c, i) => [`t-${i}`, { kind: 'host', cgroupPath: c.path }])), unmapped: 'host', cgroupsRoot: root.path };
    await connectionRates(o, net, dp, state, mapping, apps.at(-1)!, serverCgroup);

    mapper = new EgressMapper({ api: new MesosAgentApi({ url }), dataplane: dp, runner, hostAddresses: [h1.v4], unmapped: 'host', restoreCommand: 'iptables-restore', logger: pino({ level: 'silent' }) });
    await mapper.start();
    const t = performance.now();
    await dp.apply(state);
    log(`state applied (${o.members} allow members, ${state.sets['egress-ip4'].length} egress-ip4, ${APPS} apps mapped) in ${(performance.now() - t).toFixed(0)} ms`);
    await newContainerLatency(dp, double, runner, cgroups);
  } finally {
    mapper?.stop();
    await double.stop();
    await net?.destroy();
    for (const c of cgroups.reverse()) c.destroy();
  }
}

async function newContainerLatency(dp: KernelDataplane, double: MesosAgentDouble, runner: ExecCommandRunner, cgroups: TestCgroup[]): Promise<void> {
  const samples: number[] = [];
  const write = dp.setEgress.bind(dp);
  let waiting: { task: string; resolve: (at: number) => void } | undefined;
  dp.setEgress = async (m, key) => {
    const r = await write(m, key);
    if (waiting && m?.tasks.has(waiting.task)) waiting.resolve(performance.now());
    return r;
  };
  for (let i = 0; i < SAMPLES; i++) {
    const c = createTestCgroup(`mesos/new-${i}`);
    cgroups.push(c);
    // A random phase against the 250 ms poll.
    await new Promise((resolve) => setTimeout(resolve, Math.random() * 250));
    const task = `new-${i}`;
    const written = new Promise<number>((resolve, reject) => {
      waiting = { task, resolve };
      setTimeout(() => reject(new Error(`no rule for ${task} within 10 s`)), 10_000).unref();
    });
    const t0 = performance.now();
    double.tasks = [...double.tasks, { taskId: task, containerId: `new-${i}`, executorPid: null }];
    samples.push((await written) - t0);
    const save = await runner.run(['iptables-save', '-t', 'mangle']);
    if (!save.stdout.includes(c.path)) throw new Error(`the rule of ${task} is not in the kernel`);
  }
  dp.setEgress = write;
  log(`new container → rule in the kernel: ${samples.map((x) => x.toFixed(0)).join(' ')} ms`);
  report({ scenario: S, name: 'new container → egress rule in kernel p50', value: percentile(samples, 50), unit: 'ms', note: `${SAMPLES} containers, Mesos agent polled every 250 ms (default), ${APPS}+ local apps` });
  report({ scenario: S, name: 'new container → egress rule in kernel p99', value: percentile(samples, 99), unit: 'ms', target: { op: '<=', value: 1000 }, note: `max ${Math.max(...samples).toFixed(0)} ms; a chain rewrite (no set written) after the poll that lists it` });
}

/**
 * none: no firewall on h1; conntrack: one `--ctstate RELATED,ESTABLISHED -j RETURN` rule in
 * mangle PREROUTING and nothing else (the floor of any stateful firewall: with one conntrack match
 * loaded the kernel tracks every connection of the namespace); host: the state without the local
 * task map (host-level rules only); egress: with it.
 */
type Config = 'none' | 'conntrack' | 'host' | 'egress';
const CONFIGS: readonly Config[] = ['none', 'conntrack', 'host', 'egress'];
const CYCLE: readonly Config[] = mirroredCycle(CONFIGS);
const CONNTRACK_RULE = ['-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', '-m', 'comment', '--comment', 'pcut-bench-conntrack', '-j', 'RETURN'];

type Run = CycleRun<Config>;

async function switchTo(config: Config, active: Config, net: TestNetwork, dp: KernelDataplane, state: DesiredState, mapping: EgressMapping): Promise<void> {
  if (config === active) return;
  const ns = net.hosts[0]!.ns;
  if (active === 'conntrack') await runOk(net, ns, ['iptables', '-t', 'mangle', '-D', 'PREROUTING', ...CONNTRACK_RULE]);
  if (active === 'host' || active === 'egress') await dp.uninstall();
  if (config === 'conntrack') await runOk(net, ns, ['iptables', '-t', 'mangle', '-I', 'PREROUTING', '1', ...CONNTRACK_RULE]);
  if (config === 'host' || config === 'egress') {
    await dp.setEgress(config === 'egress' ? mapping : undefined, 'bench');
    await dp.apply(state);
  }
}

async function runOk(net: TestNetwork, ns: string, argv: string[]): Promise<void> {
  const r = await net.exec(ns, argv);
  if (r.code !== 0) throw new Error(`${argv.join(' ')} in ${ns} exited ${r.code}: ${r.stderr.trim()}`);
}

async function connectionRates(o: BenchOptions, net: TestNetwork, dp: KernelDataplane, state: DesiredState, mapping: EgressMapping, client: TestCgroup, serverCgroup: TestCgroup): Promise<void> {
  const [h1, h2] = net.hosts as [(typeof net.hosts)[0], (typeof net.hosts)[0]];
  let server: TcpServer | undefined;
  const runs: Run[] = [];
  const needle = `--path "${client.path}"`;
  const counter = async (): Promise<number> => {
    const r = await net.exec(h1.ns, ['iptables-save', '-c', '-t', 'mangle']);
    const m = /^\[(\d+):\d+\]/.exec(r.stdout.split('\n').find((l) => l.includes(needle)) ?? '');
    if (!m) throw new Error('no counter for the client app\'s cgroup rule');
    return Number(m[1]);
  };
  try {
    let active: Config = 'none';
    server = await startServer(net, h2.ns, RATE_PORT);
    if (server.pid === undefined) throw new Error('the rate server has no pid');
    writeFileSync(serverCgroup.procsFile, String(server.pid));
    log(`client: the last of ${APPS} apps' cgroups on h1, ${CONCURRENCY} connections in flight, ${o.connectSeconds} s per run, ${CYCLES} cycles of ${CYCLE.join(', ')}`);
    for (let cycle = 0; cycle < CYCLES; cycle++) {
      for (const config of CYCLE) {
        await switchTo(config, active, net, dp, state, mapping);
        active = config;
        const before = config === 'egress' ? await counter() : 0;
        const cpu0 = cpuUsec(client) + cpuUsec(serverCgroup);
        const result = await runRate(net, h1.ns, h2.v4, RATE_PORT, o.connectSeconds, CONCURRENCY, client.procsFile);
        const cpu = cpuUsec(client) + cpuUsec(serverCgroup) - cpu0;
        const matched = config === 'egress' ? (await counter()) - before : undefined;
        if (result.connections === 0) throw new Error(`no connection succeeded with ${config}`);
        const run: Run = { cycle, config, perSecond: result.perSecond, cpuPerConnection: cpu / result.connections };
        log(`${config.padEnd(9)} ${result.perSecond.toFixed(0)} conn/s (${result.connections} in ${result.seconds} s), CPU ${run.cpuPerConnection.toFixed(0)} µs/conn${matched === undefined ? '' : `; the app's cgroup rule matched ${matched} packets`}; load ${loadavg()[0]!.toFixed(2)}`);
        if (matched !== undefined && matched < result.connections) throw new Error(`the app's rule matched ${matched} packets for ${result.connections} connections`);
        runs.push(run);
      }
    }
    await switchTo('none', active, net, dp, state, mapping);
  } finally {
    await server?.stop();
  }
  reportRates(o, runs);
}

function reportRates(o: BenchOptions, runs: readonly Run[]): void {
  const of = (c: Config) => runs.filter((r) => r.config === c);
  const list = (xs: readonly number[], digits = 0) => xs.map((x) => x.toFixed(digits)).join(', ');
  const ratios = (c: Config) => cycleRatios(runs, c, 'none', (r) => r.perSecond);
  const summary = (c: Config) => `runs ${list(of(c).map((r) => r.perSecond))}; per cycle ${list(ratios(c), 2)}x of no firewall, median ${middle(ratios(c)).toFixed(2)}x`;
  const none = mean(of('none').map((r) => r.perSecond));
  report({ scenario: S, name: 'conn rate from a task, no firewall', value: none, unit: 'conn/s', note: `runs ${list(of('none').map((r) => r.perSecond))}` });
  report({ scenario: S, name: 'conn rate from a task, conntrack only', value: mean(of('conntrack').map((r) => r.perSecond)), unit: 'conn/s', note: `${summary('conntrack')}: one conntrack match, the floor of any stateful rule set` });
  report({ scenario: S, name: 'conn rate from a task, host-level rules only', value: mean(of('host').map((r) => r.perSecond)), unit: 'conn/s', note: `${summary('host')}: the source host's own ingress rules (the SYN-ACKs pass PCU-PREROUTING)` });
  report({ scenario: S, name: `conn rate from a task, egress on (${APPS} local apps)`, value: mean(of('egress').map((r) => r.perSecond)), unit: 'conn/s', note: `${summary('egress')}; ${MANAGED} managed destinations, ${o.members} allow members on the host` });
  const egress = ratios('egress');
  report({ scenario: S, name: 'conn rate egress on / no firewall', value: middle(egress), unit: 'x', target: { op: '>=', value: 0.9 }, note: `median of ${CYCLES} cycles' ratios (${list(egress, 2)}; mean of all runs ${(mean(of('egress').map((r) => r.perSecond)) / none).toFixed(2)}x); the client app's rule is the last of 50 cgroup rules` });
  const cpu = (c: Config) => middle(of(c).map((r) => r.cpuPerConnection));
  const cpuRatios = cycleRatios(runs, 'egress', 'none', (r) => r.cpuPerConnection);
  report({ scenario: S, name: 'CPU per new connection, egress on / no firewall', value: middle(cpuRatios), unit: 'x', note: `client + server processes, warm-up included; medians ${cpu('none').toFixed(0)} (none), ${cpu('conntrack').toFixed(0)} (conntrack), ${cpu('host').toFixed(0)} (host), ${cpu('egress').toFixed(0)} (egress) µs; per cycle ${list(cpuRatios, 2)}` });
}
