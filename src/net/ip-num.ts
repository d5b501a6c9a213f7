/**
 * The parts of `ip-num` Portcullis uses, loaded with `require`. ip-num is a CommonJS package of
 * many files; imported as ESM, Node runs its export lexer over every one of them, which costs
 * about 35 ms at each CLI start (a third of `portcullis check`). `require` skips that. Import
 * these from here, never from 'ip-num' directly.
 */
import { createRequire } from 'node:module';
import type * as IpNum from 'ip-num';

const ipNum = createRequire(import.meta.url)('ip-num') as typeof IpNum;

export const { IPv4, IPv6, IPv4CidrRange, IPv6CidrRange, Validator } = ipNum;
export type IPv4 = IpNum.IPv4;
export type IPv6 = IpNum.IPv6;
export type IPv4CidrRange = IpNum.IPv4CidrRange;
export type IPv6CidrRange = IpNum.IPv6CidrRange;
