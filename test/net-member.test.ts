/**
 * src/net/member.ts and the lenient side of src/net/cidr.ts: the canonical form of a member
 * against an independent reading (the WHATWG URL parser for IPv6 text, ip-num for the network of
 * a prefix), the /0 halves against address arithmetic, and the two strictnesses of one parser.
 */
import fc from 'fast-check';
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import type * as IpNum from 'ip-num';
import { AddressSet } from '../src/compile/address-set.js';
import { canonicalAddress, parseAddress } from '../src/net/address.js';
import { cidrBlockOf, formatCidr, LENIENT, parseCidr } from '../src/net/cidr.js';
import { FAMILIES } from '../src/net/family.js';
import { isZeroPrefixMember, memberSuffix, netEntries, normalizeMember, ZERO_PREFIX_HALVES } from '../src/net/member.js';
import { validateMember } from '../src/render/validate-member.js';

const ipNum = createRequire(import.meta.url)('ip-num') as typeof IpNum;

/** IPv6 text in many spellings: full, upper case, leading zeros, `::` anywhere, embedded IPv4. */
const ipv6Spelling = fc
  .tuple(fc.array(fc.constantFrom(0, 0, 0, 1, 0xff, 0xffff, 0xdb8, 0xa), { minLength: 8, maxLength: 8 }), fc.nat(3), fc.boolean(), fc.boolean())
  .map(([groups, style, upper, embedded]) => {
    const hex = groups.map((g) => (style === 1 ? g.toString(16).padStart(4, '0') : g.toString(16)));
    let text = hex.join(':');
    if (embedded) text = `${hex.slice(0, 6).join(':')}:${groups[6]! >> 8}.${groups[6]! & 255}.${groups[7]! >> 8}.${groups[7]! & 255}`;
    if (style === 2) {
      const zero = text.indexOf(':0:');
      if (zero >= 0) text = `${text.slice(0, zero)}::${text.slice(zero + 3)}`;
    }
    return upper ? text.toUpperCase() : text;
  });

describe('normalizeMember', () => {
  it('spells an IPv6 source as the WHATWG URL parser does (RFC 5952), for any accepted spelling', () => {
    fc.assert(
      fc.property(ipv6Spelling, fc.constantFrom('tcp:80', 'UDP:53'), (address, suffix) => {
        const member = `${address},${suffix}`;
        fc.pre(validateMember('allow-ip6', member.toLowerCase()) === undefined);
        const expected = new URL(`http://[${address}]/`).hostname.slice(1, -1);
        expect(normalizeMember(member)).toBe(`${expected},${suffix.toLowerCase()}`);
        expect(canonicalAddress(address)).toBe(expected);
      }),
      { numRuns: 1500, seed: 20261201 },
    );
  });

  it('masks a network to its prefix as ip-num does, and drops a full-length prefix', () => {
    const quad = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((p) => p.join('.'));
    fc.assert(
      fc.property(quad, fc.integer({ min: 0, max: 32 }), (address, prefix) => {
        const first = ipNum.IPv4CidrRange.fromCidr(`${address}/${prefix}`).getFirst().toString();
        expect(normalizeMember(`${address}/${prefix},tcp:1`)).toBe(prefix === 32 ? `${address},tcp:1` : `${first}/${prefix},tcp:1`);
      }),
      { numRuns: 1000, seed: 20261201 },
    );
  });

  it('leaves text it cannot read as it is, but lower case', () => {
    expect(normalizeMember('10.0.0.0/33,TCP:1')).toBe('10.0.0.0/33,tcp:1');
    expect(normalizeMember('Web,tcp:1')).toBe('web,tcp:1');
    expect(normalizeMember('31000')).toBe('31000');
  });
});

describe('the /0 halves', () => {
  it.each(FAMILIES)('IPv%s: the two halves are canonical /1 blocks that cover exactly the /0', (family) => {
    const halves = ZERO_PREFIX_HALVES[family];
    for (const half of halves) expect(formatCidr(cidrBlockOf(half))).toBe(half);
    const whole = family === 4 ? '0.0.0.0/0' : '::/0';
    expect(AddressSet.fromStrings(halves).toCidrs()).toEqual([whole]);
    expect(AddressSet.fromStrings([halves[0]]).intersect(AddressSet.fromStrings([halves[1]])).isEmpty()).toBe(true);
  });

  it('expands a /0 net member (whatever its address) and only a /0', () => {
    expect(netEntries(`10.0.0.0/0${memberSuffix('tcp', 80)}`, 4)).toEqual(['0.0.0.0/1,tcp:80', '128.0.0.0/1,tcp:80']);
    expect(netEntries('::/0,udp:53', 6)).toEqual(['::/1,udp:53', '8000::/1,udp:53']);
    expect(netEntries('10.0.0.0/10,tcp:80', 4)).toEqual(['10.0.0.0/10,tcp:80']);
    expect([isZeroPrefixMember('0.0.0.0/0,tcp:1'), isZeroPrefixMember('0.0.0.0/10,tcp:1'), isZeroPrefixMember('0,tcp:1')]).toEqual([true, false, false]);
  });
});

describe('one parser, two strictnesses', () => {
  it('refuses host bits and IPv4-mapped text by default, reads them under LENIENT', () => {
    expect(parseCidr('10.1.2.3/8')).toEqual({ ok: false, message: expect.stringContaining('has host bits set') });
    expect(parseCidr('10.1.2.3/8', LENIENT)).toEqual({ ok: true, family: 4, canonical: '10.0.0.0/8', first: 10n << 24n, last: (11n << 24n) - 1n });
    expect(parseCidr('::ffff:10.0.0.0/104')).toEqual({ ok: false, message: expect.stringContaining('write 10.0.0.0/8 instead') });
    expect(parseCidr('::ffff:10.0.0.0/104', LENIENT)).toMatchObject({ ok: true, family: 6, canonical: '::ffff:a00:0/104' });
    expect(parseAddress('::ffff:10.0.0.1')).toEqual({ ok: false, message: expect.stringContaining('write 10.0.0.1 instead') });
    expect(parseAddress('::ffff:10.0.0.1', { mapped: 'accept' })).toMatchObject({ ok: true, family: 6, canonical: '::ffff:a00:1' });
  });

  it('gives the same reasons under both for text that is no address', () => {
    for (const text of ['10.0.0.256', 'web', 'fe80::1%eth0', '10.0.0.0/33']) {
      const strict = parseCidr(text);
      const lenient = parseCidr(text, LENIENT);
      expect(strict.ok).toBe(false);
      expect(lenient).toEqual(strict);
      expect(() => cidrBlockOf(text)).toThrow(strict.ok ? '' : strict.message);
    }
  });
});
