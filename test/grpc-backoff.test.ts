import { describe, expect, it } from 'vitest';
import { Backoff, backoffCap, fullJitterDelay } from '../src/retry/backoff.js';

describe('exponential backoff with full jitter', () => {
  it('caps grow by the multiplier up to the maximum', () => {
    const options = { initialMs: 100, maxMs: 1000, multiplier: 2 };
    expect([0, 1, 2, 3, 4, 5, 60, 5000].map((n) => backoffCap(n, options))).toEqual([100, 200, 400, 800, 1000, 1000, 1000, 1000]);
  });

  it('draws uniformly below the cap with the injected random', () => {
    const options = { initialMs: 100, maxMs: 1000 };
    expect(fullJitterDelay(3, { ...options, random: () => 0 })).toBe(0);
    expect(fullJitterDelay(3, { ...options, random: () => 0.5 })).toBe(400);
    expect(fullJitterDelay(3, { ...options, random: () => 0.999999 })).toBe(799);
  });

  it('next() advances, reset() starts over', () => {
    const draws = [0.5, 0.5, 0.5, 0.5, 0.5];
    const backoff = new Backoff({ initialMs: 100, maxMs: 300, random: () => draws.shift() ?? 1 });
    expect([backoff.next(), backoff.next(), backoff.next()]).toEqual([50, 100, 150]);
    expect(backoff.attempt).toBe(2); // stops counting once the cap is reached
    backoff.reset();
    expect(backoff.next()).toBe(50);
  });
});
