/**
 * The local Mesos agent's answer → which container (and so which cgroup and which addresses)
 * each running task of this host is in. This is how an agent tells apps apart as SOURCES without
 * an IP per app (per-app egress): Marathon's task id is the Mesos task id; the Mesos agent knows
 * the task's executor and container.
 *
 * Input: the parsed bodies (src/json/bounded-json.ts) of two calls of the Mesos v1 operator API,
 * agent part (`POST /api/v1`; payload shapes from Mesos's docs/operator-http-api.md, copied in
 * test/fixtures/mesos-agent-payloads/):
 *  - GET_TASKS (or GET_STATE, whose `get_state.get_tasks` is the same): `launched_tasks[]` with
 *    `task_id`, `framework_id`, `state`, `statuses[]` (`executor_id`, `container_status`:
 *    `container_id`, `network_infos[].ip_addresses[].ip_address`, `executor_pid`), `container.type` (DOCKER:
 *    the Docker containerizer's);
 *  - GET_CONTAINERS: `containers[]` with `container_id`, `executor_id`, `framework_id`,
 *    `container_status.network_infos`.
 * A task's container is its newest status's `container_status.container_id` when present, else
 * the container of its (framework, executor) in GET_CONTAINERS (the command executor of a
 * Marathon app runs the task in the executor's container). Its cgroup is
 * `<cgroups_root>/<container id>` (Mesos docs/cgroups2-support.md, "Container"), a nested
 * container's `<root>/<parent>/mesos/<child>` (the Mesos containerizer's layout).
 *
 * Untrusted: every id is checked before it can become part of a cgroup path or a rule argument
 * (a container id is `[A-Za-z0-9_.-]`, 1–255 characters, not `.` or `..`; Mesos itself makes
 * UUIDs); an entry that does not have the documented shape is skipped with a problem line, never
 * guessed, and never makes the rest of the answer unusable; a task id that two frameworks launched
 * maps no task (the entry that is Marathon's cannot be told); addresses are parsed by src/net (an
 * IPv4-mapped one is refused, as everywhere). Pure: no I/O.
 */
import { parseAddress } from '../net/address.js';

export interface LocalTask {
  /** The Mesos task id (= Marathon's task id). */
  readonly taskId: string;
  readonly frameworkId: string;
  /** `TASK_RUNNING`, `TASK_STAGING`, ... as Mesos says. */
  readonly state: string;
  readonly executorId: string | undefined;
  /** The container id, nested ids joined by '.' as Mesos prints them; undefined when unknown. */
  readonly containerId: string | undefined;
  /** Path of the container's cgroup relative to the cgroup2 root; undefined when unknown. */
  readonly cgroupPath: string | undefined;
  /** The container's addresses (BRIDGE/CNI tasks have their own), canonical (src/net); invalid ones dropped. */
  readonly addresses: readonly string[];
  readonly executorPid: number | undefined;
  /**
   * The task's containerizer, from `launched_tasks[].container.type` (mesos.proto ContainerInfo
   * Type): 'docker' for the Docker containerizer, whose HOST tasks are in no Mesos cgroup and have
   * no executor pid in their status (agent/egress-mapper.ts asks Docker for them); 'mesos'
   * otherwise (also when the task says nothing: a command task).
   */
  readonly containerizer: 'docker' | 'mesos';
}

export interface LocalTasks {
  readonly tasks: readonly LocalTask[];
  /** One line per entry skipped or field ignored, for the log (bounded by the caller). */
  readonly problems: readonly string[];
  /** Something the operator must hear (said at warn, once while it lasts): a GET_FLAGS refused (agent-api.ts). */
  readonly warning?: string;
}

export const DEFAULT_CGROUPS_ROOT = 'mesos';

const SAFE_ID = /^[A-Za-z0-9_.-]{1,255}$/;
const SAFE_ROOT = /^[A-Za-z0-9_.-]{1,255}(\/[A-Za-z0-9_.-]{1,255}){0,15}$/;
/** Longest task/framework/executor id kept (Mesos ids are short; Marathon's are ~60 characters). */
const MAX_ID = 1024;

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** `{ "value": "..." }`, the shape of every Mesos id. */
function idValue(v: unknown): string | undefined {
  if (!isObject(v) || typeof v.value !== 'string') return undefined;
  const s = v.value;
  return s.length > 0 && s.length <= MAX_ID ? s : undefined;
}

function safeSegment(s: string): boolean {
  return SAFE_ID.test(s) && s !== '.' && s !== '..';
}

/** A ContainerID (with its `parent` chain, outermost first) or undefined if any part is unsafe. */
function containerChain(v: unknown): string[] | undefined {
  const chain: string[] = [];
  let at: unknown = v;
  for (let depth = 0; at !== undefined; depth++) {
    if (depth >= 16 || !isObject(at) || typeof at.value !== 'string' || !safeSegment(at.value)) return undefined;
    chain.unshift(at.value);
    at = at.parent;
  }
  return chain.length > 0 ? chain : undefined;
}

function cgroupOf(root: string, chain: readonly string[]): string {
  return [root, ...chain.flatMap((id, i) => (i === 0 ? [id] : ['mesos', id]))].join('/');
}

/** The addresses of a ContainerStatus, canonical; one problem line per address that is not one. */
function addressesOf(containerStatus: unknown, problems: string[], where: string): string[] {
  if (!isObject(containerStatus) || !Array.isArray(containerStatus.network_infos)) return [];
  const out: string[] = [];
  for (const info of containerStatus.network_infos) {
    if (!isObject(info) || !Array.isArray(info.ip_addresses)) continue;
    for (const a of info.ip_addresses) {
      if (!isObject(a) || typeof a.ip_address !== 'string') continue;
      const parsed = a.ip_address.length <= 64 ? parseAddress(a.ip_address) : undefined;
      if (parsed?.ok) out.push(parsed.canonical);
      else problems.push(`${where}: address ignored (${parsed ? parsed.message : 'longer than 64 characters'})`);
    }
  }
  return [...new Set(out)];
}

/** The list under `get_tasks.launched_tasks` (GET_TASKS) or `get_state.get_tasks.launched_tasks` (GET_STATE). */
function launchedTasks(body: unknown): unknown[] | undefined {
  if (!isObject(body)) return undefined;
  const getTasks = isObject(body.get_state) ? body.get_state.get_tasks : body.get_tasks;
  return isObject(getTasks) && Array.isArray(getTasks.launched_tasks) ? getTasks.launched_tasks : undefined;
}

interface ContainerEntry {
  readonly chain: readonly string[];
  readonly addresses: readonly string[];
}

function containersByExecutor(body: unknown, problems: string[]): Map<string, ContainerEntry> {
  const byExecutor = new Map<string, ContainerEntry>();
  const list = isObject(body) && isObject(body.get_containers) ? body.get_containers.containers : undefined;
  if (!Array.isArray(list)) {
    problems.push('GET_CONTAINERS answer has no get_containers.containers list: containers are found from task statuses only');
    return byExecutor;
  }
  list.forEach((c, i) => {
    const chain = isObject(c) ? containerChain(c.container_id) : undefined;
    const framework = isObject(c) ? idValue(c.framework_id) : undefined;
    const executor = isObject(c) ? idValue(c.executor_id) : undefined;
    if (!chain || !framework || !executor) {
      problems.push(`GET_CONTAINERS entry ${i} skipped: it needs container_id, framework_id and executor_id, with a container id of [A-Za-z0-9_.-]`);
      return;
    }
    // Nested containers (task groups) share their executor: the top-level one is the executor's.
    const key = `${framework}\n${executor}`;
    const known = byExecutor.get(key);
    if (!known || chain.length < known.chain.length) byExecutor.set(key, { chain, addresses: addressesOf((c as Json).container_status, problems, `GET_CONTAINERS entry ${i}`) });
  });
  return byExecutor;
}

/**
 * The local tasks (see the header). `cgroupsRoot` is the agent's `--cgroups_root` flag
 * (GET_FLAGS; default "mesos"); an unsafe root is refused (no cgroup paths at all) with a problem.
 */
export function parseLocalTasks(tasksBody: unknown, containersBody: unknown, cgroupsRoot: string = DEFAULT_CGROUPS_ROOT): LocalTasks {
  const problems: string[] = [];
  const root = cgroupsRoot.replace(/^\/+|\/+$/g, '');
  const rootOk = SAFE_ROOT.test(root) && !root.split('/').some((s) => s === '.' || s === '..');
  if (!rootOk) problems.push(`cgroups_root '${cgroupsRoot.slice(0, 80)}' is not a plain relative path: no task is mapped to a cgroup`);
  const containers = containersByExecutor(containersBody, problems);
  const list = launchedTasks(tasksBody);
  if (!list) return { tasks: [], problems: [...problems, 'GET_TASKS answer has no launched_tasks list: no local task is known'] };

  const tasks: LocalTask[] = [];
  // A task id is unique within a framework only: another framework on this host (its own
  // scheduler picks its ids) may launch one with a Marathon task's id. Which entry is Marathon's
  // cannot be told here, so such an id maps no task (host-level) rather than maybe the wrong one.
  const seen = new Map<string, string>();
  const ambiguous = new Set<string>();
  list.forEach((t, i) => {
    const taskId = isObject(t) ? idValue(t.task_id) : undefined;
    const frameworkId = isObject(t) ? idValue(t.framework_id) : undefined;
    if (!taskId || !frameworkId || !isObject(t) || typeof t.state !== 'string') {
      problems.push(`launched task ${i} skipped: it needs task_id, framework_id and state`);
      return;
    }
    const first = seen.get(taskId);
    if (first !== undefined && first !== frameworkId) {
      problems.push(`launched task ${i} skipped: task id also launched by another framework; no task of that id is mapped`);
      ambiguous.add(taskId);
      return;
    }
    if (first !== undefined) {
      problems.push(`launched task ${i} skipped: task id listed twice`);
      return;
    }
    seen.set(taskId, frameworkId);
    const statuses = Array.isArray(t.statuses) ? t.statuses.filter(isObject) : [];
    const newest = statuses.reduce<Json | undefined>((a, s) => (a === undefined || Number(s.timestamp) >= Number(a.timestamp) ? s : a), undefined);
    const executorId = idValue(newest?.executor_id) ?? idValue(t.executor_id);
    const status = newest?.container_status;
    let chain = isObject(status) && status.container_id !== undefined ? containerChain(status.container_id) : undefined;
    if (isObject(status) && status.container_id !== undefined && !chain) problems.push(`launched task ${i}: its container id is not [A-Za-z0-9_.-]; ignored`);
    let addresses = addressesOf(status, problems, `launched task ${i}`);
    const byExecutor = executorId !== undefined ? containers.get(`${frameworkId}\n${executorId}`) : undefined;
    if (!chain && byExecutor) chain = [...byExecutor.chain];
    if (addresses.length === 0 && byExecutor) addresses = [...byExecutor.addresses];
    const pid = isObject(status) ? status.executor_pid : undefined;
    tasks.push({
      taskId,
      frameworkId,
      state: t.state.slice(0, 64),
      executorId,
      containerId: chain?.join('.'),
      cgroupPath: chain && rootOk ? cgroupOf(root, chain) : undefined,
      addresses,
      executorPid: typeof pid === 'number' && Number.isInteger(pid) && pid > 0 ? pid : undefined,
      containerizer: isObject(t.container) && t.container.type === 'DOCKER' ? 'docker' : 'mesos',
    });
  });
  return { tasks: ambiguous.size === 0 ? tasks : tasks.filter((t) => !ambiguous.has(t.taskId)), problems };
}
