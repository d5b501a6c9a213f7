/**
 * The Consul operations Portcullis uses (issue 12), typed, over the `consul` npm client set up
 * by consul-http.ts (bounded reads) and checked by consul-payloads.ts (untrusted answers):
 *
 *  - health/catalog reads of a service, one call each, with optional blocking (`index`, `wait`);
 *    following them over time is blocking-follow.ts;
 *  - agent service register (with an HTTP check) and deregister, and the agent's service list
 *    (to see that the local agent forgot a registration);
 *  - KV get / list a prefix (optionally blocking), put with `cas`/`flags`/`acquire`/`release`,
 *    delete (optionally with `cas`); put and delete answer Consul's documented true/false;
 *  - sessions: create (Name, TTL, Behavior, LockDelay), renew, destroy, info.
 *
 * Each call is bounded by `timeoutMs` (a blocking read: its wait + wait/16 + `timeoutMs`) and
 * can be cancelled with an AbortSignal; any failure is a ConsulCallError naming the call. A
 * malformed entry in a list is skipped and reported in `skipped` (the caller logs it), never
 * thrown; an answer of the wrong shape is an error.
 */
import type Consul from 'consul';
import { boundedConsul, consulCall, ConsulCallError, type ConsulAnswer, type ConsulHttpOptions } from './consul-http.js';
import {
  parseAgentServices,
  parseBooleanAnswer,
  parseCatalogService,
  parseHealthService,
  parseIndex,
  parseKvEntries,
  parseSessionCreate,
  parseSessionInfo,
  type ConsulKvEntry,
  type ConsulServiceInstance,
  type ConsulSession,
  type Parsed,
  type PayloadLimits,
  type Skipped,
} from './consul-payloads.js';

export { ConsulCallError } from './consul-http.js';

export interface ConsulClientOptions extends ConsulHttpOptions, PayloadLimits {
  /** Bound of each non-blocking call, and margin added to a blocking one. Default 10 s. */
  readonly timeoutMs?: number;
}

/** A blocking read: wait for a change after `index` (0 or absent: answer at once), at most `waitMs`. */
export interface BlockingOptions {
  readonly index?: number;
  /** Default 60 s; Consul caps it at 10 min. */
  readonly waitMs?: number;
  readonly signal?: AbortSignal;
}

/** One read and the X-Consul-Index it came with (undefined when the header was missing or malformed). */
export interface IndexedResult<T> {
  readonly index: number | undefined;
  readonly value: T;
  readonly skipped: readonly Skipped[];
}

export interface ServiceRegistration {
  readonly id: string;
  readonly name: string;
  readonly address?: string;
  readonly port: number;
  readonly tags?: readonly string[];
  readonly meta?: Readonly<Record<string, string>>;
  /** An HTTP check Consul runs against the service (e.g. its /readyz). */
  readonly check?: {
    readonly http: string;
    /** Go duration, e.g. "5s". */
    readonly interval: string;
    readonly timeout?: string;
    /** Consul removes the service after its check was critical this long, e.g. "1m". */
    readonly deregisterCriticalServiceAfter?: string;
  };
}

export interface KvPutOptions {
  /** Check-and-set: 0 writes only if the key does not exist, else only if ModifyIndex matches. */
  readonly cas?: number;
  readonly flags?: number;
  /** Take the key's lock for this session (false when another session holds it). */
  readonly acquire?: string;
  /** Give the key's lock up (false when this session does not hold it). */
  readonly release?: string;
  readonly signal?: AbortSignal;
}

export interface SessionOptions {
  readonly name: string;
  /** Go duration between 10s and 24h; the session dies when not renewed in time. */
  readonly ttl: string;
  /** What happens to held keys when the session is invalidated. Default release. */
  readonly behavior?: 'release' | 'delete';
  /** Go duration during which a lock cannot be taken again after its session died. Default 15s. */
  readonly lockDelay?: string;
}

const DEFAULT_TIMEOUT_MS = 10_000;
const DEFAULT_WAIT_MS = 60_000;
const MAX_WAIT_MS = 10 * 60_000;

function unwrap<T>(what: string, p: Parsed<T>, status: number): { value: T; skipped: readonly Skipped[] } {
  if (!p.ok) throw new ConsulCallError(`${what}: ${p.error}`, status);
  return { value: p.value, skipped: p.skipped };
}

export class ConsulClient {
  private readonly consul: Consul;
  private readonly timeoutMs: number;

  constructor(private readonly options: ConsulClientOptions) {
    this.consul = boundedConsul(options);
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  get url(): string {
    return this.options.url;
  }

  /** Closes the kept-alive connections. */
  close(): void {
    this.consul.destroy();
  }

  private call<T>(what: string, fn: (o: Record<string, unknown>) => Promise<unknown>, opts: Record<string, unknown> = {}, signal?: AbortSignal): Promise<ConsulAnswer<T>> {
    return consulCall<T>(what, this.timeoutMs, signal, fn, opts);
  }

  private blockingCall<T>(what: string, b: BlockingOptions, fn: (o: Record<string, unknown>) => Promise<unknown>, opts: Record<string, unknown>): Promise<ConsulAnswer<T>> {
    const waitMs = Math.min(Math.max(Math.round(b.waitMs ?? DEFAULT_WAIT_MS), 1), MAX_WAIT_MS);
    const blocking = b.index !== undefined && b.index > 0 ? { index: String(b.index), wait: `${waitMs}ms` } : {};
    const timeout = blocking.index !== undefined ? waitMs + Math.ceil(waitMs / 16) + this.timeoutMs : this.timeoutMs;
    return consulCall<T>(what, timeout, b.signal, fn, { ...opts, ...blocking });
  }

  /** Instances of `service` from the health API; `passing` keeps only those with every check passing. */
  async healthService(service: string, passing: boolean, b: BlockingOptions = {}): Promise<IndexedResult<ConsulServiceInstance[]>> {
    const what = `Consul ${this.url}: health/service/${service}`;
    const a = await this.blockingCall<unknown>(what, b, (o) => this.consul.health.service(o as never), { service, passing });
    return { index: parseIndex(a.index), ...unwrap(what, parseHealthService(a.body, this.options), a.status) };
  }

  /** Instances of `service` from the catalog (whatever their health). */
  async catalogService(service: string, b: BlockingOptions = {}): Promise<IndexedResult<ConsulServiceInstance[]>> {
    const what = `Consul ${this.url}: catalog/service/${service}`;
    const a = await this.blockingCall<unknown>(what, b, (o) => this.consul.catalog.service.nodes(o as never), { service });
    return { index: parseIndex(a.index), ...unwrap(what, parseCatalogService(a.body, this.options), a.status) };
  }

  /** Registers (or re-registers: same ID replaces) a service on the local agent. */
  async register(r: ServiceRegistration, signal?: AbortSignal): Promise<void> {
    const opts: Record<string, unknown> = { id: r.id, name: r.name, port: r.port };
    if (r.address !== undefined) opts.address = r.address;
    if (r.tags !== undefined) opts.tags = [...r.tags];
    if (r.meta !== undefined) opts.meta = { ...r.meta };
    if (r.check !== undefined) {
      const check: Record<string, unknown> = { http: r.check.http, interval: r.check.interval };
      if (r.check.timeout !== undefined) check.timeout = r.check.timeout;
      if (r.check.deregisterCriticalServiceAfter !== undefined) check.deregistercriticalserviceafter = r.check.deregisterCriticalServiceAfter;
      opts.check = check;
    }
    await this.call(`Consul ${this.url}: agent/service/register ${r.id}`, (o) => this.consul.agent.service.register(o as never), opts, signal);
  }

  /** Removes a service (and its checks) from the local agent; an unknown ID is no error. */
  async deregister(id: string, signal?: AbortSignal): Promise<void> {
    await this.call(`Consul ${this.url}: agent/service/deregister ${id}`, (o) => this.consul.agent.service.deregister(o as never), { id }, signal);
  }

  /** The services registered on the local agent (node given as '-': the agent does not say). */
  async agentServices(signal?: AbortSignal): Promise<ConsulServiceInstance[]> {
    const what = `Consul ${this.url}: agent/services`;
    const a = await this.call<unknown>(what, (o) => this.consul.agent.service.list(o as never), {}, signal);
    return unwrap(what, parseAgentServices(a.body, '-', this.options), a.status).value;
  }

  /** One key; value undefined when it does not exist. */
  async kvGet(key: string, b: BlockingOptions = {}): Promise<IndexedResult<ConsulKvEntry | undefined>> {
    const r = await this.kvRead(key, false, b);
    return { ...r, value: r.value.find((e) => e.key === key) };
  }

  /** Every key under `prefix`, sorted by key as Consul sends them. */
  kvList(prefix: string, b: BlockingOptions = {}): Promise<IndexedResult<ConsulKvEntry[]>> {
    return this.kvRead(prefix, true, b);
  }

  private async kvRead(key: string, recurse: boolean, b: BlockingOptions): Promise<IndexedResult<ConsulKvEntry[]>> {
    const what = `Consul ${this.url}: kv ${recurse ? 'list ' : 'get '}${key}`;
    const a = await this.blockingCall<unknown>(what, b, (o) => this.consul.kv.get(o as never), { key, recurse, buffer: true });
    return { index: parseIndex(a.index), ...unwrap(what, parseKvEntries(a.body, this.options), a.status) };
  }

  /** Writes a key; false when a `cas`, `acquire` or `release` condition did not hold. */
  async kvPut(key: string, value: string | Buffer, o: KvPutOptions = {}): Promise<boolean> {
    const what = `Consul ${this.url}: kv put ${key}`;
    const opts: Record<string, unknown> = { key, value: Buffer.isBuffer(value) ? value : Buffer.from(value, 'utf8') };
    if (o.cas !== undefined) opts.cas = String(o.cas);
    if (o.flags !== undefined) opts.flags = String(o.flags);
    if (o.acquire !== undefined) opts.acquire = o.acquire;
    if (o.release !== undefined) opts.release = o.release;
    const a = await this.call<unknown>(what, (x) => this.consul.kv.set(x as never), opts, o.signal);
    return unwrap(what, parseBooleanAnswer(a.body, what), a.status).value;
  }

  /** Deletes a key (or every key under it with `recurse`); false when `cas` did not match. */
  async kvDelete(key: string, o: { readonly recurse?: boolean; readonly cas?: number; readonly signal?: AbortSignal } = {}): Promise<boolean> {
    const what = `Consul ${this.url}: kv delete ${key}`;
    const opts: Record<string, unknown> = { key, recurse: o.recurse === true };
    if (o.cas !== undefined) opts.cas = String(o.cas);
    const a = await this.call<unknown>(what, (x) => this.consul.kv.del(x as never), opts, o.signal);
    return unwrap(what, parseBooleanAnswer(a.body, what), a.status).value;
  }

  /** Creates a session on the local agent's node; its ID. */
  async sessionCreate(s: SessionOptions, signal?: AbortSignal): Promise<string> {
    const what = `Consul ${this.url}: session/create ${s.name}`;
    const opts: Record<string, unknown> = { name: s.name, ttl: s.ttl, behavior: s.behavior ?? 'release' };
    if (s.lockDelay !== undefined) opts.lockdelay = s.lockDelay;
    const a = await this.call<unknown>(what, (o) => this.consul.session.create(o as never), opts, signal);
    return unwrap(what, parseSessionCreate(a.body), a.status).value;
  }

  /** Renews a session's TTL; false when Consul no longer knows it (expired or destroyed: make a new one). */
  async sessionRenew(id: string, signal?: AbortSignal): Promise<boolean> {
    const what = `Consul ${this.url}: session/renew ${id}`;
    try {
      const a = await this.call<unknown>(what, (o) => this.consul.session.renew(o as never), { id }, signal);
      return unwrap(what, parseSessionInfo(a.body), a.status).value !== undefined;
    } catch (e) {
      if (e instanceof ConsulCallError && e.status === 404) return false;
      throw e;
    }
  }

  /** Destroys a session: the locks it holds are released (or their keys deleted, per its Behavior). */
  async sessionDestroy(id: string, signal?: AbortSignal): Promise<void> {
    await this.call(`Consul ${this.url}: session/destroy ${id}`, (o) => this.consul.session.destroy(o as never), { id }, signal);
  }

  /** A session, or undefined when it does not exist (any more). */
  async sessionInfo(id: string, b: BlockingOptions = {}): Promise<IndexedResult<ConsulSession | undefined>> {
    const what = `Consul ${this.url}: session/info ${id}`;
    const a = await this.blockingCall<unknown>(what, b, (o) => this.consul.session.info(o as never), { id });
    return { index: parseIndex(a.index), ...unwrap(what, parseSessionInfo(a.body === undefined ? [] : [a.body]), a.status) };
  }
}
