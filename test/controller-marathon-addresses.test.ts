/**
 * Host addresses for Marathon host names: agent Hello first, then an IP literal host id, then DNS
 * (cached with a TTL, failures retried and never erasing a good answer); nothing is guessed.
 * Plus the store's coalescing of bursts.
 */
import { describe, expect, it } from 'vitest';
import { DesiredStateStore } from '../src/controller/desired-state-store.js';
import { HostAddresses } from '../src/controller/host-addresses.js';
import type { ClusterState } from '../src/inventory/cluster-state.js';
import { waitFor } from './support/grpc-harness.js';
import { logCapture } from './support/log-capture.js';
import { app, cluster, group, host, policy, task } from './support/policy-builder.js';

function marathonCluster(...hostIds: string[]): ClusterState {
  return cluster(
    hostIds.map((id) => host(id)),
    [app('/web')],
    hostIds.map((id, i) => task(`t${i}`, '/web', id, [31000 + i])),
  );
}

describe('HostAddresses', () => {
  it('prefers the Hello addresses, then an IP literal host id; never guesses without --dns', () => {
    const agents = [{ hostId: 'a.example', addresses: ['10.0.0.1', 'fd00:0::1', 'garbage'] }];
    const book = new HostAddresses({ agents: () => agents });
    book.refreshAgents();
    const filled = book.fill(marathonCluster('a.example', '10.0.0.9', 'b.example'));
    expect(filled.hosts).toEqual([
      { id: 'a.example', addresses: ['10.0.0.1', 'fd00::1'] },
      { id: '10.0.0.9', addresses: ['10.0.0.9'] },
      { id: 'b.example', addresses: [] },
    ]);
    expect(book.problems(filled)).toEqual([
      'host b.example has no known address: its tasks are not allowed as sources (no agent Hello yet; --dns is off)',
    ]);
  });

  it('notifies when Hello addresses appear or change, not when they stay the same', () => {
    let agents = [{ hostId: 'a', addresses: ['10.0.0.1'] }];
    const book = new HostAddresses({ agents: () => agents });
    const seen: string[][] = [];
    book.onChange((ids) => seen.push([...ids]));
    book.refreshAgents();
    book.refreshAgents();
    agents = [{ hostId: 'a', addresses: ['10.0.0.2'] }];
    book.refreshAgents();
    expect(seen).toEqual([['a'], ['a']]);
  });

  it('drops an IPv4-mapped or invalid Hello address with one warning per host and list, keeps the rest', () => {
    const { logger, lines } = logCapture();
    let agents = [{ hostId: 'a', addresses: ['::ffff:10.0.0.1', '10.0.0.1', 'fe80::1%eth0'] }];
    const book = new HostAddresses({ agents: () => agents, logger });
    book.refreshAgents();
    book.refreshAgents();
    expect(book.lookup('a')).toEqual({ addresses: ['10.0.0.1'], origin: 'hello' });
    const warned = () => lines.filter((l) => l.msg === 'agent Hello addresses ignored: not usable as source addresses');
    expect(warned()).toHaveLength(1);
    expect(warned()[0]).toMatchObject({ host: 'a', refused: [expect.stringMatching(/IPv4-mapped .* write 10\.0\.0\.1 instead/), expect.stringMatching(/zone index/)] });
    agents = [{ hostId: 'a', addresses: ['10.0.0.1'] }];
    book.refreshAgents();
    expect(warned()).toHaveLength(1);
  });

  it('resolves names with DNS when enabled, caches for the TTL, retries failures and keeps the last good answer', async () => {
    let clock = 1_000;
    const calls: string[] = [];
    let answer: () => Promise<readonly string[]> = async () => ['10.1.0.5', '10.1.0.5', 'fd00::5'];
    const book = new HostAddresses({
      dns: true,
      ttlMs: 60_000,
      retryMs: 5_000,
      now: () => clock,
      resolver: (name) => {
        calls.push(name);
        return answer();
      },
    });
    const changes: string[] = [];
    book.onChange((ids) => changes.push(...ids));
    const c = marathonCluster('db.example', 'bad name;rm -rf', '10.0.0.7');
    expect(book.fill(c).hosts[0]!.addresses).toEqual([]);
    await waitFor('DNS answer', () => changes.includes('db.example'));
    expect(book.fill(c).hosts.map((h) => h.addresses)).toEqual([['10.1.0.5', 'fd00::5'], [], ['10.0.0.7']]);
    expect(calls).toEqual(['db.example']); // neither the invalid name nor the literal is looked up

    // Within the TTL: no new lookup. After it, a failure keeps the last good answer.
    book.fill(c);
    expect(calls.length).toBe(1);
    clock += 61_000;
    answer = async () => {
      throw new Error('ENOTFOUND');
    };
    book.fill(c);
    await waitFor('second lookup', () => calls.length === 2);
    await new Promise((r) => setImmediate(r));
    expect(book.fill(c).hosts[0]!.addresses).toEqual(['10.1.0.5', 'fd00::5']);
    // Retried after retryMs, not before.
    book.fill(c);
    expect(calls.length).toBe(2);
    clock += 5_001;
    answer = async () => ['10.1.0.6'];
    book.fill(c);
    await waitFor('changed answer', () => changes.length === 2);
    expect(book.fill(c).hosts[0]!.addresses).toEqual(['10.1.0.6']);
  });

  it('reports a DNS failure for a host it never resolved', async () => {
    const book = new HostAddresses({ dns: true, resolver: async () => Promise.reject(new Error('ENOTFOUND')) });
    const c = marathonCluster('gone.example');
    book.fill(c);
    await waitFor('failure recorded', () => book.problems(c)[0]?.includes('ENOTFOUND') === true);
    expect(book.problems(c)).toEqual(['host gone.example has no known address: its tasks are not allowed as sources (DNS: ENOTFOUND)']);
  });
});

describe('DesiredStateStore coalescing', () => {
  it('turns a burst of queued clusters into one recompute and one notification', async () => {
    const store = new DesiredStateStore({ coalesceMs: 5 });
    store.setPolicy(policy({ groups: [group('web', ['/web'])], rules: [{ action: 'allow', from: ['web'], to: ['web'] }] }));
    store.setCluster(cluster([host('h1', '10.0.0.1'), host('h2', '10.0.0.2')], [app('/web')], []));
    const notified: string[][] = [];
    store.subscribe((ids) => notified.push([...ids]));
    const recomputes = store.stats().recomputes;
    const hosts = [host('h1', '10.0.0.1'), host('h2', '10.0.0.2')];
    for (let i = 0; i < 50; i++) store.queueCluster(cluster(hosts, [app('/web')], [task(`t${i}`, '/web', 'h1', [31000 + i])]));
    expect(notified).toEqual([]);
    await waitFor('burst applied', () => notified.length > 0);
    expect(store.stats().recomputes).toBe(recomputes + 1);
    expect(store.stats().coalesced).toBe(49);
    expect(notified).toEqual([['h1']]); // h2 runs nothing: its state did not change
    expect(store.current('h1')!.sets['managed-tcp']).toEqual(['31049']);
    store.close();
  });
});
