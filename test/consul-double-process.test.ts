/**
 * The Consul API double as a child process (test/support/consul-double-main.ts, run from dist/:
 * `npm run build` first), as a netns test will run it: the client reads it over HTTP and the
 * test drives it over the line protocol; a bad command is an error answer, not a dead child.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ConsulClient } from '../src/consul/consul-client.js';
import { followPassingInstances } from '../src/consul/consul-follow.js';
import type { Follower } from '../src/consul/blocking-follow.js';
import { ConsulDoubleProcess } from './support/consul-double-process.js';
import { waitFor } from './support/grpc-harness.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('ConsulDoubleProcess', () => {
  it('serves the API, takes test controls, and stops', async () => {
    const consul = await ConsulDoubleProcess.start({ node: 'ctl-1', nodeAddress: '10.0.0.9' });
    cleanups.push(() => consul.stop());
    const client = new ConsulClient({ url: consul.url, timeoutMs: 5_000 });
    cleanups.push(() => client.close());

    await client.register({ id: 'p1', name: 'portcullis', port: 9443, check: { http: 'http://10.0.0.9:9090/readyz', interval: '5s' } });
    expect(await consul.localServices()).toEqual([{ id: 'p1', name: 'portcullis', address: '', port: 9443, checks: [{ checkId: 'service:p1', status: 'critical', http: 'http://10.0.0.9:9090/readyz' }] }]);

    const seen: string[][] = [];
    const f: Follower = followPassingInstances(client, 'portcullis', { minIntervalMs: 0, onChange: (v) => seen.push(v.map((i) => `${i.node}/${i.id}@${i.address}`)) });
    cleanups.push(() => f.stop());
    await waitFor('first delivery', () => seen.length === 1);
    expect(seen[0]).toEqual([]);
    await consul.setCheck('p1', 'passing');
    await waitFor('p1 passing', () => seen.length === 2);
    expect(seen[1]).toEqual(['ctl-1/p1@10.0.0.9']);

    const snap = await consul.snapshot();
    await consul.addRemoteInstance({ node: 'ctl-2', nodeAddress: '10.0.0.10', id: 'p2', name: 'portcullis', port: 9443 });
    await waitFor('p2 seen', () => seen.length === 3);
    // Restore while the follower is blocked (a read sent after the restore with the old, higher
    // index would block for its whole wait, as in Consul, before the follower sees the lower index).
    const deadline = Date.now() + 10_000;
    while ((await consul.blockedQueries()) !== 1) {
      if (Date.now() > deadline) throw new Error('the follower never blocked');
      await new Promise((r) => setTimeout(r, 10));
    }
    await consul.restore(snap);
    await waitFor('restored', () => seen.length === 4 && f.stats.resets === 1);
    expect(seen[3]).toEqual(['ctl-1/p1@10.0.0.9']);

    await expect(consul.setCheck('p1', 'sideways' as never)).rejects.toThrow(/unknown check status/);
    expect(await consul.forgetAgent()).toBe(1);
    expect((await consul.requests())['PUT agent.register']).toBe(1);
    await consul.stop();
    await expect(consul.touch()).rejects.toThrow(/exited/);
  });
});
