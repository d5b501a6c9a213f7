/**
 * Marathon task JSON → inventory Task. Pure, no I/O; never throws on bad input.
 *
 * Used for the tasks embedded in `GET /v2/apps?embed=apps.tasks` and for `GET /v2/tasks`
 * (Marathon docs: docs/docs/rest-api.md "GET /v2/tasks";
 * docs/docs/rest-api/public/api/v2/examples/tasks.json).
 *
 * Which tasks count as running (their host ports are managed and their host is a source of
 * their app's groups):
 *  - a task with a string `state` (Marathon ≥ 1.5 always sends it) runs when the state is
 *    TASK_RUNNING, TASK_KILLING (a task being killed still holds its port and still serves
 *    until the kill completes; dropping it early would unmanage its port mid-drain) or
 *    TASK_UNREACHABLE (see RUNNING_TASK_STATES);
 *  - a task without `state` (Marathon ≤ 1.4) runs when `startedAt` is a non-empty string:
 *    Marathon lists only non-terminal tasks, and `startedAt` is set when it saw TASK_RUNNING.
 *  - anything else (staging, starting, terminal) is left out silently: it is not an error.
 * A task whose fields have the wrong types is skipped and reported, never thrown.
 */
import type { App, Task } from '../inventory/cluster-state.js';
import { isHostPort, isNonEmptyString, isRecord, preview } from './json-guards.js';

/** Mesos task states after which the task holds no port (docs/docs/event-bus.md, mesos.proto). */
export const TERMINAL_TASK_STATES: ReadonlySet<string> = new Set([
  'TASK_FINISHED',
  'TASK_FAILED',
  'TASK_KILLED',
  'TASK_LOST',
  'TASK_ERROR',
  'TASK_GONE',
  'TASK_GONE_BY_OPERATOR',
  'TASK_DROPPED',
  'TASK_UNKNOWN',
]);

/**
 * States in which the task may still hold its host ports. TASK_UNREACHABLE is not terminal: the
 * task's agent lost contact with the master and the task may still run (Mesos TaskState; Marathon
 * keeps the instance until its unreachableStrategy expunges it, then lists it no more). Reading
 * it as gone would release its port (unmanaged, so open to all) on a host where it still serves.
 */
export const RUNNING_TASK_STATES: ReadonlySet<string> = new Set(['TASK_RUNNING', 'TASK_KILLING', 'TASK_UNREACHABLE']);

/** running: holds its ports; terminal: gone; pending: staging/starting or unknown, no change. */
export type TaskLiveness = 'running' | 'terminal' | 'pending';

export function classifyTaskState(state: string): TaskLiveness {
  if (RUNNING_TASK_STATES.has(state)) return 'running';
  if (TERMINAL_TASK_STATES.has(state)) return 'terminal';
  return 'pending';
}

export type TaskEntryResult =
  | { readonly kind: 'task'; readonly task: Task }
  | { readonly kind: 'not-running' }
  | { readonly kind: 'malformed'; readonly problem: string };

/**
 * One task object. `appId` is the owning app when the task came embedded in an app (a task that
 * names another app is malformed); without it the task must carry its own `appId`.
 */
export function parseTaskEntry(raw: unknown, appId?: string): TaskEntryResult {
  const where = appId === undefined ? 'task' : `task of app ${preview(appId)}`;
  if (!isRecord(raw)) return { kind: 'malformed', problem: `${where}: expected an object, got ${preview(raw)}` };
  const id = raw.id;
  if (!isNonEmptyString(id)) return { kind: 'malformed', problem: `${where}: "id" must be a non-empty string, got ${preview(id)}` };
  const at = `${where} ${preview(id)}`;
  let owner = appId;
  if (raw.appId !== undefined && raw.appId !== null) {
    if (!isNonEmptyString(raw.appId)) return { kind: 'malformed', problem: `${at}: "appId" must be a string, got ${preview(raw.appId)}` };
    if (appId !== undefined && raw.appId !== appId) {
      return { kind: 'malformed', problem: `${at}: "appId" ${preview(raw.appId)} differs from its app` };
    }
    owner = raw.appId;
  }
  const state = raw.state;
  if (state !== undefined && state !== null && typeof state !== 'string') {
    return { kind: 'malformed', problem: `${at}: "state" must be a string, got ${preview(state)}` };
  }
  const startedAt = raw.startedAt;
  if (startedAt !== undefined && startedAt !== null && typeof startedAt !== 'string') {
    return { kind: 'malformed', problem: `${at}: "startedAt" must be a string, got ${preview(startedAt)}` };
  }
  const running = typeof state === 'string' ? classifyTaskState(state) === 'running' : isNonEmptyString(startedAt);
  if (!running) return { kind: 'not-running' };
  if (owner === undefined) return { kind: 'malformed', problem: `${at}: no "appId"` };

  if (!isNonEmptyString(raw.host)) return { kind: 'malformed', problem: `${at}: "host" must be a non-empty string, got ${preview(raw.host)}` };
  const ports = raw.ports ?? [];
  if (!Array.isArray(ports) || !ports.every(isHostPort)) {
    return { kind: 'malformed', problem: `${at}: "ports" must be a list of port numbers 1-65535, got ${preview(raw.ports)}` };
  }
  return { kind: 'task', task: { id, appId: owner, hostId: raw.host, hostPorts: [...ports] } };
}

/** A task's host ports must align index for index with its app's ports. */
export function checkTaskAlignment(task: Task, app: App): string | null {
  if (task.hostPorts.length === app.ports.length) return null;
  return (
    `task ${preview(task.id)} of app ${preview(app.id)}: has ${task.hostPorts.length} host port(s) ` +
    `but the app defines ${app.ports.length}; skipped (its app's ports changed, a deployment, and this controller does not know what its own ports were named)`
  );
}

export interface ParsedTasks {
  readonly tasks: Task[];
  readonly hostNames: string[];
  readonly problems: string[];
  /** False when the top level is not `{tasks: [...]}`: the answer says nothing about tasks. */
  readonly wellFormed: boolean;
}

/**
 * `GET /v2/tasks` (or one task object) → running tasks (sorted by id). With `apps`, tasks of unknown apps and tasks
 * whose port count differs from their app's are skipped and reported.
 */
export function parseTasks(json: unknown, apps?: readonly App[]): ParsedTasks {
  // A single task object (as in Marathon's task JSON format tests) is accepted as a list of one.
  if (isRecord(json) && json.tasks === undefined && isNonEmptyString(json.id) && 'host' in json) json = { tasks: [json] };
  if (!isRecord(json) || !Array.isArray(json.tasks)) {
    return { tasks: [], hostNames: [], problems: [`expected {"tasks": [...]}, got ${preview(json)}`], wellFormed: false };
  }
  const byId = apps ? new Map(apps.map((a) => [a.id, a])) : undefined;
  const problems: string[] = [];
  const tasks = new Map<string, Task>();
  for (const raw of json.tasks) {
    const r = parseTaskEntry(raw);
    if (r.kind === 'malformed') problems.push(r.problem);
    if (r.kind !== 'task') continue;
    if (tasks.has(r.task.id)) {
      problems.push(`task ${preview(r.task.id)}: listed twice; the first is kept`);
      continue;
    }
    if (byId) {
      const app = byId.get(r.task.appId);
      const problem = app ? checkTaskAlignment(r.task, app) : `task ${preview(r.task.id)}: unknown app ${preview(r.task.appId)}`;
      if (problem) {
        problems.push(problem);
        continue;
      }
    }
    tasks.set(r.task.id, r.task);
  }
  const sorted = [...tasks.values()].sort((a, b) => cmp(a.id, b.id));
  return { tasks: sorted, hostNames: hostNamesOf(sorted), problems, wellFormed: true };
}

export function hostNamesOf(tasks: readonly Task[]): string[] {
  return [...new Set(tasks.map((t) => t.hostId))].sort(cmp);
}

export function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
