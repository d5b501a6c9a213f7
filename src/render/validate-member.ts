/**
 * Syntax of set members (defense in depth: members cross the wire, and a member becomes a line
 * of `ipset restore` input). Only literal, well-formed members pass: no spaces, no newlines, no
 * options, no host names (ipset would resolve them through DNS). Formats, per SetKind:
 *   managed-* / failsafe-*:  "<port>"                    0..65535, no leading zeros
 *   allow-ip4 / allow-ip6:   "<address>,<proto>:<port>"  proto tcp | udp
 *   allow-net4 / allow-net6: "<cidr>,<proto>:<port>"     prefix 0..32 / 0..128
 *
 * Accepted characters are digits, hex letters, `.`, `:`, `/`, `,` and the lower-case words
 * `tcp` / `udp`; everything else is refused. The checks are hand-written scanners over character
 * codes (no regex, no splitting on the accepting path): the agent validates every member of a
 * 100,000-member state. What they accept is pinned, input for input, to the earlier
 * regex-based definitions in test/render-validate-member.test.ts.
 */
import type { SetKind } from '../compile/desired-state.js';

const DIGIT_0 = 48;
const DIGIT_9 = 57;
const DOT = 46;
const COLON = 58;
const SLASH = 47;

/** True when text[start, end) is a decimal without leading zeros of 1..maxDigits digits and ≤ max. */
function isDecimal(text: string, start: number, end: number, maxDigits: number, max: number): boolean {
  const length = end - start;
  if (length < 1 || length > maxDigits) return false;
  const first = text.charCodeAt(start);
  if (first === DIGIT_0) return length === 1;
  let value = 0;
  for (let i = start; i < end; i++) {
    const c = text.charCodeAt(i);
    if (c < DIGIT_0 || c > DIGIT_9) return false;
    value = value * 10 + (c - DIGIT_0);
  }
  return value <= max;
}

function isHexDigit(c: number): boolean {
  return (c >= DIGIT_0 && c <= DIGIT_9) || (c >= 97 && c <= 102) || (c >= 65 && c <= 70);
}

/** A dotted quad in text[start, end): four decimal parts 0..255 without leading zeros. */
function isIPv4Range(text: string, start: number, end: number): boolean {
  let partStart = start;
  let dots = 0;
  for (let i = start; i < end; i++) {
    if (text.charCodeAt(i) !== DOT) continue;
    if (dots === 3 || !isDecimal(text, partStart, i, 3, 255)) return false;
    dots++;
    partStart = i + 1;
  }
  return dots === 3 && isDecimal(text, partStart, end, 3, 255);
}

/**
 * Hex groups of 1..4 digits separated by `:` in text[start, end), at most one `::`: exactly
 * `groups` groups without `::`, at most `groups - 1` with it. Any other character fails.
 */
function isHexGroups(text: string, start: number, end: number, groups: number): boolean {
  let count = 0;
  let compressed = false;
  let i = start;
  if (end - start >= 2 && text.charCodeAt(start) === COLON && text.charCodeAt(start + 1) === COLON) {
    compressed = true;
    i = start + 2;
    if (i === end) return true;
  }
  for (;;) {
    // One group at i.
    const groupStart = i;
    while (i < end && isHexDigit(text.charCodeAt(i))) i++;
    const length = i - groupStart;
    if (length < 1 || length > 4) return false;
    count++;
    if (i === end) break;
    if (text.charCodeAt(i) !== COLON) return false;
    i++;
    if (i < end && text.charCodeAt(i) === COLON) {
      if (compressed) return false;
      compressed = true;
      i++;
      if (i === end) break;
    } else if (i === end) {
      return false; // a trailing single ':'
    }
  }
  return compressed ? count <= groups - 1 : count === groups;
}

/** An IPv6 address in text[start, end), optionally with an embedded IPv4 address in the last 32 bits. */
function isIPv6Range(text: string, start: number, end: number): boolean {
  const length = end - start;
  if (length < 2 || length > 45) return false;
  let lastColon = -1;
  let hasDot = false;
  for (let i = start; i < end; i++) {
    const c = text.charCodeAt(i);
    if (c === COLON) lastColon = i;
    else if (c === DOT) hasDot = true;
    else if (!isHexDigit(c)) return false;
  }
  if (!hasDot) return isHexGroups(text, start, end, 8);
  // Embedded IPv4 (e.g. ::ffff:10.0.0.1): it stands for the last two groups.
  if (lastColon < 0 || !isIPv4Range(text, lastColon + 1, end)) return false;
  if (lastColon === start) return false; // ":1.2.3.4"
  if (text.charCodeAt(lastColon - 1) === COLON) {
    // "...::a.b.c.d": the groups before it may be empty ("::"), at most 5 of them.
    return lastColon - 1 === start || isHexGroups(text, start, lastColon + 1, 6);
  }
  return isHexGroups(text, start, lastColon, 6);
}

export function isPort(text: string): boolean {
  return isDecimal(text, 0, text.length, 5, 65535);
}

export function isIPv4(text: string): boolean {
  return isIPv4Range(text, 0, text.length);
}

export function isIPv6(text: string): boolean {
  return isIPv6Range(text, 0, text.length);
}

/** `<address>/<prefix>` in text[start, end), prefix 0..32 (family 4) or 0..128 (family 6). */
function isCidrRange(text: string, start: number, end: number, family: 4 | 6): boolean {
  let slash = -1;
  for (let i = start; i < end; i++) {
    if (text.charCodeAt(i) === SLASH) {
      slash = i;
      break;
    }
  }
  if (slash < 0) return false;
  if (!isDecimal(text, slash + 1, end, 3, family === 4 ? 32 : 128)) return false;
  return family === 4 ? isIPv4Range(text, start, slash) : isIPv6Range(text, start, slash);
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
      return checkPair(member, isIPv4Range, 'an IPv4 address');
    case 'allow-ip6':
      return checkPair(member, isIPv6Range, 'an IPv6 address');
    case 'allow-net4':
      return checkPair(member, isNet4, 'an IPv4 CIDR');
    case 'allow-net6':
      return checkPair(member, isNet6, 'an IPv6 CIDR');
    default:
      return `unknown set kind ${JSON.stringify(kind)}`;
  }
}
