/**
 * Syntax of set members (defense in depth: members cross the wire, and a member becomes a line
 * of `ipset restore` input). Only literal, well-formed members pass: no spaces, no newlines, no
 * options, no host names (ipset would resolve them through DNS). Forms (which set kind holds
 * which form is src/render/validate-member.ts):
 *   port:        "<port>"                    0..65535, no leading zeros
 *   ip4 / ip6:   "<address>,<proto>:<port>"  proto tcp | udp
 *   net4 / net6: "<cidr>,<proto>:<port>"     prefix 0..32 / 0..128
 *
 * Accepted characters are digits, hex letters, `.`, `:`, `/`, `,` and the lower-case words
 * `tcp` / `udp`; everything else is refused. The checks are hand-written scanners over character
 * codes (no regex, no splitting on the accepting path): the agent validates every member of a
 * 100,000-member state. Decimals, dotted quads and IPv6 text are address.ts's scanners, the ones
 * the address parser reads canonical addresses with. What they accept is pinned, input for input,
 * to the earlier regex-based definitions in test/net-member-syntax.test.ts.
 */
import { decimalAt, ipv4ValueAt, isIPv6At } from './address.js';
import { ADDRESS_BITS, type Family } from './family.js';

export type MemberForm = 'port' | 'ip4' | 'ip6' | 'net4' | 'net6';

const SLASH = 47;

function isDecimal(text: string, start: number, end: number, maxDigits: number, max: number): boolean {
  return decimalAt(text, start, end, maxDigits, max) >= 0;
}

/** A dotted quad in text[start, end): four decimal parts 0..255 without leading zeros. */
function isIPv4Range(text: string, start: number, end: number): boolean {
  return ipv4ValueAt(text, start, end) >= 0;
}

export function isPort(text: string): boolean {
  return isDecimal(text, 0, text.length, 5, 65535);
}

export function isIPv4(text: string): boolean {
  return isIPv4Range(text, 0, text.length);
}

export function isIPv6(text: string): boolean {
  return isIPv6At(text, 0, text.length);
}

/** `<address>/<prefix>` in text[start, end), prefix 0..32 (family 4) or 0..128 (family 6). */
function isCidrRange(text: string, start: number, end: number, family: Family): boolean {
  let slash = -1;
  for (let i = start; i < end; i++) {
    if (text.charCodeAt(i) === SLASH) {
      slash = i;
      break;
    }
  }
  if (slash < 0) return false;
  if (!isDecimal(text, slash + 1, end, 3, ADDRESS_BITS[family])) return false;
  return family === 4 ? isIPv4Range(text, start, slash) : isIPv6At(text, start, slash);
}

/** Error text of `<proto>:<port>` starting at `start`, undefined when it is well-formed. */
function checkProtoPort(member: string, start: number): string | undefined {
  if (!member.startsWith('tcp:', start) && !member.startsWith('udp:', start)) return 'expected "tcp:<port>" or "udp:<port>" after the comma';
  if (isDecimal(member, start + 4, member.length, 5, 65535)) return undefined;
  const port = member.slice(start + 4);
  // A line break after the protocol reads as a malformed pair, anything else as a bad port.
  if (/[\n\r\u2028\u2029]/.test(port)) return 'expected "tcp:<port>" or "udp:<port>" after the comma';
  return `port ${JSON.stringify(port)} is not 0..65535`;
}

type SourceCheck = (text: string, start: number, end: number) => boolean;

function checkPair(member: string, source: SourceCheck, what: string): string | undefined {
  const comma = member.indexOf(',');
  if (comma < 0) return `expected "<${what}>,<proto>:<port>"`;
  if (!source(member, 0, comma)) return `${JSON.stringify(member.slice(0, comma))} is not ${what}`;
  return checkProtoPort(member, comma + 1);
}

const isNet4: SourceCheck = (text, start, end) => isCidrRange(text, start, end, 4);
const isNet6: SourceCheck = (text, start, end) => isCidrRange(text, start, end, 6);

/** Why `member` is no member text of any form (not a string, empty, too long); undefined otherwise. */
export function memberTextError(member: string): string | undefined {
  if (typeof member !== 'string') return 'not a string';
  if (member.length === 0 || member.length > 64) return 'empty or longer than 64 characters';
  return undefined;
}

/** Why `member` is not a well-formed member of `form`; undefined when it is. */
export function memberFormError(form: MemberForm, member: string): string | undefined {
  const textError = memberTextError(member);
  if (textError !== undefined) return textError;
  switch (form) {
    case 'port':
      return isPort(member) ? undefined : 'expected a port number 0..65535';
    case 'ip4':
      return checkPair(member, isIPv4Range, 'an IPv4 address');
    case 'ip6':
      return checkPair(member, isIPv6At, 'an IPv6 address');
    case 'net4':
      return checkPair(member, isNet4, 'an IPv4 CIDR');
    case 'net6':
      return checkPair(member, isNet6, 'an IPv6 CIDR');
  }
}
