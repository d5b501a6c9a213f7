/**
 * The pure parts of flows from every replica (issue 12 item 4): the merge of several replicas'
 * /flows answers (src/flows/flows-merge.ts), the peer answer's messages and query on the wire
 * (src/grpc/peers-service.ts), the `replicas` field as the CLI reads it (flows-answer.ts) and the
 * dashboard's partial-view warning (ui/flow-table.js), and the controller's peer flags.
 */
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../src/package-root.js';
import { parseControllerArgs } from '../src/cli/commands/controller.js';
import { UsageError } from '../src/usage-error.js';
import { readFlowsAnswer, readFlowsDocument } from '../src/flows/flows-answer.js';
import { mergeFlowsParts } from '../src/flows/flows-merge.js';
import { parseFlowQuery } from '../src/flows/flow-query.js';
import { flowQueryOf, peerFlowsMessages, peerQueryMessage } from '../src/grpc/peers-service.js';
import type { ClusterState } from '../src/inventory/cluster-state.js';
import { egressFlow, ingressFlow } from './support/flow-records.js';

const cluster: ClusterState = {
  hosts: [{ id: 'n1', addresses: ['10.0.0.1'] }, { id: 'n2', addresses: ['10.0.0.2'] }],
  apps: [{ id: '/a/web', labels: {}, networkMode: 'host', ports: [{ name: 'http', protocols: ['tcp'], labels: {} }] }],
  tasks: [{ id: 'a_web.1', appId: '/a/web', hostId: 'n2', hostPorts: [31000] }],
};
/** ui/flow-table.js's partialViewWarning (plain browser ES module, loaded as is, untyped here). */
let partialViewWarning: (replicas: unknown) => string;
beforeAll(async () => {
  ({ partialViewWarning } = (await import(pathToFileURL(path.join(packageRoot(), 'ui', 'flow-table.js')).href)) as { partialViewWarning: typeof partialViewWarning });
});

const t = (s: number): string => new Date(Date.UTC(2026, 11, 1, 12, 0, s)).toISOString();

describe('mergeFlowsParts', () => {
  it('sums the parts of one key, keeps the earliest first and latest last seen, orders by packets and cuts at the limit', () => {
    const a = egressFlow(cluster, '/a/web', 'n1', 'n2', 'tcp', 31000, { packets: 3, bytes: 30, firstSeen: t(10), lastSeen: t(20) });
    const aLater = { ...a, packets: 5, bytes: 50, firstSeen: t(5), lastSeen: t(15) };
    const b = ingressFlow(cluster, '203.0.113.9', 'n2', 'tcp', 31000, { packets: 6, verdict: 'denied' });
    const c = ingressFlow(cluster, '203.0.113.10', 'n2', 'tcp', 31000, { packets: 1 });
    const lost = { reportedBy: 'n2', direction: 'ingress', verdict: 'denied', family: 4, packets: 2 } as const;
    const merged = mergeFlowsParts([{ flows: [a, c], lost: [lost] }, { flows: [aLater, b], lost: [lost, { ...lost, reportedBy: 'n1', packets: 9 }] }], 2);
    expect(merged.flows).toEqual([{ ...a, packets: 8, bytes: 80, firstSeen: t(5), lastSeen: t(20) }, b]);
    expect(merged.lost).toEqual([{ ...lost, reportedBy: 'n1', packets: 9 }, { ...lost, packets: 4 }]);
    // The inputs are not changed.
    expect(a.packets).toBe(3);
    expect(mergeFlowsParts([], 10)).toEqual({ flows: [], lost: [] });
  });
});

describe('peer answers on the wire', () => {
  const flows = Array.from({ length: 50 }, (_, i) => ingressFlow(cluster, `203.0.113.${i + 1}`, 'n2', 'tcp', 31000, { packets: 100 - i }));
  const answer = { flows, lost: [{ reportedBy: 'n2', direction: 'ingress' as const, verdict: 'denied' as const, family: 4 as const, packets: 2 }], now: t(0) };

  it('splits an answer into /flows documents of about the byte bound, lost and now in the first only', () => {
    const size = JSON.stringify(flows[0]).length;
    const messages = peerFlowsMessages(answer, size * 10);
    expect(messages.length).toBeGreaterThanOrEqual(5);
    for (const m of messages) expect(m.answerJson!.length).toBeLessThan(size * 12);
    const docs = messages.map((m) => JSON.parse(m.answerJson!) as Record<string, unknown>);
    expect(docs[0]).toMatchObject({ lost: answer.lost, now: t(0) });
    expect(docs.slice(1).every((d) => !('lost' in d) && !('now' in d))).toBe(true);
    const read = docs.map((d) => readFlowsDocument(d, { requireNow: false }));
    expect(read.flatMap((r) => (r.ok ? r.answer.flows : []))).toEqual(flows);
    expect(peerFlowsMessages({ flows: [], lost: [], now: t(0) })).toEqual([{ answerJson: `{"flows":[],"lost":[],"now":"${t(0)}"}` }]);
  });

  it('carries a query to the peer unchanged, and a peer checks it as /flows does', () => {
    const now = Date.parse(t(30));
    const q = parseFlowQuery(new URLSearchParams('from=/a/*&to=n2&port=http&verdict=denied,audit&direction=ingress&since=10m&until=2026-12-01T12:00:00Z&limit=7'), now);
    if (!q.ok) throw new Error(q.error);
    expect(flowQueryOf({ ...peerQueryMessage(q.query) } as never, now)).toEqual(q);
    const none = parseFlowQuery(new URLSearchParams(''), now);
    if (!none.ok) throw new Error(none.error);
    expect(flowQueryOf(peerQueryMessage(none.query) as never, now)).toEqual(none);
    expect(flowQueryOf({ ...peerQueryMessage(none.query), limit: 200_000 } as never, now)).toEqual({ ok: false, error: 'limit "200000" is not 1-100000' });
  });
});

describe('replicas of a merged answer', () => {
  it('are read by the CLI (a bad row skipped) and warned about by the dashboard as text', () => {
    const doc = { flows: [], lost: [], now: t(0), replicas: [{ name: 'a:1', self: true, ok: true, flows: 0 }, { name: 'b:1', ok: false, error: 'UNAVAILABLE: down' }, { name: 3, ok: true }] };
    const r = readFlowsAnswer(JSON.stringify(doc));
    if (!r.ok) throw new Error(r.error);
    expect(r.answer.replicas).toEqual([{ name: 'a:1', ok: true }, { name: 'b:1', ok: false, error: 'UNAVAILABLE: down' }]);
    expect(r.problems).toEqual(['replicas[2].name is not a string: record skipped']);
    expect(partialViewWarning(doc.replicas)).toBe("Partial view: 1 of 3 controller replicas did not answer (b:1); the flows their agents reported are missing.");
    expect(partialViewWarning([{ name: 'a', ok: true }])).toBe('');
    expect(partialViewWarning(undefined)).toBe('');
    expect(partialViewWarning([{ name: '<img src=x onerror=alert(1)>', ok: false }])).toContain('<img src=x onerror=alert(1)>');
  });
});

describe('controller flow peer flags', () => {
  const io = { stdout: () => undefined, stderr: () => undefined, cwd: '/srv' };
  const parse = (...args: string[]) => parseControllerArgs(['--insecure', ...args], io);

  it('reads --flow-peer and --peer-name, repeatable; none by default', () => {
    expect(parse().flowPeers).toEqual({ targets: [], peerNames: [] });
    expect(parse('--flow-peer', '10.0.0.6:7443', '--flow-peer', '[fd00::7]:7443', '--peer-name', 'ctl-b.example', '--peer-name', '10.0.0.6').flowPeers).toEqual({
      targets: [{ host: '10.0.0.6', port: 7443 }, { host: 'fd00::7', port: 7443 }],
      peerNames: ['ctl-b.example', '10.0.0.6'],
    });
  });

  it('refuses a peer address that is no replica to dial, and a name that is not one name', () => {
    expect(() => parse('--flow-peer', 'ctl-b')).toThrow(UsageError);
    expect(() => parse('--flow-peer', '0.0.0.0:7443')).toThrow(/--flow-peer needs the address and port another replica listens on/);
    expect(() => parse('--flow-peer', '10.0.0.6:0')).toThrow(/--flow-peer needs/);
    expect(() => parse('--peer-name', 'a b')).toThrow(/--peer-name must be one certificate name/);
    expect(() => parse('--peer-name', 'a,b')).toThrow(UsageError);
  });
});
