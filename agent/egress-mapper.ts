/**
 * Which local task a connection comes from: the agent's local task map for per-app egress
 * (src/render/render-egress.ts), learned from the local Mesos agent and the cgroup tree, and
 * handed to the dataplane, the one owner of kernel writes (`setEgress`).
 *
 * Contract
 * - Capability, checked once at start: a cgroup2 mount (/sys/fs/cgroup, or /sys/fs/cgroup/unified
 *   on a hybrid host, from /proc/self/mountinfo) and a usable cgroup match (`iptables-restore
 *   --test` of a table with a `-m cgroup --path /` rule); then, on every poll, the Mesos agent
 *   answering. When any is missing the agent enforces host-level only (no map is given to the
 *   dataplane, which then renders no egress object) — except that a Mesos agent that stops
 *   answering once a map is in force leaves that map in force (fail static; `egress.map_stale`,
 *   the status keeps `enforcing` with the reason) — logs one warn line per change of cause
 *   (`egress.not_enforcing` {reason}; `egress.enforcing` once it works again) and says so in its
 *   status (`status()`, sent in Hello, Ack and Pong, shown on /status and /metrics).
 * - Every `pollIntervalMs` (default 250 ms) GET_TASKS + GET_CONTAINERS (src/mesos): a task with a
 *   container address that is not one of this host's addresses is a BRIDGE task (matched by that
 *   address); otherwise a HOST task, matched by its cgroup `<cgroups root>/<container id>` when that
 *   directory exists under the cgroup2 mount; else, for a Docker-containerizer task, by the
 *   cgroup of its Docker container's pid (`State.Pid` of `mesos-<container id>`, asked of the
 *   Docker daemon, src/mesos/docker-engine.ts); else by the cgroup2 path of its executor pid
 *   (`/proc/<pid>/cgroup`, the `0::` line). A pid's cgroup is taken only down to the segment that
 *   names the container (the Docker Id, the Mesos container id): a process outside its container
 *   (an executor in the Mesos agent's own cgroup) never makes a cgroup one app's. Else the task is
 *   unmapped. A rule is only ever written for a directory that exists (iptables refuses a missing
 *   path and the whole restore would fail).
 * - The inode of every cgroup directory mapped is part of the map's key: a cgroup deleted and
 *   created again at the same path (the kernel rule keeps pointing at the dead one) changes the
 *   key, and a new key is a chain rewrite by the dataplane even when the rule text is the same.
 * - Polls never overlap; a failed poll, or a failed write of a new map (a cgroup removed between
 *   the check and the write: the kernel keeps its rules whole), is retried at the next interval.
 */
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { DesiredState } from '../src/compile/desired-state.js';
import type { EgressStatus } from '../src/grpc/generated/portcullis/v1/EgressStatus.js';
import type { MesosAgentApi } from '../src/mesos/agent-api.js';
import type { DockerLookup } from '../src/mesos/docker-engine.js';
import type { LocalTask, LocalTasks } from '../src/mesos/local-tasks.js';
import { isOwnableAddress, parseAddress, tryParseAddress } from '../src/net/address.js';
import { egressTaskCounts, type EgressMapping, type TaskSource, type UnmappedPolicy } from '../src/render/render-egress.js';
import type { CommandRunner } from './dataplane/command-runner.js';
import type { KernelDataplane } from './dataplane/kernel-dataplane.js';

export const DEFAULT_MESOS_POLL_MS = 250;

export interface EgressMapperOptions {
  readonly api: MesosAgentApi;
  readonly dataplane: KernelDataplane;
  readonly runner: CommandRunner;
  /** This host's addresses (any form; compared canonical): a container address that is one of them is no BRIDGE address. */
  readonly hostAddresses: readonly string[];
  readonly unmapped: UnmappedPolicy;
  readonly pollIntervalMs?: number;
  /** The iptables-restore of a managed family, for the capability test. */
  readonly restoreCommand: string;
  /** Where cgroup2 is mounted; default: found in /proc/self/mountinfo (tests may point elsewhere). */
  readonly cgroup2Mount?: string | null;
  /** Where `<pid>/cgroup` files are read; default /proc (tests). */
  readonly procRoot?: string;
  /** Where the Docker containerizer's tasks are asked about (--docker-socket); none: they stay unmapped. */
  readonly docker?: DockerLookup;
  /** How long a Docker container not placed is left before Docker is asked again; default 5 s (tests). */
  readonly dockerRetryMs?: number;
  readonly logger: Logger;
}

/** The cgroup2 mount point of this mount namespace, or undefined. */
export function findCgroup2Mount(mountinfo = '/proc/self/mountinfo'): string | undefined {
  let text: string;
  try {
    text = readFileSync(mountinfo, 'utf8');
  } catch {
    return undefined;
  }
  for (const line of text.split('\n')) {
    const [pre, post] = line.split(' - ');
    if (post?.startsWith('cgroup2 ')) return pre?.split(' ')[4];
  }
  return undefined;
}

const SAFE_CGROUP = /^[A-Za-z0-9_.-]{1,255}(\/[A-Za-z0-9_.-]{1,255}){0,63}$/;

/** The cgroup2 path of a pid (the `0::` line of /proc/<pid>/cgroup, without its leading '/'), if safe. */
export function cgroupOfPid(pid: number, proc = '/proc'): string | undefined {
  let text: string;
  try {
    text = readFileSync(join(proc, String(pid), 'cgroup'), 'utf8');
  } catch {
    return undefined;
  }
  const line = text.split('\n').find((l) => l.startsWith('0::'));
  const path = line?.slice(3).replace(/^\/+/, '');
  return path !== undefined && SAFE_CGROUP.test(path) && !path.split('/').some((s) => s === '.' || s === '..') ? path : undefined;
}

/** A container address a rule may match as that container's (src/net isOwnableAddress). */
function ownable(text: string): boolean {
  const a = tryParseAddress(text);
  return a !== undefined && isOwnableAddress(a);
}

/** The canonical text of an address (src/net), or the text itself when it is none. */
function canonicalOrSelf(text: string): string {
  const a = parseAddress(text);
  return a.ok ? a.canonical : text;
}

/**
 * The part of `path` down to the first segment that `names` accepts, or undefined when none does:
 * a pid's cgroup is taken for a task only when it names the task's container (its Mesos container
 * id, or its Docker container's Id), so that a process outside its container (an executor left in
 * the Mesos agent's cgroup, a pid reused by another process) never makes a cgroup one app's.
 */
export function containerCgroup(path: string | undefined, names: (segment: string) => boolean): string | undefined {
  if (path === undefined) return undefined;
  const segments = path.split('/');
  const at = segments.findIndex(names);
  return at < 0 ? undefined : segments.slice(0, at + 1).join('/');
}

/** How long a Docker container that could not be placed is left before Docker is asked again. */
const DOCKER_RETRY_MS = 5_000;

function inodeOf(dir: string): number | undefined {
  try {
    const st = statSync(dir);
    return st.isDirectory() ? st.ino : undefined;
  } catch {
    return undefined;
  }
}

export class EgressMapper {
  private readonly log: Logger;
  private mount: string | undefined;
  private capable: string | undefined = 'not started';
  private reason = 'not started';
  private mapping: EgressMapping | undefined;
  /** The shared cgroups and addresses last said (dropShared). */
  private sharedSaid = '';
  /** The Mesos answer's warning last said (said again only when it changes). */
  private warned: string | undefined;
  private key = '';
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** stop() calls so far: a poll started before one does not write (tests poll by hand after stop). */
  private stops = 0;
  private readonly hostAddresses: ReadonlySet<string>;
  /** Docker containers placed, by Mesos container id: their Id and pid (the cgroup is read again each poll). */
  private readonly dockerPlaced = new Map<string, { readonly id: string; readonly pid: number }>();
  /** Docker containers not placed, by Mesos container id: when Docker may be asked again. */
  private readonly dockerRetry = new Map<string, number>();
  /** The Docker problem last said (said again only when it changes). */
  private dockerSaid: string | undefined;
  polls = 0;
  pollFailures = 0;

  constructor(private readonly options: EgressMapperOptions) {
    this.log = options.logger;
    // Container addresses come canonical (src/mesos/local-tasks.ts); `--address` may be written
    // in any form (FD00:0::11), and a HOST task's address taken for a container's is a BRIDGE task.
    this.hostAddresses = new Set(options.hostAddresses.map(canonicalOrSelf));
  }

  /** Checks the capability, polls once (its result is in force when this resolves), then keeps polling. */
  async start(): Promise<void> {
    const stops = this.stops;
    this.capable = await this.checkCapability();
    if (stops !== this.stops) return; // stopped meanwhile
    try {
      await this.poll();
    } finally {
      this.schedule(); // a failed first poll is retried at the next interval, as any other
    }
  }

  /** No poll after this one; a poll still waiting for the Mesos agent gives the dataplane nothing. */
  stop(): void {
    this.stopped = true;
    this.stops++;
    if (this.timer) clearTimeout(this.timer);
  }

  /** The EgressStatus sent to the controller and shown on /status, counted against `state`. */
  status(state: DesiredState | undefined): EgressStatus {
    const counts = state ? egressTaskCounts(state, this.mapping) : { mapped: 0, unmapped: 0 };
    return { supported: true, enforcing: this.mapping !== undefined, reason: this.reason, mappedTasks: counts.mapped, unmappedTasks: counts.unmapped };
  }

  /** Polls now (tests; the timer calls it too). */
  async poll(): Promise<void> {
    this.polls++;
    if (this.capable !== undefined) return this.use(undefined, this.capable);
    const stops = this.stops;
    let tasks: LocalTasks;
    try {
      tasks = await this.options.api.localTasks();
    } catch (err) {
      if (stops !== this.stops) return;
      this.pollFailures++;
      const why = `the local Mesos agent cannot be read: ${(err as Error).message}`;
      // Fail static, as with the controller: a map in force stays in force (tasks started since
      // are unmapped until the Mesos agent answers again).
      if (this.mapping !== undefined) return this.keep(`${why}; the last task map is kept`);
      return this.use(undefined, why);
    }
    if (stops !== this.stops) return; // stop() came while the Mesos agent answered
    if (tasks.warning !== undefined && tasks.warning !== this.warned) this.log.warn({ event: 'egress.mesos_warning', warning: tasks.warning }, 'egress: the local Mesos agent refused part of what is asked');
    this.warned = tasks.warning;
    if (tasks.problems.length > 0) this.log.debug({ event: 'egress.mesos_problems', problems: tasks.problems.slice(0, 10), count: tasks.problems.length }, 'Mesos agent answer: entries skipped');
    const docker = await this.dockerCgroups(tasks.tasks);
    if (stops !== this.stops) return;
    const { mapping, key } = this.mapOf(tasks, docker);
    await this.use(mapping, '', key);
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      void this.poll()
        .catch((err: Error) => this.log.error({ event: 'egress.poll_failed', err: err.message }, 'egress: applying the local task map failed: retrying at the next poll'))
        .finally(() => this.schedule());
    }, this.options.pollIntervalMs ?? DEFAULT_MESOS_POLL_MS);
    this.timer.unref();
  }

  /** The map in force stays; `reason` says why it is not being refreshed. */
  private keep(reason: string): void {
    if (reason === this.reason) return;
    this.log.warn({ event: 'egress.map_stale', reason }, 'per-app egress: the local task map cannot be refreshed; the last one stays in force');
    this.reason = reason;
  }

  private async use(mapping: EgressMapping | undefined, reason: string, key = ''): Promise<void> {
    if (reason !== this.reason) {
      if (reason !== '') this.log.warn({ event: 'egress.not_enforcing', reason }, 'per-app egress is NOT enforced on this host: host-level enforcement only');
      else this.log.info({ event: 'egress.enforcing' }, 'per-app egress enforced on this host');
      this.reason = reason;
    }
    if (mapping === undefined && this.mapping === undefined) return;
    if (mapping !== undefined && key === this.key && this.mapping !== undefined) return;
    // Kept only once the dataplane took it: a failed write is tried again at the next poll.
    await this.options.dataplane.setEgress(mapping, key);
    this.mapping = mapping;
    this.key = mapping ? key : '';
  }

  private async checkCapability(): Promise<string | undefined> {
    this.mount = this.options.cgroup2Mount === null ? undefined : (this.options.cgroup2Mount ?? findCgroup2Mount());
    if (this.mount === undefined) return 'no cgroup2 mount on this host (/sys/fs/cgroup or /sys/fs/cgroup/unified)';
    const probe = '*mangle\n:PCU-EG-PROBE - [0:0]\n-A PCU-EG-PROBE -m cgroup --path / -j RETURN\nCOMMIT\n';
    const r = await this.options.runner.run([this.options.restoreCommand, '--test', '--noflush', '--wait'], probe);
    if (r.code !== 0) return `the iptables cgroup match is not usable (xt_cgroup): ${r.stderr.trim().slice(0, 200)}`;
    return undefined;
  }

  /**
   * A cgroup or a container address is one task's own: two tasks that come out with the same one
   * (a custom executor running several tasks in its one container, two containers given one
   * address) would make every socket of it one app's. Such tasks stay unmapped, said at warn when
   * the set of them changes.
   */
  private dropShared(tasks: Map<string, TaskSource>): void {
    const owners = new Map<string, string[]>();
    for (const [id, t] of tasks) {
      for (const where of t.kind === 'host' ? [`cgroup ${t.cgroupPath}`] : t.addresses.map((a) => `address ${a}`)) {
        const list = owners.get(where);
        if (list) list.push(id);
        else owners.set(where, [id]);
      }
    }
    const shared = [...owners].filter(([, ids]) => ids.length > 1);
    const dropped = new Set(shared.flatMap(([, ids]) => ids));
    for (const id of dropped) tasks.delete(id);
    const said = shared.map(([where, ids]) => `${where}: ${ids.slice(0, 5).join(', ')}${ids.length > 5 ? ` and ${ids.length - 5} more` : ''}`).join('; ');
    if (said !== this.sharedSaid && said !== '') this.log.warn({ event: 'egress.shared_source', tasks: dropped.size, shared: said.slice(0, 2000) }, 'per-app egress: tasks that share one cgroup or container address are left unmapped');
    this.sharedSaid = said;
  }

  /** A task's container addresses that a rule may match as its own (none: a HOST task). */
  private bridgeAddresses(t: LocalTask): string[] {
    return t.addresses.filter((a) => !this.hostAddresses.has(a) && ownable(a));
  }

  /**
   * The cgroups of the Docker containerizer's HOST tasks, by task id: Docker's `State.Pid` of
   * `mesos-<container id>` and that pid's cgroup, taken only when it names the container's Id.
   * A container placed is asked again only once its pid's cgroup stops naming it; one not placed
   * (not running yet, not found, a cgroup that does not name it) after DOCKER_RETRY_MS. Docker not
   * answering leaves those tasks unmapped, said at warn once per cause (`egress.docker_warning`).
   */
  private async dockerCgroups(local: readonly LocalTask[]): Promise<Map<string, string>> {
    const found = new Map<string, string>();
    const wanted = local.filter((t) => t.containerizer === 'docker' && t.containerId !== undefined && this.bridgeAddresses(t).length === 0);
    const live = new Set(wanted.map((t) => t.containerId!));
    for (const m of [this.dockerPlaced, this.dockerRetry]) for (const id of m.keys()) if (!live.has(id)) m.delete(id);
    const docker = this.options.docker;
    let problem: string | undefined;
    if (wanted.length > 0 && docker === undefined) problem = `${wanted.length} Docker-containerizer HOST task(s) stay unmapped: no Docker socket is configured (--docker-socket none)`;
    const now = Date.now();
    for (const t of wanted) {
      if (docker === undefined) break;
      const cid = t.containerId!;
      const placed = this.dockerPlaced.get(cid);
      let path = placed && this.dockerPath(placed.id, placed.pid);
      if (path === undefined && placed) this.dockerPlaced.delete(cid);
      if (path === undefined && (this.dockerRetry.get(cid) ?? 0) <= now && problem === undefined) {
        try {
          const c = await docker.inspect(cid);
          path = c?.pid === undefined ? undefined : this.dockerPath(c.id, c.pid);
          if (c && path !== undefined) this.dockerPlaced.set(cid, { id: c.id, pid: c.pid! });
          else if (c?.pid !== undefined) this.log.debug({ event: 'egress.docker_unplaced', task: t.taskId.slice(0, 200) }, "Docker container's pid is in no cgroup named after it: left unmapped");
        } catch (err) {
          problem = `Docker-containerizer HOST tasks stay unmapped: ${(err as Error).message}`;
        }
        if (path === undefined) this.dockerRetry.set(cid, now + (this.options.dockerRetryMs ?? DOCKER_RETRY_MS));
        else this.dockerRetry.delete(cid);
      }
      if (path !== undefined) found.set(t.taskId, path);
    }
    if (problem !== undefined && problem !== this.dockerSaid) this.log.warn({ event: 'egress.docker_warning', warning: problem.slice(0, 500) }, "per-app egress: the Docker containerizer's tasks cannot be placed");
    this.dockerSaid = problem;
    return found;
  }

  /** The cgroup of a Docker container's pid, when it names the container's Id (`docker-<Id>.scope`, `docker/<Id>`). */
  private dockerPath(id: string, pid: number): string | undefined {
    return containerCgroup(cgroupOfPid(pid, this.options.procRoot), (s) => s.includes(id));
  }

  private mapOf(local: LocalTasks, docker: ReadonlyMap<string, string>): { mapping: EgressMapping; key: string } {
    const mount = this.mount as string;
    const tasks = new Map<string, TaskSource>();
    const inodes = new Map<string, number>();
    for (const t of local.tasks) {
      const bridge = this.bridgeAddresses(t);
      if (bridge.length > 0) {
        tasks.set(t.taskId, { kind: 'bridge', addresses: bridge });
        continue;
      }
      // A Mesos container id, nested ones joined by '.': the innermost names the task's cgroup.
      const own = t.containerId?.split('.').pop();
      const byPid = t.executorPid !== undefined && own !== undefined ? containerCgroup(cgroupOfPid(t.executorPid, this.options.procRoot), (s) => s === own) : undefined;
      const candidates = [t.cgroupPath, docker.get(t.taskId) ?? byPid];
      for (const path of candidates) {
        const inode = path === undefined ? undefined : inodeOf(join(mount, path));
        if (path === undefined || inode === undefined) continue;
        tasks.set(t.taskId, { kind: 'host', cgroupPath: path });
        inodes.set(t.taskId, inode);
        break;
      }
    }
    this.dropShared(tasks);
    const keyParts = [...tasks].map(([id, t]) => (t.kind === 'bridge' ? `${id} b ${t.addresses.join(',')}` : `${id} h ${t.cgroupPath} ${inodes.get(id)}`));
    const root = this.options.api.effectiveCgroupsRoot.replace(/^\/+|\/+$/g, '');
    const rootOk = SAFE_CGROUP.test(root) && !root.split('/').some((s) => s === '.' || s === '..');
    const rootInode = this.options.unmapped === 'deny' && rootOk ? inodeOf(join(mount, root)) : undefined;
    keyParts.sort();
    keyParts.push(`root ${this.options.unmapped} ${rootInode === undefined ? '-' : `${root} ${rootInode}`}`);
    return { mapping: { tasks, unmapped: this.options.unmapped, cgroupsRoot: rootInode === undefined ? undefined : root }, key: keyParts.join('\n') };
  }
}
