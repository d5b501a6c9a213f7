/**
 * The hash arithmetic of state versions (state-version.ts has the definition): sha256 read as a
 * 256-bit number, sums mod 2^256, and the per-group digests of the allow lists.
 *
 * 256-bit numbers mod 2^256 are 8 big-endian 32-bit limbs in a Uint32Array (plain number
 * arithmetic: BigInt sums allocate and cost several times more).
 */
import { hash } from 'node:crypto';

export const LIMBS = 8;
const BASE = 2 ** 32;

/** sha256 of `text` read as a big-endian 256-bit number. */
export function sha256Number(text: string): Uint32Array {
  const digest = hash('sha256', text, 'buffer');
  const v = new Uint32Array(LIMBS);
  for (let i = 0; i < LIMBS; i++) v[i] = digest.readUInt32BE(4 * i);
  return v;
}

/** 64 lowercase hex of a 256-bit number (big-endian limbs written into a Buffer: one native hex encoding). */
export function toHex(v: Uint32Array): string {
  const bytes = Buffer.allocUnsafe(4 * LIMBS);
  for (let i = 0; i < LIMBS; i++) bytes.writeUInt32BE(v[i]!, 4 * i);
  return bytes.toString('hex');
}

/** sum += sign * t (mod 2^256), in place. */
export function addInto(sum: Uint32Array, t: Uint32Array, sign: 1 | -1): void {
  let carry = 0;
  for (let i = LIMBS - 1; i >= 0; i--) {
    const v = sum[i]! + sign * t[i]! + carry;
    carry = v >= BASE ? 1 : v < 0 ? -1 : 0;
    sum[i] = v; // stored mod 2^32
  }
}

export function sha256Hex(text: string): string {
  return hash('sha256', text, 'hex');
}

/** S of one kind of a group: its sources (in the order they appear, see the header), each followed by '\n'. */
export function sourcesDigest(sources: readonly string[]): string {
  return sha256Hex(sources.length === 0 ? '' : `${sources.join('\n')}\n`);
}

/** G of a group: its suffix and the S of each allow kind. */
export function groupTerm(suffix: string, digests: readonly string[]): Uint32Array {
  return sha256Number(`${suffix}\n${digests.join('\n')}`);
}

export const EMPTY_DIGEST = sourcesDigest([]);

