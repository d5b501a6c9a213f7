/**
 * sha256-words.ts is sha256: the words it writes are node:crypto's digest of the joined text,
 * for every length around the block boundaries, texts split anywhere into its three parts,
 * characters outside ASCII (the node:crypto path) and texts over its length limit.
 */
import { hash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { sha256Words } from '../src/compile/sha256-words.js';
import { seededRandom } from './support/seeded-random.js';

function expected(text: string): number[] {
  const digest = hash('sha256', text, 'buffer');
  return Array.from({ length: 8 }, (_, i) => digest.readUInt32BE(4 * i));
}

function words(a: string, b?: string, c?: string): number[] {
  const out = new Uint32Array(8);
  sha256Words(out, a, b, c);
  return [...out];
}

const ASCII = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789|,:./-_\n\t ~\u0000\u007f';

describe('sha256Words', () => {
  const rand = seededRandom(11);
  const text = (n: number, alphabet: string) => Array.from({ length: n }, () => alphabet[Math.floor(rand() * alphabet.length)]!).join('');

  it('equals node:crypto for every length up to 300 and some long texts, split anywhere', () => {
    for (const n of [...Array.from({ length: 301 }, (_, i) => i), 1000, 4095, 4096, 4097, 10_000]) {
      const t = text(n, ASCII);
      const i = Math.floor(rand() * (n + 1));
      const j = i + Math.floor(rand() * (n - i + 1));
      expect(words(t.slice(0, i), t.slice(i, j), t.slice(j)), `length ${n} split ${i}/${j}`).toEqual(expected(t));
    }
    expect(words('')).toEqual(expected(''));
    expect(words('egress-ip4\n', '/shop/web|', '10.0.0.1,tcp:31000')).toEqual(expected('egress-ip4\n/shop/web|10.0.0.1,tcp:31000'));
  });

  it('equals node:crypto (its UTF-8) for texts with characters outside ASCII', () => {
    for (const t of ['é', 'egress-ip4\n/shop/wéb|10.0.0.1,tcp:1', '\u{1f600}', '\ud800', 'x\u0080', text(70, 'aé€\u{1f600}')]) {
      expect(words(t)).toEqual(expected(t));
      expect(words('a', t, 'b')).toEqual(expected(`a${t}b`));
    }
  });

  it('keeps no state between texts (an ASCII text after a long and a non-ASCII one)', () => {
    const short = 'egress-task\n/a|b.1';
    const first = words(short);
    words(text(4000, ASCII));
    words('ü'.repeat(100));
    expect(words(short)).toEqual(first);
    expect(first).toEqual(expected(short));
  });
});
