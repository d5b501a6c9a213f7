/**
 * Set members as text: how a member is written, which kernel entries it stands for, and the
 * canonical form the kernel prints it in. Their syntax is member-syntax.ts.
 *
 * - A pair member is "<source>,<proto>:<port>": the source (an address or a CIDR), then the
 *   suffix `memberSuffix` writes. The suffix starts with ',' which sorts before every character a
 *   source can hold, so members sort by source, then suffix.
 * - ipset hash:net cannot hold a /0. The one answer to that is here: a /0 is the two /1 halves
 *   (`ZERO_PREFIX_HALVES`). The compiler writes the halves itself (its states never hold a /0,
 *   test/compile-semantics.test.ts), and the render expands a /0 member of a state that came from
 *   elsewhere (`netEntries`), so both write the same kernel entries.
 * - `normalizeMember` is a member as `ipset save` prints it: IPv6 in RFC 5952 form, a network
 *   masked to its prefix, a full-length prefix dropped, the protocol in lower case. Two members
 *   that normalise equal are one kernel entry (`10.0.0.1/24` and `10.0.0.0/24`, IPv6 spellings).
 */
import { decimalAt, formatAddress, ipv4ValueAt, ipv6Value, isIPv6At } from './address.js';
import { networkOf } from './cidr.js';
import { ADDRESS_BITS, type Family } from './family.js';

/** The part of a pair member after its source: ",<proto>:<port>". */
export function memberSuffix(protocol: string, port: number): string {
  return `,${protocol}:${port}`;
}

/**
 * The pair member `source` + `suffix`, as one flat string. V8 keeps a concatenation of 13
 * characters or more as a rope (a ConsString: two pointers); the first reader that needs its
 * characters (the wire encoder, a hash) flattens it into a new string, and the rope, already in
 * the old generation, stays and points at it. So a compiled state's members cost about 80 bytes
 * each instead of 48 once sent (a replica's memory per agent, issue 12), and each first send
 * pays the flattening (~0.1 µs a member). Reading a character now flattens it while it is young,
 * and the young-generation GC then drops the rope.
 */
export function pairMember(source: string, suffix: string): string {
  const member = source + suffix;
  member.charCodeAt(0);
  return member;
}

/** The /1 halves that stand for a /0 in a hash:net set, per family. */
export const ZERO_PREFIX_HALVES: Readonly<Record<Family, readonly [string, string]>> = {
  4: ['0.0.0.0/1', '128.0.0.0/1'],
  6: ['::/1', '8000::/1'],
};

/** Whether a net member's source has a /0 prefix ("…/0,<proto>:<port>"). */
export function isZeroPrefixMember(member: string): boolean {
  const comma = member.indexOf(',');
  return comma >= 2 && member.charCodeAt(comma - 1) === 48 && member.charCodeAt(comma - 2) === 47; // "/0,"
}

/** The kernel entries of a validated net member of `family`: itself, or the two /1 halves of a /0. */
export function netEntries(member: string, family: Family): string[] {
  if (!isZeroPrefixMember(member)) return [member];
  const rest = member.slice(member.indexOf(','));
  return ZERO_PREFIX_HALVES[family].map((half) => half + rest);
}

/** A source (address or CIDR) as the kernel prints it; unreadable text only lower-cased. */
function canonicalSource(source: string): string {
  const slash = source.indexOf('/');
  const address = slash < 0 ? source : source.slice(0, slash);
  let family: Family;
  let value: bigint;
  const v4 = ipv4ValueAt(address, 0, address.length);
  if (v4 >= 0) {
    family = 4;
    value = BigInt(v4);
  } else if (isIPv6At(address, 0, address.length)) {
    family = 6;
    value = ipv6Value(address);
  } else {
    return source.toLowerCase();
  }
  const bits = ADDRESS_BITS[family];
  const prefix = slash < 0 ? bits : decimalAt(source, slash + 1, source.length, 3, bits);
  if (prefix < 0) return source.toLowerCase();
  const text = formatAddress(family, networkOf(family, value, prefix));
  return prefix === bits ? text : `${text}/${prefix}`;
}

/** A set member as `ipset save` prints it (see the header). Port-only members are returned unchanged. */
export function normalizeMember(member: string): string {
  const comma = member.lastIndexOf(',');
  if (comma < 0) return member.includes('.') || member.includes(':') ? canonicalSource(member) : member;
  return `${canonicalSource(member.slice(0, comma))},${member.slice(comma + 1).toLowerCase()}`;
}
