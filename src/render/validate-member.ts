/**
 * Syntax of set members (defense in depth: members cross the wire, and a member becomes a line
 * of `ipset restore` input). Only literal, well-formed members pass: no spaces, no newlines, no
 * options, no host names (ipset would resolve them through DNS). Formats, per SetKind:
 *   managed-* / failsafe-*:  "<port>"                    0..65535, no leading zeros
 *   allow-ip4 / allow-ip6:   "<address>,<proto>:<port>"  proto tcp | udp
 *   allow-net4 / allow-net6: "<cidr>,<proto>:<port>"     prefix 0..32 / 0..128
 */
import type { SetKind } from '../compile/desired-state.js';

const PORT = /^(0|[1-9][0-9]{0,4})$/;

export function isPort(text: string): boolean {
  return PORT.test(text) && Number(text) <= 65535;
}

export function isIPv4(text: string): boolean {
  const parts = text.split('.');
  return parts.length === 4 && parts.every((p) => /^(0|[1-9][0-9]{0,2})$/.test(p) && Number(p) <= 255);
}

export function isIPv6(text: string): boolean {
  if (!/^[0-9a-fA-F:.]{2,45}$/.test(text)) return false;
  const groups = 8;
  let body = text;
  const lastColon = body.lastIndexOf(':');
  if (body.includes('.')) {
    // Embedded IPv4 in the last 32 bits (e.g. ::ffff:10.0.0.1).
    if (!isIPv4(body.slice(lastColon + 1))) return false;
    body = body.slice(0, lastColon + 1) + '0:0';
  }
  const halves = body.split('::');
  if (halves.length > 2) return false;
  const split = (s: string): string[] => (s === '' ? [] : s.split(':'));
  const parts = halves.flatMap(split);
  if (!parts.every((g) => /^[0-9a-fA-F]{1,4}$/.test(g))) return false;
  if (halves.length === 2) return parts.length <= groups - 1;
  return parts.length === groups;
}

function isCidr(text: string, family: 4 | 6): boolean {
  const slash = text.indexOf('/');
  if (slash < 0) return false;
  const address = text.slice(0, slash);
  const prefix = text.slice(slash + 1);
  const max = family === 4 ? 32 : 128;
  if (!/^(0|[1-9][0-9]{0,2})$/.test(prefix) || Number(prefix) > max) return false;
  return family === 4 ? isIPv4(address) : isIPv6(address);
}

function checkProtoPort(text: string): string | undefined {
  const m = /^(tcp|udp):(.*)$/.exec(text);
  if (m === null) return 'expected "tcp:<port>" or "udp:<port>" after the comma';
  return isPort(m[2] as string) ? undefined : `port ${JSON.stringify(m[2])} is not 0..65535`;
}

function checkPair(member: string, source: (s: string) => boolean, what: string): string | undefined {
  const comma = member.indexOf(',');
  if (comma < 0) return `expected "<${what}>,<proto>:<port>"`;
  if (!source(member.slice(0, comma))) return `${JSON.stringify(member.slice(0, comma))} is not ${what}`;
  return checkProtoPort(member.slice(comma + 1));
}

/** Error text when `member` is not a well-formed member of `kind`; undefined when it is. */
export function validateMember(kind: SetKind, member: string): string | undefined {
  const error = check(kind, member);
  return error === undefined ? undefined : `invalid ${kind} member ${JSON.stringify(member)}: ${error}`;
}

function check(kind: SetKind, member: string): string | undefined {
  if (typeof member !== 'string') return 'not a string';
  if (member.length === 0 || member.length > 64) return 'empty or longer than 64 characters';
  switch (kind) {
    case 'managed-tcp':
    case 'managed-udp':
    case 'failsafe-tcp':
    case 'failsafe-udp':
      return isPort(member) ? undefined : 'expected a port number 0..65535';
    case 'allow-ip4':
      return checkPair(member, isIPv4, 'an IPv4 address');
    case 'allow-ip6':
      return checkPair(member, isIPv6, 'an IPv6 address');
    case 'allow-net4':
      return checkPair(member, (s) => isCidr(s, 4), 'an IPv4 CIDR');
    case 'allow-net6':
      return checkPair(member, (s) => isCidr(s, 6), 'an IPv6 CIDR');
    default:
      return `unknown set kind ${JSON.stringify(kind)}`;
  }
}
