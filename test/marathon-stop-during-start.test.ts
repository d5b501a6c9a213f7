/**
 * stop() while start() is still waiting for Marathon's first list (a controller told to stop
 * during a slow start): once start() returns, nothing of the source or the feed may keep running.
 * setInterval is faked so the timers left behind can be counted; every wait has a deadline.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { HostAddresses } from '../src/controller/host-addresses.js';
import { MarathonFeed } from '../src/controller/marathon-feed.js';
import { MarathonSource } from '../src/marathon/marathon-source.js';
import { MarathonDouble, waitFor } from './support/marathon-double.js';

afterEach(() => {
  vi.useRealTimers();
});

describe('stop() during start()', () => {
  it('leaves no periodic re-list and no status check running', async () => {
    const d = await MarathonDouble.start();
    try {
      d.addApp({ id: '/shop/web', network: 'host', ports: [{ name: 'http' }] });
      const hold = d.holdLists();
      vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
      const source = new MarathonSource({ url: d.url, relistIntervalMs: 1000, backoff: { initialMs: 20, maxMs: 200 } });
      const feed = new MarathonFeed({ source, addresses: new HostAddresses(), checkMs: 500 });
      const started = feed.start(() => {});
      await waitFor(() => hold.held() === 1, 'the first list asked');
      await feed.stop();
      hold.release();
      await started;
      expect(vi.getTimerCount()).toBe(0);
    } finally {
      await d.close();
    }
  });
});
