/**
 * Which container each local task runs in, from the Mesos agent's v1 API (src/mesos): the
 * documented payloads parse, hostile ids never reach a cgroup path, and the client reads the
 * Mesos agent double over real HTTP.
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { MesosAgentApi } from '../src/mesos/agent-api.js';
import { parseLocalTasks } from '../src/mesos/local-tasks.js';
import { packageRoot } from '../src/package-root.js';
import { MesosAgentDouble } from './support/mesos-agent-double.js';

const fixture = (name: string): unknown => JSON.parse(readFileSync(join(packageRoot(), 'test/fixtures/mesos-agent-payloads', name), 'utf8'));

describe('parseLocalTasks on the payloads of Mesos docs/operator-http-api.md', () => {
  it('GET_TASKS: the documented task, its executor, address and executor pid', () => {
    const r = parseLocalTasks(fixture('v1-get-tasks.json'), fixture('v1-get-containers.json'));
    expect(r.tasks).toEqual([
      {
        taskId: '1',
        frameworkId: '70770d61-d666-4547-a808-787f63b00cf2-0000',
        state: 'TASK_RUNNING',
        executorId: '1',
        containerId: undefined, // the documented container belongs to another framework's executor
        cgroupPath: undefined,
        addresses: ['127.0.1.1'],
        executorPid: 27140,
        containerizer: 'mesos', // the documented task says no container type: a command task
      },
    ]);
    expect(r.problems).toEqual([]);
  });

  it('GET_STATE carries the same tasks', () => {
    const r = parseLocalTasks(fixture('v1-get-state.json'), fixture('v1-get-containers.json'));
    expect(r.tasks.map((t) => [t.taskId, t.executorId, t.executorPid])).toEqual([['1', '1', 19846]]);
  });

  it("a task's container comes from GET_CONTAINERS by (framework, executor); the cgroup is <root>/<id>", () => {
    const double = new MesosAgentDouble();
    double.tasks = [{ taskId: 'shop_web.1', containerId: 'f0f97041-1860-4b4a-b279-91fec4e0ebd8', containerIdInStatus: false, addresses: ['172.17.0.5'] }];
    double.cgroupsRoot = 'mesos';
    const r = parseLocalTasks(double.answer('GET_TASKS'), double.answer('GET_CONTAINERS'), 'mesos');
    expect(r.tasks[0]).toMatchObject({ taskId: 'shop_web.1', containerId: 'f0f97041-1860-4b4a-b279-91fec4e0ebd8', cgroupPath: 'mesos/f0f97041-1860-4b4a-b279-91fec4e0ebd8', addresses: ['172.17.0.5'] });
  });

  it("a Docker containerizer's task (container.type DOCKER) says so; others are the Mesos containerizer's", () => {
    const double = new MesosAgentDouble();
    double.tasks = [
      { taskId: 'dk.1', containerId: 'd1', docker: true },
      { taskId: 'mx.1', containerId: 'm1' },
    ];
    const r = parseLocalTasks(double.answer('GET_TASKS'), double.answer('GET_CONTAINERS'), 'mesos');
    expect(r.tasks.map((t) => [t.taskId, t.containerizer, t.containerId, t.executorPid])).toEqual([
      ['dk.1', 'docker', 'd1', undefined],
      ['mx.1', 'mesos', 'm1', 27140],
    ]);
  });

  it('a nested container (task group) is <root>/<parent>/mesos/<child>', () => {
    const double = new MesosAgentDouble();
    double.tasks = [{ taskId: 'pod.web', containerId: 'child-1', parents: ['parent-0'] }];
    const r = parseLocalTasks(double.answer('GET_TASKS'), double.answer('GET_CONTAINERS'), '/custom/root/');
    expect(r.tasks[0]).toMatchObject({ containerId: 'parent-0.child-1', cgroupPath: 'custom/root/parent-0/mesos/child-1' });
  });

  it('hostile ids never reach a cgroup path; broken entries are skipped with a reason, the rest kept', () => {
    const double = new MesosAgentDouble();
    double.tasks = [
      { taskId: 'evil.1', containerId: '../../../sys' },
      { taskId: 'evil.2', containerId: 'a b"; -j ACCEPT' },
      { taskId: 'good.1', containerId: 'c-1' },
    ];
    const tasks = double.answer('GET_TASKS') as { get_tasks: { launched_tasks: unknown[] } };
    tasks.get_tasks.launched_tasks.push(null, 7, { task_id: { value: 'no-framework' }, state: 'TASK_RUNNING' }, { ...(tasks.get_tasks.launched_tasks[2] as object) });
    const r = parseLocalTasks(tasks, double.answer('GET_CONTAINERS'));
    expect(r.tasks.map((t) => [t.taskId, t.cgroupPath])).toEqual([
      ['evil.1', undefined],
      ['evil.2', undefined],
      ['good.1', 'mesos/c-1'],
    ]);
    expect(r.problems.filter((p) => p.includes('container id is not'))).toHaveLength(2);
    expect(r.problems.filter((p) => p.startsWith('GET_CONTAINERS entry'))).toHaveLength(2);
    expect(r.problems.filter((p) => /^launched task [3-5] skipped: it needs/.test(p))).toHaveLength(3);
    expect(r.problems).toContain('launched task 6 skipped: task id listed twice');
  });

  it('a task id launched by two frameworks maps neither: the task of another framework must not get the app its id names', () => {
    const double = new MesosAgentDouble();
    double.tasks = [
      { taskId: 'shop_web.1', frameworkId: 'other-framework-0001', containerId: 'foreign' },
      { taskId: 'shop_web.1', containerId: 'c-1' },
      { taskId: 'shop_api.1', containerId: 'c-2' },
    ];
    const r = parseLocalTasks(double.answer('GET_TASKS'), double.answer('GET_CONTAINERS'));
    expect(r.tasks.map((t) => [t.taskId, t.cgroupPath])).toEqual([['shop_api.1', 'mesos/c-2']]);
    expect(r.problems).toContain('launched task 1 skipped: task id also launched by another framework; no task of that id is mapped');
  });

  it('container addresses are canonical; what is not an address is dropped with a reason', () => {
    const double = new MesosAgentDouble();
    double.tasks = [{ taskId: 't', containerId: 'c', addresses: ['FD00:0::5', 'not-an-ip', '::ffff:10.0.0.1', '172.17.0.2'] }];
    const r = parseLocalTasks(double.answer('GET_TASKS'), double.answer('GET_CONTAINERS'));
    expect(r.tasks[0]!.addresses).toEqual(['fd00::5', '172.17.0.2']);
    expect(r.problems.filter((p) => p.startsWith('launched task 0: address ignored'))).toHaveLength(2);
  });

  it('an unsafe cgroups_root maps no task to a cgroup, and says so', () => {
    const double = new MesosAgentDouble();
    double.tasks = [{ taskId: 't', containerId: 'c' }];
    const r = parseLocalTasks(double.answer('GET_TASKS'), double.answer('GET_CONTAINERS'), 'mesos/../../etc');
    expect(r.tasks[0]!.cgroupPath).toBeUndefined();
    expect(r.problems[0]).toMatch(/^cgroups_root 'mesos\/..\/..\/etc' is not a plain relative path/);
  });

  it('answers without the documented lists give no tasks and a reason, never a throw', () => {
    for (const body of [null, 'x', [], {}, { get_tasks: {} }, { get_state: { get_tasks: { launched_tasks: 'no' } } }]) {
      const r = parseLocalTasks(body, body);
      expect(r.tasks).toEqual([]);
      expect(r.problems.at(-1)).toBe('GET_TASKS answer has no launched_tasks list: no local task is known');
    }
  });
});

describe('MesosAgentApi against the Mesos agent double (real HTTP on loopback)', () => {
  const doubles: MesosAgentDouble[] = [];
  const servers: http.Server[] = [];
  afterEach(async () => {
    await Promise.all(doubles.splice(0).map((d) => d.stop()));
    await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
  });

  it('reads the flags once, then tasks and containers on every call', async () => {
    const double = new MesosAgentDouble();
    doubles.push(double);
    double.cgroupsRoot = 'mesos-agent';
    double.tasks = [{ taskId: 'shop_db.1', containerId: 'c-db', containerIdInStatus: false }];
    const api = new MesosAgentApi({ url: await double.start() });
    expect((await api.localTasks()).tasks.map((t) => t.cgroupPath)).toEqual(['mesos-agent/c-db']);
    double.tasks = [...double.tasks, { taskId: 'shop_web.1', containerId: 'c-web' }];
    expect((await api.localTasks()).tasks.map((t) => t.cgroupPath)).toEqual(['mesos-agent/c-db', 'mesos-agent/c-web']);
    expect(Object.fromEntries(double.requests)).toEqual({ GET_FLAGS: 1, GET_TASKS: 2, GET_CONTAINERS: 2 });
  });

  it('a GET_FLAGS the agent refuses (403: its ACLs) maps with the configured root, says so, and asks again next time', async () => {
    const double = new MesosAgentDouble();
    doubles.push(double);
    double.cgroupsRoot = 'mesos-agent';
    double.forbidden.add('GET_FLAGS');
    double.tasks = [{ taskId: 'shop_db.1', containerId: 'c-db' }];
    const api = new MesosAgentApi({ url: await double.start(), cgroupsRoot: 'custom' });
    const refused = await api.localTasks();
    expect(refused.tasks.map((t) => t.cgroupPath)).toEqual(['custom/c-db']);
    expect(refused.warning).toMatch(/GET_FLAGS answered HTTP 403.*the cgroups root 'custom' of --cgroups-root is used/);
    double.forbidden.clear();
    const allowed = await api.localTasks();
    expect(allowed.tasks.map((t) => t.cgroupPath)).toEqual(['mesos-agent/c-db']);
    expect(allowed.warning).toBeUndefined();
    expect(double.requests.get('GET_FLAGS')).toBe(2);
    double.forbidden.add('GET_TASKS');
    await expect(api.localTasks()).rejects.toThrow(/GET_TASKS answered HTTP 403/);
  });

  it('an HTTP error, malformed JSON or too deep JSON is an error naming the call and the URL', async () => {
    const double = new MesosAgentDouble();
    doubles.push(double);
    const url = await double.start();
    const api = new MesosAgentApi({ url });
    await expect(api.call('GET_NOPE')).rejects.toThrow(`Mesos agent ${url}: GET_NOPE answered HTTP 400`);
    double.rawBody = '{"get_tasks": ';
    await expect(api.call('GET_TASKS')).rejects.toThrow(/^Mesos agent .*: GET_TASKS: invalid JSON/);
    double.rawBody = '['.repeat(100) + ']'.repeat(100);
    await expect(api.call('GET_TASKS')).rejects.toThrow(/GET_TASKS: JSON nested deeper than the limit of 64 levels/);
  });

  it('an answer larger than the limit is refused while reading', async () => {
    const server = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ pad: 'x'.repeat(10_000) }));
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const api = new MesosAgentApi({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, maxBytes: 1_000 });
    await expect(api.call('GET_TASKS')).rejects.toThrow(/larger than the limit of 1000 bytes/);
  });

  it('a refused connection is an error naming the agent', async () => {
    const server = http.createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    await new Promise((r) => server.close(r));
    const api = new MesosAgentApi({ url: `http://127.0.0.1:${port}`, timeoutMs: 2_000 });
    await expect(api.call('GET_TASKS')).rejects.toThrow(new RegExp(`^Mesos agent http://127.0.0.1:${port}: GET_TASKS: .*ECONNREFUSED`));
  });
});
