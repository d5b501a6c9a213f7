/**
 * The filters of `GET /flows` and `/flows/events` (flows design section 5): parsed from the
 * request's query string into a FlowQuery, and a matcher of resolutions built from it.
 *
 *   from     a source app id (exact, or a glob with `*`), a network name, an address or a host id
 *   to       a destination app id (same globs) or a host id
 *   port     a port name or a host port number
 *   verdict  allowed | denied | audit, a comma list, repeatable
 *   direction ingress | egress
 *   since / until  ISO 8601, or a duration back from now (`30s`, `10m`, `1h`, `2d`)
 *   limit    default 1000, at most 100000
 * A bad parameter is an error whose message repeats at most 100 characters of what was sent.
 * Globs are matched in O(text × pattern) without regular expressions (no backtracking blow-up).
 */
import { FLOW_VERDICTS, type FlowDirection, type FlowVerdict } from './flow-types.js';
import type { FlowResolution } from './resolve-flow.js';

export interface FlowQuery {
  readonly from?: string;
  readonly to?: string;
  readonly port?: string;
  readonly verdicts?: readonly FlowVerdict[];
  readonly direction?: FlowDirection;
  readonly sinceMs?: number;
  readonly untilMs?: number;
  readonly limit: number;
  /** Only these flow keys (a replica's second question, flow-peers.ts; not a /flows parameter). */
  readonly keys?: ReadonlySet<string>;
}

/** A flow key as /flows gives it (ObservedFlow.key). */
export const FLOW_KEY = /^[0-9a-f]{16}$/;

export const DEFAULT_FLOW_LIMIT = 1000;
export const MAX_FLOW_LIMIT = 100_000;
const KNOWN = new Set(['from', 'to', 'port', 'verdict', 'direction', 'since', 'until', 'limit']);
const UNITS: Readonly<Record<string, number>> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** At most 100 characters of request text, as JSON, for an error message. */
export function quoted(text: string): string {
  return JSON.stringify(text.length > 100 ? `${text.slice(0, 100)}…` : text);
}

/** `10m` → 600000; undefined when `text` is not a duration. */
export function parseDurationMs(text: string): number | undefined {
  const m = /^([0-9]{1,9})([smhd])$/.exec(text);
  return m ? Number(m[1]) * UNITS[m[2]!]! : undefined;
}

/** An ISO 8601 time or a duration back from `nowMs`, as ms since the epoch. */
export function parseTimeParam(text: string, nowMs: number): number | undefined {
  const d = parseDurationMs(text);
  if (d !== undefined) return nowMs - d;
  if (!/^[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9:.]+(Z|[+-][0-9]{2}:?[0-9]{2})?)?$/.test(text)) return undefined;
  const t = Date.parse(text);
  return Number.isFinite(t) ? t : undefined;
}

export type ParsedFlowQuery = { readonly ok: true; readonly query: FlowQuery } | { readonly ok: false; readonly error: string };

export function parseFlowQuery(params: URLSearchParams, nowMs: number): ParsedFlowQuery {
  const fail = (error: string): ParsedFlowQuery => ({ ok: false, error });
  const one = (name: string): string | undefined => {
    const all = params.getAll(name);
    return all.length === 0 ? undefined : all[all.length - 1];
  };
  for (const name of params.keys()) if (!KNOWN.has(name)) return fail(`unknown parameter ${quoted(name)}: use from, to, port, verdict, direction, since, until, limit`);
  const q: { -readonly [K in keyof FlowQuery]: FlowQuery[K] } = { limit: DEFAULT_FLOW_LIMIT };
  for (const name of ['from', 'to', 'port'] as const) {
    const v = one(name);
    if (v === undefined) continue;
    if (v.length === 0 || v.length > 1000) return fail(`${name} must be 1 to 1000 characters`);
    q[name] = v;
  }
  if (q.port !== undefined && /^[0-9]+$/.test(q.port) && (Number(q.port) < 1 || Number(q.port) > 65535)) return fail(`port ${quoted(q.port)} is not 1-65535`);
  const verdicts = params.getAll('verdict').flatMap((v) => v.split(',')).map((v) => v.trim()).filter((v) => v !== '');
  for (const v of verdicts) if (!(FLOW_VERDICTS as readonly string[]).includes(v)) return fail(`verdict ${quoted(v)} is not one of allowed, denied, audit`);
  if (verdicts.length > 0) q.verdicts = [...new Set(verdicts as FlowVerdict[])];
  const direction = one('direction');
  if (direction !== undefined) {
    if (direction !== 'ingress' && direction !== 'egress') return fail(`direction ${quoted(direction)} is not ingress or egress`);
    q.direction = direction;
  }
  for (const [name, field] of [['since', 'sinceMs'], ['until', 'untilMs']] as const) {
    const v = one(name);
    if (v === undefined) continue;
    const t = parseTimeParam(v, nowMs);
    if (t === undefined) return fail(`${name} ${quoted(v)} is neither an ISO 8601 time nor a duration like 10m, 1h, 2d`);
    q[field] = t;
  }
  const limit = one('limit');
  if (limit !== undefined) {
    if (!/^[0-9]{1,6}$/.test(limit) || Number(limit) < 1 || Number(limit) > MAX_FLOW_LIMIT) return fail(`limit ${quoted(limit)} is not 1-${MAX_FLOW_LIMIT}`);
    q.limit = Number(limit);
  }
  return { ok: true, query: q };
}

/** Whether `text` matches `pattern`, where `*` stands for any run of characters (also none). */
export function globMatch(pattern: string, text: string): boolean {
  if (!pattern.includes('*')) return pattern === text;
  let p = 0;
  let t = 0;
  let star = -1;
  let mark = 0;
  while (t < text.length) {
    if (p < pattern.length && pattern[p] !== '*' && pattern[p] === text[t]) {
      p++;
      t++;
    } else if (p < pattern.length && pattern[p] === '*') {
      star = p++;
      mark = t;
    } else if (star >= 0) {
      p = star + 1;
      t = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.length && pattern[p] === '*') p++;
  return p === pattern.length;
}

/** The filters of `q` that read a resolution (from, to, port, direction); verdict and time are the store's. */
export function resolutionMatcher(q: FlowQuery): (r: FlowResolution) => boolean {
  const { from, to, port, direction } = q;
  const portNumber = port !== undefined && /^[0-9]+$/.test(port) ? Number(port) : undefined;
  return (r) => {
    if (direction !== undefined && r.direction !== direction) return false;
    if (from !== undefined) {
      const s = r.source;
      const hit = s.address === from || s.hostId === from || s.apps.some((a) => globMatch(from, a)) || s.networks.some((n) => globMatch(from, n));
      if (!hit) return false;
    }
    if (to !== undefined) {
      const d = r.destination;
      if (d.hostId !== to && !d.apps.some((a) => a.appId !== '' && globMatch(to, a.appId))) return false;
    }
    if (port !== undefined) {
      const d = r.destination;
      if (portNumber !== undefined ? d.port !== portNumber : d.portName !== port) return false;
    }
    return true;
  };
}
