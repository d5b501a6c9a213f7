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
 * 2. New-connection rate from the last app's cgroup on h1 to h2, egress on (the state above,
 *    applied by KernelDataplane with the local task map) against no firewall on h1, and the same
 *    state without the map (host-level rules only, to tell egress's own cost from the source
 *    host's ingress rules), measured in the same run in the order none, host, egress, egress,
 *    host, none, twice; the mean of each configuration's four runs. The counter of that app's
 *    cgroup rule shows the SYNs went through it.
 */
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
    const url = await double.start();
    const state = egressState(h2.v4, o.members);
    // One local task map for the rate runs (what the mapper finds for the 50 apps).
    const mapping: EgressMapping = { tasks: new Map(apps.map((c, i) => [`t-${i}`, { kind: 'host', cgroupPath: c.path }])), unmapped: 'host', cgroupsRoot: root.path };
    await connectionRates(o, net, dp, state, mapping, apps.at(-1)!);
    await dp.uninstall();

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

/** none: no firewall on h1; host: the state without the local task map (host-level rules only); egress: with it. */
type Config = 'none' | 'host' | 'egress';
const CYCLE: readonly Config[] = ['none', 'host', 'egress', 'egress', 'host', 'none'];
const ORDER: readonly Config[] = [...CYCLE, ...CYCLE];

async function connectionRates(o: BenchOptions, net: TestNetwork, dp: KernelDataplane, state: DesiredState, mapping: EgressMapping, client: TestCgroup): Promise<void> {
  const [h1, h2] = net.hosts as [(typeof net.hosts)[0], (typeof net.hosts)[0]];
  let server: TcpServer | undefined;
  const rates: Record<Config, number[]> = { none: [], host: [], egress: [] };
  const needle = `--path "${client.path}"`;
  const counter = async (): Promise<number> => {
    const r = await net.exec(h1.ns, ['iptables-save', '-c', '-t', 'mangle']);
    const m = /^\[(\d+):\d+\]/.exec(r.stdout.split('\n').find((l) => l.includes(needle)) ?? '');
    if (!m) throw new Error('no counter for the client app\'s cgroup rule');
    return Number(m[1]);
  };
  try {
    server = await startServer(net, h2.ns, RATE_PORT);
    log(`client: the last of ${APPS} apps' cgroups on h1, ${CONCURRENCY} connections in flight, ${o.connectSeconds} s per run`);
    let active: Config = 'none';
    for (const config of ORDER) {
      if (config !== active) {
        await dp.uninstall();
        if (config !== 'none') {
          await dp.setEgress(config === 'egress' ? mapping : undefined, 'bench');
          await dp.apply(state);
        }
        active = config;
      }
      const before = config === 'egress' ? await counter() : 0;
      const result = await runRate(net, h1.ns, h2.v4, RATE_PORT, o.connectSeconds, CONCURRENCY, client.procsFile);
      const matched = config === 'egress' ? (await counter()) - before : undefined;
      log(`${config.padEnd(7)} ${result.perSecond.toFixed(0)} conn/s (${result.connections} in ${result.seconds} s)${matched === undefined ? '' : `; the app's cgroup rule matched ${matched} packets`}; load ${loadavg()[0]!.toFixed(2)}`);
      if (result.connections === 0) throw new Error(`no connection succeeded with ${config}`);
      if (matched !== undefined && matched < result.connections) throw new Error(`the app's rule matched ${matched} packets for ${result.connections} connections`);
      rates[config].push(result.perSecond);
    }
    if (active !== 'none') await dp.uninstall();
  } finally {
    await server?.stop();
  }
  const none = mean(rates.none);
  const host = mean(rates.host);
  const eg = mean(rates.egress);
  report({ scenario: S, name: 'conn rate from a task, host-level rules only', value: host, unit: 'conn/s', note: `runs ${rates.host.map((x) => x.toFixed(0)).join(', ')}; ${(host / none).toFixed(2)}x of no firewall: the source host's own ingress rules (the SYN-ACKs pass PCU-PREROUTING)` });
  report({ scenario: S, name: 'conn rate from a task, no firewall', value: none, unit: 'conn/s', note: `runs ${rates.none.map((x) => x.toFixed(0)).join(', ')}` });
  report({ scenario: S, name: `conn rate from a task, egress on (${APPS} local apps)`, value: eg, unit: 'conn/s', note: `runs ${rates.egress.map((x) => x.toFixed(0)).join(', ')}; ${MANAGED} managed destinations, ${o.members} allow members on the host` });
  report({ scenario: S, name: 'conn rate egress on / no firewall', value: eg / none, unit: 'x', target: { op: '>=', value: 0.9 }, note: 'the client app\'s rule is the last of 50 cgroup rules; same run, interleaved' });
}
