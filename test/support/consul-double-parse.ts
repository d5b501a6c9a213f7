/**
 * Request parsing for the Consul API double (consul-double.ts): bounded request bodies, Go
 * durations (src/consul/go-duration.ts), and the body of PUT /v1/agent/service/register as
 * agent/service.mdx documents it: Name required; ID defaults to Name; Address, Port, Tags, Meta;
 * Check or Checks, each an HTTP or Args (script) check with an Interval, or a TTL check (the
 * double runs none of them: tests set their status). A check's CheckID defaults to
 * `service:<ID>` (`service:<ID>:<n>`, n from 1, for the Checks list), its Name to
 * `Service '<Name>' check`, its Status to critical (agent/check.mdx: a check starts critical
 * unless Status says otherwise).
 */
import type http from 'node:http';
import { goDurationMs } from '../../src/consul/go-duration.js';
import type { CheckState, CheckStatus, ServiceFields } from './consul-double-state.js';

export { goDurationMs } from '../../src/consul/go-duration.js';

export function bodyOf(req: http.IncomingMessage, max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > max) {
        reject(new Error(`Request body too large (over ${max} bytes)`));
        req.removeAllListeners('data');
        req.resume();
      } else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

export interface CheckDefinition {
  readonly checkId?: string;
  readonly name?: string;
  readonly http: string;
  readonly interval: string;
  readonly ttl: string;
  readonly status: CheckStatus;
  readonly deregisterCriticalServiceAfter: string;
}

export interface Registration extends ServiceFields {
  readonly checks: readonly CheckDefinition[];
  /** The checks came as `Checks` (ids numbered) rather than one `Check`. */
  readonly list: boolean;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

function parseCheck(c: unknown): CheckDefinition | string {
  if (!isObj(c)) return 'Invalid check: not an object';
  const str = (k: string): string | undefined => (typeof c[k] === 'string' ? (c[k] as string) : undefined);
  const http = str('HTTP') ?? '';
  const interval = str('Interval') ?? '';
  const ttl = str('TTL') ?? '';
  const args = Array.isArray(c.Args) && c.Args.length > 0 && c.Args.every((a) => typeof a === 'string');
  if (http !== '' || args ? interval === '' || goDurationMs(interval) === undefined : ttl === '') return 'Invalid check: TTL or HTTP/Args with an Interval needed';
  const status = str('Status') ?? 'critical';
  if (status !== 'passing' && status !== 'warning' && status !== 'critical') return `Invalid check status: "${status}"`;
  const dereg = str('DeregisterCriticalServiceAfter') ?? '';
  if (dereg !== '' && goDurationMs(dereg) === undefined) return `Invalid DeregisterCriticalServiceAfter: ${dereg}`;
  return { checkId: str('CheckID'), name: str('Name'), http, interval, ttl, status, deregisterCriticalServiceAfter: dereg };
}

export function parseRegistration(body: Buffer): Registration | string {
  let v: unknown;
  try {
    v = JSON.parse(body.toString('utf8'));
  } catch (e) {
    return `Request decode failed: ${(e as Error).message}`;
  }
  if (!isObj(v)) return 'Request decode failed: not an object';
  if (typeof v.Name !== 'string' || v.Name === '') return 'Missing service name';
  const id = typeof v.ID === 'string' && v.ID !== '' ? v.ID : v.Name;
  const port = v.Port ?? 0;
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535) return 'Request decode failed: Port';
  const tags = v.Tags ?? [];
  if (!Array.isArray(tags) || !tags.every((t) => typeof t === 'string')) return 'Request decode failed: Tags';
  const meta = v.Meta ?? {};
  if (!isObj(meta) || !Object.values(meta).every((m) => typeof m === 'string')) return 'Request decode failed: Meta';
  const address = v.Address ?? '';
  if (typeof address !== 'string') return 'Request decode failed: Address';
  const raw = Array.isArray(v.Checks) ? v.Checks : v.Check !== undefined && v.Check !== null ? [v.Check] : [];
  const checks: CheckDefinition[] = [];
  for (const c of raw) {
    const parsed = parseCheck(c);
    if (typeof parsed === 'string') return parsed;
    checks.push(parsed);
  }
  return { id, name: v.Name, address, port, tags: tags as string[], meta: meta as Record<string, string>, checks, list: Array.isArray(v.Checks) };
}

export function checksOf(reg: Registration): CheckState[] {
  return reg.checks.map((c, n) => ({
    checkId: c.checkId ?? (reg.list ? `service:${reg.id}:${n + 1}` : `service:${reg.id}`),
    name: c.name ?? `Service '${reg.name}' check`,
    status: c.status,
    output: '',
    http: c.http,
    interval: c.interval,
    deregisterCriticalServiceAfter: c.deregisterCriticalServiceAfter,
  }));
}
