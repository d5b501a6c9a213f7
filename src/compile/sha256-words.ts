/**
 * SHA-256 of short texts, as the eight 32-bit words of the digest (big-endian order: word 0 is
 * the digest's first 4 bytes), computed in JavaScript. Exactly sha256 (FIPS 180-4) of the UTF-8
 * bytes of `a + b + c`; test/sha256-words.test.ts checks it against node:crypto.
 *
 * Why not node:crypto: the egress version sum (state-version.ts) hashes one short text (~40-60
 * bytes, one or two blocks) per egress member, ~240,000 of them in a full compile of the
 * benchmark's 1,000 hosts. A `crypto.hash` call costs about 1-2 µs for such a text, nearly all
 * of it the call (string to UTF-8 buffer, the native hash object, a result Buffer); the
 * compression in JavaScript costs about a third of that, needs no joined text (the parts are
 * written one after the other) and leaves the words where the sum reads them. A text with a
 * character outside ASCII goes through node:crypto (members are ASCII; the version of any state,
 * however malformed, is still the definition's).
 */
import { hash } from 'node:crypto';

const K = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74,
  0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d,
  0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e,
  0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5,
  0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);
const INIT = new Int32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
const W = new Int32Array(64);
const H = new Int32Array(8);
/** Texts longer than this go through node:crypto (nothing to gain there; keeps `bytes` small). */
const MAX_LENGTH = 4096;
/** The padded message (a text of MAX_LENGTH and its padding fit). */
const bytes = new Uint8Array(MAX_LENGTH + 128);

/** One 64-byte block of `bytes` at `offset` compressed into H. */
function compress(offset: number): void {
  const b = bytes;
  for (let i = 0; i < 16; i++) {
    const j = offset + 4 * i;
    W[i] = (b[j]! << 24) | (b[j + 1]! << 16) | (b[j + 2]! << 8) | b[j + 3]!;
  }
  for (let i = 16; i < 64; i++) {
    const x = W[i - 15]!;
    const y = W[i - 2]!;
    const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
    const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
    W[i] = (W[i - 16]! + s0 + W[i - 7]! + s1) | 0;
  }
  let a = H[0]!;
  let bb = H[1]!;
  let c = H[2]!;
  let d = H[3]!;
  let e = H[4]!;
  let f = H[5]!;
  let g = H[6]!;
  let h = H[7]!;
  for (let i = 0; i < 64; i++) {
    const s1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
    const t1 = (h + s1 + ((e & f) ^ (~e & g)) + K[i]! + W[i]!) | 0;
    const s0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
    const t2 = (s0 + ((a & bb) ^ (a & c) ^ (bb & c))) | 0;
    h = g;
    g = f;
    f = e;
    e = (d + t1) | 0;
    d = c;
    c = bb;
    bb = a;
    a = (t1 + t2) | 0;
  }
  H[0] = (H[0]! + a) | 0;
  H[1] = (H[1]! + bb) | 0;
  H[2] = (H[2]! + c) | 0;
  H[3] = (H[3]! + d) | 0;
  H[4] = (H[4]! + e) | 0;
  H[5] = (H[5]! + f) | 0;
  H[6] = (H[6]! + g) | 0;
  H[7] = (H[7]! + h) | 0;
}

/** Writes ASCII `text` at `at`; false when it has another character. */
function writeAscii(text: string, at: number): boolean {
  const b = bytes;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code > 0x7f) return false;
    b[at + i] = code;
  }
  return true;
}

/** `out` = the words of sha256(a + b + c). */
export function sha256Words(out: Uint32Array, a: string, b = '', c = ''): void {
  const n = a.length + b.length + c.length;
  if (n > MAX_LENGTH || !writeAscii(a, 0) || !writeAscii(b, a.length) || !writeAscii(c, a.length + b.length)) {
    const digest = hash('sha256', a + b + c, 'buffer');
    for (let i = 0; i < 8; i++) out[i] = digest.readUInt32BE(4 * i);
    return;
  }
  const size = (((n + 8) >>> 6) + 1) * 64;
  bytes.fill(0, n, size);
  bytes[n] = 0x80;
  const bits = n * 8;
  bytes[size - 4] = bits >>> 24;
  bytes[size - 3] = bits >>> 16;
  bytes[size - 2] = bits >>> 8;
  bytes[size - 1] = bits;
  H.set(INIT);
  for (let offset = 0; offset < size; offset += 64) compress(offset);
  for (let i = 0; i < 8; i++) out[i] = H[i]!;
}
