/**
 * A `/flows` answer (flows-spec section 5: `{ flows: ObservedFlow[], lost: [...], now }`) read
 * from untrusted text: a saved file (`suggest --flows FILE`, `plan --flows FILE`) or a
 * controller's answer, which the CLI treats no better than a file.
 *
 * Contract: the text is parsed through src/json/bounded-json.ts (size and depth checked before
 * anything walks it); the document must be an object with a `flows` array; every record is
 * checked field by field (enums, port range, counts as non-negative integers up to 2^53, times
 * that parse, strings bounded in length) and a bad one is SKIPPED with one message naming its
 * index and what is wrong (at most MAX_PROBLEMS messages, then a count), never thrown, never
 * half-read. What is kept is exactly the ObservedFlow shape: unknown fields are dropped, so the
 * records can be passed on (printed as JSON) without carrying anything the schema does not name.
 * Strings stay untrusted data: callers escape them for a terminal (`printable`) or a YAML comment.
 */
import { parseBoundedJson } from '../json/bounded-json.js';
import { previewJson } from '../json/json-preview.js';
import type { FlowEndpointApp, ObservedFlow } from './observed-flow.js';

/** Lost (unrecordable) connections of one reporter, as /flows lists them. */
export interface FlowLostRow {
  readonly reportedBy: string;
  readonly direction: 'ingress' | 'egress';
  readonly verdict: 'allowed' | 'denied' | 'audit';
  readonly family: 4 | 6;
  readonly packets: number;
}

/** A controller replica of a merged /flows answer, and whether it answered (flow-peers.ts). */
export interface FlowsReplicaRow {
  readonly name: string;
  readonly ok: boolean;
  readonly error?: string;
}

export interface FlowsAnswer {
  readonly flows: readonly ObservedFlow[];
  readonly lost: readonly FlowLostRow[];
  /** Present when the controller merged its peer replicas' records. */
  readonly replicas?: readonly FlowsReplicaRow[];
  /** The answer's `now` (ISO 8601); the time the answer was made. */
  readonly now: string;
}

export type FlowsAnswerRead =
  | { readonly ok: true; readonly answer: FlowsAnswer; readonly problems: readonly string[] }
  | { readonly ok: false; readonly error: string };

/** Largest answer read: 100,000 flows (the /flows `limit` maximum) of a few KiB each. */
export const FLOWS_ANSWER_MAX_BYTES = 512 * 1024 * 1024;
const MAX_PROBLEMS = 20;
/** Longest string field kept (app ids, host ids, reasons): longer is a bad record. */
const MAX_TEXT = 4096;
const MAX_LIST = 10_000;

const DIRECTIONS = ['ingress', 'egress'] as const;
const VERDICTS = ['allowed', 'denied', 'audit'] as const;
const KINDS = ['app', 'host', 'network', 'outside'] as const;
const PROTOCOLS = ['tcp', 'udp'] as const;

class Bad extends Error {}

type Obj = Record<string, unknown>;

function obj(v: unknown, what: string): Obj {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Bad(`${what} is not an object`);
  return v as Obj;
}

function str(v: unknown, what: string): string {
  if (typeof v !== 'string') throw new Bad(`${what} is not a string`);
  if (v.length > MAX_TEXT) throw new Bad(`${what} is longer than ${MAX_TEXT} characters`);
  return v;
}

function text(o: Obj, key: string, what: string): string {
  return str(o[key], `${what}.${key}`);
}

function optionalText(o: Obj, key: string, what: string): string | undefined {
  return o[key] === undefined ? undefined : text(o, key, what);
}

function oneOf<T extends string>(o: Obj, key: string, allowed: readonly T[], what: string): T {
  const v = o[key];
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) throw new Bad(`${what}.${key} must be one of ${allowed.join(', ')}, got ${previewJson(v, 40)}`);
  return v as T;
}

function count(o: Obj, key: string, what: string): number {
  const v = o[key];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new Bad(`${what}.${key} must be an integer from 0 to 2^53, got ${previewJson(v, 40)}`);
  return v;
}

function time(o: Obj, key: string, what: string): string {
  const v = text(o, key, what);
  if (!Number.isFinite(Date.parse(v))) throw new Bad(`${what}.${key} is not an ISO 8601 time: ${previewJson(v, 40)}`);
  return v;
}

function texts(o: Obj, key: string, what: string): string[] {
  const v = o[key];
  if (!Array.isArray(v) || v.length > MAX_LIST) throw new Bad(`${what}.${key} is not a list (of at most ${MAX_LIST})`);
  return v.map((item, i) => str(item, `${what}.${key}[${i}]`));
}

function endpointApp(v: unknown, what: string): FlowEndpointApp {
  const o = obj(v, what);
  return { appId: text(o, 'appId', what), taskIds: texts(o, 'taskIds', what) };
}

/** One record as the schema names it, or Bad. */
function flowOf(v: unknown, what: string): ObservedFlow {
  const o = obj(v, what);
  const s = obj(o['source'], `${what}.source`);
  const d = obj(o['destination'], `${what}.destination`);
  const by = obj(o['decidedBy'], `${what}.decidedBy`);
  const port = d['port'];
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) throw new Bad(`${what}.destination.port must be a port from 1 to 65535, got ${previewJson(port, 40)}`);
  const apps = d['apps'];
  if (!Array.isArray(apps) || apps.length > MAX_LIST) throw new Bad(`${what}.destination.apps is not a list`);
  const hostId = optionalText(s, 'hostId', `${what}.source`);
  const portName = optionalText(d, 'portName', `${what}.destination`);
  const rule = optionalText(by, 'rule', `${what}.decidedBy`);
  const at = optionalText(by, 'at', `${what}.decidedBy`);
  return {
    key: text(o, 'key', what),
    direction: oneOf(o, 'direction', DIRECTIONS, what),
    verdict: oneOf(o, 'verdict', VERDICTS, what),
    reportedBy: text(o, 'reportedBy', what),
    source: {
      address: text(s, 'address', `${what}.source`),
      kind: oneOf(s, 'kind', KINDS, `${what}.source`),
      ...(hostId !== undefined ? { hostId } : {}),
      apps: texts(s, 'apps', `${what}.source`),
      networks: texts(s, 'networks', `${what}.source`),
    },
    destination: {
      hostId: text(d, 'hostId', `${what}.destination`),
      address: text(d, 'address', `${what}.destination`),
      protocol: oneOf(d, 'protocol', PROTOCOLS, `${what}.destination`),
      port,
      apps: apps.map((a, i) => endpointApp(a, `${what}.destination.apps[${i}]`)),
      ...(portName !== undefined ? { portName } : {}),
    },
    decidedBy: { tier: text(by, 'tier', `${what}.decidedBy`), ...(rule !== undefined ? { rule } : {}), ...(at !== undefined ? { at } : {}), reason: text(by, 'reason', `${what}.decidedBy`) },
    packets: count(o, 'packets', what),
    bytes: count(o, 'bytes', what),
    firstSeen: time(o, 'firstSeen', what),
    lastSeen: time(o, 'lastSeen', what),
  };
}

function lostOf(v: unknown, what: string): FlowLostRow {
  const o = obj(v, what);
  const family = o['family'];
  if (family !== 4 && family !== 6) throw new Bad(`${what}.family must be 4 or 6`);
  return { reportedBy: text(o, 'reportedBy', what), direction: oneOf(o, 'direction', DIRECTIONS, what), verdict: oneOf(o, 'verdict', VERDICTS, what), family, packets: count(o, 'packets', what) };
}

function replicaOf(v: unknown, what: string): FlowsReplicaRow {
  const o = obj(v, what);
  if (typeof o['ok'] !== 'boolean') throw new Bad(`${what}.ok is not true or false`);
  const error = optionalText(o, 'error', what);
  return { name: text(o, 'name', what), ok: o['ok'], ...(error !== undefined ? { error } : {}) };
}

/** Every item of `list` read by `read`; a bad one is skipped with a message in `problems`. */
function readList<T>(list: readonly unknown[], name: string, read: (v: unknown, what: string) => T, problems: string[], skipped: { n: number }): T[] {
  const out: T[] = [];
  list.forEach((item, i) => {
    try {
      out.push(read(item, `${name}[${i}]`));
    } catch (err) {
      if (!(err instanceof Bad)) throw err;
      skipped.n++;
      if (problems.length < MAX_PROBLEMS) problems.push(`${err.message}: record skipped`);
    }
  });
  return out;
}

/** The records of a /flows answer already parsed from JSON (an SSE event's `data` has `flows` only). */
export function readFlowsDocument(value: unknown, options: { requireNow?: boolean } = {}): FlowsAnswerRead {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return { ok: false, error: 'not a /flows answer: not a JSON object' };
  const doc = value as Obj;
  if (!Array.isArray(doc['flows'])) return { ok: false, error: 'not a /flows answer: no "flows" list' };
  const now = doc['now'];
  if (options.requireNow !== false && (typeof now !== 'string' || !Number.isFinite(Date.parse(now)))) return { ok: false, error: 'not a /flows answer: "now" is not an ISO 8601 time' };
  const problems: string[] = [];
  const skipped = { n: 0 };
  const flows = readList(doc['flows'], 'flows', flowOf, problems, skipped);
  const lost = Array.isArray(doc['lost']) ? readList(doc['lost'], 'lost', lostOf, problems, skipped) : [];
  const replicas = Array.isArray(doc['replicas']) ? readList(doc['replicas'], 'replicas', replicaOf, problems, skipped) : undefined;
  if (skipped.n > problems.length) problems.push(`... ${skipped.n - problems.length} more bad records skipped`);
  return { ok: true, answer: { flows, lost, ...(replicas ? { replicas } : {}), now: typeof now === 'string' ? now : new Date(0).toISOString() }, problems };
}

/** A /flows answer from JSON text (bounded before parsing). */
export function readFlowsAnswer(textValue: string, maxBytes = FLOWS_ANSWER_MAX_BYTES): FlowsAnswerRead {
  const parsed = parseBoundedJson(textValue, { maxBytes });
  if (!parsed.ok) return { ok: false, error: parsed.error };
  return readFlowsDocument(parsed.value);
}
