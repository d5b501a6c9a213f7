/** `HOST:PORT` listen addresses of the command line: `0.0.0.0:7443`, `[::]:7443`, `localhost:0`. */
import { isIP } from 'node:net';

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

export class HostPortError extends Error {}

export function parseHostPort(text: string, flag: string): HostPort {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^:[\]]+):(\d+)$/.exec(text);
  if (!m) throw new HostPortError(`${flag} expects HOST:PORT (e.g. 0.0.0.0:7443 or [::]:7443), got '${text}'`);
  const host = m[1] as string;
  const port = Number(m[2]);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new HostPortError(`${flag}: port must be 0..65535, got '${m[2]}'`);
  if (text.startsWith('[') && isIP(host) !== 6) throw new HostPortError(`${flag}: '${host}' in brackets is not an IPv6 address`);
  return { host, port };
}

/** `host:port`, with brackets around an IPv6 address. */
export function formatHostPort(host: string, port: number): string {
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}
