/**
 * Per-app egress against the real kernel: real network namespaces, real cgroup v2 directories,
 * real TCP, the agent's own KernelDataplane and EgressMapper (commands run inside the source
 * host's namespace) and the Mesos agent API double serving the documented payloads.
 *
 * Host h1 runs tasks of four apps; h2 runs a db listener on a managed port. The state of h1 says
 * (egress kinds, member formats of the spec): /shop/web and /shop/bridged may reach the db,
 * /shop/batch and /shop/bbatch may not. All of them leave h1 from the same host address (the
 * BRIDGE ones are masqueraded like Docker does). Root only; wrap in flock /tmp/portcullis-kernel.lock.
 */
import pino from 'pino';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExecCommandRunner } from '../agent/dataplane/command-runner.js';
import { KernelDataplane } from '../agent/dataplane/kernel-dataplane.js';
import { EgressMapper } from '../agent/egress-mapper.js';
import type { DesiredState } from '../src/compile/desired-state.js';
import { MesosAgentApi } from '../src/mesos/agent-api.js';
import { DockerEngine, type DockerLookup } from '../src/mesos/docker-engine.js';
import { EGRESS_DENY_CHAIN, EGRESS_OUTPUT_CHAIN, egressAppChainName, egressAppSetName } from '../src/render/owned-names.js';
import type { UnmappedPolicy } from '../src/render/render-egress.js';
import { createBridgeTask, type BridgeTask } from './support/bridge-task.js';
import { DockerEngineDouble, dockerId } from './support/docker-engine-double.js';
import { cgroup2Mount, createTestCgroup, sweepStaleCgroups, type TestCgroup } from './support/cgroup.js';
import { makeState } from './support/memory-state-source.js';
import { MesosAgentDouble, type ScriptedTask } from './support/mesos-agent-double.js';
import { createTestNetwork, sweepStaleNamespaces, type TestNetwork } from './support/netns.js';
import { probe, startListener, type Listener } from './support/probe.js';
import { nflogPackets, ruleLines } from './support/egress-kernel.js';

const isRoot = process.getuid?.() === 0;
const ready = isRoot && cgroup2Mount() !== undefined;
if (!ready) console.warn('egress-kernel.test.ts skipped: needs root, network namespaces and a cgroup2 mount');

const DB = 15432;
const logger = pino({ level: 'silent' });

/** The db host's v6 address (set once the network exists). */
let db6 = '';

function h1State(dbAddress: string, mode: 'enforce' | 'audit' = 'enforce', extraTasks: readonly string[] = []): DesiredState {
  const db = `${dbAddress},tcp:${DB}`;
  const dbV6 = `${db6},tcp:${DB}`;
  return makeState(
    'h1',
    {
      'egress-task': ['/shop/web|web.1', '/shop/batch|batch.1', '/shop/bridged|br.1', '/shop/bbatch|bb.1', ...extraTasks],
      'egress-managed4': [db],
      'egress-managed6': [dbV6],
      'egress-ip4': [`/shop/web|${db}`, `/shop/bridged|${db}`],
      'egress-ip6': [`/shop/web|${dbV6}`, `/shop/bridged|${dbV6}`],
    },
    mode,
  );
}

describe.skipIf(!ready)('per-app egress on the source host (real kernel, real cgroups)', () => {
  let net: TestNetwork;
  let listener: Listener;
  let listener6: Listener;
  const double = new MesosAgentDouble();
  let dataplane: KernelDataplane;
  let mapper: EgressMapper | undefined;
  const cgroups: TestCgroup[] = [];
  const bridges: BridgeTask[] = [];
  let root: TestCgroup;
  let web: TestCgroup;
  let batch: TestCgroup;
  let mesosUrl = '';
  const h1 = () => net.hosts[0]!;
  const db = () => ({ protocol: 'tcp' as const, address: net.hosts[1]!.v4, port: DB });
  const runner = () => new ExecCommandRunner({ prefix: ['ip', 'netns', 'exec', h1().ns] });
  /** Commands the dataplane ran, by program (a chain rewrite runs no `ipset restore`). */
  const ran: string[] = [];
  const countingRunner = () => {
    const inner = runner();
    return { run: (argv: readonly string[], input?: string) => (ran.push(argv.slice(0, 2).join(' ')), inner.run(argv, input)) };
  };

  function cgroup(label: string): TestCgroup {
    const c = createTestCgroup(label);
    cgroups.push(c);
    return c;
  }

  async function startMapper(unmapped: UnmappedPolicy, docker?: DockerLookup): Promise<EgressMapper> {
    mapper?.stop();
    // A long interval: the test polls by hand, so every step is deterministic.
    mapper = new EgressMapper({ api: new MesosAgentApi({ url: mesosUrl }), dataplane, runner: runner(), hostAddresses: [h1().v4, h1().v6], unmapped, pollIntervalMs: 3_600_000, restoreCommand: 'iptables-restore', docker, logger });
    await mapper.start();
    return mapper;
  }

  beforeAll(async () => {
    await sweepStaleNamespaces();
    sweepStaleCgroups();
    net = await createTestNetwork({ hosts: 2 });
    db6 = net.hosts[1]!.v6;
    listener = await startListener(net, net.hosts[1]!.ns, { protocol: 'tcp', port: DB, family: 4 });
    listener6 = await startListener(net, net.hosts[1]!.ns, { protocol: 'tcp', port: DB, family: 6 });
    root = cgroup('mesos');
    web = cgroup('mesos/cweb');
    batch = cgroup('mesos/cbatch');
    bridges.push(await createBridgeTask(net, h1(), { hostIndex: 1, slot: 2, ports: [] }));
    bridges.push(await createBridgeTask(net, h1(), { hostIndex: 1, slot: 3, ports: [] }));
    double.cgroupsRoot = root.path;
    double.tasks = [
      { taskId: 'web.1', containerId: 'cweb', executorPid: null },
      { taskId: 'batch.1', containerId: 'cbatch', executorPid: null },
      { taskId: 'br.1', containerId: 'cbr', addresses: [bridges[0]!.v4, bridges[0]!.v6], executorPid: null },
      { taskId: 'bb.1', containerId: 'cbb', addresses: [bridges[1]!.v4, bridges[1]!.v6], executorPid: null },
    ];
    mesosUrl = await double.start();
    dataplane = new KernelDataplane({ runner: countingRunner(), families: [4, 6], logger });
    await startMapper('host');
    await dataplane.apply(h1State(net.hosts[1]!.v4));
  });

  afterAll(async () => {
    mapper?.stop();
    await double.stop();
    for (const b of bridges) await b.destroy().catch(() => undefined);
    await net?.destroy();
    for (const c of [...cgroups].reverse()) c.destroy();
  });

  it('two apps on one host, one address: the allowed one connects, the other is dropped; a non-task process stays host-level', async () => {
    expect(mapper!.status(dataplane.held?.state)).toMatchObject({ supported: true, enforcing: true, reason: '', mappedTasks: 4, unmappedTasks: 0 });
    expect(await probe(net, h1().ns, { ...db(), cgroup: web })).toBe('open');
    expect(await probe(net, h1().ns, { ...db(), cgroup: batch })).toBe('timeout');
    expect(await probe(net, h1().ns, db())).toBe('open'); // sshd, the Mesos agent: no task cgroup
    // Both reached the db from h1's one address.
    expect(new Set(listener.peers)).toEqual(new Set([h1().v4]));
    const output = await ruleLines(net, h1().ns, 4, EGRESS_OUTPUT_CHAIN);
    expect(output.some((l) => l.includes(`--path "${web.path}"`) && l.includes(`-g ${egressAppChainName('/shop/web')}`))).toBe(true);
    // No app or task id reaches the kernel.
    expect(output.join('\n')).not.toMatch(/shop|web\.1|batch\.1/);
    // What was written reads back as written: no false drift (every rule, both jumps, every set).
    expect(await dataplane.checkDrift()).toEqual([]);
  });

  it('IPv6 the same: ip6tables tells the two apps apart, HOST and BRIDGE', async () => {
    const db6Target = { protocol: 'tcp' as const, address: db6, port: DB };
    expect(await probe(net, h1().ns, { ...db6Target, cgroup: web })).toBe('open');
    expect(await probe(net, h1().ns, { ...db6Target, cgroup: batch })).toBe('timeout');
    expect(await probe(net, h1().ns, db6Target)).toBe('open');
    expect(new Set(listener6.peers)).toEqual(new Set([h1().v6]));
    expect(await probe(net, bridges[0]!.ns, db6Target)).toBe('open');
    expect(await probe(net, bridges[1]!.ns, db6Target)).toBe('timeout');
  });

  it('BRIDGE tasks are told apart by container address before the masquerade', async () => {
    expect(await probe(net, bridges[0]!.ns, db())).toBe('open');
    expect(await probe(net, bridges[1]!.ns, db())).toBe('timeout');
  });

  it('a task restarted into a new container (new cgroup): the rule follows it at the next poll', async () => {
    const next = cgroup('mesos/cweb2');
    double.tasks = double.tasks.map((t): ScriptedTask => (t.taskId === 'web.1' ? { ...t, containerId: 'cweb2' } : t));
    const applies = dataplane.counters.applies;
    ran.length = 0;
    await mapper!.poll();
    expect(dataplane.counters.applies).toBe(applies + 1); // one chain rewrite, no set written
    expect(ran.filter((c) => c === 'iptables-restore --noflush')).toHaveLength(1);
    expect(ran.filter((c) => c.startsWith('ipset'))).toEqual([]);
    expect(await dataplane.checkDrift()).toEqual([]);
    expect(await probe(net, h1().ns, { ...db(), cgroup: next })).toBe('open');
    const output = await ruleLines(net, h1().ns, 4, EGRESS_OUTPUT_CHAIN);
    expect(output.some((l) => l.includes(next.path))).toBe(true);
    expect(output.some((l) => l.includes(`"${web.path}"`))).toBe(false);
  });

  it('a task moved to another host: its app leaves this host\'s state and its rule goes, the app\'s set and chain too', async () => {
    const moved = makeState('h1', { ...h1State(net.hosts[1]!.v4).sets, 'egress-task': h1State(net.hosts[1]!.v4).sets['egress-task'].filter((m) => m !== '/shop/web|web.1'), 'egress-ip4': [`/shop/bridged|${net.hosts[1]!.v4},tcp:${DB}`], 'egress-ip6': [`/shop/bridged|${db6},tcp:${DB}`] });
    const tasks = double.tasks;
    double.tasks = tasks.filter((t) => t.taskId !== 'web.1');
    await mapper!.poll();
    await dataplane.apply(moved);
    const save = (await net.exec(h1().ns, ['iptables-save', '-t', 'mangle'])).stdout;
    expect(save).not.toContain(egressAppChainName('/shop/web'));
    expect((await net.exec(h1().ns, ['ipset', 'list', '-n'])).stdout).not.toContain(egressAppSetName('/shop/web', 4));
    expect(await dataplane.checkDrift()).toEqual([]);
    // It comes back (the tests below use it).
    double.tasks = tasks;
    await mapper!.poll();
    await dataplane.apply(h1State(net.hosts[1]!.v4));
    expect(await ruleLines(net, h1().ns, 4, EGRESS_OUTPUT_CHAIN)).toEqual(expect.arrayContaining([expect.stringContaining(egressAppChainName('/shop/web'))]));
  });

  it('a cgroup deleted and created again at the same path: the changed inode rewrites the rule', async () => {
    const path = batch.path;
    batch.destroy();
    cgroups.splice(cgroups.indexOf(batch), 1);
    mkdirSync(root.dir, { recursive: true });
    batch = cgroup('mesos/cbatch');
    expect(batch.path).toBe(path);
    // The kernel rule still points at the dead cgroup: the new one is not matched (host-level).
    expect(await probe(net, h1().ns, { ...db(), cgroup: batch })).toBe('open');
    const applies = dataplane.counters.applies;
    await mapper!.poll();
    expect(dataplane.counters.applies).toBe(applies + 1);
    expect(await probe(net, h1().ns, { ...db(), cgroup: batch })).toBe('timeout');
    // Nothing changed: no write.
    await mapper!.poll();
    expect(dataplane.counters.applies).toBe(applies + 1);
  });

  it('an unmapped task: host-level with --egress-unmapped host, dropped with deny, its app policy once mapped', async () => {
    const fresh = cgroup('mesos/cnew');
    const tasks = double.tasks;
    // The controller already places web.2 on h1; the Mesos agent does not list it yet.
    await dataplane.apply(h1State(net.hosts[1]!.v4, 'enforce', ['/shop/web|web.2']));
    expect(mapper!.status(dataplane.held?.state)).toMatchObject({ mappedTasks: 4, unmappedTasks: 1 });
    expect(await probe(net, h1().ns, { ...db(), cgroup: fresh })).toBe('open');
    await startMapper('deny');
    expect(await probe(net, h1().ns, { ...db(), cgroup: fresh })).toBe('timeout');
    expect(await probe(net, h1().ns, { ...db(), cgroup: batch })).toBe('timeout');
    expect(await probe(net, h1().ns, db())).toBe('open'); // outside the cgroups root: still host-level
    double.tasks = [...tasks, { taskId: 'web.2', containerId: 'cnew', executorPid: null }];
    await mapper!.poll();
    expect(mapper!.status(dataplane.held?.state)).toMatchObject({ mappedTasks: 5, unmappedTasks: 0 });
    expect(await probe(net, h1().ns, { ...db(), cgroup: fresh })).toBe('open'); // web may
    double.tasks = tasks;
    await startMapper('host');
    await dataplane.apply(h1State(net.hosts[1]!.v4));
  });

  it("Docker-containerizer HOST tasks: placed by the cgroup of their container's pid, asked of Docker", async () => {
    // Docker's cgroups are not under the Mesos cgroups root, and Mesos reports no executor pid
    // for them: only Docker's State.Pid says where such a task runs.
    const docker = new DockerEngineDouble();
    const holders: ChildProcess[] = [];
    const tasks = double.tasks;
    try {
      const socketPath = await docker.start();
      const placed = [
        { task: 'dweb.1', app: '/shop/web', container: 'cdweb', group: cgroup(`docker-${dockerId('dweb')}.scope`), id: dockerId('dweb') },
        { task: 'dbatch.1', app: '/shop/batch', container: 'cdbatch', group: cgroup(`docker-${dockerId('dbatch')}.scope`), id: dockerId('dbatch') },
      ];
      for (const p of placed) {
        // The container's main process: a sleeper moved into its cgroup from outside.
        const holder = spawn('sleep', ['300'], { stdio: 'ignore' });
        holders.push(holder);
        writeFileSync(p.group.procsFile, String(holder.pid));
        docker.containers.set(p.container, { id: p.id, pid: holder.pid! });
      }
      double.tasks = [...tasks, ...placed.map((p): ScriptedTask => ({ taskId: p.task, containerId: p.container, docker: true }))];
      const state = h1State(net.hosts[1]!.v4, 'enforce', placed.map((p) => `${p.app}|${p.task}`));
      await startMapper('host', new DockerEngine({ socketPath }));
      await dataplane.apply(state);
      expect(docker.requests).toBe(2);
      expect(mapper!.status(dataplane.held?.state)).toMatchObject({ mappedTasks: 6, unmappedTasks: 0 });
      expect(await probe(net, h1().ns, { ...db(), cgroup: placed[0]!.group })).toBe('open'); // web may
      expect(await probe(net, h1().ns, { ...db(), cgroup: placed[1]!.group })).toBe('timeout'); // batch may not
      // Placed once: the next poll reads the pid's cgroup again and does not ask Docker.
      await mapper!.poll();
      expect(docker.requests).toBe(2);
      // Without a Docker socket the same tasks are unmapped: host-level, as the README says.
      await startMapper('host');
      expect(mapper!.status(dataplane.held?.state)).toMatchObject({ mappedTasks: 4, unmappedTasks: 2 });
      expect(await probe(net, h1().ns, { ...db(), cgroup: placed[1]!.group })).toBe('open');
    } finally {
      for (const h of holders) h.kill('SIGKILL');
      await docker.stop();
      double.tasks = tasks;
      await startMapper('host');
      await dataplane.apply(h1State(net.hosts[1]!.v4));
    }
  });

  it('audit mode counts a would-be drop (NFLOG rule counter) and lets it through', async () => {
    await dataplane.apply(h1State(net.hosts[1]!.v4, 'audit'));
    const before = await nflogPackets(net, h1().ns, 4, EGRESS_DENY_CHAIN);
    expect(await probe(net, h1().ns, { ...db(), cgroup: batch })).toBe('open');
    const after = await nflogPackets(net, h1().ns, 4, EGRESS_DENY_CHAIN);
    expect(after).toBeGreaterThan(before);
    await dataplane.apply(h1State(net.hosts[1]!.v4));
    expect(await probe(net, h1().ns, { ...db(), cgroup: batch })).toBe('timeout');
  });

  it('drift in the egress objects is found and repaired; uninstall removes them and the OUTPUT jump', async () => {
    const r = await net.exec(h1().ns, ['iptables', '-t', 'mangle', '-F', EGRESS_OUTPUT_CHAIN]);
    expect(r.code, r.stderr).toBe(0);
    const checked = await dataplane.checkAndRepair();
    expect(checked?.drift.some((d) => d.object === EGRESS_OUTPUT_CHAIN)).toBe(true);
    expect(await probe(net, h1().ns, { ...db(), cgroup: batch })).toBe('timeout');
    await dataplane.uninstall();
    const save = await net.exec(h1().ns, ['iptables-save', '-t', 'mangle']);
    expect(save.stdout).not.toMatch(/PCU-|pcu:/);
    expect((await net.exec(h1().ns, ['ip6tables-save', '-t', 'mangle'])).stdout).not.toMatch(/PCU-|pcu:/);
    const sets = await net.exec(h1().ns, ['ipset', 'list', '-n']);
    expect(sets.stdout.trim()).toBe('');
    expect(await probe(net, h1().ns, { ...db(), cgroup: batch })).toBe('open');
  });
});
