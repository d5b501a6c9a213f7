/**
 * Marathon app JSON → inventory Apps and Tasks. Pure, no I/O; never throws on bad input.
 *
 * Accepts `GET /v2/apps?embed=apps.tasks` (`{apps: [...]}`), `GET /v2/apps/{id}?embed=app.tasks`
 * (`{app: {...}}`), a group (`{id, apps, groups}`, GET /v2/groups, walked recursively) and a bare
 * app definition. Both app formats (Marathon docs: docs/docs/ports.md for ≤ 1.4,
 * docs/docs/networking.md for ≥ 1.5):
 *  - network mode: `networks[0].mode` (host | container/bridge | container) when `networks` is
 *    present, else `container.docker.network` (HOST | BRIDGE | USER | NONE), else host;
 *  - HOST: the app's ports are `portDefinitions` (name, protocol, labels), or else the legacy
 *    `ports` list of numbers (tcp, no names);
 *  - BRIDGE / container: `container.portMappings` (≥ 1.5) or `container.docker.portMappings`
 *    (≤ 1.4); only mappings that get a host port become AppPorts, in order, so the task's `ports`
 *    align with them. In BRIDGE an absent hostPort means 0 (a random host port); in container
 *    (USER) mode an absent hostPort means none. `containerPort` is kept (0 = "same as the host
 *    port", which differs per task, so it is left out). A 1.4 BRIDGE app also carries
 *    `portDefinitions`/`ports` holding service ports: those are ignored.
 *  - protocol `"udp,tcp"` → ['tcp', 'udp']; absent → ['tcp']; other protocols (sctp) are dropped
 *    and reported (a port left with no protocol is not managed).
 *  - `requirePorts` is type-checked only: with it the host ports equal the definition's `port`,
 *    which the task's `ports` already say.
 * Every string is untrusted data and kept exactly (ids may contain any character). A malformed
 * app is skipped and reported; the rest still parse. An embedded task with fields of the wrong
 * type makes its app malformed (dropping the task alone would release its port). Tasks: see parse-tasks.ts for the running
 * rule; a task whose port count differs from its app's ports is set apart (`misaligned`).
 * Output is sorted (apps and tasks by id) so equal inputs give equal bytes.
 */
import type { App, AppPort, NetworkMode, Task } from '../inventory/cluster-state.js';
import type { Protocol } from '../policy/policy-model.js';
import { isNonEmptyString, isPortOrZero, isRecord, preview, readLabels, type JsonRecord } from './json-guards.js';
import { checkTaskAlignment, cmp, hostNamesOf, parseTaskEntry } from './parse-tasks.js';

export interface ParsedApps {
  readonly apps: App[];
  readonly tasks: Task[];
  readonly hostNames: string[];
  readonly problems: string[];
  /** False when the top level is not an apps answer at all (then nothing else is meaningful). */
  readonly wellFormed: boolean;
  /** True when every app carried a `tasks` list (the `embed` was honoured). */
  readonly tasksEmbedded: boolean;
  /** Ids of apps that had a string id but were skipped as malformed. */
  readonly skippedAppIds: string[];
  /**
   * Entries skipped without a readable id (not an object, no string id): any known app could be
   * one of them, so a list holding such entries must not be read as "the other apps are gone".
   */
  readonly anonymousSkipped: number;
  /** Ids of (otherwise well-formed) apps that carried no `tasks` list. */
  readonly appsWithoutTasks: string[];
  /**
   * Running tasks whose port count differs from their app's (a deployment that changes the
   * ports: old tasks keep theirs until replaced), with why; not in `tasks` or `problems`: the
   * store may know how they were aligned (cluster-store.ts).
   */
  readonly misaligned: readonly Misaligned[];
}

export interface Misaligned {
  readonly task: Task;
  readonly problem: string;
}

type AppResult =
  | { readonly ok: true; readonly app: App; readonly tasks: Task[]; readonly misaligned: Misaligned[]; readonly problems: string[]; readonly hadTasks: boolean }
  | { readonly ok: false; readonly id?: string; readonly problem: string };

export function parseApps(json: unknown): ParsedApps {
  const rawApps = collectRawApps(json);
  if (rawApps === null) {
    return {
      apps: [],
      tasks: [],
      hostNames: [],
      problems: [`expected {"apps": [...]}, {"app": {...}} or a group, got ${preview(json)}`],
      wellFormed: false,
      tasksEmbedded: false,
      skippedAppIds: [],
      anonymousSkipped: 0,
      appsWithoutTasks: [],
      misaligned: [],
    };
  }
  const problems: string[] = [];
  const misaligned: Misaligned[] = [];
  const skipped: string[] = [];
  const withoutTasks: string[] = [];
  const apps = new Map<string, App>();
  const tasks = new Map<string, Task>();
  let tasksEmbedded = true;
  let anonymous = 0;
  for (const raw of rawApps) {
    const r = parseApp(raw);
    if (!r.ok) {
      problems.push(r.problem);
      if (r.id !== undefined) skipped.push(r.id);
      else anonymous += 1;
      continue;
    }
    if (apps.has(r.app.id)) {
      problems.push(`app ${preview(r.app.id)}: listed twice; the first is kept`);
      continue;
    }
    apps.set(r.app.id, r.app);
    tasksEmbedded &&= r.hadTasks;
    if (!r.hadTasks) withoutTasks.push(r.app.id);
    problems.push(...r.problems);
    misaligned.push(...r.misaligned);
    for (const t of r.tasks) {
      if (tasks.has(t.id)) problems.push(`task ${preview(t.id)}: listed twice; the first is kept`);
      else tasks.set(t.id, t);
    }
  }
  const sortedTasks = [...tasks.values()].sort((a, b) => cmp(a.id, b.id));
  return {
    apps: [...apps.values()].sort((a, b) => cmp(a.id, b.id)),
    tasks: sortedTasks,
    hostNames: hostNamesOf(sortedTasks),
    problems,
    wellFormed: true,
    tasksEmbedded,
    skippedAppIds: skipped.sort(cmp),
    anonymousSkipped: anonymous,
    appsWithoutTasks: withoutTasks.sort(cmp),
    misaligned: misaligned.filter((m) => !tasks.has(m.task.id)),
  };
}

/**
 * An answer to `GET /v2/apps?embed=apps.tasks`, with the apps that came without `tasks` taken
 * out as malformed. Marathon honouring the embed writes `tasks` (maybe `[]`) into every app, so:
 *  - no app carries `tasks` (and there is at least one app): the embed was not honoured (an old
 *    or proxied Marathon, a plain `GET /v2/apps` answer like docs' app_list.json): null, the
 *    caller rejects the whole list — reading every app as "no tasks" would unmanage every port;
 *  - some apps lack it: each is skipped like any malformed app (listed in `skippedAppIds`, so it
 *    keeps its last good definition and tasks; reported in `problems`) and the rest applies.
 */
export function requireEmbeddedTasks(parsed: ParsedApps): ParsedApps | null {
  const missing = new Set(parsed.appsWithoutTasks);
  if (missing.size === 0) return parsed;
  if (missing.size === parsed.apps.length) return null;
  const problems = [...missing].map((id) => `app ${preview(id)}: no "tasks" list although embed=apps.tasks was asked; app skipped (its last good definition and tasks, if any, are kept)`);
  return {
    ...parsed,
    apps: parsed.apps.filter((a) => !missing.has(a.id)),
    misaligned: parsed.misaligned.filter((m) => !missing.has(m.task.appId)),
    problems: [...parsed.problems, ...problems],
    tasksEmbedded: true,
    skippedAppIds: [...parsed.skippedAppIds, ...missing].sort(cmp),
    appsWithoutTasks: [],
  };
}

/** The raw app objects of any accepted top-level shape, or null when the shape is unknown. */
function collectRawApps(json: unknown): unknown[] | null {
  if (!isRecord(json)) return null;
  if (isRecord(json.app)) return [json.app];
  if (Array.isArray(json.apps)) {
    // A group holds apps and nested groups; walk them without recursion (bounded by input size).
    const out: unknown[] = [];
    const stack: JsonRecord[] = [json];
    while (stack.length > 0) {
      const g = stack.pop() as JsonRecord;
      if (Array.isArray(g.apps)) out.push(...g.apps);
      if (Array.isArray(g.groups)) for (const sub of g.groups) if (isRecord(sub)) stack.push(sub);
    }
    return out;
  }
  if (json.apps === undefined && looksLikeApp(json)) return [json];
  return null;
}

/** A bare app definition (examples/app.json, api_post_event's appDefinition), not a task. */
function looksLikeApp(j: JsonRecord): boolean {
  if (!isNonEmptyString(j.id) || 'host' in j || 'slaveId' in j || 'appId' in j || 'tasks' in j) return false;
  return ['instances', 'cmd', 'container', 'portDefinitions', 'networks', 'requirePorts'].some((k) => k in j);
}

/** One app object (with its embedded tasks, if any). */
export function parseApp(raw: unknown): AppResult {
  if (!isRecord(raw)) return { ok: false, problem: `app: expected an object, got ${preview(raw)}` };
  const id = raw.id;
  if (!isNonEmptyString(id)) return { ok: false, problem: `app: "id" must be a non-empty string, got ${preview(id)}` };
  const fail = (what: string): AppResult => ({ ok: false, id, problem: `app ${preview(id)}: ${what}; app skipped` });

  const labels = readLabels(raw.labels);
  if (labels === null) return fail(`"labels" must map strings to strings, got ${preview(raw.labels)}`);
  if (raw.requirePorts !== undefined && raw.requirePorts !== null && typeof raw.requirePorts !== 'boolean') {
    return fail(`"requirePorts" must be true or false, got ${preview(raw.requirePorts)}`);
  }
  const mode = networkModeOf(raw);
  if (typeof mode !== 'string') return fail(mode.problem);
  const ports = mode === 'host' ? hostPorts(raw) : mappedPorts(raw, mode);
  if ('problem' in ports) return fail(ports.problem);
  const app: App = { id, labels, networkMode: mode, ports: ports.ports };

  const problems = [...ports.notes.map((n) => `app ${preview(id)}: ${n}`)];
  const tasks: Task[] = [];
  const misaligned: Misaligned[] = [];
  const rawTasks = raw.tasks;
  if (rawTasks !== undefined && !Array.isArray(rawTasks)) return fail(`"tasks" must be a list, got ${preview(rawTasks)}`);
  for (const rt of rawTasks ?? []) {
    const r = parseTaskEntry(rt, id);
    // Skipping one bad task would read as "that task is gone" and release its port on its host:
    // the whole app is malformed instead, and keeps its last good definition and tasks.
    if (r.kind === 'malformed') return fail(r.problem);
    if (r.kind !== 'task') continue;
    const problem = checkTaskAlignment(r.task, app);
    if (problem) misaligned.push({ task: r.task, problem });
    else tasks.push(r.task);
  }
  return { ok: true, app, tasks, misaligned, problems, hadTasks: Array.isArray(rawTasks) };
}

function networkModeOf(raw: JsonRecord): NetworkMode | { problem: string } {
  const networks = raw.networks;
  if (networks !== undefined && networks !== null) {
    if (!Array.isArray(networks)) return { problem: `"networks" must be a list, got ${preview(networks)}` };
    if (networks.length > 0) {
      const modes = new Set<NetworkMode>();
      for (const n of networks) {
        const m = isRecord(n) ? n.mode : undefined;
        if (m === 'host') modes.add('host');
        else if (m === 'container/bridge') modes.add('bridge');
        else if (m === 'container') modes.add('container');
        else return { problem: `networks[].mode must be host, container/bridge or container, got ${preview(m)}` };
      }
      if (modes.size > 1) return { problem: `"networks" mixes modes ${[...modes].join(', ')}` };
      return [...modes][0] as NetworkMode;
    }
  }
  const container = raw.container;
  if (container === undefined || container === null) return 'host';
  if (!isRecord(container)) return { problem: `"container" must be an object, got ${preview(container)}` };
  const docker = container.docker;
  if (docker === undefined || docker === null) return 'host';
  if (!isRecord(docker)) return { problem: `"container.docker" must be an object, got ${preview(docker)}` };
  const net = docker.network;
  if (net === undefined || net === null || net === 'HOST') return 'host';
  if (net === 'BRIDGE') return 'bridge';
  if (net === 'USER' || net === 'NONE') return 'container';
  return { problem: `"container.docker.network" must be HOST, BRIDGE, USER or NONE, got ${preview(net)}` };
}

type PortsResult = { ports: AppPort[]; notes: string[] } | { problem: string };

function hostPorts(raw: JsonRecord): PortsResult {
  const defs = raw.portDefinitions;
  if (defs !== undefined && defs !== null) {
    if (!Array.isArray(defs)) return { problem: `"portDefinitions" must be a list, got ${preview(defs)}` };
    return buildPorts(defs, 'portDefinitions', (d) => (isPortOrZero(d.port) ? null : `"port" must be 0-65535, got ${preview(d.port)}`));
  }
  const legacy = raw.ports;
  if (legacy === undefined || legacy === null) return { ports: [], notes: [] };
  if (!Array.isArray(legacy) || !legacy.every(isPortOrZero)) {
    return { problem: `"ports" must be a list of port numbers, got ${preview(legacy)}` };
  }
  return { ports: legacy.map(() => ({ protocols: ['tcp'], labels: {} })), notes: [] };
}

function mappedPorts(raw: JsonRecord, mode: NetworkMode): PortsResult {
  // With `networks` the mode did not look at `container`: a wrong type must not read as "no mappings".
  if (raw.container !== undefined && raw.container !== null && !isRecord(raw.container)) return { problem: `"container" must be an object, got ${preview(raw.container)}` };
  const container = isRecord(raw.container) ? raw.container : {};
  if (container.docker !== undefined && container.docker !== null && !isRecord(container.docker)) {
    return { problem: `"container.docker" must be an object, got ${preview(container.docker)}` };
  }
  const docker = isRecord(container.docker) ? container.docker : {};
  const mappings = container.portMappings ?? docker.portMappings;
  if (mappings === undefined || mappings === null) return { ports: [], notes: [] };
  if (!Array.isArray(mappings)) return { problem: `"portMappings" must be a list, got ${preview(mappings)}` };
  const withHostPort: unknown[] = [];
  for (const [i, m] of mappings.entries()) {
    if (!isRecord(m)) return { problem: `portMappings[${i}] must be an object, got ${preview(m)}` };
    const hp = m.hostPort;
    if (hp !== undefined && hp !== null && !isPortOrZero(hp)) return { problem: `portMappings[${i}].hostPort must be 0-65535, got ${preview(hp)}` };
    if (m.containerPort !== undefined && m.containerPort !== null && !isPortOrZero(m.containerPort)) {
      return { problem: `portMappings[${i}].containerPort must be 0-65535, got ${preview(m.containerPort)}` };
    }
    const getsHostPort = hp !== undefined && hp !== null ? true : mode === 'bridge';
    if (getsHostPort) withHostPort.push(m);
  }
  return buildPorts(withHostPort, 'portMappings', () => null, true);
}

function buildPorts(entries: unknown[], field: string, check: (e: JsonRecord) => string | null, mapped = false): PortsResult {
  const ports: AppPort[] = [];
  const notes: string[] = [];
  for (const [i, e] of entries.entries()) {
    if (!isRecord(e)) return { problem: `${field}[${i}] must be an object, got ${preview(e)}` };
    const bad = check(e);
    if (bad) return { problem: `${field}[${i}]: ${bad}` };
    if (e.name !== undefined && e.name !== null && typeof e.name !== 'string') {
      return { problem: `${field}[${i}].name must be a string, got ${preview(e.name)}` };
    }
    const labels = readLabels(e.labels);
    if (labels === null) return { problem: `${field}[${i}].labels must map strings to strings, got ${preview(e.labels)}` };
    const protocols = parseProtocols(e.protocol);
    if (protocols === null) return { problem: `${field}[${i}].protocol must be a string, got ${preview(e.protocol)}` };
    if (protocols.length === 0) notes.push(`${field}[${i}]: protocol ${preview(e.protocol)} has neither tcp nor udp; that port is not managed`);
    const port: AppPort = {
      ...(isNonEmptyString(e.name) ? { name: e.name } : {}),
      protocols,
      ...(mapped && typeof e.containerPort === 'number' && e.containerPort > 0 ? { containerPort: e.containerPort } : {}),
      labels,
    };
    ports.push(port);
  }
  return { ports, notes };
}

/** `"udp,tcp"` → ['tcp', 'udp']; absent → ['tcp']; unknown names dropped; wrong type → null. */
export function parseProtocols(v: unknown): Protocol[] | null {
  if (v === undefined || v === null) return ['tcp'];
  if (typeof v !== 'string') return null;
  const out = new Set<Protocol>();
  for (const part of v.split(',')) {
    const p = part.trim().toLowerCase();
    if (p === 'tcp' || p === 'udp') out.add(p);
  }
  return [...out].sort();
}
