/**
 * What FlowPeers (src/controller/flow-peers.ts) takes from a peer replica: a peer's answer is
 * untrusted, read like any /flows answer. Against a real gRPC server (port 0, plaintext) whose
 * Peers handler sends what each case needs: bad JSON makes the peer's row `ok: false` and keeps
 * the rest; a bad record is skipped, logged, and the good ones kept; more than `limit` records
 * are cut; an answer over the byte bound is refused; the filters arrive as sent.
 */
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { FlowPeers } from '../src/controller/flow-peers.js';
import { parseFlowQuery } from '../src/flows/flow-query.js';
import type { ObservedFlow } from '../src/flows/observed-flow.js';
import { loadPeersProto, type PeerFlowQuery__Output, type PeerFlows } from '../src/grpc/peers-proto.js';
import type { ClusterState } from '../src/inventory/cluster-state.js';
import { ingressFlow } from './support/flow-records.js';
import { logCapture } from './support/log-capture.js';

const cluster: ClusterState = {
  hosts: [{ id: 'n1', addresses: ['10.0.0.1'] }, { id: 'n2', addresses: ['10.0.0.2'] }],
  apps: [{ id: '/a/web', labels: {}, networkMode: 'host', ports: [{ name: 'http', protocols: ['tcp'], labels: {} }] }],
  tasks: [{ id: 'a_web.1', appId: '/a/web', hostId: 'n2', hostPorts: [31000] }],
};
const NOW = '2026-12-01T12:00:00.000Z';
const flow = (i: number, packets: number): ObservedFlow => ingressFlow(cluster, `203.0.113.${i}`, 'n2', 'tcp', 31000, { packets });
const json = (flows: unknown[], head = true): PeerFlows => ({ answerJson: JSON.stringify({ flows, ...(head ? { lost: [], now: NOW } : {}) }) });

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A peer answering every query with `messages`; the queries it got. */
async function peer(messages: PeerFlows[]): Promise<{ target: string; queries: PeerFlowQuery__Output[] }> {
  const server = new grpc.Server();
  const queries: PeerFlowQuery__Output[] = [];
  server.addService(loadPeersProto().service, {
    QueryFlows: (call: grpc.ServerWritableStream<PeerFlowQuery__Output, PeerFlows>) => {
      queries.push(call.request);
      for (const m of messages) call.write(m);
      call.end();
    },
  });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  cleanups.push(() => server.forceShutdown());
  return { target: `127.0.0.1:${port}`, queries };
}

function peersOf(targets: string[], log = logCapture(), maxAnswerBytes?: number): FlowPeers {
  const peers = new FlowPeers({
    credentials: undefined,
    targets: targets.map((t) => ({ host: '127.0.0.1', port: Number(t.split(':')[1]) })),
    selfName: () => 'self:1',
    logger: log.logger,
    ...(maxAnswerBytes !== undefined ? { maxAnswerBytes } : {}),
  });
  cleanups.push(() => peers.stop());
  return peers;
}

function query(text: string) {
  const q = parseFlowQuery(new URLSearchParams(text), Date.parse(NOW));
  if (!q.ok) throw new Error(q.error);
  return q.query;
}

const local = { flows: [flow(1, 10)], lost: [], now: NOW };

describe('FlowPeers reads a peer answer as untrusted', () => {
  it('bad JSON marks that peer not ok and keeps the others; a bad record is skipped and logged', async () => {
    const broken = await peer([{ answerJson: '{"flows": [' }]);
    const mixed = await peer([json([flow(2, 5), { ...flow(3, 4), verdict: 'dropped' }]), json([flow(4, 3)], false)]);
    const log = logCapture();
    const answer = await peersOf([broken.target, mixed.target], log).answer(query(''), local);
    const byName = new Map(answer.replicas.map((r) => [r.name, r]));
    expect(byName.get(broken.target)).toMatchObject({ ok: false, error: expect.stringMatching(/^not a flows answer: /) });
    expect(byName.get(mixed.target)).toEqual({ name: mixed.target, ok: true, flows: 2 });
    expect(answer.replicas[0]).toEqual({ name: 'self:1', self: true, ok: true, flows: 1 });
    expect(answer.flows.map((f) => f.packets)).toEqual([10, 5, 3]);
    expect(log.lines.find((l) => l['event'] === 'flow_peers.bad_records')).toMatchObject({ level: 40, peer: mixed.target, skipped: 1 });
    expect(log.lines.find((l) => l['event'] === 'flow_peers.unanswered')).toMatchObject({ level: 40, peer: broken.target });
  });

  it('takes at most `limit` records of a peer and refuses an answer over the byte bound', async () => {
    const many = await peer([json(Array.from({ length: 20 }, (_, i) => flow(i + 10, 100 - i)))]);
    const limited = await peersOf([many.target]).answer(query('limit=3'), local);
    expect(limited.flows.map((f) => f.packets)).toEqual([100, 99, 98]);
    expect(limited.replicas[1]).toEqual({ name: many.target, ok: true, flows: 3 });
    const big = await peersOf([many.target], logCapture(), 1000).answer(query(''), local);
    expect(big.replicas[1]).toMatchObject({ ok: false, error: 'answer larger than 1000 bytes' });
    expect(big.flows.map((f) => f.packets)).toEqual([10]);
  });

  it('sends the filters as the /flows query has them, times absolute', async () => {
    const p = await peer([json([])]);
    await peersOf([p.target]).answer(query('from=/a/*&verdict=denied&direction=ingress&since=10m&limit=5'), local);
    expect(p.queries).toEqual([{ from: '/a/*', to: '', port: '', verdicts: ['denied'], direction: 'ingress', sinceMs: Date.parse(NOW) - 600_000, untilMs: 0, limit: 5, keys: [] }]);
  });
});
