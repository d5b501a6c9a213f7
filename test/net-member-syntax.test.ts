/**
 * src/net/member-syntax.ts (behind render's validate-member.ts) is a hand-written scanner; its earlier definition was a set of regexes. The
 * regex version is kept here as the reference: for every input (table-driven edge cases, and
 * random strings over the alphabet that matters: digits, hex letters, `.:/,`, `tcp`/`udp`,
 * spaces, line breaks, `-`) both must accept exactly the same members of every kind, and refuse
 * with the same message.
 */
import fc from 'fast-check';
import { describe, expect, it, vi } from 'vitest';
import { SET_KINDS, type SetKind } from '../src/compile/desired-state.js';
import { isIPv4, isIPv6, isPort } from '../src/net/member-syntax.js';
import { validateMember } from '../src/render/validate-member.js';

// ---- Reference: the regex-based definitions validate-member.ts had before the scanner. ----
const PORT = /^(0|[1-9][0-9]{0,4})$/;
function refIsPort(text: string): boolean {
  return PORT.test(text) && Number(text) <= 65535;
}
function refIsIPv4(text: string): boolean {
  const parts = text.split('.');
  return parts.length === 4 && parts.every((p) => /^(0|[1-9][0-9]{0,2})$/.test(p) && Number(p) <= 255);
}
function refIsIPv6(text: string): boolean {
  if (!/^[0-9a-fA-F:.]{2,45}$/.test(text)) return false;
  let body = text;
  const lastColon = body.lastIndexOf(':');
  if (body.includes('.')) {
    if (!refIsIPv4(body.slice(lastColon + 1))) return false;
    body = body.slice(0, lastColon + 1) + '0:0';
  }
  const halves = body.split('::');
  if (halves.length > 2) return false;
  const split = (s: string): string[] => (s === '' ? [] : s.split(':'));
  const parts = halves.flatMap(split);
  if (!parts.every((g) => /^[0-9a-fA-F]{1,4}$/.test(g))) return false;
  if (halves.length === 2) return parts.length <= 7;
  return parts.length === 8;
}
function refIsCidr(text: string, family: 4 | 6): boolean {
  const slash = text.indexOf('/');
  if (slash < 0) return false;
  const prefix = text.slice(slash + 1);
  if (!/^(0|[1-9][0-9]{0,2})$/.test(prefix) || Number(prefix) > (family === 4 ? 32 : 128)) return false;
  return family === 4 ? refIsIPv4(text.slice(0, slash)) : refIsIPv6(text.slice(0, slash));
}
function refProtoPort(text: string): string | undefined {
  const m = /^(tcp|udp):(.*)$/.exec(text);
  if (m === null) return 'expected "tcp:<port>" or "udp:<port>" after the comma';
  return refIsPort(m[2] as string) ? undefined : `port ${JSON.stringify(m[2])} is not 0..65535`;
}
function refPair(member: string, source: (s: string) => boolean, what: string): string | undefined {
  const comma = member.indexOf(',');
  if (comma < 0) return `expected "<${what}>,<proto>:<port>"`;
  if (!source(member.slice(0, comma))) return `${JSON.stringify(member.slice(0, comma))} is not ${what}`;
  return refProtoPort(member.slice(comma + 1));
}
function refCheck(kind: SetKind, member: string): string | undefined {
  if (member.length === 0 || member.length > 64) return 'empty or longer than 64 characters';
  switch (kind) {
    case 'managed-tcp':
    case 'managed-udp':
    case 'failsafe-tcp':
    case 'failsafe-udp':
    case 'audit-tcp':
    case 'audit-udp':
      return refIsPort(member) ? undefined : 'expected a port number 0..65535';
    case 'allow-ip4':
    case 'egress-managed4':
      return refPair(member, refIsIPv4, 'an IPv4 address');
    case 'allow-ip6':
    case 'egress-managed6':
      return refPair(member, refIsIPv6, 'an IPv6 address');
    case 'allow-net4':
      return refPair(member, (s) => refIsCidr(s, 4), 'an IPv4 CIDR');
    case 'allow-net6':
      return refPair(member, (s) => refIsCidr(s, 6), 'an IPv6 CIDR');
    default:
      throw new Error(`no reference for ${kind}`);
  }
}
/** The kinds the regex reference covers (the egress "<app id>|" forms and egress-audit's app ids have their own table below). */
const REF_KINDS = SET_KINDS.filter((k) => k !== 'egress-task' && k !== 'egress-ip4' && k !== 'egress-ip6' && k !== 'egress-audit');
function refValidate(kind: SetKind, member: string): string | undefined {
  const error = refCheck(kind, member);
  return error === undefined ? undefined : `invalid ${kind} member ${JSON.stringify(member)}: ${error}`;
}
// ---- end of reference ----

const ADDRESSES = [
  '', '0', '1', '::', ':::', '::::', ':', ':1', '1:', '1::', '::1', '1::2', '1:::2', '1::2::3', '::1::', 'a::b::',
  '2001:db8::1', '2001:DB8::ABCD', '2001:db8:0:0:0:0:0:1', '2001:db8:0:0:0:0:0:0:1', '1:2:3:4:5:6:7', '1:2:3:4:5:6:7:8',
  '1:2:3:4:5:6:7::', '::2:3:4:5:6:7:8', '1:2:3:4:5:6::7:8', '12345::1', 'g::1', 'fe80::1%eth0', '0:0:0:0:0:0:0:0',
  '::ffff:10.0.0.1', '::10.0.0.1', '::1.2.3.4', ':1.2.3.4', '1.2.3.4', '1:2:3:4:5:6:1.2.3.4', '1:2:3:4:5:1.2.3.4',
  '1:2:3:4:5:6:7:1.2.3.4', '1:2:3:4:5::1.2.3.4', '1:2:3:4:5:6::1.2.3.4', '1::2:1.2.3.4', '1:::1.2.3.4', ':::1.2.3.4',
  '::1::1.2.3.4', '1.2::1.2.3.4', '::1.2.3', '::1.2.3.4.5', '::01.2.3.4', '::256.2.3.4', '::1.2.3.4:', '::ffff:1.2.3.4/0',
  '10.0.0.1', '10.0.0.01', '10.0.0.256', '10.0.0', '10.0.0.1.', '.10.0.0.1', '10..0.1', '255.255.255.255', '0.0.0.0',
  '10.0.0.1 ', ' 10.0.0.1', '10.0.0.1\n', '1234:5678:9abc:def0:1234:5678:9abc:def0',
  '1111:2222:3333:4444:5555:6666:7777:8888:9999', 'ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255',
];
const PREFIXES = ['', '/0', '/1', '/8', '/24', '/32', '/33', '/64', '/128', '/129', '/08', '/-1', '/1/2', '/ 8', '/1000'];
const TAILS = [',tcp:80', ',udp:53', ',tcp:0', ',tcp:65535', ',tcp:65536', ',tcp:080', ',TCP:80', ',sctp:80', ',tcp:', ',tcp:80\n', ',tcp:\n80', ',tcp:80 -exist', ',tcp:8\u20280', ',tcp:80,udp:1', '', ',', ',tcp80'];

function tableCases(): { kind: SetKind; member: string }[] {
  const members = new Set<string>();
  for (const a of ADDRESSES) {
    for (const t of TAILS) {
      members.add(a + t);
      for (const p of PREFIXES) members.add(a + p + t);
    }
  }
  for (const port of ['0', '1', '00', '01', '80', '65535', '65536', '99999', '100000', '-1', '+1', '1e3', ' 80', '80 ', '80\n', '８０', '0x50']) members.add(port);
  members.add('1'.repeat(64));
  members.add(`10.0.0.1,tcp:${'1'.repeat(60)}`);
  return REF_KINDS.flatMap((kind) => [...members].map((member) => ({ kind, member })));
}

describe('validate-member scanner = the regex reference', () => {
  it('agrees on every table case, message included', () => {
    const cases = tableCases();
    expect(cases.length).toBeGreaterThan(10_000);
    const disagreements = cases.filter(({ kind, member }) => validateMember(kind, member) !== refValidate(kind, member));
    expect(disagreements.slice(0, 10)).toEqual([]);
    // The table exercises both outcomes in every kind.
    for (const kind of REF_KINDS) {
      const kindCases = cases.filter((c) => c.kind === kind);
      expect(kindCases.some((c) => validateMember(kind, c.member) === undefined)).toBe(true);
      expect(kindCases.some((c) => validateMember(kind, c.member) !== undefined)).toBe(true);
    }
  });

  it('agrees on the address predicates', () => {
    for (const a of ADDRESSES) {
      expect([a, isIPv4(a), isIPv6(a)]).toEqual([a, refIsIPv4(a), refIsIPv6(a)]);
      expect([a, isPort(a)]).toEqual([a, refIsPort(a)]);
    }
  });

  const alphabet = fc.constantFrom(...'0123456789abcdefABCDEF:.:.::,/tcpud -\n'.split(''), 'tcp:', 'udp:', '::', '255', '10.', ',tcp:');
  const text = fc.array(alphabet, { maxLength: 24 }).map((parts) => parts.join(''));
  const hexGroup = fc.stringMatching(/^[0-9a-fA-F]{0,5}$/);
  const ipv6ish = fc
    .tuple(fc.array(hexGroup, { maxLength: 10 }), fc.constantFrom('', '::', ':'), fc.integer({ min: 0, max: 10 }), fc.option(fc.constantFrom('1.2.3.4', '10.0.0.256', '0.0.0.0')))
    .map(([groups, sep, at, v4]) => {
      const joined = groups.join(':');
      const cut = Math.min(at, joined.length);
      return joined.slice(0, cut) + sep + joined.slice(cut) + (v4 === null ? '' : `:${v4}`);
    });
  const member = fc
    .tuple(fc.oneof(text, ipv6ish, fc.ipV4(), fc.ipV6(), fc.ipV4Extended()), fc.constantFrom(...PREFIXES), fc.constantFrom(...TAILS, ',tcp:', ',udp:'), fc.oneof(fc.constant(''), fc.nat(70000).map(String), text))
    .map(([a, p, t, rest]) => a + p + t + rest);

  it('agrees on random members of every kind', () => {
    fc.assert(
      fc.property(fc.constantFrom(...REF_KINDS), fc.oneof(member, text), (kind, m) => {
        expect(validateMember(kind, m)).toBe(refValidate(kind, m));
      }),
      { numRuns: 20_000 },
    );
  });

  it('agrees on random addresses', () => {
    fc.assert(
      fc.property(fc.oneof(ipv6ish, fc.ipV6(), fc.ipV4(), fc.ipV4Extended(), text), (a) => {
        expect([isIPv4(a), isIPv6(a)]).toEqual([refIsIPv4(a), refIsIPv6(a)]);
      }),
      { numRuns: 20_000 },
    );
  });

  it('lets nothing through that could break a restore line', () => {
    const dangerous = /[\s\0-\x1f\x7f-\uffff"'#;\\-]/;
    // App ids ('/' and [A-Za-z0-9._/-]) may hold '-': they never reach a restore line as text (the
    // kernel names are hashes of them, owned-names.ts); only what follows '|' does.
    const dangerousInAppId = /[\s\0-\x1f\x7f-\uffff"'#;\\]/;
    const appIdOf = (kind: SetKind, m: string): string => (kind === 'egress-audit' ? m : kind.startsWith('egress-') && m.includes('|') ? m.slice(0, m.indexOf('|')) : '');
    fc.assert(
      fc.property(fc.constantFrom(...SET_KINDS), fc.oneof(member, text, fc.string({ maxLength: 40 })), (kind, m) => {
        if (validateMember(kind, m) !== undefined) return;
        const id = appIdOf(kind, m);
        expect(dangerousInAppId.test(id)).toBe(false);
        expect(dangerous.test(id === '' ? m : m.slice(id.length + 1))).toBe(false); // what follows '|', or the whole member
      }),
      { numRuns: 20_000 },
    );
  });

  it('validates 100,000 members in one scan each, without a regular expression', () => {
    // Counted, not timed: the member scanner (src/net/member-syntax.ts) reads each member once,
    // character by character; the regular expressions it replaced cost ~100 ms per 100,000.
    const members = Array.from({ length: 100_000 }, (_, i) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255},tcp:${31000 + (i % 100)}`);
    const ip6 = Array.from({ length: 10_000 }, (_, i) => `fd00::${(i >> 8).toString(16)}:${(i & 255).toString(16)},udp:53`);
    const exec = vi.spyOn(RegExp.prototype, 'exec');
    const test = vi.spyOn(RegExp.prototype, 'test');
    try {
      for (const m of members) if (validateMember('allow-ip4', m) !== undefined) throw new Error(m);
      for (const m of ip6) if (validateMember('allow-ip6', m) !== undefined) throw new Error(m);
      expect(exec).not.toHaveBeenCalled();
      expect(test).not.toHaveBeenCalled();
    } finally {
      exec.mockRestore();
      test.mockRestore();
    }
    expect(validateMember('allow-ip4', '10.0.0.1,tcp:99999')).toBeDefined();
  });
});

describe('egress members ("<app id>|...")', () => {
  const cases: { kind: SetKind; member: string; ok: boolean }[] = [
    { kind: 'egress-task', member: '/shop/web|shop_web.3f2a-11ee', ok: true },
    { kind: 'egress-task', member: '/Shop/Web_1|t', ok: true },
    { kind: 'egress-task', member: 'shop/web|t1', ok: false }, // not absolute
    { kind: 'egress-task', member: '/|t1', ok: false },
    { kind: 'egress-task', member: '/shop/web|', ok: false },
    { kind: 'egress-task', member: '/shop/web', ok: false },
    { kind: 'egress-task', member: '/shop/web|t/1', ok: false },
    { kind: 'egress-task', member: '/shop web|t1', ok: false },
    { kind: 'egress-task', member: '/shop/web|t1\nadd x', ok: false },
    { kind: 'egress-task', member: '/shop/web|t|1', ok: false },
    { kind: 'egress-task', member: `/${'a'.repeat(512)}|${'t'.repeat(255)}`, ok: true },
    { kind: 'egress-task', member: `/${'a'.repeat(513)}|t`, ok: false },
    { kind: 'egress-task', member: `/a|${'t'.repeat(256)}`, ok: false },
    { kind: 'egress-ip4', member: '/shop/web|10.0.0.1,tcp:31000', ok: true },
    { kind: 'egress-ip4', member: '/shop/web|10.0.0.1,tcp:99999', ok: false },
    { kind: 'egress-ip4', member: '/shop/web|fd00::1,tcp:80', ok: false },
    { kind: 'egress-ip4', member: '/shop/web|10.0.0.0/24,tcp:80', ok: false },
    { kind: 'egress-ip4', member: '10.0.0.1,tcp:80', ok: false },
    { kind: 'egress-ip6', member: '/shop/web|fd00::1,udp:53', ok: true },
    { kind: 'egress-ip6', member: '/shop/web|10.0.0.1,udp:53', ok: false },
    { kind: 'egress-managed4', member: '10.0.0.1,tcp:31000', ok: true },
    { kind: 'egress-managed4', member: '/shop/web|10.0.0.1,tcp:31000', ok: false },
    { kind: 'egress-managed6', member: 'fd00::1,tcp:31000', ok: true },
    { kind: 'egress-audit', member: '/shop/web', ok: true },
    { kind: 'egress-audit', member: `/${'a'.repeat(512)}`, ok: true },
    { kind: 'egress-audit', member: `/${'a'.repeat(513)}`, ok: false },
    { kind: 'egress-audit', member: 'shop/web', ok: false },
    { kind: 'egress-audit', member: '/shop/web|t1', ok: false },
    { kind: 'egress-audit', member: '/shop web', ok: false },
    { kind: 'egress-audit', member: '/shop/web\nadd x', ok: false },
    { kind: 'audit-tcp', member: '31000', ok: true },
    { kind: 'audit-udp', member: '65536', ok: false },
  ];
  it.each(cases)('$kind $member → ok=$ok', ({ kind, member, ok }) => {
    const error = validateMember(kind, member);
    if (ok) expect(error).toBeUndefined();
    else expect(error).toMatch(new RegExp(`^invalid ${kind} member `));
  });
});
