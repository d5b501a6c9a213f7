/**
 * Syntax of set members (defense in depth: members cross the wire, and a member becomes a line
 * of `ipset restore` input). Only literal, well-formed members pass: no spaces, no newlines, no
 * options, no host names (ipset would resolve them through DNS). Forms (which set kind holds
 * which form is src/render/validate-member.ts):
 *   port:        "<port>"                    0..65535, no leading zeros
 *   ip4 / ip6:   "<address>,<proto>:<port>"  proto tcp | udp
 *   net4 / net6: "<cidr>,<proto>:<port>"     prefix 0..32 / 0..128
 *   egress-task: "<app id>|<task id>"
 *   egress-ip4 / egress-ip6: "<app id>|" and an ip4 / ip6 member
 * where an app id is '/' and 1-512 of [A-Za-z0-9._/-] and a task id 1-255 of [A-Za-z0-9_.-]
 * (the ids are never written to the kernel: the agent names a local app's objects by a hash of
 * its id, and matches a task by what the Mesos agent says of it; but they cross the wire and
 * reach logs and pages, so only these characters pass).
 *
 * Accepted characters (but in ids) are digits, hex letters, `.`, `:`, `/`, `,` and the lower-case
 * words `tcp` / `udp`; everything else is refused. The checks are hand-written scanners over character
 * codes (no regex, no splitting on the accepting path): the agent validates every member of a
 * 100,000-member state. Decimals, dotted quads and IPv6 text are address.ts's scanners, the ones
 * the address parser reads canonical addresses with. What they accept is pinned, input for input,
 * to the earlier regex-based definitions in test/net-member-syntax.test.ts.
 */
import { decimalAt, ipv4ValueAt, isIPv6At } from './address.js';
import { ADDRESS_BITS, type Family } from './family.js';

export type MemberForm = 'port' | 'ip4' | 'ip6' | 'net4' | 'net6' | 'egress-task' | 'egress-ip4' | 'egress-ip6' | 'app-id';

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

const MAX_APP_ID = 512;
const MAX_TASK_ID = 255;
/** The longest egress member: an app id, '|', and a task id or an ip6 member. */
const MAX_EGRESS_MEMBER = 1 + MAX_APP_ID + 1 + MAX_TASK_ID;

/** [A-Za-z0-9_.-], and '/' when `slash`. */
function isIdChar(c: number, slash: boolean): boolean {
  return (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || (c >= 48 && c <= 57) || c === 95 || c === 46 || c === 45 || (slash && c === SLASH);
}

function isIdRange(text: string, start: number, end: number, slash: boolean, max: number): boolean {
  if (end - start < 1 || end - start > max) return false;
  for (let i = start; i < end; i++) if (!isIdChar(text.charCodeAt(i), slash)) return false;
  return true;
}

/** True when `id` may stand in an egress member as an app id. */
export function isMemberAppId(id: string): boolean {
  return typeof id === 'string' && id.charCodeAt(0) === SLASH && isIdRange(id, 1, id.length, true, MAX_APP_ID);
}

/** True when `id` may stand in an egress member as a task id. */
export function isMemberTaskId(id: string): boolean {
  return typeof id === 'string' && isIdRange(id, 0, id.length, false, MAX_TASK_ID);
}

/** The app id of an egress member (the text before its first '|'); '' when there is none. */
export function egressAppOf(member: string): string {
  const bar = member.indexOf('|');
  return bar < 0 ? '' : member.slice(0, bar);
}

/** An egress member: "<app id>|" and what `rest` accepts (an error text or undefined). */
function checkEgress(member: string, rest: (tail: string) => string | undefined): string | undefined {
  if (typeof member !== 'string') return 'not a string';
  if (member.length === 0 || member.length > MAX_EGRESS_MEMBER) return `empty or longer than ${MAX_EGRESS_MEMBER} characters`;
  const bar = member.indexOf('|');
  if (bar < 0) return 'expected "<app id>|..."';
  if (member.charCodeAt(0) !== SLASH || !isIdRange(member, 1, bar, true, MAX_APP_ID)) {
    return `app id ${JSON.stringify(member.slice(0, bar))} is not '/' and 1-${MAX_APP_ID} of [A-Za-z0-9._/-]`;
  }
  return rest(member.slice(bar + 1));
}

/** Why `member` is no member text of any form (not a string, empty, too long); undefined otherwise. */
export function memberTextError(member: string): string | undefined {
  if (typeof member !== 'string') return 'not a string';
  if (member.length === 0 || member.length > 64) return 'empty or longer than 64 characters';
  return undefined;
}

/** Why `member` is not a well-formed member of `form`; undefined when it is. */
export function memberFormError(form: MemberForm, member: string): string | undefined {
  if (form === 'app-id') {
    if (typeof member !== 'string') return 'not a string';
    return isMemberAppId(member) ? undefined : `app id ${JSON.stringify(member.slice(0, 100))} is not '/' and 1-${MAX_APP_ID} of [A-Za-z0-9._/-]`;
  }
  if (form === 'egress-task') {
    return checkEgress(member, (task) => (isMemberTaskId(task) ? undefined : `task id ${JSON.stringify(task)} is not 1-${MAX_TASK_ID} of [A-Za-z0-9_.-]`));
  }
  if (form === 'egress-ip4' || form === 'egress-ip6') {
    return checkEgress(member, (rest) => memberFormError(form === 'egress-ip4' ? 'ip4' : 'ip6', rest));
  }
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
