/**
 * A Marathon API double: a real HTTP server on 127.0.0.1 (port 0) that answers the endpoints the
 * Marathon source uses, with bodies shaped like Marathon's documented payloads (the recorded
 * copies are in test/fixtures/marathon-payloads, see its SOURCES.md):
 *  - GET /v2/apps?embed=apps.tasks, GET /v2/apps/{id}?embed=app.tasks (404 `{"message"}` when
 *    unknown): app JSON in the v1.4 shape (docs/docs/rest-api/public/api/v2/examples/app.json:
 *    `container.docker.network`, `container.docker.portMappings`, top-level `ports` and
 *    `portDefinitions`; tasks without `state`, as examples/tasks.json @ v1.4.13) or in the v1.5
 *    shape (docs/docs/networking.md: `networks: [{mode}]`, `container.portMappings`; tasks with
 *    `state`, as examples/tasks.json @ HEAD).
 *  - GET /v2/tasks.
 *  - GET /v2/events: SSE (docs/docs/event-bus.md, examples/events.txt): `event: <type>` and
 *    `data: <json>` lines and a blank line; `event_stream_attached` first. Task changes emit
 *    `status_update_event` (and `instance_changed_event` in v1.5 mode), app changes
 *    `api_post_event` / `app_terminated_event`, like the bodies in docs/docs/event-bus.md.
 * Test controls: failures, dropped streams, standby redirects, basic auth, request log.
 */
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export type DoubleFormat = 'v1.4' | 'v1.5';
/** http500: app and task reads answer 500; http500All: the event stream too. */
export type FailingMode = 'none' | 'http500' | 'http500All' | 'emptyApps' | 'truncated';

/** Rewrites a `/v2/apps` answer: an object is sent as JSON, a string as the body verbatim. */
export type ListRewrite = (body: { apps: Record<string, unknown>[] }) => unknown;

export interface DoublePort {
  readonly name?: string;
  /** Marathon's text: 'tcp', 'udp' or 'udp,tcp'. Default 'tcp'. */
  readonly protocol?: string;
  /** BRIDGE only. */
  readonly containerPort?: number;
  readonly labels?: Record<string, string>;
}

export interface DoubleApp {
  readonly id: string;
  readonly network: 'host' | 'bridge';
  readonly ports: readonly DoublePort[];
  readonly labels?: Record<string, string>;
  readonly requirePorts?: boolean;
}

export interface DoubleOptions {
  readonly format?: DoubleFormat;
  readonly basicAuth?: { readonly user: string; readonly password: string };
  /** false: SSE with `data:` lines only, as Marathon before 0.11 (docs/docs/rest-api.md @ v1.4.13). */
  readonly sseEventNames?: boolean;
}

export interface RecordedRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: http.IncomingHttpHeaders;
}

interface DoubleTask {
  readonly id: string;
  readonly appId: string;
  readonly host: string;
  readonly ports: readonly number[];
  readonly stagedAt: string;
}

const VERSION = '2015-09-25T15:13:48.343Z';

export class MarathonDouble {
  readonly requests: RecordedRequest[] = [];
  private readonly apps = new Map<string, { app: DoubleApp; servicePorts: number[] }>();
  private readonly tasks = new Map<string, DoubleTask>();
  private readonly streams = new Set<http.ServerResponse>();
  private failing: FailingMode = 'none';
  private listRewrite: ListRewrite | null = null;
  private listGate: Promise<void> | null = null;
  private onHold: () => void = () => {};
  private redirectTo: string | null = null;
  private nextServicePort = 10000;
  url = '';

  private constructor(
    private readonly server: http.Server,
    private readonly opts: DoubleOptions,
  ) {}

  static async start(opts: DoubleOptions = {}): Promise<MarathonDouble> {
    const server = http.createServer();
    const double = new MarathonDouble(server, opts);
    server.on('request', (req, res) => double.handle(req, res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    double.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    return double;
  }

  get format(): DoubleFormat {
    return this.opts.format ?? 'v1.5';
  }

  get streamCount(): number {
    return this.streams.size;
  }

  addApp(app: DoubleApp): void {
    const old = this.apps.get(app.id);
    const servicePorts = old?.servicePorts.length === app.ports.length ? old.servicePorts : app.ports.map(() => this.nextServicePort++);
    this.apps.set(app.id, { app, servicePorts });
    const body = { eventType: 'api_post_event', timestamp: now(), clientIp: '127.0.0.1', uri: `/v2/apps${app.id}`, appDefinition: this.renderApp(app.id, false) };
    this.emit('api_post_event', body);
  }

  removeApp(id: string): void {
    for (const t of [...this.tasks.values()]) if (t.appId === id) this.killTask(t.id);
    this.apps.delete(id);
    this.emit('app_terminated_event', { eventType: 'app_terminated_event', timestamp: now(), appId: id });
  }

  startTask(appId: string, host: string, ports: readonly number[]): string {
    if (!this.apps.has(appId)) throw new Error(`double: no app ${appId}`);
    const id = `${appId.replace(/^\//, '').replace(/\//g, '_')}.${randomUUID()}`;
    this.tasks.set(id, { id, appId, host, ports: [...ports], stagedAt: now() });
    this.statusEvent(id, appId, host, ports, 'TASK_RUNNING');
    return id;
  }

  killTask(taskId: string): void {
    const t = this.tasks.get(taskId);
    if (!t) throw new Error(`double: no task ${taskId}`);
    this.tasks.delete(taskId);
    this.statusEvent(t.id, t.appId, t.host, t.ports, 'TASK_KILLED');
  }

  /** Kill, then start the replacement elsewhere (what Marathon does); returns the new task id. */
  moveTask(taskId: string, newHost: string, newPorts: readonly number[]): string {
    const t = this.tasks.get(taskId);
    if (!t) throw new Error(`double: no task ${taskId}`);
    this.killTask(taskId);
    return this.startTask(t.appId, newHost, newPorts);
  }

  /** Raw SSE text to every open stream (for malformed-event tests). */
  sendRaw(text: string): void {
    for (const s of this.streams) s.write(text);
  }

  dropStreams(): void {
    for (const s of this.streams) s.destroy();
    this.streams.clear();
  }

  setStandbyRedirect(toUrl: string | null): void {
    this.redirectTo = toUrl;
  }

  /**
   * From now on, app lists are computed when asked but sent only after `release()` is called:
   * an answer older than the events sent meanwhile (what a slow Marathon or proxy produces).
   */
  holdLists(): { release: () => void; held: () => number } {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    this.listGate = gate;
    let held = 0;
    this.onHold = () => held++;
    return {
      release: () => {
        this.listGate = null;
        release();
      },
      held: () => held,
    };
  }

  setFailing(mode: FailingMode): void {
    this.failing = mode;
  }

  /** From now on, `/v2/apps` answers are passed through `fn` (null: as rendered). */
  setListRewrite(fn: ListRewrite | null): void {
    this.listRewrite = fn;
  }

  async close(): Promise<void> {
    this.dropStreams();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private statusEvent(taskId: string, appId: string, host: string, ports: readonly number[], status: string): void {
    // Shaped like the status_update_event lines of examples/events.txt.
    this.emit('status_update_event', {
      slaveId: `${host}-S0`,
      taskId,
      taskStatus: status,
      message: '',
      appId,
      host,
      ports,
      version: VERSION,
      eventType: 'status_update_event',
      timestamp: now(),
    });
    if (this.format === 'v1.5') {
      // docs/docs/event-bus.md @ v1.10.26, "instance_changed_event".
      this.emit('instance_changed_event', {
        instanceId: taskId.replace('.', '.instance-'),
        condition: status === 'TASK_RUNNING' ? 'Running' : 'Killed',
        runSpecId: appId,
        agentId: `${host}-S0`,
        host,
        runSpecVersion: VERSION,
        timestamp: now(),
        eventType: 'instance_changed_event',
      });
    }
  }

  private emit(type: string, body: unknown): void {
    const frame = `${this.opts.sseEventNames === false ? '' : `event: ${type}\n`}data: ${JSON.stringify(body)}\n\n`;
    for (const s of this.streams) s.write(frame);
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    this.requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    if (this.redirectTo !== null) {
      res.writeHead(302, { Location: `${this.redirectTo}${req.url ?? '/'}` }).end();
      return;
    }
    const auth = this.opts.basicAuth;
    if (auth && req.headers.authorization !== `Basic ${Buffer.from(`${auth.user}:${auth.password}`).toString('base64')}`) {
      json(res, 401, { message: 'Invalid username or password.' });
      return;
    }
    const url = new URL(req.url ?? '/', 'http://double');
    const rawPath = (req.url ?? '/').split('?')[0] as string;
    if (req.method !== 'GET') return json(res, 405, { message: 'method not allowed' });
    if (rawPath === '/v2/events') {
      if (this.failing === 'http500All') return json(res, 500, { message: 'An unexpected server error occurred.' });
      return this.openStream(res);
    }
    if (rawPath === '/v2/apps' || rawPath === '/v2/apps/') {
      const rendered = { apps: [...this.apps.keys()].sort().map((id) => this.renderApp(id, true)) };
      const body = this.listRewrite ? this.listRewrite(rendered) : rendered;
      if (this.listGate) {
        this.onHold();
        void this.listGate.then(() => this.answer(res, () => body, true));
        return;
      }
      return this.answer(res, () => body, true);
    }
    if (rawPath.startsWith('/v2/apps/')) {
      const id = `/${rawPath.slice('/v2/apps/'.length).split('/').map(decodeURIComponent).join('/')}`;
      if (!this.apps.has(id)) return json(res, 404, { message: `App '${id}' does not exist` });
      return this.answer(res, () => ({ app: this.renderApp(id, url.searchParams.getAll('embed').length > 0) }), false);
    }
    if (rawPath === '/v2/tasks') {
      return this.answer(res, () => ({ tasks: [...this.tasks.values()].map((t) => this.renderTask(t)) }), false);
    }
    json(res, 404, { message: 'not found' });
  }

  private answer(res: http.ServerResponse, body: () => unknown, isList: boolean): void {
    if (this.failing === 'http500' || this.failing === 'http500All') return json(res, 500, { message: 'An unexpected server error occurred.' });
    if (this.failing === 'emptyApps' && isList) return json(res, 200, { apps: [] });
    if (this.failing === 'truncated') {
      // Announce the whole body, send half of it, then cut the connection.
      const b = body();
      const text = Buffer.from(typeof b === 'string' ? b : JSON.stringify(b));
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': text.length });
      res.write(text.subarray(0, Math.floor(text.length / 2)), () => res.destroy());
      return;
    }
    json(res, 200, body());
  }

  private openStream(res: http.ServerResponse): void {
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
    this.streams.add(res);
    res.on('close', () => this.streams.delete(res));
    // docs/docs/event-bus.md: the first message of every stream.
    this.emit1(res, 'event_stream_attached', { remoteAddress: '127.0.0.1', eventType: 'event_stream_attached', timestamp: now() });
  }

  private emit1(res: http.ServerResponse, type: string, body: unknown): void {
    res.write(`${this.opts.sseEventNames === false ? '' : `event: ${type}\n`}data: ${JSON.stringify(body)}\n\n`);
  }

  private renderTask(t: DoubleTask): Record<string, unknown> {
    const entry = this.apps.get(t.appId);
    const base: Record<string, unknown> = {
      id: t.id,
      host: t.host,
      ipAddresses: [{ ipAddress: '172.17.0.2', protocol: 'IPv4' }],
      ports: t.ports,
      startedAt: t.stagedAt,
      stagedAt: t.stagedAt,
      version: VERSION,
      slaveId: `${t.host}-S0`,
      appId: t.appId,
      servicePorts: entry?.servicePorts ?? [],
    };
    return this.format === 'v1.5' ? { ...base, state: 'TASK_RUNNING' } : base;
  }

  private renderApp(id: string, withTasks: boolean): Record<string, unknown> {
    const entry = this.apps.get(id);
    if (!entry) throw new Error(`double: no app ${id}`);
    const { app, servicePorts } = entry;
    const tasks = [...this.tasks.values()].filter((t) => t.appId === id);
    const common: Record<string, unknown> = {
      id,
      cmd: app.network === 'host' ? 'python -m http.server $PORT0' : null,
      instances: tasks.length,
      cpus: 0.1,
      mem: 64,
      disk: 0,
      labels: app.labels ?? {},
      requirePorts: app.requirePorts ?? false,
      version: VERSION,
      tasksRunning: tasks.length,
      tasksStaged: 0,
      deployments: [],
    };
    const defs = app.ports.map((p, i) => ({ port: servicePorts[i], protocol: p.protocol ?? 'tcp', ...(p.name ? { name: p.name } : {}), labels: p.labels ?? {} }));
    const mappings = app.ports.map((p, i) => ({
      containerPort: p.containerPort ?? 0,
      hostPort: 0,
      servicePort: servicePorts[i],
      protocol: p.protocol ?? 'tcp',
      ...(p.name ? { name: p.name } : {}),
      labels: p.labels ?? {},
    }));
    const docker = { image: 'python:3', privileged: false, parameters: [], forcePullImage: false };
    let shape: Record<string, unknown>;
    if (this.format === 'v1.4') {
      // examples/app.json @ v1.4.13: BRIDGE apps still list service ports in ports/portDefinitions.
      shape = {
        ports: servicePorts,
        portDefinitions: defs,
        container: app.network === 'host' ? null : { type: 'DOCKER', volumes: [], docker: { ...docker, network: 'BRIDGE', portMappings: mappings } },
      };
    } else if (app.network === 'host') {
      shape = { networks: [{ mode: 'host' }], portDefinitions: defs, container: { type: 'DOCKER', docker, volumes: [] } };
    } else {
      shape = { networks: [{ mode: 'container/bridge' }], container: { type: 'DOCKER', docker, volumes: [], portMappings: mappings } };
    }
    return { ...common, ...shape, ...(withTasks ? { tasks: tasks.map((t) => this.renderTask(t)) } : {}) };
  }
}

function json(res: http.ServerResponse, status: number, body: unknown): void {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) }).end(text);
}

function now(): string {
  return new Date().toISOString();
}

/** Polls `cond` until it holds or `timeoutMs` passes (then throws with `what`). */
export async function waitFor(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
