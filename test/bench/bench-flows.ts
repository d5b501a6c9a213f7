/**
 * Scenario "flows": the cost of flow recording (src/render/render-flows.ts, agent/flow-reader.ts),
 * inside throwaway network namespaces. Root only.
 *
 * 1. New-connection rate from h1 to an allowed managed port of h2, recording off and on, in the
 *    same run: CYCLES mirrored cycles of off, on, on, off (mirrored-cycles.ts: a linear drift of
 *    the machine's speed cancels within a cycle); the target figure is the median over cycles of
 *    (on runs' rates / off runs' rates in that cycle), the ratio of all runs' means is printed
 *    beside it, and, on a host with a cgroup2 mount, the CPU time of the client and the server
 *    (their cgroups' cpu.stat) per connection, a second view of the same cost. The state
 *    is the packet scenario's synthetic host (`members` allow members, 100 managed ports); on
 *    and off are two KernelDataplanes (with and without `flows`) writing it in full. With
 *    recording on, every SYN passes PCU-FL-ALLOW: one more set lookup (the known entry, its
 *    counters updated) than without; the entry's packet counter read after each run shows the
 *    connections really were recorded. The client is packet-tcp-tool.js `rate` (open, close,
 *    64 in flight), as in the packet and egress scenarios.
 * 2. The agent reading a full set: pcu4-fl-allow filled with 65,536 entries (its maxelem), then
 *    FlowReader.read() timed twice: the first read finds every entry new (65,536 records), the
 *    second finds none changed. Reported: wall time per read, and the agent process's CPU
 *    (process.cpuUsage: parsing and diffing; the `ipset` child's own CPU is not included).
 */
import { writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import pino from 'pino';
import { ExecCommandRunner } from '../../agent/dataplane/command-runner.js';
import { KernelDataplane } from '../../agent/dataplane/kernel-dataplane.js';
import { FlowReader } from '../../agent/flow-reader.js';
import { parseFlowEntries } from '../../src/render/flow-read.js';
import { flowSetName } from '../../src/render/owned-names.js';
import { DEFAULT_FLOW_RECORDING } from '../../src/render/render-flows.js';
import { cgroup2Mount, createTestCgroup, sweepStaleCgroups, type TestCgroup } from '../support/cgroup.js';
import { createTestNetwork, type TestNetwork } from '../support/netns.js';
import { log, report } from './figures.js';
import { cpuUsec, CYCLES, cycleRatios, middle, mirroredCycle, type CycleRun } from './mirrored-cycles.js';
import { kernelBenchReady } from './kernel-bench.js';
import { syntheticHostState } from './kernel-synthetic-state.js';
import type { BenchOptions } from './options.js';
import { runRate, startServer, type TcpServer } from './packet-procs.js';
import { mean } from './stats.js';

const S = 'flows';
const BASE_PORT = 31000;
const RATE_PORT = BASE_PORT + 25;
const CONCURRENCY = 64;
type Config = 'off' | 'on';
const CYCLE: readonly Config[] = mirroredCycle<Config>(['off', 'on']);
const logger = pino({ level: 'silent' });

export async function benchFlows(o: BenchOptions): Promise<void> {
  if (!(await kernelBenchReady())) return;
  let net: TestNetwork | undefined;
  try {
    net = await createTestNetwork({ hosts: 2, ipv6: false });
    await connectionRates(o, net);
    await fullSetRead(net);
  } finally {
    await net?.destroy();
  }
}

async function allowedPackets(runner: ExecCommandRunner, member: string): Promise<number> {
  const r = await runner.run(['ipset', 'list', '-o', 'save', flowSetName('allowed', 4)]);
  const entry = (parseFlowEntries(r.stdout).sets.get(flowSetName('allowed', 4)) ?? []).find((e) => `${e.address},${e.protocol}:${e.port}` === member);
  return entry?.packets ?? 0;
}

/** The client's and the server's cgroups (CPU per connection), when the host has a cgroup2 mount. */
interface RateCgroups {
  readonly client: TestCgroup;
  readonly server: TestCgroup;
}

function rateCgroups(made: TestCgroup[]): RateCgroups | undefined {
  if (cgroup2Mount() === undefined) {
    log('no cgroup2 mount: CPU per connection not measured');
    return undefined;
  }
  sweepStaleCgroups();
  const client = createTestCgroup('flows-rate-client');
  made.push(client);
  const server = createTestCgroup('flows-rate-server');
  made.push(server);
  return { client, server };
}

async function connectionRates(o: BenchOptions, net: TestNetwork): Promise<void> {
  const [h1, h2] = net.hosts as [(typeof net.hosts)[0], (typeof net.hosts)[0]];
  const runner = new ExecCommandRunner({ prefix: ['ip', 'netns', 'exec', h2.ns], timeoutMs: 300_000 });
  const client = `${h1.v4},tcp:${RATE_PORT}`;
  const state = syntheticHostState({ members: o.members, ports: 100, basePort: BASE_PORT, netShare: 0.05, v6Share: 0.05, include: [client] });
  const planes: Record<Config, KernelDataplane> = {
    off: new KernelDataplane({ runner, families: [4], logger }),
    on: new KernelDataplane({ runner, families: [4], logger, flows: DEFAULT_FLOW_RECORDING }),
  };
  const runs: CycleRun<Config>[] = [];
  const made: TestCgroup[] = [];
  let server: TcpServer | undefined;
  try {
    const cgroups = rateCgroups(made);
    const cpu = () => (cgroups ? cpuUsec(cgroups.client) + cpuUsec(cgroups.server) : Number.NaN);
    server = await startServer(net, h2.ns, RATE_PORT);
    if (cgroups) {
      if (server.pid === undefined) throw new Error('the rate server has no pid');
      writeFileSync(cgroups.server.procsFile, String(server.pid));
    }
    log(`client h1 → h2 tcp:${RATE_PORT} (allowed), ${CONCURRENCY} connections in flight, ${o.connectSeconds} s per run, ${o.members} allow members, ${CYCLES} cycles of ${CYCLE.join(', ')}`);
    let active: Config | undefined;
    for (let cycle = 0; cycle < CYCLES; cycle++) {
      for (const config of CYCLE) {
        if (config !== active) {
          await planes[config].apply(state);
          active = config;
        }
        const before = config === 'on' ? await allowedPackets(runner, client) : 0;
        const cpu0 = cpu();
        const result = await runRate(net, h1.ns, h2.v4, RATE_PORT, o.connectSeconds, CONCURRENCY, cgroups?.client.procsFile);
        const used = cpu() - cpu0;
        const recorded = config === 'on' ? (await allowedPackets(runner, client)) - before : undefined;
        if (result.connections === 0) throw new Error(`no connection succeeded with recording ${config}`);
        const run: CycleRun<Config> = { cycle, config, perSecond: result.perSecond, cpuPerConnection: used / result.connections };
        log(`${config.padEnd(4)} ${result.perSecond.toFixed(0)} conn/s (${result.connections} in ${result.seconds} s)${cgroups ? `, CPU ${run.cpuPerConnection.toFixed(0)} µs/conn` : ''}${recorded === undefined ? '' : `; recorded ${recorded} new connections`}; load ${loadavg()[0]!.toFixed(2)}`);
        if (recorded !== undefined && recorded < result.connections) throw new Error(`recorded ${recorded} of ${result.connections} connections`);
        runs.push(run);
      }
    }
    await planes.on.uninstall();
  } finally {
    await server?.stop();
    for (const c of made.reverse()) c.destroy();
  }
  reportRates(runs);
}

function reportRates(runs: readonly CycleRun<Config>[]): void {
  const of = (c: Config) => runs.filter((r) => r.config === c);
  const list = (xs: readonly number[], digits = 0) => xs.map((x) => x.toFixed(digits)).join(', ');
  const off = mean(of('off').map((r) => r.perSecond));
  const on = mean(of('on').map((r) => r.perSecond));
  const ratios = cycleRatios(runs, 'on', 'off', (r) => r.perSecond);
  report({ scenario: S, name: 'conn rate, recording off', value: off, unit: 'conn/s', note: `runs ${list(of('off').map((r) => r.perSecond))}` });
  report({ scenario: S, name: 'conn rate, recording on', value: on, unit: 'conn/s', note: `runs ${list(of('on').map((r) => r.perSecond))}; every SYN counted in pcu4-fl-allow` });
  report({ scenario: S, name: 'conn rate recording on / off', value: middle(ratios), unit: 'x', target: { op: '>=', value: 0.95 }, note: `median of ${CYCLES} mirrored cycles' ratios (${list(ratios, 2)}; ratio of all runs' means ${(on / off).toFixed(2)}x)` });
  if (runs.some((r) => Number.isNaN(r.cpuPerConnection))) return;
  const cpuRatios = cycleRatios(runs, 'on', 'off', (r) => r.cpuPerConnection);
  const cpu = (c: Config) => middle(of(c).map((r) => r.cpuPerConnection));
  report({ scenario: S, name: 'CPU per new connection, recording on / off', value: middle(cpuRatios), unit: 'x', note: `client + server processes; medians ${cpu('off').toFixed(0)} (off), ${cpu('on').toFixed(0)} (on) µs; per cycle ${list(cpuRatios, 2)}` });
}

async function fullSetRead(net: TestNetwork): Promise<void> {
  const h2 = net.hosts[1]!;
  const runner = new ExecCommandRunner({ prefix: ['ip', 'netns', 'exec', h2.ns], timeoutMs: 300_000 });
  const recording = DEFAULT_FLOW_RECORDING;
  const dp = new KernelDataplane({ runner, families: [4], logger, flows: recording });
  await dp.apply(syntheticHostState({ members: 100, ports: 100, basePort: BASE_PORT, netShare: 0.05, v6Share: 0.05, include: [] }));
  const set = flowSetName('allowed', 4);
  const lines = Array.from({ length: recording.maxEntries }, (_, i) => `add ${set} 10.${100 + (i >> 16)}.${(i >> 8) & 255}.${i & 255},tcp:${BASE_PORT + (i % 100)} packets ${1 + (i % 7)} bytes ${60 * (1 + (i % 7))}`);
  const filled = await runner.run(['ipset', 'restore'], `${lines.join('\n')}\n`);
  if (filled.code !== 0) throw new Error(`filling ${set}: ${filled.stderr}`);
  const reader = new FlowReader({ runner, layout: () => dp.flowLayout, intervalSeconds: 10, recording, logger });
  const timed = async (): Promise<{ wallMs: number; cpuMs: number; records: number }> => {
    const cpu = process.cpuUsage();
    const t = performance.now();
    await reader.read();
    const wallMs = performance.now() - t;
    const used = process.cpuUsage(cpu);
    let records = 0;
    for (let more = true; more; ) {
      const taken = reader.take(65_536);
      records += taken.entries.length;
      more = taken.more;
    }
    return { wallMs, cpuMs: (used.user + used.system) / 1000, records };
  };
  const first = await timed();
  const second = await timed();
  if (first.records !== recording.maxEntries) throw new Error(`the first read gave ${first.records} records, expected ${recording.maxEntries}`);
  if (second.records !== 0) throw new Error(`the second read gave ${second.records} records, expected none`);
  log(`full set read: first ${first.wallMs.toFixed(0)} ms (${first.cpuMs.toFixed(0)} ms CPU, ${first.records} records), again ${second.wallMs.toFixed(0)} ms (${second.cpuMs.toFixed(0)} ms CPU, none changed)`);
  report({ scenario: S, name: 'read+diff a full 65,536-entry set, all new', value: first.wallMs, unit: 'ms', note: `agent CPU ${first.cpuMs.toFixed(0)} ms (the ipset child not counted); ${first.records} records` });
  report({ scenario: S, name: 'read+diff a full 65,536-entry set, unchanged', value: second.wallMs, unit: 'ms', note: `agent CPU ${second.cpuMs.toFixed(0)} ms; no record` });
  report({ scenario: S, name: 'agent CPU per read of a full set (unchanged)', value: second.cpuMs, unit: 'ms', note: 'process.cpuUsage over FlowReader.read(): parse and diff' });
  await dp.uninstall();
}
