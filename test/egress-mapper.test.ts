/**
 * The agent's EgressMapper without a kernel: the Mesos agent API double over real HTTP, a
 * directory tree standing in for the cgroup2 mount, a recording runner for the capability test,
 * and a dataplane stand-in that records the maps it is given. Also: the sync client sends the
 * EgressStatus in Hello, Ack and Pong.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { CommandRunner } from '../agent/dataplane/command-runner.js';
import type { KernelDataplane } from '../agent/dataplane/kernel-dataplane.js';
import { EgressMapper, cgroupOfPid, findCgroup2Mount } from '../agent/egress-mapper.js';
import { MesosAgentApi } from '../src/mesos/agent-api.js';
import { DockerEngine, type DockerLookup } from '../src/mesos/docker-engine.js';
import type { EgressMapping, UnmappedPolicy } from '../src/render/render-egress.js';
import { waitFor } from './support/grpc-harness.js';
import { logCapture } from './support/log-capture.js';
import { makeState } from './support/memory-state-source.js';
import { DockerEngineDouble, dockerId } from './support/docker-engine-double.js';
import { MesosAgentDouble } from './support/mesos-agent-double.js';
import { RecordingRunner } from './support/recording-runner.js';

const HOST = '10.0.0.11';

class RecordingDataplane {
  readonly maps: { mapping: EgressMapping | undefined; key: string }[] = [];
  /** Writes that fail (the kernel refused), from the first. */
  failures = 0;
  async setEgress(mapping: EgressMapping | undefined, key = ''): Promise<undefined> {
    this.maps.push({ mapping, key });
    if (this.failures > 0) {
      this.failures--;
      throw new Error('iptables-restore: cgroup path not found');
    }
    return undefined;
  }
}

describe('EgressMapper', () => {
  const double = new MesosAgentDouble();
  let url = '';
  let mount = '';
  /** Every mount a test made (a test may call setup more than once): all removed after it. */
  const mounts: string[] = [];

  beforeAll(async () => {
    url = await double.start();
  });
  afterAll(async () => {
    await double.stop();
  });
  afterEach(() => {
    for (const m of mounts.splice(0)) rmSync(m, { recursive: true, force: true });
    mount = '';
  });

  function setup(opts: { unmapped?: UnmappedPolicy; runner?: CommandRunner; mount?: string | null; apiUrl?: string; api?: MesosAgentApi; procRoot?: string; hostAddresses?: string[]; pollIntervalMs?: number; docker?: DockerLookup; dockerRetryMs?: number } = {}) {
    mount = mkdtempSync(path.join(tmpdir(), 'pcut-cg-'));
    mounts.push(mount);
    const dataplane = new RecordingDataplane();
    const { logger, lines } = logCapture();
    const mapper = new EgressMapper({
      api: opts.api ?? new MesosAgentApi({ url: opts.apiUrl ?? url, timeoutMs: 2000 }),
      dataplane: dataplane as unknown as KernelDataplane,
      runner: opts.runner ?? new RecordingRunner(),
      hostAddresses: opts.hostAddresses ?? [HOST],
      unmapped: opts.unmapped ?? 'host',
      pollIntervalMs: opts.pollIntervalMs ?? 3_600_000,
      restoreCommand: 'iptables-restore',
      cgroup2Mount: opts.mount === undefined ? mount : opts.mount,
      ...(opts.procRoot ? { procRoot: opts.procRoot } : {}),
      ...(opts.docker ? { docker: opts.docker } : {}),
      ...(opts.dockerRetryMs !== undefined ? { dockerRetryMs: opts.dockerRetryMs } : {}),
      logger,
    });
    return { mapper, dataplane, lines };
  }

  /** Starts `mapper`, lets it poll the double three times, stops it. */
  async function threePolls(mapper: EgressMapper): Promise<void> {
    const before = double.requests.get('GET_TASKS') ?? 0; // the double counts across tests
    try {
      await mapper.start();
      await waitFor('three polls', () => (double.requests.get('GET_TASKS') ?? 0) >= before + 3);
    } finally {
      mapper.stop();
    }
  }

  it('maps HOST tasks by existing cgroup, BRIDGE tasks by a non-host address, and leaves the rest unmapped', async () => {
    const { mapper, dataplane, lines } = setup({ unmapped: 'deny' });
    mkdirSync(path.join(mount, 'mesos', 'c1'), { recursive: true });
    mkdirSync(path.join(mount, 'mesos', 'c4'), { recursive: true });
    double.cgroupsRoot = 'mesos';
    double.tasks = [
      { taskId: 'web.1', containerId: 'c1', addresses: [HOST], executorPid: null }, // a HOST task reports the host's address
      { taskId: 'br.1', containerId: 'c2', addresses: ['172.17.0.2'], executorPid: null },
      { taskId: 'gone.1', containerId: 'c3', executorPid: null }, // no cgroup directory: no rule
      { taskId: 'lo.1', containerId: 'c4', addresses: ['127.0.0.1', '0.0.0.0'], executorPid: null }, // no container owns these: by its cgroup
    ];
    await mapper.start();
    mapper.stop();
    expect(dataplane.maps).toHaveLength(1);
    const m = dataplane.maps[0]!.mapping!;
    expect([...m.tasks]).toEqual([
      ['web.1', { kind: 'host', cgroupPath: 'mesos/c1' }],
      ['br.1', { kind: 'bridge', addresses: ['172.17.0.2'] }],
      ['lo.1', { kind: 'host', cgroupPath: 'mesos/c4' }],
    ]);
    expect(m).toMatchObject({ unmapped: 'deny', cgroupsRoot: 'mesos' });
    const state = makeState('h1', { 'egress-task': ['/a|web.1', '/b|br.1', '/c|gone.1'], 'egress-managed4': ['10.0.0.20,tcp:1'] });
    expect(mapper.status(state)).toEqual({ supported: true, enforcing: true, reason: '', mappedTasks: 2, unmappedTasks: 1 });
    expect(lines.filter((l) => l.event === 'egress.enforcing')).toHaveLength(1);
  });

  it('a Mesos agent that refuses GET_FLAGS (403) is mapped with the configured root and said once at warn, not at every poll', async () => {
    const { mapper, dataplane, lines } = setup({ pollIntervalMs: 20 });
    mkdirSync(path.join(mount, 'mesos', 'c1'), { recursive: true });
    double.cgroupsRoot = 'elsewhere'; // what GET_FLAGS would say: not used while it is refused
    double.forbidden.add('GET_FLAGS');
    double.tasks = [{ taskId: 'web.1', containerId: 'c1', addresses: [HOST], executorPid: null }];
    await threePolls(mapper);
    expect([...dataplane.maps[0]!.mapping!.tasks]).toEqual([['web.1', { kind: 'host', cgroupPath: 'mesos/c1' }]]);
    const warned = lines.filter((l) => l.event === 'egress.mesos_warning');
    expect(warned).toHaveLength(1);
    expect(String(warned[0]!.warning)).toMatch(/GET_FLAGS answered HTTP 403/);
  });

  it('tasks that come out with one cgroup or one container address are left unmapped and said once: none of them owns it', async () => {
    // One executor's container running two tasks (a custom executor): its cgroup is neither task's own.
    const { mapper, dataplane, lines } = setup({ pollIntervalMs: 20 });
    mkdirSync(path.join(mount, 'mesos', 'cs'), { recursive: true });
    mkdirSync(path.join(mount, 'mesos', 'c9'), { recursive: true });
    double.tasks = [
      { taskId: 'a.1', executorId: 'shared', containerId: 'cs', executorPid: null },
      { taskId: 'b.1', executorId: 'shared', containerId: 'cs', executorPid: null },
      { taskId: 'br.1', containerId: 'c7', addresses: ['172.17.0.9'], executorPid: null },
      { taskId: 'br.2', containerId: 'c8', addresses: ['172.17.0.9'], executorPid: null },
      { taskId: 'ok.1', containerId: 'c9', executorPid: null },
    ];
    await threePolls(mapper);
    expect([...dataplane.maps[0]!.mapping!.tasks]).toEqual([['ok.1', { kind: 'host', cgroupPath: 'mesos/c9' }]]);
    const warned = lines.filter((l) => l.event === 'egress.shared_source');
    expect(warned).toHaveLength(1);
    expect(warned[0]).toMatchObject({ tasks: 4 });
    expect(String(warned[0]!.shared)).toMatch(/cgroup mesos\/cs: a\.1, b\.1; address 172\.17\.0\.9: br\.1, br\.2/);
  });

  it('a host address written in another IPv6 form (--address FD00:0:0::11) is still the host\'s: its HOST task is no BRIDGE task', async () => {
    const { mapper, dataplane } = setup({ hostAddresses: [HOST, 'FD00:0:0::11'] });
    mkdirSync(path.join(mount, 'mesos', 'c6'), { recursive: true });
    double.tasks = [{ taskId: 'web6.1', containerId: 'c6', addresses: ['fd00::11'], executorPid: null }]; // canonical, as parsed
    await mapper.start();
    mapper.stop();
    expect([...dataplane.maps[0]!.mapping!.tasks]).toEqual([['web6.1', { kind: 'host', cgroupPath: 'mesos/c6' }]]);
  });

  it.each(['the capability check', 'the Mesos agent'] as const)('stop() while start() waits for %s: the dataplane is given nothing', async (where) => {
    let reached!: () => void;
    let release!: () => void;
    const atGate = new Promise<void>((r) => (reached = r));
    const gate = new Promise<void>((r) => (release = r));
    const wait = async (here: typeof where): Promise<void> => {
      if (here !== where) return;
      reached();
      await gate;
    };
    const runner = { run: async () => (await wait('the capability check'), { code: 0, stdout: '', stderr: '' }) };
    const api = { effectiveCgroupsRoot: 'mesos', localTasks: async () => (await wait('the Mesos agent'), { tasks: [], problems: [] }) };
    const { mapper, dataplane } = setup({ runner, api: api as unknown as MesosAgentApi });
    const started = mapper.start();
    await atGate;
    mapper.stop(); // the agent stops meanwhile
    release();
    await started;
    expect(dataplane.maps).toEqual([]);
  });

  it("an executor pid's cgroup is taken down to the segment naming the task's container, never a cgroup that does not name it", async () => {
    const proc = mkdtempSync(path.join(tmpdir(), 'pcut-proc-'));
    try {
      const pid = (n: number, line: string) => {
        mkdirSync(path.join(proc, String(n)));
        writeFileSync(path.join(proc, String(n), 'cgroup'), `5:memory:/x\n0::${line}\n`);
      };
      pid(4242, '/custom/cx1/leaf'); // the Mesos agent's cgroups root is not the one configured
      pid(4343, '/system.slice/mesos-agent.service'); // an executor left in the Mesos agent's cgroup (a hybrid host)
      const { mapper, dataplane } = setup({ procRoot: proc });
      mkdirSync(path.join(mount, 'custom', 'cx1', 'leaf'), { recursive: true });
      mkdirSync(path.join(mount, 'system.slice', 'mesos-agent.service'), { recursive: true });
      double.tasks = [
        { taskId: 'mx.1', containerId: 'cx1', executorPid: 4242 },
        { taskId: 'ag.1', containerId: 'cx2', executorPid: 4343 }, // alone in that cgroup: no sharing to see, still not its own
        { taskId: 'gone.1', containerId: 'cx3', executorPid: 4444 }, // no /proc entry
      ];
      await mapper.start();
      mapper.stop();
      expect([...dataplane.maps[0]!.mapping!.tasks]).toEqual([['mx.1', { kind: 'host', cgroupPath: 'custom/cx1' }]]);
    } finally {
      rmSync(proc, { recursive: true, force: true });
    }
  });

  describe("the Docker containerizer's HOST tasks, placed by asking Docker (the double, a Unix socket)", () => {
    const docker = new DockerEngineDouble();
    let socketPath = '';
    let proc = '';
    beforeAll(async () => {
      socketPath = await docker.start();
    });
    afterAll(async () => {
      await docker.stop();
    });
    afterEach(() => {
      docker.containers.clear();
      docker.failing = false;
      docker.requests = 0;
      if (proc) rmSync(proc, { recursive: true, force: true });
      proc = '';
    });
    /** A /proc stand-in where pid `n` is in cgroup2 `line`. */
    const pidIn = (n: number, line: string) => {
      proc ||= mkdtempSync(path.join(tmpdir(), 'pcut-proc-'));
      mkdirSync(path.join(proc, String(n)), { recursive: true });
      writeFileSync(path.join(proc, String(n), 'cgroup'), `0::${line}\n`);
    };

    it("by the cgroup of its container's pid when that names the container's Id; asked once, not at every poll", async () => {
      const [a, b] = [dockerId('a'), dockerId('b')];
      docker.containers.set('d1', { id: a, pid: 5151 });
      docker.containers.set('d2', { id: b, pid: 5252 });
      pidIn(5151, `/system.slice/docker-${a}.scope`);
      pidIn(5252, '/system.slice/mesos-agent.service'); // the pid is no longer the container's
      pidIn(1, '/init.scope');
      const { mapper, dataplane } = setup({ procRoot: proc, pollIntervalMs: 20, docker: new DockerEngine({ socketPath }) });
      mkdirSync(path.join(mount, 'system.slice', `docker-${a}.scope`), { recursive: true });
      mkdirSync(path.join(mount, 'system.slice', 'mesos-agent.service'), { recursive: true });
      double.tasks = [
        { taskId: 'dk.1', containerId: 'd1', docker: true },
        { taskId: 'dk.2', containerId: 'd2', docker: true },
        { taskId: 'dk.3', containerId: 'd3', docker: true }, // Docker knows no mesos-d3
        { taskId: 'dk.4', containerId: 'd4', docker: true, executorPid: 1 }, // a pid of its status is no way round
        { taskId: 'dkbr.1', containerId: 'd5', docker: true, addresses: ['172.17.0.7'] }, // BRIDGE: by its address, Docker not asked
      ];
      await threePolls(mapper);
      expect([...dataplane.maps.at(-1)!.mapping!.tasks]).toEqual([
        ['dk.1', { kind: 'host', cgroupPath: `system.slice/docker-${a}.scope` }],
        ['dkbr.1', { kind: 'bridge', addresses: ['172.17.0.7'] }],
      ]);
      expect(docker.requests).toBe(4); // d1-d4 at the first poll; d1 kept, the others waiting to be asked again
    });

    it('Docker not answering: its tasks stay unmapped, said once at warn; placed once it answers', async () => {
      const a = dockerId('c');
      docker.containers.set('d1', { id: a, pid: 6161 });
      pidIn(6161, `/docker/${a}`);
      docker.failing = true;
      const { mapper, dataplane, lines } = setup({ procRoot: proc, pollIntervalMs: 20, docker: new DockerEngine({ socketPath }), dockerRetryMs: 0 });
      mkdirSync(path.join(mount, 'docker', a), { recursive: true });
      double.tasks = [{ taskId: 'dk.1', containerId: 'd1', docker: true }];
      try {
        await mapper.start();
        await waitFor('three asks of Docker', () => docker.requests >= 3);
        expect(dataplane.maps.at(-1)!.mapping!.tasks.size).toBe(0);
        expect(lines.filter((l) => l.event === 'egress.docker_warning')).toHaveLength(1);
        expect(lines.find((l) => l.event === 'egress.docker_warning')!.warning).toMatch(/inspect mesos-d1 answered HTTP 500/);
        docker.failing = false;
        await waitFor('dk.1 mapped', () => dataplane.maps.at(-1)?.mapping?.tasks.get('dk.1') !== undefined);
        expect(dataplane.maps.at(-1)!.mapping!.tasks.get('dk.1')).toEqual({ kind: 'host', cgroupPath: `docker/${a}` });
      } finally {
        mapper.stop();
      }
    });

    it('no Docker socket configured (--docker-socket none): Docker tasks unmapped, said once', async () => {
      const { mapper, dataplane, lines } = setup({ pollIntervalMs: 20 });
      double.tasks = [{ taskId: 'dk.1', containerId: 'd1', docker: true }];
      await threePolls(mapper);
      expect(dataplane.maps.at(-1)!.mapping!.tasks.size).toBe(0);
      const said = lines.filter((l) => l.event === 'egress.docker_warning');
      expect(said).toHaveLength(1);
      expect(said[0]!.warning).toMatch(/1 Docker-containerizer HOST task\(s\) stay unmapped: no Docker socket is configured \(--docker-socket none\)/);
    });
  });

  it('a cgroup recreated at the same path changes the key (a chain rewrite); an unchanged tree gives no new map', async () => {
    const { mapper, dataplane } = setup();
    const dir = path.join(mount, 'mesos', 'c1');
    mkdirSync(dir, { recursive: true });
    double.tasks = [{ taskId: 'web.1', containerId: 'c1', executorPid: null }];
    await mapper.start();
    mapper.stop();
    await mapper.poll();
    expect(dataplane.maps).toHaveLength(1);
    // A placeholder takes the freed inode number (this is a plain file system; cgroupfs numbers
    // its directories from a counter, so a new cgroup always has a new inode).
    rmSync(dir, { recursive: true });
    mkdirSync(path.join(mount, 'hold'));
    mkdirSync(dir);
    await mapper.poll();
    expect(dataplane.maps).toHaveLength(2);
    expect(dataplane.maps[1]!.key).not.toBe(dataplane.maps[0]!.key);
    expect([...dataplane.maps[1]!.mapping!.tasks.values()]).toEqual([...dataplane.maps[0]!.mapping!.tasks.values()]);
  });

  it('a map the dataplane could not write is given again at the next poll', async () => {
    const { mapper, dataplane } = setup();
    mkdirSync(path.join(mount, 'mesos', 'c1'), { recursive: true });
    double.tasks = [{ taskId: 'web.1', containerId: 'c1', executorPid: null }];
    dataplane.failures = 1;
    await expect(mapper.start()).rejects.toThrow(/cgroup path not found/); // its first poll
    mapper.stop();
    await mapper.poll();
    await mapper.poll();
    expect(dataplane.maps.map((m) => m.key)).toEqual([dataplane.maps[0]!.key, dataplane.maps[0]!.key]);
  });

  it('a first poll whose map the dataplane could not write still leaves the mapper polling: the map is given again at the next interval', async () => {
    const { mapper, dataplane } = setup({ pollIntervalMs: 20 });
    mkdirSync(path.join(mount, 'mesos', 'c1'), { recursive: true });
    double.tasks = [{ taskId: 'web.1', containerId: 'c1', executorPid: null }];
    dataplane.failures = 1;
    try {
      await expect(mapper.start()).rejects.toThrow(/cgroup path not found/);
      await waitFor('the map given again by the next poll', () => dataplane.maps.length >= 2, 5_000);
    } finally {
      mapper.stop();
    }
    expect(dataplane.maps[1]!.key).toBe(dataplane.maps[0]!.key);
    expect(mapper.status(undefined).enforcing).toBe(true);
  });

  it('no cgroup2 mount, or no cgroup match: host-level only, one warn line, the reason in the status', async () => {
    const noMount = setup({ mount: null });
    await noMount.mapper.start();
    noMount.mapper.stop();
    await noMount.mapper.poll();
    expect(noMount.mapper.status(undefined)).toMatchObject({ supported: true, enforcing: false, reason: expect.stringMatching(/cgroup2/) });
    expect(noMount.lines.filter((l) => l.event === 'egress.not_enforcing')).toHaveLength(1);
    expect(noMount.dataplane.maps).toEqual([]);

    const runner = new RecordingRunner().fail(['iptables-restore', '--test'], "iptables-restore: Couldn't load match `cgroup'");
    const noMatch = setup({ runner });
    await noMatch.mapper.start();
    noMatch.mapper.stop();
    expect(noMatch.mapper.status(undefined).reason).toMatch(/cgroup match .*Couldn't load match/);
    expect(runner.callsTo(['iptables-restore', '--test'])[0]!.input).toMatch(/-m cgroup --path \//);
  });

  it('the Mesos agent unreadable once a map is in force: the map stays (fail static), one warn, fresh again once it answers', async () => {
    const { mapper, dataplane, lines } = setup();
    mkdirSync(path.join(mount, 'mesos', 'c1'), { recursive: true });
    double.tasks = [{ taskId: 'web.1', containerId: 'c1', executorPid: null }];
    try {
      await mapper.start();
      mapper.stop();
      expect(mapper.status(undefined).enforcing).toBe(true);
      double.rawBody = '{"get_tasks": '; // cut short
      await mapper.poll();
      await mapper.poll();
      expect(mapper.status(undefined)).toMatchObject({ enforcing: true, reason: expect.stringMatching(/Mesos agent cannot be read.*last task map is kept/) });
      expect(lines.filter((l) => l.event === 'egress.map_stale')).toHaveLength(1);
      expect(lines.filter((l) => l.event === 'egress.not_enforcing')).toHaveLength(0);
      expect(mapper.pollFailures).toBe(2);
      expect(dataplane.maps.map((m) => m.mapping === undefined)).toEqual([false]); // never withdrawn
      double.rawBody = undefined;
      await mapper.poll();
      expect(mapper.status(undefined)).toMatchObject({ enforcing: true, reason: '' });
      expect(dataplane.maps).toHaveLength(1); // the same map: nothing rewritten
      expect(lines.filter((l) => l.event === 'egress.enforcing')).toHaveLength(2);
    } finally {
      double.rawBody = undefined;
    }
  });

  it('the Mesos agent unreadable from the start: host-level, one warn per cause, enforcing once it answers', async () => {
    const { mapper, dataplane, lines } = setup();
    mkdirSync(path.join(mount, 'mesos', 'c1'), { recursive: true });
    double.tasks = [{ taskId: 'web.1', containerId: 'c1', executorPid: null }];
    double.rawBody = '{"get_tasks": ';
    try {
      await mapper.start();
      mapper.stop();
      await mapper.poll();
      expect(mapper.status(undefined)).toMatchObject({ enforcing: false, reason: expect.stringMatching(/Mesos agent cannot be read/) });
      expect(lines.filter((l) => l.event === 'egress.not_enforcing')).toHaveLength(1);
      expect(dataplane.maps).toHaveLength(0);
      double.rawBody = undefined;
      await mapper.poll();
      expect(mapper.status(undefined).enforcing).toBe(true);
      expect(dataplane.maps.map((m) => m.mapping === undefined)).toEqual([false]);
    } finally {
      double.rawBody = undefined;
    }
  });

  it('reads the cgroup2 mount from mountinfo and a pid\'s cgroup2 path from its 0:: line, refusing unsafe paths', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'pcut-proc-'));
    try {
      writeFileSync(path.join(dir, 'mountinfo'), '22 1 0:20 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n30 22 0:26 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n');
      expect(findCgroup2Mount(path.join(dir, 'mountinfo'))).toBe('/sys/fs/cgroup/unified');
      expect(findCgroup2Mount(path.join(dir, 'missing'))).toBeUndefined();
      for (const [pid, text, want] of [
        [1, '4:memory:/docker/abc\n0::/system.slice/docker-abc.scope\n', 'system.slice/docker-abc.scope'],
        [2, '0::/\n', undefined],
        [3, '0::/a/../b\n', undefined],
        [4, '0::/a b\n', undefined],
      ] as const) {
        mkdirSync(path.join(dir, String(pid)));
        writeFileSync(path.join(dir, String(pid), 'cgroup'), text);
        expect(cgroupOfPid(pid, dir)).toBe(want);
      }
      expect(cgroupOfPid(99, dir)).toBeUndefined();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
