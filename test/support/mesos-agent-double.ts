/**
 * A double of the local Mesos agent's v1 operator API (`POST /api/v1`, JSON), for per-app egress
 * tests: no Mesos agent can run on our machines. Its answers are the documented example payloads
 * of Mesos's docs/operator-http-api.md (test/fixtures/mesos-agent-payloads/, see SOURCES.md) with
 * the example's task, executor and container replaced by the scripted ones, so every field the
 * real agent sends in those examples is there, shaped as documented.
 *
 * Calls answered: GET_TASKS, GET_CONTAINERS, GET_STATE (its get_tasks part), GET_FLAGS
 * (`cgroups_root` as scripted). Anything else gets 400, as the real agent answers an unknown
 * call. `requests` counts the calls, per type, for tests that check polling. `forbidden` lists
 * calls answered 403 Forbidden, as an agent with authorization on answers a principal the ACLs
 * do not allow (Mesos docs/authorization.md: GET_FLAGS needs VIEW_FLAGS).
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { packageRoot } from '../../src/package-root.js';

export interface ScriptedTask {
  readonly taskId: string;
  readonly frameworkId?: string;
  /** Default: the task id (Marathon's command executor is named after its task). */
  readonly executorId?: string;
  /** Top-level container id; `parent` ids outermost first for a nested container. */
  readonly containerId?: string;
  readonly parents?: readonly string[];
  readonly addresses?: readonly string[];
  readonly state?: string;
  /** Report the container id in the task's status (true) or only in GET_CONTAINERS (false). */
  readonly containerIdInStatus?: boolean;
  /** The status's `executor_pid`: a number, or null to leave it out. Default: the documented example's. */
  readonly executorPid?: number | null;
  /**
   * Launched by the Docker containerizer: the task carries `container` (mesos.proto v1 Task field
   * 13, ContainerInfo `type: DOCKER`, `docker.network: HOST`; the documented example has none) and,
   * as Mesos reports for such tasks, no `executor_pid` unless one is scripted.
   */
  readonly docker?: boolean;
}

const FIXTURES = join(packageRoot(), 'test', 'fixtures', 'mesos-agent-payloads');
const FRAMEWORK = 'marathon-framework-0000';

function fixture(name: string): Record<string, any> {
  return JSON.parse(readFileSync(join(FIXTURES, name), 'utf8')) as Record<string, any>;
}

function clone<T>(v: T): T {
  return structuredClone(v);
}

function containerIdOf(t: ScriptedTask): Record<string, unknown> | undefined {
  if (t.containerId === undefined) return undefined;
  let id: Record<string, unknown> | undefined;
  for (const p of t.parents ?? []) id = id ? { value: p, parent: id } : { value: p };
  return id ? { value: t.containerId, parent: id } : { value: t.containerId };
}

function networkInfos(addresses: readonly string[] | undefined): unknown[] {
  return [{ ip_addresses: (addresses ?? []).map((ip_address) => ({ ip_address })) }];
}

export class MesosAgentDouble {
  tasks: ScriptedTask[] = [];
  cgroupsRoot = 'mesos';
  /** Answer every call with this raw body instead (malformed-payload tests). */
  rawBody: string | undefined;
  readonly forbidden = new Set<string>();
  readonly requests = new Map<string, number>();
  private server: http.Server | undefined;
  private readonly tasksTemplate = fixture('v1-get-tasks.json');
  private readonly containersTemplate = fixture('v1-get-containers.json');
  private readonly flagsTemplate = fixture('v1-get-flags.json');

  async start(): Promise<string> {
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        let type = '';
        try {
          type = String((JSON.parse(Buffer.concat(chunks).toString('utf8')) as { type?: unknown }).type ?? '');
        } catch {
          type = '';
        }
        this.requests.set(type, (this.requests.get(type) ?? 0) + 1);
        if (this.forbidden.has(type)) {
          res.writeHead(403, { 'content-type': 'text/plain' }).end('');
          return;
        }
        const body = req.method === 'POST' && req.url === '/api/v1' ? this.answer(type) : undefined;
        if (body === undefined) {
          res.writeHead(400, { 'content-type': 'text/plain' }).end(`Failed to validate agent::Call: unknown call '${type}'`);
          return;
        }
        res.writeHead(200, { 'content-type': 'application/json' }).end(this.rawBody ?? JSON.stringify(body));
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
  }

  /** The documented answer of `type` for the scripted tasks, or undefined for an unknown call. */
  answer(type: string): unknown {
    if (type === 'GET_TASKS') return this.getTasks();
    if (type === 'GET_STATE') return { type: 'GET_STATE', get_state: { get_tasks: this.getTasks().get_tasks } };
    if (type === 'GET_CONTAINERS') return this.getContainers();
    if (type === 'GET_FLAGS') {
      const body = clone(this.flagsTemplate);
      for (const f of body.get_flags.flags as { name: string; value: string }[]) if (f.name === 'cgroups_root') f.value = this.cgroupsRoot;
      return body;
    }
    return undefined;
  }

  private getTasks(): Record<string, any> {
    const body = clone(this.tasksTemplate);
    const example = body.get_tasks.launched_tasks[0];
    body.get_tasks.launched_tasks = this.tasks.map((t) => {
      const task = clone(example);
      const executor = t.executorId ?? t.taskId;
      task.task_id = { value: t.taskId };
      task.framework_id = { value: t.frameworkId ?? FRAMEWORK };
      task.state = t.state ?? 'TASK_RUNNING';
      task.status_update_state = task.state;
      const status = task.statuses[0];
      status.task_id = { value: t.taskId };
      status.executor_id = { value: executor };
      status.state = task.state;
      status.container_status.network_infos = networkInfos(t.addresses);
      const id = containerIdOf(t);
      if (id && t.containerIdInStatus !== false) status.container_status.container_id = id;
      if (t.docker) task.container = { type: 'DOCKER', docker: { image: 'library/nginx', network: 'HOST' } };
      if (t.executorPid === null || (t.docker && t.executorPid === undefined)) delete status.container_status.executor_pid;
      else if (t.executorPid !== undefined) status.container_status.executor_pid = t.executorPid;
      return task;
    });
    return body;
  }

  private getContainers(): Record<string, any> {
    const body = clone(this.containersTemplate);
    const example = body.get_containers.containers[0];
    body.get_containers.containers = this.tasks
      .filter((t) => t.containerId !== undefined)
      .map((t) => {
        const c = clone(example);
        c.container_id = containerIdOf(t);
        c.executor_id = { value: t.executorId ?? t.taskId };
        c.framework_id = { value: t.frameworkId ?? FRAMEWORK };
        c.container_status.network_infos = networkInfos(t.addresses);
        return c;
      });
    return body;
  }
}
