/**
 * Consul answers → typed values (pure; no I/O). Everything Consul sends is untrusted: each parser
 * checks types and bounds, skips a malformed entry with a reason (the caller logs it, previewed
 * through src/json/json-preview.ts) and refuses an answer whose top level has the wrong shape.
 * Strings are kept exactly as sent (never trimmed); the documented shapes are those of
 * hashicorp/consul website/content/api-docs (health.mdx, catalog.mdx, agent/service.mdx, kv.mdx,
 * session.mdx; test/fixtures/consul-payloads/SOURCES.md).
 */
import { previewJson } from '../json/json-preview.js';
import { parseAddress } from '../net/address.js';

type JsonRecord = Record<string, unknown>;

// Type guards only (same contract as src/marathon/json-guards.ts, which this layer may not import).
const isRecord = (v: unknown): v is JsonRecord => typeof v === 'object' && v !== null && !Array.isArray(v);
const isNonEmptyString = (v: unknown): v is string => typeof v === 'string' && v.length > 0;
const isPort = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 65535;

/** A string → string map (Meta); undefined/null is empty; null when of the wrong type. */
function readStringMap(v: unknown): Record<string, string> | null {
  if (v === undefined || v === null) return {};
  if (!isRecord(v) || !Object.values(v).every((x) => typeof x === 'string')) return null;
  return { ...(v as Record<string, string>) };
}

export interface ConsulServiceInstance {
  /** The Consul node the instance is registered on. */
  readonly node: string;
  /** Service ID, unique per agent. */
  readonly id: string;
  readonly name: string;
  /** Service.Address, or the node's address when it is empty (as the docs say to do). */
  readonly address: string;
  readonly port: number;
  readonly tags: readonly string[];
  readonly meta: Readonly<Record<string, string>>;
}

export interface ConsulKvEntry {
  readonly key: string;
  readonly value: Buffer;
  readonly flags: number;
  /** The session holding the key's lock, if any. */
  readonly session: string | undefined;
  readonly lockIndex: number;
  readonly createIndex: number;
  readonly modifyIndex: number;
}

export interface ConsulSession {
  readonly id: string;
  readonly name: string;
  readonly node: string;
  readonly ttl: string;
  readonly behavior: 'release' | 'delete';
}

export interface Skipped {
  readonly reason: string;
  readonly entry: unknown;
}

/** At most `max` skipped entries for a log line: each reason with a short preview of the entry. */
export function describeSkipped(skipped: readonly Skipped[], max = 5): string[] {
  // A health entry is Node + Service + Checks: the node's name and the service say which one.
  const which = (e: unknown): unknown => (isRecord(e) && isRecord(e.Service) ? { Node: isRecord(e.Node) ? e.Node.Node : undefined, Service: e.Service } : e);
  return skipped.slice(0, max).map((s) => `${s.reason}: ${previewJson(which(s.entry), 200)}`);
}

export type Parsed<T> = { readonly ok: true; readonly value: T; readonly skipped: readonly Skipped[] } | { readonly ok: false; readonly error: string };

/** Longest accepted address (a DNS name is at most 253 characters) and id/name. */
const MAX_TEXT = 512;
const SAFE_TEXT = /^[^\s\u0000-\u001f\u007f]+$/u;

export interface PayloadLimits {
  /** Most entries accepted in one answer. Default 100,000. */
  readonly maxEntries?: number;
}

const DEFAULT_MAX_ENTRIES = 100_000;

function boundedText(v: unknown): v is string {
  return isNonEmptyString(v) && v.length <= MAX_TEXT && SAFE_TEXT.test(v);
}

function isIndex(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

function readTags(v: unknown): string[] | null {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || !v.every((t) => typeof t === 'string')) return null;
  return [...(v as string[])];
}

function list<T>(body: unknown, what: string, limits: PayloadLimits, one: (e: unknown) => T | string): Parsed<T[]> {
  if (!Array.isArray(body)) return { ok: false, error: `${what}: expected a JSON list` };
  const max = limits.maxEntries ?? DEFAULT_MAX_ENTRIES;
  if (body.length > max) return { ok: false, error: `${what}: ${body.length} entries, more than the limit of ${max}` };
  const value: T[] = [];
  const skipped: Skipped[] = [];
  for (const e of body) {
    const r = one(e);
    if (typeof r === 'string') skipped.push({ reason: r, entry: e });
    else value.push(r);
  }
  return { ok: true, value, skipped };
}

/** A DNS host name (RFC 1123 labels, at most 253 characters, an optional final dot). */
const HOST_NAME = /^(?=.{1,254}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;
/** Names grpc-js reads as a resolver scheme in `NAME:PORT` (`unix:7443` is the socket path "7443"). */
const SCHEME_NAMES = new Set(['dns', 'ipv4', 'ipv6', 'unix']);

/**
 * Whether `address` can be dialled as `address:port`: an IP address or a DNS host name, not a
 * name grpc-js takes for a scheme. Anything Consul lists is untrusted (any token with
 * service:write can register an instance).
 */
export function dialableAddress(address: string): boolean {
  if (parseAddress(address).ok) return true;
  return HOST_NAME.test(address) && !SCHEME_NAMES.has(address.toLowerCase());
}

/** An instance to dial (health, catalog): its address must be dialable; a string says why it is skipped. */
function dialable(i: ConsulServiceInstance | string): ConsulServiceInstance | string {
  return typeof i === 'string' || dialableAddress(i.address) ? i : `no usable address: ${JSON.stringify(i.address)} is neither an IP address nor a host name`;
}

/** One instance from its parts; a string says why it is skipped. */
function instance(node: unknown, nodeAddress: unknown, id: unknown, name: unknown, address: unknown, port: unknown, tags: unknown, meta: unknown): ConsulServiceInstance | string {
  if (!boundedText(node)) return 'node name missing or not a short printable string';
  if (!boundedText(id)) return 'service ID missing or not a short printable string';
  if (!boundedText(name)) return 'service name missing or not a short printable string';
  const addr = address === '' || address === undefined || address === null ? nodeAddress : address;
  if (!boundedText(addr)) return 'no usable address (service and node address empty or not printable)';
  if (!isPort(port)) return `port ${String(port)} is not 1..65535`;
  const t = readTags(tags);
  if (t === null) return 'Tags is not a list of strings';
  const m = readStringMap(meta);
  if (m === null) return 'Meta is not a map of strings';
  return { node, id, name, address: addr, port, tags: t, meta: m };
}

/** GET /v1/health/service/:service → its instances. */
export function parseHealthService(body: unknown, limits: PayloadLimits = {}): Parsed<ConsulServiceInstance[]> {
  return list(body, 'health/service', limits, (e) => {
    if (!isRecord(e) || !isRecord(e.Node) || !isRecord(e.Service)) return 'entry without Node and Service objects';
    const n = e.Node;
    const s = e.Service;
    return dialable(instance(n.Node, n.Address, s.ID, s.Service, s.Address, s.Port, s.Tags, s.Meta));
  });
}

/** GET /v1/catalog/service/:service → its instances (health not considered). */
export function parseCatalogService(body: unknown, limits: PayloadLimits = {}): Parsed<ConsulServiceInstance[]> {
  return list(body, 'catalog/service', limits, (e) => {
    if (!isRecord(e)) return 'entry is not an object';
    return dialable(instance(e.Node, e.Address, e.ServiceID, e.ServiceName, e.ServiceAddress, e.ServicePort, e.ServiceTags, e.ServiceMeta));
  });
}

/** GET /v1/agent/services (ID → service) → the local agent's services; node is the given one. */
export function parseAgentServices(body: unknown, node: string, limits: PayloadLimits = {}): Parsed<ConsulServiceInstance[]> {
  if (!isRecord(body)) return { ok: false, error: 'agent/services: expected a JSON object' };
  return list(Object.values(body), 'agent/services', limits, (e) => {
    if (!isRecord(e)) return 'service is not an object';
    return instance(node, '-', e.ID, e.Service, e.Address === '' ? '-' : e.Address, e.Port, e.Tags, e.Meta);
  });
}

/**
 * KV entries as the `consul` library hands them back with `buffer: true` (Value decoded from
 * base64 to a Buffer; null for an empty value); `undefined` (404) is no entry.
 */
export function parseKvEntries(body: unknown, limits: PayloadLimits = {}): Parsed<ConsulKvEntry[]> {
  if (body === undefined || body === null) return { ok: true, value: [], skipped: [] };
  return list(Array.isArray(body) ? body : [body], 'kv', limits, (e) => {
    if (!isRecord(e)) return 'entry is not an object';
    if (!isNonEmptyString(e.Key)) return 'Key missing';
    const value = e.Value === null || e.Value === undefined ? Buffer.alloc(0) : Buffer.isBuffer(e.Value) ? e.Value : null;
    if (value === null) return 'Value is not base64 data';
    if (!isIndex(e.CreateIndex) || !isIndex(e.ModifyIndex) || !isIndex(e.LockIndex ?? 0)) return 'CreateIndex, ModifyIndex or LockIndex is not a whole number';
    const flags = e.Flags ?? 0;
    if (!isIndex(flags)) return 'Flags is not a whole number';
    const session = e.Session === undefined || e.Session === '' ? undefined : e.Session;
    if (session !== undefined && !boundedText(session)) return 'Session is not a short printable string';
    return { key: e.Key, value, flags, session, lockIndex: (e.LockIndex as number | undefined) ?? 0, createIndex: e.CreateIndex, modifyIndex: e.ModifyIndex };
  });
}

/** GET /v1/session/info/:id (and renew) → the session, or undefined when the list is empty. */
export function parseSessionInfo(body: unknown): Parsed<ConsulSession | undefined> {
  const r = list(body, 'session', {}, (e) => {
    if (!isRecord(e) || !boundedText(e.ID)) return 'session without an ID';
    const behavior = e.Behavior ?? 'release';
    if (behavior !== 'release' && behavior !== 'delete') return `Behavior ${String(behavior)} is not release or delete`;
    return { id: e.ID, name: typeof e.Name === 'string' ? e.Name : '', node: typeof e.Node === 'string' ? e.Node : '', ttl: typeof e.TTL === 'string' ? e.TTL : '', behavior } satisfies ConsulSession;
  });
  if (!r.ok) return r;
  if (r.skipped.length > 0) return { ok: false, error: `session: ${r.skipped[0]!.reason}` };
  return { ok: true, value: r.value[0], skipped: [] };
}

/** PUT /v1/session/create → the new session's ID. */
export function parseSessionCreate(body: unknown): Parsed<string> {
  if (!isRecord(body) || !boundedText(body.ID)) return { ok: false, error: 'session/create: answer without an ID' };
  return { ok: true, value: body.ID, skipped: [] };
}

/** The answer of a KV PUT/DELETE or a session destroy: the documented literal true or false. */
export function parseBooleanAnswer(body: unknown, what: string): Parsed<boolean> {
  if (typeof body !== 'boolean') return { ok: false, error: `${what}: expected true or false` };
  return { ok: true, value: body, skipped: [] };
}

/** X-Consul-Index → a whole number, or undefined when absent or not one. */
export function parseIndex(header: string | undefined): number | undefined {
  if (header === undefined || !/^\d{1,16}$/.test(header)) return undefined;
  const n = Number(header);
  return Number.isSafeInteger(n) ? n : undefined;
}
