/**
 * The Marathon source's working copy of the cluster: apps and running tasks by id, changed in
 * place by list results and events, read out as an immutable, sorted ClusterState snapshot.
 * Owned by one MarathonSource (no sharing). Hosts are the `host` ids of running tasks with no
 * addresses: the controller merges addresses in from agents' hellos / DNS.
 *
 * Every mutation returns the ids of the apps whose definition or task set really changed, so the
 * source emits only real changes. An app whose definition a list or re-read leaves unchanged keeps
 * its App object (cluster-state.ts reuseUnchangedApps): that identity is how the compiler tells
 * changed apps from unchanged ones.
 */
import { reuseUnchangedApps, sameApp, sameTask, type App, type ClusterState, type Host, type Task } from '../inventory/cluster-state.js';
import type { MarathonEvent } from './parse-event.js';
import { cmp } from './parse-tasks.js';

export type StatusUpdate = Extract<MarathonEvent, { kind: 'status_update' }>;

export type StatusResult =
  | { readonly kind: 'changed' | 'unchanged' }
  /** The app is unknown or its ports do not match the task's: re-read the app. */
  | { readonly kind: 'refresh'; readonly why: string };

/**
 * States after which a Mesos task id never runs again (TASK_LOST and TASK_UNKNOWN may come back).
 * Marathon does not guarantee the order of its events (docs/docs/event-bus.md since 1.8), so a
 * running update of a task that arrives after one of these is stale.
 */
const FINAL_TASK_STATES: ReadonlySet<string> = new Set(['TASK_FINISHED', 'TASK_FAILED', 'TASK_KILLED', 'TASK_ERROR', 'TASK_GONE', 'TASK_GONE_BY_OPERATOR', 'TASK_DROPPED']);
/** How many ended task ids are remembered (oldest forgotten first). */
const MAX_ENDED = 10_000;

export class ClusterStore {
  private apps = new Map<string, App>();
  private tasks = new Map<string, Task>();
  private cached: ClusterState | null = null;
  /** Tasks seen in a final state, oldest first; a list that names one again is believed. */
  private readonly ended = new Set<string>();

  get appCount(): number {
    return this.apps.size;
  }

  /** Every known app id. */
  appIds(): string[] {
    return [...this.apps.keys()];
  }

  hasApp(id: string): boolean {
    return this.apps.has(id);
  }

  snapshot(): ClusterState {
    if (this.cached) return this.cached;
    const apps = [...this.apps.values()].sort((a, b) => cmp(a.id, b.id));
    const tasks = [...this.tasks.values()].sort((a, b) => cmp(a.id, b.id));
    const hosts: Host[] = [...new Set(tasks.map((t) => t.hostId))].sort(cmp).map((id) => ({ id, addresses: [] }));
    this.cached = { hosts, apps, tasks };
    return this.cached;
  }

  /**
   * Apply one task status update: running → add/update, terminal → remove, pending → nothing; a
   * running update of a task already seen in a final state is stale and changes nothing.
   */
  applyStatus(ev: StatusUpdate): StatusResult {
    if (ev.liveness === 'pending') return { kind: 'unchanged' };
    const old = this.tasks.get(ev.taskId);
    if (FINAL_TASK_STATES.has(ev.taskStatus)) this.remember(ev.taskId);
    if (ev.liveness === 'running' && this.ended.has(ev.taskId)) return { kind: 'unchanged' };
    if (ev.liveness === 'terminal') {
      if (!old) return { kind: 'unchanged' };
      this.tasks.delete(ev.taskId);
      this.cached = null;
      return { kind: 'changed' };
    }
    const app = this.apps.get(ev.appId);
    if (!app) return { kind: 'refresh', why: `running task of unknown app` };
    if (ev.ports.length !== app.ports.length) {
      return { kind: 'refresh', why: `task has ${ev.ports.length} port(s), app defines ${app.ports.length}` };
    }
    const task: Task = { id: ev.taskId, appId: ev.appId, hostId: ev.host, hostPorts: [...ev.ports] };
    if (old && sameTask(old, task)) return { kind: 'unchanged' };
    this.tasks.set(task.id, task);
    this.cached = null;
    return { kind: 'changed' };
  }

  /** Replace everything (a full list). `keep` names apps to carry over unchanged with their tasks. */
  replaceAll(apps: readonly App[], tasks: readonly Task[], keep: readonly string[] = []): string[] {
    const before = this.fingerprints();
    const nextApps = new Map(reuseUnchangedApps([...this.apps.values()], apps).map((a) => [a.id, a]));
    const nextTasks = new Map(tasks.map((t) => [t.id, t]));
    for (const t of tasks) this.ended.delete(t.id);
    for (const id of keep) {
      const old = this.apps.get(id);
      if (!old || nextApps.has(id)) continue;
      nextApps.set(id, old);
      for (const t of this.tasks.values()) if (t.appId === id) nextTasks.set(t.id, t);
    }
    this.apps = nextApps;
    this.tasks = nextTasks;
    this.cached = null;
    return diff(before, this.fingerprints());
  }

  /** Replace one app and its tasks; `app` null removes it. */
  replaceApp(id: string, app: App | null, tasks: readonly Task[]): string[] {
    const before = this.fingerprintOf(id);
    for (const t of [...this.tasks.values()]) if (t.appId === id) this.tasks.delete(t.id);
    if (app) {
      const old = this.apps.get(id);
      this.apps.set(id, old !== undefined && sameApp(old, app) ? old : app);
      for (const t of tasks) {
        this.tasks.set(t.id, t);
        this.ended.delete(t.id);
      }
    } else {
      this.apps.delete(id);
    }
    this.cached = null;
    return before === this.fingerprintOf(id) ? [] : [id];
  }

  private remember(taskId: string): void {
    this.ended.delete(taskId);
    this.ended.add(taskId);
    if (this.ended.size > MAX_ENDED) this.ended.delete(this.ended.values().next().value as string);
  }

  private fingerprints(): Map<string, string> {
    const byApp = new Map<string, Task[]>();
    for (const t of this.tasks.values()) {
      const list = byApp.get(t.appId);
      if (list) list.push(t);
      else byApp.set(t.appId, [t]);
    }
    const out = new Map<string, string>();
    for (const id of new Set([...this.apps.keys(), ...byApp.keys()])) out.set(id, fingerprint(this.apps.get(id), byApp.get(id) ?? []));
    return out;
  }

  private fingerprintOf(id: string): string {
    return fingerprint(this.apps.get(id), [...this.tasks.values()].filter((t) => t.appId === id));
  }
}

function fingerprint(app: App | undefined, tasks: Task[]): string {
  return JSON.stringify([app ?? null, [...tasks].sort((a, b) => cmp(a.id, b.id))]);
}

function diff(before: Map<string, string>, after: Map<string, string>): string[] {
  const ids = new Set([...before.keys(), ...after.keys()]);
  return [...ids].filter((id) => before.get(id) !== after.get(id)).sort(cmp);
}
