/**
 * Two controller replicas fed the same Marathon (host ids that are names, no --dns) share their
 * agents' Hello addresses through Consul KV (src/controller/shared-host-addresses.ts): agent h1
 * is connected only to replica A, h2 only to B, and still both replicas compile the same bytes
 * (the same version for every host in /hosts), with h1's state on B admitting h1's and h2's
 * addresses where the policy says so, and h2 moving to A gets no Snapshot. A malformed KV entry is skipped and logged; a Consul outage
 * changes nothing in force. Real gRPC and HTTP on port 0, the Marathon and Consul API doubles.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConsulClient } from '../src/consul/consul-client.js';
import { startController, type RunningController } from '../src/controller/controller-main.js';
import { createMarathonFeed } from '../src/controller/marathon-feed.js';
import { defaultPolicyPath } from '../src/package-root.js';
import { agentsOf, waitFor } from './support/cluster-harness.js';
import { ConsulDouble } from './support/consul-double.js';
import { openRawStream, type RawStream } from './support/grpc-harness.js';
import { logCapture } from './support/log-capture.js';
import { MarathonDouble } from './support/marathon-double.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const ADDRESS: Record<string, string> = { h1: '10.0.0.1', h2: '10.0.0.2' };

async function getJson(url: string): Promise<unknown> {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return r.json();
}

/** host id → version, as a replica's /hosts says. */
async function versions(c: RunningController): Promise<Record<string, string>> {
  const body = (await getJson(`http://${c.statusAddress}/hosts`)) as { hosts: { hostId: string; version: string }[] } | { hostId: string; version: string }[];
  const list = Array.isArray(body) ? body : body.hosts;
  return Object.fromEntries(list.map((h) => [h.hostId, h.version]));
}

async function replica(name: string, consulUrl: string, marathonUrl: string, dir: string): Promise<{ c: RunningController; lines: Record<string, unknown>[] }> {
  const client = new ConsulClient({ url: consulUrl, timeoutMs: 2_000 });
  cleanups.push(() => client.close());
  const { logger, lines } = logCapture();
  const c = await startController({
    policyPath: defaultPolicyPath(),
    feed: ({ agents, logger: l, sharedAddresses }) => createMarathonFeed({ urls: [marathonUrl], relistIntervalMs: 60_000, dns: false }, agents, l, sharedAddresses?.()),
    listen: { host: '127.0.0.1', port: 0 },
    statusListen: { host: '127.0.0.1', port: 0 },
    credentials: undefined,
    stateDir: join(dir, name),
    consul: { client, service: { name: 'portcullis', address: '127.0.0.1' } },
    logger: logger,
  });
  cleanups.push(() => c.stop());
  return { c, lines };
}

function hello(c: RunningController, hostId: string, appliedVersion = ''): RawStream {
  const s = openRawStream(c.grpcAddress);
  cleanups.push(() => s.close());
  s.send({ hello: { hostId, addresses: [ADDRESS[hostId]!], agentVersion: 'played', appliedVersion } });
  return s;
}

describe('controller replicas share Hello addresses in Consul KV', () => {
  it('compile the same bytes when h1 is on A and h2 on B, h2 moves to A with no Snapshot; bad entries are skipped and logged; an outage changes nothing', async () => {
    const consul = new ConsulDouble();
    const consulUrl = await consul.start();
    cleanups.push(() => consul.close());
    const marathon = await MarathonDouble.start();
    cleanups.push(() => marathon.close());
    const dir = mkdtempSync(join(tmpdir(), 'pcut-shared-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    marathon.addApp({ id: '/shop/web', network: 'host', ports: [{ name: 'http' }] });
    marathon.addApp({ id: '/shop/api', network: 'host', ports: [{ name: 'http' }] });
    for (const h of ['h1', 'h2']) {
      marathon.startTask('/shop/web', h, [31000]);
      marathon.startTask('/shop/api', h, [31100]);
    }

    const a = await replica('a', consulUrl, marathon.url, dir);
    const b = await replica('b', consulUrl, marathon.url, dir);
    hello(a.c, 'h1');
    const h2OnB = hello(b.c, 'h2');

    const stateOn = async (c: RunningController, h: string): Promise<string> => JSON.stringify(await getJson(`http://${c.statusAddress}/hosts/${h}/state`));
    // Both replicas: every host's state names both hosts' addresses (web on h1 and h2 → api).
    // The versions are those of the states read, and /hosts must still say them afterwards: a
    // version list read apart from the states can be an earlier agreement (both replicas
    // compiling with no address known yet, as one CI run under load saw) that the states read a
    // moment later have already left.
    const converged = async (): Promise<Record<string, string> | undefined> => {
      const seen: Record<string, string>[] = [];
      for (const c of [a.c, b.c]) {
        const v: Record<string, string> = {};
        for (const h of ['h1', 'h2']) {
          const state = (await getJson(`http://${c.statusAddress}/hosts/${h}/state`)) as { version: string };
          const text = JSON.stringify(state);
          if (!text.includes(ADDRESS.h1!) || !text.includes(ADDRESS.h2!)) return undefined;
          v[h] = state.version;
        }
        seen.push(v);
      }
      const [va, vb] = seen as [Record<string, string>, Record<string, string>];
      if (JSON.stringify(va) !== JSON.stringify(vb)) return undefined;
      for (const c of [a.c, b.c]) if (JSON.stringify(await versions(c)) !== JSON.stringify(va)) return undefined;
      return va;
    };
    const same = await waitFor(converged, 15_000, 'both replicas compiling the same versions with both hosts addresses');
    expect(Object.keys(same).sort()).toEqual(['h1', 'h2']);
    const h1OnB = await stateOn(b.c, 'h1');
    expect(h1OnB).toContain(ADDRESS.h1);
    expect(h1OnB).toContain(ADDRESS.h2);
    expect(await stateOn(b.c, 'h1')).toBe(await stateOn(a.c, 'h1'));

    // h2's agent moves from B to A, announcing the version B sent it: A compiled the same one, so
    // it sends no Snapshot (the next change would come as a Delta), and nothing changes anywhere.
    // (The version as this played agent is sent it: agent-view.ts drops what its release lacks.)
    const sentByB = await waitFor(async () => agentsOf(await getJson(`http://${b.c.statusAddress}/status`)).find((r) => r.hostId === 'h2')?.desiredVersion, 10_000, 'B sending h2 its state');
    expect(h2OnB.of('snapshot').length).toBeGreaterThan(0);
    h2OnB.close();
    await waitFor(async () => agentsOf(await getJson(`http://${b.c.statusAddress}/status`)).find((r) => r.hostId === 'h2')?.connected === false || undefined, 10_000, 'h2 gone from B');
    const h2OnA = hello(a.c, 'h2', sentByB);
    const onA = await waitFor(async () => agentsOf(await getJson(`http://${a.c.statusAddress}/status`)).find((r) => r.hostId === 'h2' && r.connected), 10_000, 'h2 on A');
    expect(onA).toMatchObject({ appliedVersion: sentByB, desiredVersion: sentByB });
    expect(h2OnA.of('snapshot')).toHaveLength(0);
    // Both replicas are still on the same versions: the move changed nothing.
    expect(await versions(a.c)).toEqual(same);
    expect(await versions(b.c)).toEqual(same);

    // What KV holds: one entry per host, written by the replica its agent is on.
    const probe = new ConsulClient({ url: consulUrl, timeoutMs: 2_000 });
    cleanups.push(() => probe.close());
    const listed = await probe.kvList('portcullis/policy/hosts/');
    expect(listed.value.map((e) => [e.key, (JSON.parse(e.value.toString('utf8')) as { addresses: string[] }).addresses])).toEqual([
      ['portcullis/policy/hosts/h1', [ADDRESS.h1]],
      ['portcullis/policy/hosts/h2', [ADDRESS.h2]],
    ]);

    // Malformed entries (hand-written, or by a broken writer): skipped and logged, nothing changes.
    await probe.kvPut('portcullis/policy/hosts/h3', '{"addresses":["not-an-ip"]}');
    await probe.kvPut('portcullis/policy/hosts/x_2f', '{"addresses":["10.0.0.9"]}'); // not a canonical key
    for (const r of [a, b]) {
      await waitFor(() => r.lines.filter((l) => l.event === 'hosts_kv.entry_skipped').length >= 2, 10_000, 'the bad entries logged');
    }
    const skipped = b.lines.filter((l) => l.event === 'hosts_kv.entry_skipped').map((l) => l.key);
    expect(skipped).toEqual(expect.arrayContaining(['portcullis/policy/hosts/h3', 'portcullis/policy/hosts/x_2f']));
    expect(JSON.stringify(await versions(a.c))).toBe(JSON.stringify(same));
    expect(JSON.stringify(await versions(b.c))).toBe(JSON.stringify(same));
    // KV's h2 entry broken: it no longer holds h2's addresses, so A, which holds h2's agent now,
    // writes them again (KV differs from its Hello), and both replicas end on the same versions.
    await probe.kvPut('portcullis/policy/hosts/h2', 'not json');
    await waitFor(async () => (await probe.kvGet('portcullis/policy/hosts/h2')).value?.value.toString('utf8').includes(ADDRESS.h2!), 10_000, 'A rewrote h2');
    await waitFor(async () => (JSON.stringify(await versions(b.c)) === JSON.stringify(same) && JSON.stringify(await versions(a.c)) === JSON.stringify(same)) || undefined, 10_000, 'both on the same versions');
    // Logged once per distinct bad content, not on every read (reads happened since: h2's changes).
    expect(b.lines.filter((l) => l.event === 'hosts_kv.entry_skipped' && l.key === 'portcullis/policy/hosts/h3')).toHaveLength(1);

    // Consul down: every read fails, nothing in force changes on either replica.
    consul.setOutage('error');
    await waitFor(() => a.lines.some((l) => l.event === 'hosts_kv.read_failed') && b.lines.some((l) => l.event === 'hosts_kv.read_failed'), 20_000, 'reads failing on both');
    expect(JSON.stringify(await versions(a.c))).toBe(JSON.stringify(same));
    expect(JSON.stringify(await versions(b.c))).toBe(JSON.stringify(same));
    expect(await stateOn(b.c, 'h1')).toBe(h1OnB);
    consul.setOutage(null);
  }, 60_000);
});
