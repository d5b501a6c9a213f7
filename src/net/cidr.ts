/**
 * CIDRs as text: the one parser and canonical form (see address.ts for addresses). A single
 * address is a CIDR of the full length (/32, /128); the canonical text always has the prefix.
 *
 * One parser, two strictnesses:
 * - the default, for what a person wrote (policy networks): host bits set are refused with the
 *   network to write, IPv4-mapped IPv6 CIDRs with the IPv4 CIDR to write;
 * - `LENIENT` (`{ hostBits: 'clear', mapped: 'accept' }`), for text an earlier layer let through
 *   (the compiler's sets, a state's members in `portcullis diff`): host bits are cleared, mapped
 *   CIDRs read as the IPv6 CIDRs they are.
 */
import { ADDRESS_BITS, type Family } from './family.js';
import { AddressParseError, formatAddress, isIpv4Mapped, mappedMessage, parseAddress, ipv4Text, type AddressOptions } from './address.js';

export type CidrResult =
  | {
      readonly ok: true;
      readonly family: Family;
      readonly canonical: string;
      readonly first: bigint;
      readonly last: bigint;
    }
  | { readonly ok: false; readonly message: string };

/** A CIDR block as a value: its family, first address (host bits clear) and prefix length. */
export interface ParsedCidr {
  readonly family: Family;
  /** The first address of the block (host bits cleared). */
  readonly base: bigint;
  readonly prefix: number;
}

export interface CidrOptions extends AddressOptions {
  /** Host bits set: 'refuse' (the default, with the network to write) or 'clear' them. */
  readonly hostBits?: 'refuse' | 'clear';
}

export const LENIENT: CidrOptions = Object.freeze({ hostBits: 'clear', mapped: 'accept' });

interface CidrParts extends ParsedCidr {
  readonly canonical: string;
  readonly last: bigint;
}

/** The first address of the /`prefix` block that holds `value`. */
export function networkOf(family: Family, value: bigint, prefix: number): bigint {
  const hostBits = BigInt(ADDRESS_BITS[family] - prefix);
  return (value >> hostBits) << hostBits;
}

function readCidr(text: string, options: CidrOptions): CidrParts | string {
  const t = text.trim();
  const slash = t.indexOf('/');
  const addrText = slash < 0 ? t : t.slice(0, slash);
  const addr = parseAddress(addrText, { mapped: 'accept' });
  if (!addr.ok) {
    const inside = slash < 0 ? '' : ` in '${t}'`;
    return `${addr.message}${inside}; expected a CIDR like 10.0.0.0/8 or fd00::/8, or a single address`;
  }
  const bits = ADDRESS_BITS[addr.family];
  let prefix = bits;
  if (slash >= 0) {
    const p = t.slice(slash + 1);
    if (!/^[0-9]{1,3}$/.test(p) || Number(p) > bits) return `bad prefix length in '${t}': an IPv${addr.family} prefix is a number from 0 to ${bits}`;
    prefix = Number(p);
  }
  if (options.mapped !== 'accept' && isIpv4Mapped(addr) && prefix >= 96) {
    const v4Prefix = prefix - 96;
    const v4Network = networkOf(4, addr.value & 0xffffffffn, v4Prefix);
    return slash < 0 ? mappedMessage(t, ipv4Text(v4Network)) : mappedMessage(t, `${ipv4Text(v4Network)}/${v4Prefix}`, 'CIDR');
  }
  const base = networkOf(addr.family, addr.value, prefix);
  const canonical = `${base === addr.value ? addr.canonical : formatAddress(addr.family, base)}/${prefix}`;
  if (base !== addr.value && options.hostBits !== 'clear') {
    return `'${t}' has host bits set: the network address of this /${prefix} is ${canonical}; write '${canonical}', or '${addr.canonical}/${bits}' for the single address`;
  }
  return { family: addr.family, base, prefix, canonical, last: base + (1n << BigInt(bits - prefix)) - 1n };
}

/** A CIDR (`10.0.0.0/8`, `fd00::/8`) or a single address (→ /32, /128), per `options` (strict by default). */
export function parseCidr(text: string, options: CidrOptions = {}): CidrResult {
  const c = readCidr(text, options);
  if (typeof c === 'string') return { ok: false, message: c };
  return { ok: true, family: c.family, canonical: c.canonical, first: c.base, last: c.last };
}

/** A CIDR block, per `options` (LENIENT by default); throws AddressParseError. */
export function cidrBlockOf(text: string, options: CidrOptions = LENIENT): ParsedCidr {
  const c = readCidr(text, options);
  if (typeof c === 'string') throw new AddressParseError(`'${text}' is not an IPv4 or IPv6 address or CIDR (${c})`);
  return c;
}

export function formatCidr(c: ParsedCidr): string {
  return `${formatAddress(c.family, c.base)}/${c.prefix}`;
}

/** A block as the source of a set member: the address alone for a /32 or /128, else the CIDR. */
export function formatSource(c: ParsedCidr): string {
  return c.prefix === ADDRESS_BITS[c.family] ? formatAddress(c.family, c.base) : formatCidr(c);
}

/** Whether `inner` lies entirely inside `outer` (same family). */
export function cidrInside(
  inner: { family: Family; first: bigint; last: bigint },
  outer: { family: Family; first: bigint; last: bigint },
): boolean {
  return inner.family === outer.family && inner.first >= outer.first && inner.last <= outer.last;
}
