/**
 * Flow records from every replica, visible from any replica (issue 12 item 4): three controllers
 * (startController, real gRPC with mTLS and HTTP on port 0, certificates of src/tls/pki.ts), each
 * holding the records of different agents (handed to its flow store, as its Sync service does),
 * peers from --flow-peer or from Consul (the API double). /flows of one replica shows the
 * records of all, the parts of one aggregate merged; a peer down is named in `replicas` and the
 * rest is still answered within the deadline; only a peer controller may call QueryFlows (an
 * agent's certificate is refused, logged and counted); the filters and the limit reach the peers.
 */
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ConsulClient } from '../src/consul/consul-client.js';
import { startController, type ControllerOptions, type RunningController } from '../src/controller/controller-main.js';
import { controllerServiceId } from '../src/controller/controller-consul.js';
import type { HostPort } from '../src/controller/host-port.js';
import { StaticInventoryFeed } from '../src/controller/static-inventory-feed.js';
import type { FlowEntry } from '../src/flows/flow-types.js';
import type { ObservedFlow } from '../src/flows/observed-flow.js';
import { loadPeersProto, type PeerFlowQuery, type PeerFlows__Output } from '../src/grpc/peers-proto.js';
import { defaultInventoryPath, defaultPolicyPath } from '../src/package-root.js';
import { clientCredentialsFrom, readTlsFiles } from '../src/tls/credentials.js';
import { makeTestPki, type TestPki } from '../src/tls/pki.js';
import type { TlsRefusalsStatus } from '../src/tls/tls-refusals.js';
import { waitFor } from './support/cluster-harness.js';
import { ConsulDouble } from './support/consul-double.js';
import { logCapture } from './support/log-capture.js';
import { runCli } from './support/run-cli.js';

let dir = '';
let pki: TestPki;
const cleanups: (() => unknown)[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pcut-flowpeers-'));
  cpSync(defaultPolicyPath(), join(dir, 'policy'), { recursive: true });
  cpSync(defaultInventoryPath(), join(dir, 'inventory.yaml'));
  pki = await makeTestPki(join(dir, 'pki'), { hosts: ['node-1'], controllerNames: ['old-ctl'], peerControllerNames: ['ctl-a', 'ctl-b', 'ctl-c'] });
}, 60_000);

afterAll(() => {
  if (dir !== '') rmSync(dir, { recursive: true, force: true });
});

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

type Log = ReturnType<typeof logCapture>;

async function controller(name: string, extra: Partial<ControllerOptions> = {}, log: Log = logCapture()): Promise<RunningController> {
  const c = await startController({
    policyPath: join(dir, 'policy'),
    feed: () => new StaticInventoryFeed({ path: join(dir, 'inventory.yaml'), pollMs: 60_000 }),
    listen: { host: '127.0.0.1', port: 0 },
    statusListen: { host: '127.0.0.1', port: 0 },
    credentials: await readTlsFiles(pki.files(name)),
    pollMs: 60_000,
    stateDir: join(dir, `state-${name}-${Math.random().toString(16).slice(2)}`),
    logger: log.logger,
    ...extra,
  });
  cleanups.push(() => c.stop());
  await waitFor(async () => (await fetch(`http://${c.statusAddress}/readyz`)).ok, 10_000, `${name} ready`);
  return c;
}

const hostPort = (address: string): HostPort => {
  const i = address.lastIndexOf(':');
  return { host: address.slice(0, i), port: Number(address.slice(i + 1)) };
};

function entry(e: Partial<FlowEntry>): FlowEntry {
  const now = Date.now();
  return { direction: 'ingress', verdict: 'allowed', source: '10.0.1.12', destination: '', protocol: 'tcp', port: 31100, packets: 1, bytes: 60, firstSeenMs: now - 5000, lastSeenMs: now, ...e };
}

interface Replica {
  name: string;
  self?: boolean;
  ok: boolean;
  error?: string;
  flows?: number;
}
interface Answer {
  flows: ObservedFlow[];
  lost: { reportedBy: string; packets: number }[];
  replicas?: Replica[];
}

async function flows(c: RunningController, query = ''): Promise<Answer> {
  const res = await fetch(`http://${c.statusAddress}/flows${query}`);
  expect(res.status).toBe(200);
  return (await res.json()) as Answer;
}

/** Records of three agents: node-1's aggregate has parts on A and B (it moved), node-2 and node-3 report to C. */
function spread(a: RunningController, b: RunningController, c: RunningController, now = Date.now()): void {
  a.flows.ingest('node-1', [entry({ packets: 4, bytes: 400, firstSeenMs: now - 9000, lastSeenMs: now - 6000 })], [{ direction: 'ingress', verdict: 'denied', family: 4, packets: 2 }], now);
  b.flows.ingest('node-1', [entry({ packets: 3, bytes: 300, firstSeenMs: now - 5000, lastSeenMs: now - 1000 })], [{ direction: 'ingress', verdict: 'denied', family: 4, packets: 5 }], now);
  c.flows.ingest('node-2', [entry({ source: '8.8.8.8', port: 31400, verdict: 'denied', packets: 2, bytes: 120 })], [], now);
  c.flows.ingest('node-3', [entry({ source: '10.0.1.11', port: 31100, packets: 6, bytes: 360 })], [], now);
}

/** A QueryFlows call with `name`'s certificate: the messages and how it ended. */
async function queryAs(name: string, target: string, q: Partial<PeerFlowQuery> = {}): Promise<{ messages: PeerFlows__Output[]; error?: grpc.ServiceError }> {
  const { Client } = loadPeersProto();
  const client = new Client(target, clientCredentialsFrom(await readTlsFiles(pki.files(name))));
  try {
    return await new Promise((resolve) => {
      const messages: PeerFlows__Output[] = [];
      const call = client.QueryFlows({ limit: 0, ...q }, { deadline: Date.now() + 5000 });
      call.on('data', (m: PeerFlows__Output) => messages.push(m));
      call.on('error', (error: grpc.ServiceError) => resolve({ messages, error }));
      call.on('end', () => resolve({ messages }));
    });
  } finally {
    client.close();
  }
}

describe('flows from every replica', () => {
  it('/flows of a replica shows the records of its --flow-peer replicas, one aggregate summed over its parts', async () => {
    const b = await controller('ctl-b', { flowPeers: { peerNames: ['ctl-a'] } });
    const c = await controller('ctl-c', { flowPeers: { peerNames: ['ctl-a'] } });
    const a = await controller('ctl-a', { flowPeers: { targets: [hostPort(b.grpcAddress), hostPort(c.grpcAddress)] } });
    const now = Date.now();
    spread(a, b, c, now);

    const merged = await flows(a);
    expect(merged.replicas).toEqual([
      { name: a.grpcAddress, self: true, ok: true, flows: 1 },
      ...[{ name: b.grpcAddress, ok: true, flows: 1 }, { name: c.grpcAddress, ok: true, flows: 2 }].sort((x, y) => (x.name < y.name ? -1 : 1)),
    ]);
    expect(merged.flows.map((f) => [f.reportedBy, f.packets])).toEqual([['node-1', 7], ['node-3', 6], ['node-2', 2]]);
    const moved = merged.flows[0]!;
    expect(moved).toMatchObject({ bytes: 700, firstSeen: new Date(now - 9000).toISOString(), lastSeen: new Date(now - 1000).toISOString(), destination: { hostId: 'node-1', port: 31100 } });
    // The same key on every replica: the parts are one aggregate.
    expect(moved.key).toBe((await flows(b)).flows[0]!.key);
    expect(merged.lost).toEqual([{ reportedBy: 'node-1', direction: 'ingress', verdict: 'denied', family: 4, packets: 7 }]);
    // B and C have no peers to ask: their /flows are their own records only, and say so.
    expect((await flows(c)).flows.map((f) => f.reportedBy).sort()).toEqual(['node-2', 'node-3']);
    expect((await flows(c)).replicas).toEqual([{ name: c.grpcAddress, self: true, ok: true, flows: 2 }]);
  });

  it('the filters and the limit are pushed to the peers, which answer from their own store only', async () => {
    const b = await controller('ctl-b', { flowPeers: { peerNames: ['ctl-a'] } });
    const c = await controller('ctl-c', { flowPeers: { peerNames: ['ctl-a'] } });
    const a = await controller('ctl-a', { flowPeers: { targets: [hostPort(b.grpcAddress), hostPort(c.grpcAddress)] } });
    spread(a, b, c);

    // Straight from C, as a peer asks: only what matches, and at most `limit`.
    const denied = await queryAs('ctl-a', c.grpcAddress, { verdicts: ['denied'] });
    expect(denied.error).toBeUndefined();
    const deniedFlows = denied.messages.flatMap((m) => (JSON.parse(m.answerJson) as Answer).flows);
    expect(deniedFlows.map((f) => [f.reportedBy, f.verdict])).toEqual([['node-2', 'denied']]);
    const one = await queryAs('ctl-a', c.grpcAddress, { limit: 1 });
    expect(one.messages.flatMap((m) => (JSON.parse(m.answerJson) as Answer).flows).map((f) => f.reportedBy)).toEqual(['node-3']);
    const bad = await queryAs('ctl-a', c.grpcAddress, { direction: 'sideways' });
    expect(bad.error?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(bad.error?.details).toMatch(/direction "sideways"/);

    // Through A's /flows: the same filters over every replica.
    expect((await flows(a, '?verdict=denied')).flows.map((f) => f.reportedBy)).toEqual(['node-2']);
    expect((await flows(a, '?from=10.0.1.11')).flows.map((f) => f.reportedBy)).toEqual(['node-3']);
    expect((await flows(a, '?limit=1')).flows.map((f) => [f.reportedBy, f.packets])).toEqual([['node-1', 7]]);
    expect((await flows(a, `?since=${encodeURIComponent(new Date(Date.now() + 60_000).toISOString())}`)).flows).toEqual([]);
    // A peer query does not fan out: B knows no peers, so asking B gives B's part only.
    const fromB = await queryAs('ctl-a', b.grpcAddress);
    expect(fromB.messages.flatMap((m) => (JSON.parse(m.answerJson) as Answer).flows).map((f) => [f.reportedBy, f.packets])).toEqual([['node-1', 3]]);
  });

  it('a key shown has its exact merged count even when its part on a peer was in that peer\'s tail (the second question)', async () => {
    const b = await controller('ctl-b', { flowPeers: { peerNames: ['ctl-a'] } });
    const a = await controller('ctl-a', { flowPeers: { targets: [hostPort(b.grpcAddress)] } });
    const now = Date.now();
    // node-1 moved from A to B: its big flow X has 30 on A and 3 on B, where two bigger flows come first.
    a.flows.ingest('node-1', [entry({ packets: 30 }), entry({ source: '10.0.1.11', packets: 1 })], [], now);
    b.flows.ingest('node-1', [entry({ source: '8.8.8.8', port: 31400, packets: 20 }), entry({ source: '8.8.4.4', port: 31400, packets: 15 }), entry({ packets: 3 })], [], now);
    const top = await flows(a, '?limit=2');
    expect(top.flows.map((f) => [f.source.address, f.packets])).toEqual([['10.0.1.12', 33], ['8.8.8.8', 20]]);
    // As a peer asks the second time: exactly these keys, at most `limit` of them, checked.
    const key = top.flows[0]!.key;
    const again = await queryAs('ctl-a', b.grpcAddress, { limit: 1, keys: [key] });
    expect(again.messages.flatMap((m) => (JSON.parse(m.answerJson) as Answer).flows).map((f) => [f.key, f.packets])).toEqual([[key, 3]]);
    expect((await queryAs('ctl-a', b.grpcAddress, { limit: 1, keys: [key, top.flows[1]!.key] })).error?.details).toBe('2 keys for a limit of 1');
    expect((await queryAs('ctl-a', b.grpcAddress, { limit: 5, keys: ['<script>'] })).error?.code).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it('a peer down or silent is named in replicas and the rest is still answered within the deadline', async () => {
    const b = await controller('ctl-b', { flowPeers: { peerNames: ['ctl-a'] } });
    const c = await controller('ctl-c', { flowPeers: { peerNames: ['ctl-a'] } });
    // A peer that accepts connections and never answers.
    const silent = net.createServer(() => undefined);
    const sockets = new Set<net.Socket>();
    silent.on('connection', (s) => sockets.add(s));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      silent.close(() => resolve());
    }));
    const silentAddress = `127.0.0.1:${(silent.address() as net.AddressInfo).port}`;
    const log = logCapture();
    const a = await controller('ctl-a', { flowPeers: { targets: [hostPort(b.grpcAddress), hostPort(c.grpcAddress), hostPort(silentAddress)], deadlineMs: 1000 } }, log);
    spread(a, b, c);
    await c.stop();

    const started = Date.now();
    const partial = await flows(a);
    const took = Date.now() - started;
    expect(took).toBeLessThan(1000 + 1500);
    const byName = new Map((partial.replicas ?? []).map((r) => [r.name, r]));
    expect(byName.get(a.grpcAddress)).toMatchObject({ self: true, ok: true });
    expect(byName.get(b.grpcAddress)).toEqual({ name: b.grpcAddress, ok: true, flows: 1 });
    expect(byName.get(c.grpcAddress)).toMatchObject({ ok: false, error: expect.stringMatching(/UNAVAILABLE|DEADLINE_EXCEEDED/) });
    expect(byName.get(silentAddress)).toMatchObject({ ok: false, error: expect.stringMatching(/DEADLINE_EXCEEDED|no answer within/) });
    expect(partial.flows.map((f) => [f.reportedBy, f.packets])).toEqual([['node-1', 7]]);
    expect(log.lines.filter((l) => l['event'] === 'flow_peers.unanswered').map((l) => l['peer']).sort()).toEqual([c.grpcAddress, silentAddress].sort());
    // The operator sees it in the metrics too: 3 peers, one question each, 1 answered and 2 not.
    const metrics = await (await fetch(`http://${a.statusAddress}/metrics`)).text();
    expect(metrics.split('\n')).toEqual(expect.arrayContaining([
      'portcullis_flow_peers 3',
      'portcullis_flow_peer_queries_total{result="answered"} 1',
      'portcullis_flow_peer_queries_total{result="unanswered"} 2',
    ]));
    // The CLI reads /flows through the same answer and says the view is partial.
    const cli = await runCli(['flows', '--controller', `http://${a.statusAddress}`]);
    expect(cli.code).toBe(0);
    expect(cli.err).toContain(`partial view: controller replica ${c.grpcAddress} did not answer`);
    expect(cli.err).toContain(`partial view: controller replica ${silentAddress} did not answer`);
  });

  it('refuses QueryFlows to an agent certificate and to a controller that is not a peer: PERMISSION_DENIED, logged, counted', async () => {
    const log = logCapture();
    const b = await controller('ctl-b', { flowPeers: { peerNames: ['ctl-a'] } }, log);
    b.flows.ingest('node-1', [entry({ packets: 4 })], [], Date.now());
    const tls = async (): Promise<TlsRefusalsStatus> => ((await (await fetch(`http://${b.statusAddress}/status`)).json()) as { tls: TlsRefusalsStatus }).tls;

    const agent = await queryAs('node-1', b.grpcAddress);
    expect(agent.error?.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(agent.error?.details).toMatch(/not a controller certificate/);
    expect(agent.messages).toEqual([]);
    const stranger = await queryAs('ctl-c', b.grpcAddress);
    expect(stranger.error?.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(stranger.error?.details).toMatch(/names no peer of this replica/);
    expect(stranger.messages).toEqual([]);
    const refused = log.lines.filter((l) => l['msg'] === 'peers: query refused');
    expect(refused).toHaveLength(2);
    expect(refused[0]).toMatchObject({ level: 40, module: 'peers', refusal: 'not_a_peer' });
    expect(String(refused[0]!['peer'])).toMatch(/127\.0\.0\.1:\d+/);
    expect((await tls()).byReason.not_a_peer).toBe(2);
    const metrics = await (await fetch(`http://${b.statusAddress}/metrics`)).text();
    expect(metrics).toContain('portcullis_tls_refusals_total{reason="not_a_peer"} 2');
    // A controller certificate of an earlier release (serverAuth only) cannot even connect as a client.
    const old = await queryAs('old-ctl', b.grpcAddress);
    expect(old.error?.code).toBe(grpc.status.UNAUTHENTICATED);
    await waitFor(async () => (await tls()).byReason.wrong_purpose === 1, 5000, 'wrong_purpose counted');
    // The peer it allows is answered.
    const peer = await queryAs('ctl-a', b.grpcAddress);
    expect(peer.error).toBeUndefined();
    expect(peer.messages.flatMap((m) => (JSON.parse(m.answerJson) as Answer).flows).map((f) => f.packets)).toEqual([4]);
  });

  it('finds its peers in Consul (the passing instances of its own service, itself skipped): any replica shows all', async () => {
    const consul = new ConsulDouble();
    const client = new ConsulClient({ url: await consul.start(), timeoutMs: 2_000 });
    cleanups.push(() => consul.close(), () => client.close());
    const service = { name: 'portcullis', address: '127.0.0.1' };
    const replicas: RunningController[] = [];
    for (const name of ['ctl-a', 'ctl-b', 'ctl-c']) replicas.push(await controller(name, { consul: { client, service } }));
    const [a, b, c] = replicas as [RunningController, RunningController, RunningController];
    const ids = replicas.map((r) => controllerServiceId('portcullis', hostPort(r.grpcAddress).port));
    await waitFor(() => ids.every((id) => consul.state.instancesOf('portcullis', false).some((i) => i.id === id)), 10_000, 'three registered');
    for (const id of ids.slice(0, 2)) consul.setCheck(id, 'passing');
    spread(a, b, c);

    // C's check is not passing yet: it is no peer of anyone.
    await waitFor(async () => ((await flows(a)).replicas ?? []).length === 2, 10_000, 'A sees B');
    expect((await flows(a)).replicas?.map((r) => r.name)).toEqual([a.grpcAddress, b.grpcAddress]);
    consul.setCheck(ids[2]!, 'passing');
    for (const r of replicas) {
      await waitFor(async () => ((await flows(r)).replicas ?? []).filter((x) => x.ok).length === 3, 10_000, `${r.grpcAddress} sees all three`);
      const merged = await flows(r);
      expect(merged.replicas?.[0]).toMatchObject({ name: r.grpcAddress, self: true });
      expect(merged.replicas?.map((x) => x.name).sort()).toEqual(replicas.map((x) => x.grpcAddress).sort());
      expect(merged.flows.map((f) => [f.reportedBy, f.packets])).toEqual([['node-1', 7], ['node-3', 6], ['node-2', 2]]);
    }
  });
});
