/**
 * The input stamp as the controller makes it (issue 12 item 1; src/grpc/input-stamp.ts): with
 * `--policy-consul` the policy side is the ModifyIndex of P/current that named the policy in
 * force (startController on the Consul API double, real gRPC on port 0, a raw stream playing the
 * agent); an agent whose applied stamp is ahead of it is held (shown in /status agents[] and
 * counted on /metrics) until a push takes the controller past it, and then gets the newest state
 * with the new index. With a policy directory and a static inventory the stamp is 0 on both
 * components (not comparable). The Marathon side: MarathonSource.freshAsOf over the Marathon
 * double (start of the last good list, then the clock while the event stream is attached).
 */
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConsulClient } from '../src/consul/consul-client.js';
import { policyPointerKey, pushKvPolicy } from '../src/consul/policy-kv.js';
import { startController, type RunningController } from '../src/controller/controller-main.js';
import { StaticInventoryFeed } from '../src/controller/static-inventory-feed.js';
import { createLogger } from '../src/logging.js';
import { defaultInventoryPath, defaultPolicyPath } from '../src/package-root.js';
import { MarathonSource } from '../src/marathon/marathon-source.js';
import { ConsulDouble } from './support/consul-double.js';
import { MarathonDouble } from './support/marathon-double.js';
import { openRawStream, waitFor, type RawStream } from './support/grpc-harness.js';

const PREFIX = 'portcullis/policy';
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const shop = (name: string): string => readFileSync(join(defaultPolicyPath(), name), 'utf8');
const shopFiles = (mode = 'enforce'): { name: string; text: string }[] =>
  ['00-defaults.yaml', '10-groups.yaml', '20-rules.yaml'].map((name) => ({ name, text: name === '00-defaults.yaml' ? shop(name).replace(/^  mode: enforce$/m, `  mode: ${mode}`) : shop(name) }));

async function push(client: ConsulClient, files: { name: string; text: string }[]): Promise<number> {
  const index = (await client.kvGet(policyPointerKey(PREFIX))).value?.modifyIndex ?? 0;
  await pushKvPolicy(client, PREFIX, files, { expectIndex: index, pushedBy: 'test' });
  return (await client.kvGet(policyPointerKey(PREFIX))).value!.modifyIndex;
}

async function controller(dir: string, consul?: { client: ConsulClient }): Promise<RunningController> {
  const c = await startController({
    policyPath: consul ? join(dir, 'unused-policy') : defaultPolicyPath(),
    feed: () => new StaticInventoryFeed({ path: join(dir, 'inventory.yaml'), pollMs: 60_000 }),
    listen: { host: '127.0.0.1', port: 0 },
    statusListen: { host: '127.0.0.1', port: 0 },
    credentials: undefined,
    pingIntervalMs: 100,
    stateDir: join(dir, 'state'),
    ...(consul ? { consul: { client: consul.client, policyPrefix: PREFIX } } : {}),
    logger: createLogger({ component: 'controller', level: (process.env.STAMP_LOG as 'info' | undefined) ?? 'silent' }),
  });
  cleanups.push(() => c.stop());
  await waitFor('ready', () => c.status.readiness().ready);
  return c;
}

/** A raw stream that answers pings (as an agent does), so the controller keeps it. */
function agentStream(target: string): RawStream {
  const raw = openRawStream(target);
  raw.call.on('data', (m: { msg?: string; ping?: { nonce: number } }) => {
    if (m.msg === 'ping') raw.send({ pong: { nonce: m.ping?.nonce ?? 0 } });
  });
  cleanups.push(() => raw.close());
  return raw;
}

/** A new agent on `node-1`: its first Snapshot, acked. */
async function firstSnapshotAcked(raw: RawStream): Promise<NonNullable<RawStream['messages'][number]['snapshot']>> {
  raw.send({ hello: { hostId: 'node-1', agentVersion: 't' } });
  await waitFor('a snapshot', () => raw.of('snapshot').length === 1);
  const snap = raw.of('snapshot')[0]!.snapshot!;
  raw.send({ ack: { version: snap.version, seq: snap.seq } });
  return snap;
}

async function consulPair(): Promise<{ consul: ConsulDouble; client: ConsulClient }> {
  const consul = new ConsulDouble();
  const client = new ConsulClient({ url: await consul.start(), timeoutMs: 2_000 });
  cleanups.push(() => consul.close(), () => client.close());
  return { consul, client };
}

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'pcut-stamp-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  cpSync(defaultInventoryPath(), join(dir, 'inventory.yaml'));
  return dir;
}

describe('the controller’s input stamp', () => {
  it('--policy-consul: states carry the ModifyIndex of P/current; an agent ahead of it is held until a push takes the controller past it', async () => {
    const { client } = await consulPair();
    const first = await push(client, shopFiles());
    const c = await controller(tempDir(), { client });

    // An agent with no state: a Snapshot stamped with the pointer's index.
    const fresh = agentStream(c.grpcAddress);
    const snap = await firstSnapshotAcked(fresh);
    expect(snap.policyStamp).toBe(first);
    expect(snap.clusterStampMs).toBe(0); // a static inventory file: not comparable

    // An agent that applied a state from a replica that read a newer pointer (index first+1).
    const ahead = agentStream(c.grpcAddress);
    ahead.send({ hello: { hostId: 'node-2', agentVersion: 't', appliedVersion: '0123456789abcdef', appliedPolicyStamp: first + 1 } });
    const agentReport = async (): Promise<{ heldBehind: string | null; appliedStamp: unknown } | undefined> => {
      const s = (await (await fetch(`http://${c.statusAddress}/status`)).json()) as { agents: { hostId: string; heldBehind: string | null; appliedStamp: unknown }[] };
      return s.agents.find((a) => a.hostId === 'node-2');
    };
    await waitFor('node-2 held', () => c.status.agentReports().find((a) => a.hostId === 'node-2')?.heldBehind != null);
    expect(await agentReport()).toMatchObject({ heldBehind: `policy index ${first} < ${first + 1}`, appliedStamp: { policyIndex: first + 1, clusterAsOf: null } });
    await waitFor('pings on the held stream', () => ahead.of('ping').length >= 3);
    expect(ahead.of('snapshot')).toHaveLength(0);
    expect(ahead.of('delta')).toHaveLength(0);
    expect(c.status.metrics()).toMatch(/^portcullis_agents_held_behind_total 1$/m);
    expect(c.status.metrics()).toMatch(/^portcullis_agents_held_behind 1$/m);

    // A push (a new pointer index past the agent's): the newest state, with the new index.
    const second = await push(client, shopFiles('audit'));
    expect(second).toBeGreaterThan(first + 1);
    await waitFor('node-2 gets the new state', () => ahead.of('snapshot').length === 1);
    const got = ahead.of('snapshot')[0]!.snapshot!;
    expect(got.policyStamp).toBe(second);
    expect(got.mode).toBe('audit');
    expect((await agentReport())?.heldBehind).toBeNull();
    // The agent that was in sync gets the change as a Delta stamped with the new index.
    await waitFor('node-1 gets a delta', () => fresh.of('delta').length === 1);
    expect(fresh.of('delta')[0]!.delta!.policyStamp).toBe(second);
  }, 30_000);

  it('Consul restored to an older snapshot (its index went backwards): the held agent is released with policy stamp 0, then follows the new history', async () => {
    const { consul, client } = await consulPair();
    const older = await push(client, shopFiles('audit'));
    const snapshot = consul.snapshot();
    const newer = await push(client, shopFiles());
    expect(newer).toBeGreaterThan(older);
    const c = await controller(tempDir(), { client });
    const raw = agentStream(c.grpcAddress);
    const first = await firstSnapshotAcked(raw);
    expect(first.policyStamp).toBe(newer);
    await waitFor('acked', () => c.status.agentReports().find((a) => a.hostId === 'node-1')?.appliedVersion === first.version);

    consul.restore(snapshot); // the pointer is back at `older`, at a lower index
    await waitFor('the state of the restored policy arrives', () => raw.of('snapshot').length + raw.of('delta').length === 2);
    const next = raw.of('delta')[0]?.delta ?? raw.of('snapshot')[1]!.snapshot!;
    expect(next.mode).toBe('audit');
    expect(next.policyStamp).toBe(0); // the agent's stamp is of a history that no longer exists
    raw.send({ ack: { version: next.version, seq: next.seq } });
    await waitFor('acked', () => c.status.agentReports().find((a) => a.hostId === 'node-1')?.appliedVersion === next.version);
    const after = await push(client, shopFiles()); // a push in the new history
    await waitFor('its state arrives', () => raw.of('snapshot').length + raw.of('delta').length === 3);
    const last = [...raw.messages].reverse().find((m) => m.msg === 'delta' || m.msg === 'snapshot')!;
    expect((last.delta ?? last.snapshot)!.policyStamp).toBe(after);
  }, 30_000);

  it('a policy directory and a static inventory: stamp 0 on both components (not comparable), nobody is held', async () => {
    const c = await controller(tempDir());
    const raw = agentStream(c.grpcAddress);
    raw.send({ hello: { hostId: 'node-1', agentVersion: 't', appliedVersion: '0123456789abcdef', appliedPolicyStamp: 99, appliedClusterStampMs: Date.now() } });
    await waitFor('a snapshot', () => raw.of('snapshot').length === 1);
    expect(raw.of('snapshot')[0]!.snapshot).toMatchObject({ policyStamp: 0, clusterStampMs: 0 });
  });
});

describe('the Marathon side of the stamp (MarathonSource.freshAsOf)', () => {
  it('0 before a good list; the clock while the stream is attached after a list; frozen at the last good list’s start while Marathon is down; the clock again once it is back', async () => {
    const d = await MarathonDouble.start({});
    cleanups.push(() => d.close());
    d.addApp({ id: '/shop/web', network: 'host', ports: [{ name: 'http', protocol: 'tcp' }] });
    d.startTask('/shop/web', 'agent-1', [31000]);
    const s = new MarathonSource({ url: d.url, backoff: { initialMs: 20, maxMs: 100 }, requestTimeoutMs: 5000, relistIntervalMs: 60_000 });
    cleanups.push(() => s.stop());
    expect(s.freshAsOf()).toBe(0);
    const before = Date.now();
    await s.start();
    await waitFor('stream attached and a list since', () => s.status().streamConnected && s.freshAsOf() >= Date.now() - 50);
    await s.relist();
    const listed = s.freshAsOf();
    expect(listed).toBeGreaterThanOrEqual(before);

    d.setFailing('http500All');
    d.dropStreams();
    const dropped = Date.now();
    await waitFor('stale', () => s.status().stale);
    const frozen = s.freshAsOf();
    expect(frozen).toBeLessThanOrEqual(dropped);
    expect(frozen).toBeGreaterThanOrEqual(before);
    await waitFor('time passes', () => Date.now() >= dropped + 200);
    expect(s.freshAsOf()).toBe(frozen);

    d.setFailing('none');
    await waitFor('fresh again', () => !s.status().stale && s.freshAsOf() > dropped);
  });
});
