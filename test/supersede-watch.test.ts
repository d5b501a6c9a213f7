/** SupersedeWatch (src/grpc/supersede-watch.ts) on a clock the test moves: when one host id's supersedes are said at warn. */
import { describe, expect, it } from 'vitest';
import { FLAP_COUNT, FLAP_WINDOW_MS, SupersedeWatch } from '../src/grpc/supersede-watch.js';

function watch() {
  const warned: Record<string, unknown>[] = [];
  let now = 1_000_000;
  const noop = () => undefined;
  const w = new SupersedeWatch({ debug: noop, info: noop, warn: (fields) => void warned.push(fields as Record<string, unknown>) }, () => now);
  return { w, warned, advance: (ms: number) => void (now += ms) };
}

describe('SupersedeWatch', () => {
  it(`warns when one host id is superseded ${FLAP_COUNT} times within ${FLAP_WINDOW_MS} ms, then not again for five minutes`, () => {
    const { w, warned, advance } = watch();
    for (let i = 0; i < FLAP_COUNT - 1; i++) {
      w.superseding('h', `a:${i}`, `b:${i}`);
      advance(1000);
    }
    expect(warned).toEqual([]);
    w.superseding('h', 'a', 'b');
    expect(warned).toEqual([{ hostId: 'h', peers: ['a', 'b'], supersededWithinMs: (FLAP_COUNT - 1) * 1000, times: FLAP_COUNT }]);
    for (let i = 0; i < 10; i++) w.superseding('h', 'a', 'b');
    expect(warned).toHaveLength(1);
    advance(300_001);
    for (let i = 0; i < FLAP_COUNT; i++) w.superseding('h', 'a', 'b');
    expect(warned).toHaveLength(2);
    expect(w.superseded).toBe(2 * FLAP_COUNT + 10);
  });

  it('does not warn for supersedes spread wider than the window, nor for many host ids once each (a reconnect storm)', () => {
    const { w, warned, advance } = watch();
    for (let i = 0; i < 3 * FLAP_COUNT; i++) {
      w.superseding('h', 'a', 'b');
      advance(FLAP_WINDOW_MS / (FLAP_COUNT - 1) + 1);
    }
    for (let i = 0; i < 5000; i++) w.superseding(`host-${i}`, 'a', 'b');
    expect(warned).toEqual([]);
    expect(w.superseded).toBe(3 * FLAP_COUNT + 5000);
  });
});
