/**
 * A double of Consul's HTTP API (`/v1/...`, JSON), for the Consul parts of issue 12: no Consul
 * server can run on our machines. Built from Consul's documented HTTP API (hashicorp/consul
 * website/content/api-docs/: health, catalog, agent/service, agent/check, kv, session,
 * features/blocking, features/consistency; files and commits in
 * test/fixtures/consul-payloads/SOURCES.md). Every answer is a documented example payload
 * (test/fixtures/consul-payloads/*.json) with the example's values replaced by the double's state,
 * so every field the docs show is there, shaped as documented.
 *
 * Endpoints: GET /v1/health/service/:service (`passing`), GET /v1/catalog/service/:service,
 * PUT /v1/agent/service/register, PUT /v1/agent/service/deregister/:id, GET /v1/agent/services,
 * GET/PUT/DELETE /v1/kv/:key (`recurse`, `cas`, `flags`, `acquire`, `release`), PUT
 * /v1/session/create, PUT /v1/session/destroy/:id, PUT /v1/session/renew/:id, GET
 * /v1/session/info/:id. Blocking queries (`index`, `wait`; X-Consul-Index) on health, catalog,
 * KV and session info: an answer waits while the query's index is not above `index`, for `wait`
 * (default 5 min, at most 10 min, as documented; the documented random extra of up to wait/16 is
 * left out so tests are deterministic). Other paths: 404; other methods: 405.
 *
 * Test controls: `setCheck` (passing/warning/critical), `addRemoteInstance` (a service instance
 * registered by another node's agent), `forgetAgent` (the local agent lost its registrations, as
 * after a restart without its data), `expireSession`, `touch` (a raft write that changes no
 * result: blocked queries return with a higher index and the same body), `snapshot`/`restore`
 * (an older snapshot restored: indexes go BACKWARDS and blocked queries return at once, as
 * Consul abandons its watches on a restore), `setOutage('refuse' | 'error' | 'hang' | null)` (every
 * request's connection destroyed, answered 500, or never answered (a partition: blocked queries
 * stay blocked past their wait; the client's own timeout ends them), until lifted). Bounded: request bodies up to
 * 1 MiB (a KV value up to the documented 512 KiB), at most 1,000 blocked queries at once (more
 * are answered at once). `requests` counts requests per route.
 *
 * ACLs (option `aclTokens`; off by default, as in Consul): a request must carry one of the given
 * tokens, in `X-Consul-Token` or as `Authorization: Bearer` (api-docs/index.mdx, "Authentication",
 * commit 00c2444cfce645c516074688ecfedf6fa99ab5aa; the deprecated `?token=` too); a token the
 * double does not know is answered 403 `ACL not found`, a request without one 403 `Permission
 * denied` (the anonymous token under `default_policy = "deny"`, which has no rights). Every
 * token given has every right (the double has no ACL policies). `refusedTokens` counts the 403s.
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { join } from 'node:path';
import type { ServiceRegistration } from '../../src/consul/consul-client.js';
import { packageRoot } from '../../src/package-root.js';
import { ConsulState, type CheckState, type CheckStatus, type KvEntry, type KvPutResult, type ServiceInstance, type SessionState } from './consul-double-state.js';
import { bodyOf, checksOf, goDurationMs, parseRegistration, type Registration } from './consul-double-parse.js';

export type { CheckStatus } from './consul-double-state.js';
export type OutageMode = 'refuse' | 'error' | 'hang' | null;

const FIXTURES = join(packageRoot(), 'test', 'fixtures', 'consul-payloads');
const MAX_BODY = 1024 * 1024;
const MAX_VALUE = 512 * 1024;
const MAX_WAITERS = 1000;
const DEFAULT_WAIT_MS = 5 * 60_000;
const MAX_WAIT_MS = 10 * 60_000;

function fixture(name: string): any {
  return JSON.parse(readFileSync(join(FIXTURES, name), 'utf8'));
}

const TEMPLATES = {
  health: fixture('health-service.json')[0],
  catalog: fixture('catalog-service.json')[0],
  agentService: fixture('agent-services.json').redis,
  kv: fixture('kv-get.json')[0],
  sessionCreate: fixture('session-create.json'),
  session: fixture('session-info.json')[0],
};

export interface ConsulDoubleOptions {
  /** The local agent's node name and address. Default node-1, 127.0.0.1. */
  readonly node?: string;
  readonly nodeAddress?: string;
  /** ACLs on: the tokens the double accepts (each with every right). Default: ACLs off. */
  readonly aclTokens?: readonly string[];
}

/** An instance registered by another node's agent (one check, passing unless `status` says otherwise). */
export interface RemoteInstance extends Omit<ServiceRegistration, 'check'> {
  readonly node: string;
  readonly nodeAddress: string;
  readonly status?: CheckStatus;
}

type Answer = { status: number; body?: unknown; text?: string; index?: number };

export class ConsulDouble {
  readonly state = new ConsulState();
  readonly requests = new Map<string, number>();
  refusedTokens = 0;
  private readonly aclTokens: ReadonlySet<string> | undefined;
  private outage: OutageMode = null;
  private server: http.Server | undefined;
  private readonly sockets = new Set<Socket>();
  private readonly waiters = new Set<() => void>();
  private abandonEpoch = 0;
  readonly node: string;
  readonly nodeAddress: string;

  constructor(options: ConsulDoubleOptions = {}) {
    this.node = options.node ?? 'node-1';
    this.nodeAddress = options.nodeAddress ?? '127.0.0.1';
    this.aclTokens = options.aclTokens && new Set(options.aclTokens);
    this.state.onChange(() => {
      for (const w of [...this.waiters]) w();
    });
  }

  async start(): Promise<string> {
    const server = http.createServer((req, res) => this.handle(req, res));
    server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    this.server = server;
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return this.url;
  }

  get url(): string {
    if (!this.server) throw new Error('consul double not started');
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  // ---- test controls ----

  setOutage(mode: OutageMode): void {
    this.outage = mode;
    if (mode === 'refuse') for (const s of this.sockets) s.destroy();
    else if (mode === 'error') for (const w of [...this.waiters]) w();
  }

  setCheck(idOrService: string, status: CheckStatus, output = ''): void {
    this.state.setCheck(idOrService, status, output);
  }

  addRemoteInstance(r: RemoteInstance): void {
    const check: CheckState = { checkId: `service:${r.id}`, name: `Service '${r.name}' check`, status: r.status ?? 'passing', output: '', http: '', interval: '', deregisterCriticalServiceAfter: '' };
    this.state.register({ node: r.node, nodeAddress: r.nodeAddress, id: r.id, name: r.name, address: r.address ?? '', port: r.port, tags: r.tags ?? [], meta: r.meta ?? {}, checks: [check], local: false });
  }

  removeInstance(node: string, id: string): boolean {
    return this.state.deregister(node, id);
  }

  /** The local agent lost its registrations (restarted without its data): they leave the catalog too. */
  forgetAgent(): number {
    return this.state.forgetLocal();
  }

  expireSession(id: string): boolean {
    return this.state.invalidateSession(id);
  }

  touch(): void {
    this.state.touch();
  }

  snapshot(): ReturnType<ConsulState['snapshot']> {
    return this.state.snapshot();
  }

  restore(snap: ReturnType<ConsulState['snapshot']>): void {
    this.abandonEpoch += 1;
    this.state.restore(snap);
  }

  /** Local registrations, as the agent holds them (ID → instance). */
  localServices(): ServiceInstance[] {
    return this.state.instances.filter((x) => x.local);
  }

  blockedQueries(): number {
    return this.waiters.size;
  }

  // ---- HTTP ----

  private count(route: string): void {
    this.requests.set(route, (this.requests.get(route) ?? 0) + 1);
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://consul');
    const route = routeOf(req.method ?? 'GET', url.pathname);
    this.count(route ? `${req.method} ${route.name}` : `${req.method} ${url.pathname}`);
    if (this.outage === 'refuse') {
      req.socket.destroy();
      return;
    }
    if (this.outage === 'error') return send(res, { status: 500, text: 'rpc error making call: No cluster leader' });
    if (this.outage === 'hang') return;
    const refused = this.aclRefusal(req, url);
    if (refused !== undefined) {
      this.refusedTokens += 1;
      return send(res, { status: 403, text: refused });
    }
    if (!route) return send(res, { status: 404, text: '404 page not found' });
    if (route.method !== req.method) return send(res, { status: 405, text: `method ${req.method} not allowed` });
    bodyOf(req, MAX_BODY).then(
      (body) => this.dispatch(route, url, body, req, res),
      (e: Error) => send(res, { status: 413, text: e.message }),
    );
  }

  /** With ACLs on, why a request is refused (its 403 text), else undefined (see the header). */
  private aclRefusal(req: http.IncomingMessage, url: URL): string | undefined {
    if (this.aclTokens === undefined) return undefined;
    const header = req.headers['x-consul-token'];
    const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    const token = (typeof header === 'string' ? header : undefined) ?? bearer ?? url.searchParams.get('token') ?? undefined;
    if (token === undefined || token === '') return 'Permission denied';
    return this.aclTokens.has(token) ? undefined : 'ACL not found';
  }

  private dispatch(route: Route, url: URL, body: Buffer, req: http.IncomingMessage, res: http.ServerResponse): void {
    const q = url.searchParams;
    const arg = route.arg;
    switch (route.name) {
      case 'health.service':
        return this.blocking(q, req, res, () => this.state.serviceQueryIndex(arg), () => this.state.instancesOf(arg, q.has('passing') && q.get('passing') !== 'false').map((i) => this.healthEntry(i)));
      case 'catalog.service':
        return this.blocking(q, req, res, () => this.state.serviceQueryIndex(arg), () => this.state.instancesOf(arg, false).map((i) => this.catalogEntry(i)));
      case 'agent.services':
        return send(res, { status: 200, body: Object.fromEntries(this.localServices().map((i) => [i.id, this.agentService(i)])) });
      case 'agent.register':
        return send(res, this.registerLocal(body));
      case 'agent.deregister':
        this.state.deregister(this.node, arg);
        return send(res, { status: 200, text: '' });
      case 'kv':
        return this.kv(req.method ?? 'GET', arg, q, body, req, res);
      case 'session.create':
        return send(res, this.createSession(body));
      case 'session.destroy':
        if (!isUuid(arg)) return send(res, { status: 400, text: `Session id '${arg}' invalid` });
        this.state.invalidateSession(arg);
        return send(res, { status: 200, body: true });
      case 'session.renew': {
        const s = this.state.sessions.get(arg);
        if (!s) return send(res, { status: 404, text: `Session id '${arg}' not found` });
        s.renewals += 1;
        return send(res, { status: 200, body: [this.sessionInfo(s)] });
      }
      case 'session.info':
        return this.blocking(q, req, res, () => this.state.sessionQueryIndex(arg), () => {
          const s = this.state.sessions.get(arg);
          return s ? [this.sessionInfo(s)] : [];
        });
    }
  }

  /**
   * A blocking query: answered at once without `index` (or `index=0`), or when the query's index
   * is above it; else when it rises, on a restore (abandoned watches), on an outage, or after `wait`.
   */
  private blocking(q: URLSearchParams, req: http.IncomingMessage, res: http.ServerResponse, indexOf: () => number, read: () => unknown, notFound = false): void {
    const rawIndex = q.get('index');
    if (rawIndex !== null && !/^\d+$/.test(rawIndex)) return send(res, { status: 400, text: `Invalid index: ${rawIndex}` });
    const rawWait = q.get('wait');
    const waitMs = rawWait === null ? DEFAULT_WAIT_MS : goDurationMs(rawWait);
    if (waitMs === undefined) return send(res, { status: 400, text: `Invalid wait time: ${rawWait}` });
    const index = Number(rawIndex ?? '0');
    const answer = (): void => {
      if (this.outage === 'hang') return;
      if (this.outage === 'error') return send(res, { status: 500, text: 'rpc error making call: No cluster leader' });
      const body = read();
      const empty = notFound && Array.isArray(body) && body.length === 0;
      send(res, empty ? { status: 404, text: '', index: indexOf() } : { status: 200, body, index: indexOf() });
    };
    if (index === 0 || indexOf() > index || this.waiters.size >= MAX_WAITERS) return answer();
    const epoch = this.abandonEpoch;
    const done = (): void => {
      clearTimeout(timer);
      this.waiters.delete(check);
      req.socket.off('close', done);
    };
    const check = (): void => {
      if (this.outage === 'refuse') return done();
      if (this.outage === 'error' || indexOf() > index || epoch !== this.abandonEpoch) {
        done();
        answer();
      }
    };
    const timer = setTimeout(() => {
      done();
      answer();
    }, Math.min(waitMs, MAX_WAIT_MS));
    this.waiters.add(check);
    req.socket.once('close', done);
  }

  private kv(method: string, key: string, q: URLSearchParams, body: Buffer, req: http.IncomingMessage, res: http.ServerResponse): void {
    const recurse = q.has('recurse') && q.get('recurse') !== 'false';
    if (method === 'GET') {
      return this.blocking(q, req, res, () => this.state.kvQueryIndex(key, recurse), () => this.state.kvGet(key, recurse).map((e) => this.kvEntry(e)), true);
    }
    if (key === '' && !(method === 'DELETE' && recurse)) return send(res, { status: 400, text: 'Missing key name' });
    let result: KvPutResult;
    if (method === 'PUT') {
      if (body.length > MAX_VALUE) return send(res, { status: 413, text: `Value exceeds ${MAX_VALUE} byte limit` });
      const opt = (name: string): string | undefined => q.get(name) ?? undefined;
      result = this.state.kvPut(key, body, { cas: opt('cas'), flags: opt('flags'), acquire: opt('acquire'), release: opt('release') });
    } else {
      result = this.state.kvDelete(key, recurse, q.get('cas') ?? undefined);
    }
    send(res, typeof result === 'boolean' ? { status: 200, body: result } : { status: result.status, text: result.error });
  }

  private registerLocal(body: Buffer): Answer {
    const reg = parseRegistration(body);
    if (typeof reg === 'string') return { status: 400, text: reg };
    this.state.register(this.instanceOf(reg));
    return { status: 200, text: '' };
  }

  private instanceOf(reg: Registration): Omit<ServiceInstance, 'createIndex' | 'modifyIndex'> {
    return { node: this.node, nodeAddress: this.nodeAddress, id: reg.id, name: reg.name, address: reg.address, port: reg.port, tags: reg.tags, meta: reg.meta, checks: checksOf(reg), local: true };
  }

  private createSession(body: Buffer): Answer {
    let parsed: Record<string, unknown> = {};
    if (body.length > 0) {
      try {
        const v: unknown = JSON.parse(body.toString('utf8'));
        if (typeof v !== 'object' || v === null || Array.isArray(v)) return { status: 400, text: 'Request decode failed: not an object' };
        parsed = v as Record<string, unknown>;
      } catch (e) {
        return { status: 400, text: `Request decode failed: ${(e as Error).message}` };
      }
    }
    const ttl = parsed.TTL ?? '';
    if (typeof ttl !== 'string') return { status: 400, text: 'Request decode failed: TTL' };
    if (ttl !== '') {
      const ms = goDurationMs(ttl);
      // "between 10s and 86400s"
      if (ms === undefined || ms < 10_000 || ms > 86_400_000) return { status: 400, text: `Invalid Session TTL '${ttl}', must be between [10s=24h0m0s]` };
    }
    const behavior = parsed.Behavior ?? 'release';
    if (behavior !== 'release' && behavior !== 'delete') return { status: 400, text: `Invalid Behavior setting '${String(behavior)}'` };
    const lockDelay = parsed.LockDelay ?? '15s';
    const lockDelayMs = typeof lockDelay === 'string' ? goDurationMs(lockDelay) : typeof lockDelay === 'number' ? lockDelay / 1e6 : undefined;
    if (lockDelayMs === undefined) return { status: 400, text: 'Request decode failed: LockDelay' };
    const node = typeof parsed.Node === 'string' && parsed.Node !== '' ? parsed.Node : this.node;
    const s = this.state.createSession({ name: typeof parsed.Name === 'string' ? parsed.Name : '', node, ttl, behavior, lockDelayNs: lockDelayMs * 1e6 });
    return { status: 200, body: { ...structuredClone(TEMPLATES.sessionCreate), ID: s.id } };
  }

  // ---- documented payloads, filled in ----

  private nodeId(node: string): string {
    let h = 0;
    for (const c of node) h = (h * 31 + c.charCodeAt(0)) >>> 0;
    return `${h.toString(16).padStart(8, '0')}-0000-4000-8000-000000000000`;
  }

  private healthEntry(i: ServiceInstance): unknown {
    const e = structuredClone(TEMPLATES.health);
    Object.assign(e.Node, { ID: this.nodeId(i.node), Node: i.node, Address: i.nodeAddress, TaggedAddresses: { lan: i.nodeAddress, wan: i.nodeAddress }, Meta: {} });
    Object.assign(e.Service, { ID: i.id, Service: i.name, Tags: [...i.tags], Address: i.address, TaggedAddresses: taggedAddresses(i), Meta: { ...i.meta }, Port: i.port });
    const [serviceCheck, serf] = e.Checks;
    e.Checks = [
      ...i.checks.map((c) => ({ ...serviceCheck, Node: i.node, CheckID: c.checkId, Name: c.name, Status: c.status, Output: c.output, ServiceID: i.id, ServiceName: i.name, ServiceTags: [...i.tags] })),
      { ...serf, Node: i.node },
    ];
    return e;
  }

  private catalogEntry(i: ServiceInstance): unknown {
    const e = structuredClone(TEMPLATES.catalog);
    return Object.assign(e, {
      ID: this.nodeId(i.node),
      Node: i.node,
      Address: i.nodeAddress,
      TaggedAddresses: { lan: i.nodeAddress, wan: i.nodeAddress },
      NodeMeta: {},
      CreateIndex: i.createIndex,
      ModifyIndex: i.modifyIndex,
      ServiceAddress: i.address,
      ServiceID: i.id,
      ServiceName: i.name,
      ServicePort: i.port,
      ServiceMeta: { ...i.meta },
      ServiceTaggedAddresses: taggedAddresses(i),
      ServiceTags: [...i.tags],
    });
  }

  private agentService(i: ServiceInstance): unknown {
    return Object.assign(structuredClone(TEMPLATES.agentService), { ID: i.id, Service: i.name, Tags: [...i.tags], TaggedAddresses: taggedAddresses(i), Meta: { ...i.meta }, Port: i.port, Address: i.address });
  }

  private kvEntry(k: KvEntry): unknown {
    const e = structuredClone(TEMPLATES.kv);
    Object.assign(e, { CreateIndex: k.createIndex, ModifyIndex: k.modifyIndex, LockIndex: k.lockIndex, Key: k.key, Flags: Number(k.flags), Value: k.value.length === 0 ? null : k.value.toString('base64') });
    if (k.session === undefined) delete e.Session;
    else e.Session = k.session;
    return e;
  }

  private sessionInfo(s: SessionState): unknown {
    return Object.assign(structuredClone(TEMPLATES.session), { ID: s.id, Name: s.name, Node: s.node, LockDelay: s.lockDelayNs, Behavior: s.behavior, TTL: s.ttl, CreateIndex: s.createIndex, ModifyIndex: s.createIndex });
  }
}

function taggedAddresses(i: ServiceInstance): unknown {
  const address = i.address === '' ? i.nodeAddress : i.address;
  return { lan: { address, port: i.port }, wan: { address, port: i.port } };
}

function isUuid(s: string): boolean {
  return /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(s);
}

function send(res: http.ServerResponse, a: Answer): void {
  if (res.headersSent || res.destroyed) return;
  const headers: Record<string, string> = { 'content-type': a.body !== undefined ? 'application/json' : 'text/plain; charset=utf-8' };
  if (a.index !== undefined) {
    // features/consistency: every read answers with these.
    Object.assign(headers, { 'x-consul-index': String(a.index), 'x-consul-knownleader': 'true', 'x-consul-lastcontact': '0' });
  }
  const text = a.body !== undefined ? JSON.stringify(a.body) : (a.text ?? '');
  res.writeHead(a.status, { ...headers, 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

interface Route {
  readonly name: string;
  readonly method: string;
  readonly arg: string;
}

const ROUTES: readonly (readonly [string, string, RegExp])[] = [
  ['health.service', 'GET', /^\/v1\/health\/service\/([^/]+)$/],
  ['catalog.service', 'GET', /^\/v1\/catalog\/service\/([^/]+)$/],
  ['agent.services', 'GET', /^\/v1\/agent\/services()$/],
  ['agent.register', 'PUT', /^\/v1\/agent\/service\/register()$/],
  ['agent.deregister', 'PUT', /^\/v1\/agent\/service\/deregister\/([^/]+)$/],
  ['session.create', 'PUT', /^\/v1\/session\/create()$/],
  ['session.destroy', 'PUT', /^\/v1\/session\/destroy\/([^/]+)$/],
  ['session.renew', 'PUT', /^\/v1\/session\/renew\/([^/]+)$/],
  ['session.info', 'GET', /^\/v1\/session\/info\/([^/]+)$/],
];

function routeOf(method: string, path: string): Route | undefined {
  if (path === '/v1/kv' || path.startsWith('/v1/kv/')) {
    const raw = path.slice('/v1/kv/'.length);
    return { name: 'kv', method: ['GET', 'PUT', 'DELETE'].includes(method) ? method : 'GET', arg: safeDecode(raw) };
  }
  for (const [name, m, re] of ROUTES) {
    const match = re.exec(path);
    if (match) return { name, method: m, arg: safeDecode(match[1] ?? '') };
  }
  return undefined;
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
