/**
 * IP addresses as text: the one parser and the one canonical form of Portcullis. Policy networks,
 * inventory and Marathon host addresses, the compiler's sets, the CLI and the agent's members all
 * read and write addresses here, so equal addresses compare equal as strings everywhere.
 *
 * Canonical text: a dotted quad without leading zeros for IPv4; for IPv6 RFC 5952 (lowercase, no
 * leading zeros in a group, the longest run of two or more zero groups, the first if tied, as
 * `::`). Canonical text is read directly by hand-written scanners (decimalAt, ipv4ValueAt,
 * isIPv6At: also the member syntax's); anything else goes through ip-num, which validates it and
 * gives the reasons of a refusal. ip-num's own IPv6 `toString` does not compress (and prints `::0`
 * for zero), so formatting is done here.
 *
 * IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`, inside ::ffff:0:0/96) are refused by default,
 * with the IPv4 form to write instead: the kernel matches IPv4 packets in the IPv4 tables, so an
 * IPv4 peer never matches a mapped address (in a policy network or as an inventory host address).
 * `{ mapped: 'accept' }` reads them as the IPv6 addresses they are (the compiler, host addresses
 * from agents and DNS, the agent's members: text an earlier layer let through).
 */
import { IPv4, IPv6, Validator } from './ip-num.js';
import type { Family } from './family.js';

export interface ParsedAddress {
  readonly family: Family;
  readonly value: bigint;
}

export type AddressResult =
  | { readonly ok: true; readonly family: Family; readonly canonical: string; readonly value: bigint }
  | { readonly ok: false; readonly message: string };

export interface AddressOptions {
  /** An IPv4-mapped IPv6 address: 'refuse' (the default, with the IPv4 form to write) or 'accept'. */
  readonly mapped?: 'refuse' | 'accept';
}

/** A refusal of address or CIDR text by the throwing readers (addressOf, cidrBlockOf). */
export class AddressParseError extends Error {}

const DIGIT_0 = 48;
const DIGIT_9 = 57;
const DOT = 46;
const COLON = 58;

/**
 * The value of the decimal text[start, end) of 1..maxDigits digits, without leading zeros and at
 * most `max`; -1 for anything else. A hand-written scanner: it runs for every member the agent
 * validates and every canonical address a policy holds.
 */
export function decimalAt(text: string, start: number, end: number, maxDigits: number, max: number): number {
  const length = end - start;
  if (length < 1 || length > maxDigits) return -1;
  if (text.charCodeAt(start) === DIGIT_0 && length > 1) return -1;
  let value = 0;
  for (let i = start; i < end; i++) {
    const c = text.charCodeAt(i);
    if (c < DIGIT_0 || c > DIGIT_9) return -1;
    value = value * 10 + (c - DIGIT_0);
  }
  return value <= max ? value : -1;
}

/**
 * The value of a canonical dotted quad in text[start, end) (four decimal parts 0..255 without
 * leading zeros), -1 for anything else. Policies hold tens of thousands of IPv4 CIDRs and ip-num's
 * validator costs about 20 µs each (a third of a 10k-network parse), so these are read directly;
 * anything else goes through ip-num, which accepts a superset of this and gives the error
 * messages. test/net-address.test.ts checks both paths agree.
 */
export function ipv4ValueAt(text: string, start: number, end: number): number {
  let value = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = start; i < end; i++) {
    const c = text.charCodeAt(i);
    if (c === DOT) {
      if (digits === 0 || dots === 3) return -1;
      value = value * 256 + part;
      part = 0;
      digits = 0;
      dots++;
    } else if (c >= DIGIT_0 && c <= DIGIT_9) {
      if (digits > 0 && part === 0) return -1; // a leading zero
      part = part * 10 + (c - DIGIT_0);
      digits++;
      if (part > 255) return -1;
    } else {
      return -1;
    }
  }
  return digits === 0 || dots !== 3 ? -1 : value * 256 + part;
}

function isHexDigit(c: number): boolean {
  return (c >= DIGIT_0 && c <= DIGIT_9) || (c >= 97 && c <= 102) || (c >= 65 && c <= 70);
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
export function isIPv6At(text: string, start: number, end: number): boolean {
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
  if (lastColon < 0 || ipv4ValueAt(text, lastColon + 1, end) < 0) return false;
  if (lastColon === start) return false; // ":1.2.3.4"
  if (text.charCodeAt(lastColon - 1) === COLON) {
    // "...::a.b.c.d": the groups before it may be empty ("::"), at most 5 of them.
    return lastColon - 1 === start || isHexGroups(text, start, lastColon + 1, 6);
  }
  return isHexGroups(text, start, lastColon, 6);
}

/** The value of an IPv6 address text that isIPv6At accepts. */
export function ipv6Value(text: string): bigint {
  const double = text.indexOf('::');
  const groups = (part: string): number[] => {
    if (part === '') return [];
    const out: number[] = [];
    for (const g of part.split(':')) {
      if (g.includes('.')) {
        const v4 = ipv4ValueAt(g, 0, g.length);
        out.push(Math.floor(v4 / 65536), v4 % 65536);
      } else {
        out.push(parseInt(g, 16));
      }
    }
    return out;
  };
  const head = groups(double < 0 ? text : text.slice(0, double));
  const tail = double < 0 ? [] : groups(text.slice(double + 2));
  const all = [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
  let value = 0n;
  for (const g of all) value = (value << 16n) | BigInt(g);
  return value;
}

/** One IPv4 or IPv6 address (no prefix, no zone index); IPv4-mapped ones as `options.mapped` says. */
export function parseAddress(text: string, options: AddressOptions = {}): AddressResult {
  const a = parseAnyAddress(text);
  if (a.ok && options.mapped !== 'accept' && isIpv4Mapped(a)) return { ok: false, message: mappedMessage(text.trim(), ipv4Text(a.value & 0xffffffffn)) };
  return a;
}

/** ::ffff:0:0/96 holds the IPv4-mapped addresses. */
export function isIpv4Mapped(a: ParsedAddress): boolean {
  return a.family === 6 && a.value >> 32n === 0xffffn;
}

/** Why an IPv4-mapped address or CIDR is refused, and what to write instead. */
export function mappedMessage(text: string, ipv4: string, what = 'address'): string {
  return `'${text}' is an IPv4-mapped IPv6 ${what} (inside ::ffff:0:0/96): IPv4 traffic is matched as IPv4 and never matches it; write ${ipv4} instead`;
}

function parseAnyAddress(text: string): AddressResult {
  const t = text.trim();
  if (/^[0-9.]+\/[0-9]*$/.test(t)) return { ok: false, message: `'${t}' is a CIDR; an address has no /prefix` };
  if (/^[0-9.]+$/.test(t)) {
    const fast = ipv4ValueAt(t, 0, t.length);
    if (fast >= 0) return { ok: true, family: 4, canonical: t, value: BigInt(fast) };
    const [valid, messages] = Validator.isValidIPv4String(t);
    if (!valid) {
      const detail = messages.some((m) => /octets/i.test(m)) ? 'it needs exactly 4 parts' : 'each of its 4 parts must be a number from 0 to 255, without leading zeros';
      return { ok: false, message: `'${t}' is not a valid IPv4 address: ${detail}` };
    }
    const value = new IPv4(t).getValue();
    return { ok: true, family: 4, canonical: ipv4Text(value), value };
  }
  if (t.includes(':')) {
    if (t.includes('/')) return { ok: false, message: `'${t}' is a CIDR; an address has no /prefix` };
    if (t.includes('%')) return { ok: false, message: `'${t}' has a zone index (%...); zone indexes are not allowed` };
    if (!/^[0-9a-fA-F:.]+$/.test(t)) return { ok: false, message: `'${t}' is not a valid IPv6 address` };
    if (isIPv6At(t, 0, t.length)) {
      const fast = ipv6Value(t);
      if (ipv6Text(fast) === t) return { ok: true, family: 6, canonical: t, value: fast };
    }
    const [valid] = Validator.isValidIPv6String(t);
    if (!valid) return { ok: false, message: `'${t}' is not a valid IPv6 address` };
    const value = new IPv6(t).getValue();
    return { ok: true, family: 6, canonical: ipv6Text(value), value };
  }
  return { ok: false, message: `'${t}' is not an IPv4 or IPv6 address` + (t.length > 0 ? '' : ' (empty)') };
}

/** parseAddress that throws AddressParseError with its message. */
export function addressOf(text: string, options: AddressOptions = {}): ParsedAddress {
  const a = parseAddress(text, options);
  if (!a.ok) throw new AddressParseError(a.message);
  return a;
}

/** Any address (IPv4-mapped accepted), or undefined for text that is not one. */
export function tryParseAddress(text: string): ParsedAddress | undefined {
  const a = parseAddress(text, { mapped: 'accept' });
  return a.ok ? a : undefined;
}

/** Canonical text of any address (IPv4-mapped accepted); throws AddressParseError. */
export function canonicalAddress(text: string): string {
  const a = parseAddress(text, { mapped: 'accept' });
  if (!a.ok) throw new AddressParseError(a.message);
  return a.canonical;
}

export function formatAddress(family: Family, value: bigint): string {
  return family === 4 ? ipv4Text(value) : ipv6Text(value);
}

/** Dotted-quad text of an IPv4 address value. */
export function ipv4Text(v: bigint): string {
  const n = Number(v);
  return `${(n >>> 24) & 255}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

/** RFC 5952: lowercase, no leading zeros, the longest run (first if tied) of >= 2 zero groups as `::`. */
export function ipv6Text(v: bigint): string {
  const groups: number[] = [];
  for (let i = 7; i >= 0; i--) groups.push(Number((v >> BigInt(i * 16)) & 0xffffn));
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  const head = hex.slice(0, bestStart).join(':');
  const tail = hex.slice(bestStart + bestLen).join(':');
  return `${head}::${tail}`;
}

/**
 * Whether `a` can be one container's own source address: not unspecified, loopback, multicast
 * or the IPv4 broadcast address (a rule matching such a source would match traffic that is no
 * container's: loopback connections, for instance, cross PREROUTING on `lo`).
 */
export function isOwnableAddress(a: ParsedAddress): boolean {
  if (a.family === 4) {
    const first = Number(a.value >> 24n);
    return a.value !== 0n && first !== 127 && (first < 224 || first > 239) && a.value !== 0xffffffffn;
  }
  return a.value !== 0n && a.value !== 1n && a.value >> 120n !== 0xffn;
}
