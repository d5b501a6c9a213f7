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
 *
 * A deployment that changes an app's ports leaves its old tasks running with the old ports until
 * they are replaced, and Marathon lists them under the new definition. The store remembers, for
 * each task it holds, the ports it was aligned with (its app's definition then) and its raw host
 * ports; a task that no longer aligns is kept, while its host ports are the same, with each port
 * of the new definition that has the name of one of its old ports (and a protocol in common)
 * taken from that port, and the others given none (host port 0, which every consumer skips).
 * A task first seen misaligned (the controller started during the deployment), or whose old
 * ports have no name in the new definition, is not kept (the caller reports it).
 */
import { reuseUnchangedApps, sameApp, sameTask, type App, type AppPort, type ClusterState, type Host, type Task } from '../inventory/cluster-state.js';
import type { Misaligned } from './parse-apps.js';
import type { MarathonEvent } from './parse-event.js';
import { cmp } from './parse-tasks.js';

export type StatusUpdate = Extract<MarathonEvent, { kind: 'status_update' }>;

export type StatusResult =
  | { readonly kind: 'changed' | 'unchanged' }
  /** The app is unknown or its ports do not match the task's: re-read the app. */
  | { readonly kind: 'refresh'; readonly why: string };

/** How a task was aligned: its app's ports then and its raw host ports. */
interface Alignment {
  readonly ports: readonly AppPort[];
  readonly raw: readonly number[];
}

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
  /** Per task held: the ports it was aligned with and its raw host ports (see the header). */
  private aligned = new Map<string, Alignment>();

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
    this.aligned.set(task.id, { ports: app.ports, raw: task.hostPorts });
    this.cached = null;
    return { kind: 'changed' };
  }

  /** Replace everything (a full list). `keep` names apps to carry over unchanged with their tasks. */
  replaceAll(apps: readonly App[], tasks: readonly Task[], keep: readonly string[] = [], misaligned: readonly Misaligned[] = []): string[] {
    const before = this.fingerprints();
    const nextApps = new Map(reuseUnchangedApps([...this.apps.values()], apps).map((a) => [a.id, a]));
    const nextTasks = new Map(tasks.map((t) => [t.id, t]));
    const aligned = new Map<string, Alignment>();
    for (const t of tasks) {
      this.ended.delete(t.id);
      aligned.set(t.id, { ports: nextApps.get(t.appId)?.ports ?? [], raw: t.hostPorts });
    }
    this.realign(misaligned, (id) => nextApps.get(id), (taskId) => this.aligned.get(taskId), nextTasks, aligned);
    for (const id of keep) {
      const old = this.apps.get(id);
      if (!old || nextApps.has(id)) continue;
      nextApps.set(id, old);
      for (const t of this.tasks.values()) {
        if (t.appId !== id) continue;
        nextTasks.set(t.id, t);
        const a = this.aligned.get(t.id);
        if (a) aligned.set(t.id, a);
      }
    }
    this.apps = nextApps;
    this.tasks = nextTasks;
    this.aligned = aligned;
    this.cached = null;
    return diff(before, this.fingerprints());
  }

  /** Replace one app and its tasks; `app` null removes it. */
  replaceApp(id: string, app: App | null, tasks: readonly Task[], misaligned: readonly Misaligned[] = []): string[] {
    const before = this.fingerprintOf(id);
    const was = new Map<string, Alignment>();
    for (const t of [...this.tasks.values()]) {
      if (t.appId !== id) continue;
      this.tasks.delete(t.id);
      const a = this.aligned.get(t.id);
      if (a) was.set(t.id, a);
      this.aligned.delete(t.id);
    }
    if (app) {
      const old = this.apps.get(id);
      const kept = old !== undefined && sameApp(old, app) ? old : app;
      this.apps.set(id, kept);
      for (const t of tasks) {
        this.tasks.set(t.id, t);
        this.aligned.set(t.id, { ports: kept.ports, raw: t.hostPorts });
        this.ended.delete(t.id);
      }
      this.realign(misaligned, () => kept, (taskId) => was.get(taskId), this.tasks, this.aligned);
    } else {
      this.apps.delete(id);
    }
    this.cached = null;
    return before === this.fingerprintOf(id) ? [] : [id];
  }

  /** The problems of the misaligned tasks the store does not hold (not kept by port name: see the header). */
  unkeptProblems(misaligned: readonly Misaligned[]): string[] {
    return misaligned.filter((m) => !this.tasks.has(m.task.id)).map((m) => m.problem);
  }

  /**
   * The misaligned tasks kept by port name (see the header), from how `wasOf` says each was
   * aligned: put in `into`, the alignment they keep in `alignedInto`.
   */
  private realign(misaligned: readonly Misaligned[], appOf: (id: string) => App | undefined, wasOf: (taskId: string) => Alignment | undefined, into: Map<string, Task>, alignedInto: Map<string, Alignment>): void {
    for (const { task } of misaligned) {
      const app = appOf(task.appId);
      const was = wasOf(task.id);
      if (!app || !was || into.has(task.id) || was.raw.length !== task.hostPorts.length || was.raw.some((p, i) => p !== task.hostPorts[i])) continue;
      const hostPorts = app.ports.map((port) => {
        const i = port.name === undefined ? -1 : was.ports.findIndex((o) => o.name === port.name && o.protocols.some((p) => port.protocols.includes(p)));
        return i < 0 ? 0 : was.raw[i]!;
      });
      if (hostPorts.every((p) => p === 0)) continue;
      into.set(task.id, { ...task, hostPorts });
      alignedInto.set(task.id, was);
      this.ended.delete(task.id);
    }
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
