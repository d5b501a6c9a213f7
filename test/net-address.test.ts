/**
 * src/net/address.ts and cidr.ts against ip-num, the library they stand on: the direct read of
 * canonical dotted quads and canonical IPv6 text and the arithmetic of CIDR ranges must say exactly what ip-num says, for random
 * addresses and prefixes of both families and for near-miss IPv4 texts (leading zeros, 256, too
 * few or many parts), which must still be refused with ip-num's reasons.
 */
import fc from 'fast-check';
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import type * as IpNum from 'ip-num';
import { addressOf, ipv6Text, isOwnableAddress, parseAddress } from '../src/net/address.js';
import { parseCidr } from '../src/net/cidr.js';

const ipNum = createRequire(import.meta.url)('ip-num') as typeof IpNum;
const quad = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((p) => p.join('.'));

describe('addresses and CIDRs agree with ip-num', () => {
  it('IPv4: value, canonical text and the range of every prefix', () => {
    fc.assert(
      fc.property(quad, fc.integer({ min: 0, max: 32 }), (address, prefix) => {
        const a = parseAddress(address);
        expect(a).toEqual({ ok: true, family: 4, canonical: address, value: new ipNum.IPv4(address).getValue() });
        const range = ipNum.IPv4CidrRange.fromCidr(`${address}/${prefix}`);
        const network = range.getFirst().toString();
        const c = parseCidr(`${network}/${prefix}`);
        expect(c).toEqual({ ok: true, family: 4, canonical: `${network}/${prefix}`, first: range.getFirst().getValue(), last: range.getLast().getValue() });
        if (network !== address) expect(parseCidr(`${address}/${prefix}`).ok).toBe(false); // host bits set
      }),
      { numRuns: 2000, seed: 20261201 },
    );
  });

  it('IPv6: the range of every prefix', () => {
    const groups = fc.array(fc.nat(0xffff), { minLength: 8, maxLength: 8 }).map((g) => g.map((x) => x.toString(16)).join(':'));
    fc.assert(
      fc.property(groups, fc.integer({ min: 0, max: 128 }), (address, prefix) => {
        fc.pre(!address.startsWith('0:0:0:0:0:ffff:')); // IPv4-mapped: refused on purpose
        const range = ipNum.IPv6CidrRange.fromCidr(`${address}/${prefix}`);
        const first = range.getFirst().getValue();
        const c = parseCidr(`${range.getFirst().toString()}/${prefix}`);
        expect(c.ok && c.first === first && c.last === range.getLast().getValue()).toBe(true);
      }),
      { numRuns: 1000, seed: 20261201 },
    );
  });

  it('IPv6: canonical text is read directly, and ip-num reads it as the same address', () => {
    const group = fc.oneof(fc.constant(0), fc.constant(0), fc.nat(0xffff));
    const value = fc.array(group, { minLength: 8, maxLength: 8 }).map((g) => g.reduce((v, x) => (v << 16n) | BigInt(x), 0n));
    const edges = [0n, 1n, (1n << 128n) - 1n, 0xffffn << 48n, 1n << 112n];
    fc.assert(
      fc.property(fc.oneof(value, fc.constantFrom(...edges)), (v) => {
        fc.pre(v >> 32n !== 0xffffn); // IPv4-mapped: refused on purpose
        const text = ipv6Text(v);
        expect(ipNum.Validator.isValidIPv6String(text)[0]).toBe(true);
        expect(new ipNum.IPv6(text).getValue()).toBe(v);
        expect(parseAddress(text)).toEqual({ ok: true, family: 6, canonical: text, value: v });
        expect(parseAddress(text.toUpperCase())).toEqual({ ok: true, family: 6, canonical: text, value: v });
      }),
      { numRuns: 2000, seed: 20261201 },
    );
  });

  it.each(['010.0.0.1', '1.2.3.256', '1.2.3', '1.2.3.4.5', '1..2.3', '00.1.2.3'])('near-miss IPv4 %s is refused as ip-num refuses it', (text) => {
    expect(ipNum.Validator.isValidIPv4String(text)[0]).toBe(false);
    const a = parseAddress(text);
    expect(a.ok).toBe(false);
    expect(parseCidr(`${text}/32`).ok).toBe(false);
  });
});

describe('isOwnableAddress', () => {
  it('a container may own a unicast address, never the unspecified, loopback, multicast or broadcast ones', () => {
    for (const ok of ['172.17.0.2', '10.0.0.1', '223.255.255.254', '240.0.0.1', 'fd00::2', '2001:db8::1', 'fe80::1']) expect(isOwnableAddress(addressOf(ok)), ok).toBe(true);
    for (const bad of ['0.0.0.0', '127.0.0.1', '127.255.0.9', '224.0.0.1', '239.255.255.255', '255.255.255.255', '::', '::1', 'ff02::1']) expect(isOwnableAddress(addressOf(bad)), bad).toBe(false);
  });
});
