/**
 * IP addresses and CIDRs as they appear in policy and inventory files: validated with ip-num and
 * written back in one canonical text (lowercase, IPv6 compressed per RFC 5952, a single address
 * becomes /32 or /128), so equal networks compare equal as strings everywhere downstream.
 *
 * IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`, inside ::ffff:0:0/96) are refused, with the IPv4
 * form to write instead: the kernel matches IPv4 packets in the IPv4 tables, so an IPv4 peer never
 * matches a mapped address or CIDR (in a policy network or as an inventory host address).
 */
import { IPv4, IPv6, Validator } from './ip-num.js';

/**
 * A dotted quad already in canonical form (4 decimal parts 0..255, no leading zeros). Policies
 * hold tens of thousands of IPv4 CIDRs and ip-num's validator costs about 20 µs each (a third of
 * a 10k-network parse), so these are read directly; anything else goes through ip-num, which
 * accepts a superset of this and gives the error messages. test/policy-address.test.ts checks
 * both paths agree.
 */
const CANONICAL_IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

function canonicalIpv4Value(t: string): bigint | undefined {
  const m = CANONICAL_IPV4.exec(t);
  if (!m) return undefined;
  return BigInt(Number(m[1]) * 16777216 + Number(m[2]) * 65536 + Number(m[3]) * 256 + Number(m[4]));
}

export type Family = 4 | 6;

export type AddressResult =
  | { readonly ok: true; readonly family: Family; readonly canonical: string; readonly value: bigint }
  | { readonly ok: false; readonly message: string };

export type CidrResult =
  | {
      readonly ok: true;
      readonly family: Family;
      readonly canonical: string;
      readonly first: bigint;
      readonly last: bigint;
    }
  | { readonly ok: false; readonly message: string };

/** One IPv4 or IPv6 address (no prefix, no zone index), not IPv4-mapped. */
export function parseAddress(text: string): AddressResult {
  const a = parseAnyAddress(text);
  if (a.ok && isIpv4Mapped(a)) return { ok: false, message: mappedMessage(text.trim(), ipv4Text(a.value & 0xffffffffn)) };
  return a;
}

/** ::ffff:0:0/96 holds the IPv4-mapped addresses. */
function isIpv4Mapped(a: { family: Family; value: bigint }): boolean {
  return a.family === 6 && a.value >> 32n === 0xffffn;
}

function mappedMessage(text: string, ipv4: string, what = 'address'): string {
  return `'${text}' is an IPv4-mapped IPv6 ${what} (inside ::ffff:0:0/96): IPv4 traffic is matched as IPv4 and never matches it; write ${ipv4} instead`;
}

function parseAnyAddress(text: string): AddressResult {
  const t = text.trim();
  if (/^[0-9.]+\/[0-9]*$/.test(t)) return { ok: false, message: `'${t}' is a CIDR; an address has no /prefix` };
  if (/^[0-9.]+$/.test(t)) {
    const fast = canonicalIpv4Value(t);
    if (fast !== undefined) return { ok: true, family: 4, canonical: t, value: fast };
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
    const [valid] = Validator.isValidIPv6String(t);
    if (!valid) return { ok: false, message: `'${t}' is not a valid IPv6 address` };
    const value = new IPv6(t).getValue();
    return { ok: true, family: 6, canonical: ipv6Text(value), value };
  }
  return { ok: false, message: `'${t}' is not an IPv4 or IPv6 address` + (t.length > 0 ? '' : ' (empty)') };
}

/** A CIDR (`10.0.0.0/8`, `fd00::/8`) or a single address (→ /32, /128). Host bits must be zero. */
export function parseCidr(text: string): CidrResult {
  const t = text.trim();
  const slash = t.indexOf('/');
  const addrText = slash < 0 ? t : t.slice(0, slash);
  const addr = parseAnyAddress(addrText);
  if (!addr.ok) {
    const inside = slash < 0 ? '' : ` in '${t}'`;
    return { ok: false, message: `${addr.message}${inside}; expected a CIDR like 10.0.0.0/8 or fd00::/8, or a single address` };
  }
  const bits = addr.family === 4 ? 32 : 128;
  let prefix = bits;
  if (slash >= 0) {
    const p = t.slice(slash + 1);
    if (!/^[0-9]{1,3}$/.test(p) || Number(p) > bits) {
      return { ok: false, message: `bad prefix length in '${t}': an IPv${addr.family} prefix is a number from 0 to ${bits}` };
    }
    prefix = Number(p);
  }
  if (isIpv4Mapped(addr) && prefix >= 96) {
    const v4Prefix = prefix - 96;
    const v4Network = (addr.value & 0xffffffffn) & ~((1n << BigInt(32 - v4Prefix)) - 1n);
    return { ok: false, message: slash < 0 ? mappedMessage(t, ipv4Text(v4Network)) : mappedMessage(t, `${ipv4Text(v4Network)}/${v4Prefix}`, 'CIDR') };
  }
  const size = 1n << BigInt(bits - prefix);
  const first = (addr.value / size) * size;
  const last = first + size - 1n;
  const network = `${addr.family === 4 ? ipv4Text(first) : ipv6Text(first)}/${prefix}`;
  if (first !== addr.value) {
    return {
      ok: false,
      message:
        `'${t}' has host bits set: the network address of this /${prefix} is ${network}; ` +
        `write '${network}', or '${addr.canonical}/${bits}' for the single address`,
    };
  }
  return { ok: true, family: addr.family, canonical: network, first, last };
}

/** Whether `inner` lies entirely inside `outer` (same family). */
export function cidrInside(
  inner: { family: Family; first: bigint; last: bigint },
  outer: { family: Family; first: bigint; last: bigint },
): boolean {
  return inner.family === outer.family && inner.first >= outer.first && inner.last <= outer.last;
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
