/**
 * The reader of a /flows answer (src/flows/flows-answer.ts): untrusted JSON, bounded before it
 * is parsed, every record checked field by field; a bad record is skipped with one message
 * naming it, never thrown, and unknown fields are not carried on.
 */
import { describe, expect, it } from 'vitest';
import { readFlowsAnswer, readFlowsDocument } from '../src/flows/flows-answer.js';
import type { ClusterState } from '../src/inventory/cluster-state.js';
import { egressFlow, flowsAnswer, ingressFlow } from './support/flow-records.js';

const cluster: ClusterState = {
  hosts: [{ id: 'n1', addresses: ['10.0.0.1'] }, { id: 'n2', addresses: ['10.0.0.2'] }],
  apps: [{ id: '/a/web', labels: {}, networkMode: 'host', ports: [{ name: 'http', protocols: ['tcp'], labels: {} }] }],
  tasks: [{ id: 'a_web.1', appId: '/a/web', hostId: 'n2', hostPorts: [31000] }],
};
const good = [egressFlow(cluster, '/a/web', 'n1', 'n2', 'tcp', 31000, { packets: 3 }), ingressFlow(cluster, '203.0.113.9', 'n2', 'tcp', 31000, { packets: 1, verdict: 'denied' })];

describe('readFlowsAnswer', () => {
  it('reads a /flows answer exactly, lost rows included', () => {
    const answer = { ...flowsAnswer(good), lost: [{ reportedBy: 'n2', direction: 'ingress', verdict: 'denied', family: 4, packets: 12 }] };
    const r = readFlowsAnswer(JSON.stringify(answer));
    expect(r).toEqual({ ok: true, answer, problems: [] });
  });

  it('skips each bad record with a message naming it and what is wrong, and keeps the rest', () => {
    const bad = [
      { ...good[0], verdict: 'dropped' },
      { ...good[0], packets: -1 },
      { ...good[0], packets: 2 ** 53 + 2 },
      { ...good[0], lastSeen: 'yesterday' },
      { ...good[0], source: { ...good[0]!.source, apps: 'x' } },
      { ...good[0], destination: { ...good[0]!.destination, protocol: 'icmp' } },
      { ...good[0], reportedBy: 'x'.repeat(5000) },
      'not an object',
    ];
    const r = readFlowsAnswer(JSON.stringify({ ...flowsAnswer([good[1]!, ...bad] as never) }));
    if (!r.ok) throw new Error(r.error);
    expect(r.answer.flows).toEqual([good[1]]);
    expect(r.problems).toEqual([
      'flows[1].verdict must be one of allowed, denied, audit, got "dropped": record skipped',
      'flows[2].packets must be an integer from 0 to 2^53, got -1: record skipped',
      'flows[3].packets must be an integer from 0 to 2^53, got 9007199254740994: record skipped',
      'flows[4].lastSeen is not an ISO 8601 time: "yesterday": record skipped',
      'flows[5].source.apps is not a list (of at most 10000): record skipped',
      'flows[6].destination.protocol must be one of tcp, udp, got "icmp": record skipped',
      'flows[7].reportedBy is longer than 4096 characters: record skipped',
      'flows[8] is not an object: record skipped',
    ]);
  });

  it('drops fields the schema does not name', () => {
    const r = readFlowsDocument({ ...flowsAnswer([{ ...good[0]!, extra: '<script>', source: { ...good[0]!.source, more: 1 } } as never]), junk: true });
    if (!r.ok) throw new Error(r.error);
    expect(r.answer.flows).toEqual([good[0]]);
    expect(Object.keys(r.answer)).toEqual(['flows', 'lost', 'now']);
  });

  it('refuses what is not an answer, too large or too deep, with one line and no throw', () => {
    expect(readFlowsAnswer('[]')).toEqual({ ok: false, error: 'not a /flows answer: not a JSON object' });
    expect(readFlowsAnswer('{"flows": {}}')).toEqual({ ok: false, error: 'not a /flows answer: no "flows" list' });
    expect(readFlowsAnswer('{"flows": [], "now": "soon"}')).toEqual({ ok: false, error: 'not a /flows answer: "now" is not an ISO 8601 time' });
    expect(readFlowsAnswer('{"flows": [', 1000)).toMatchObject({ ok: false, error: expect.stringMatching(/^invalid JSON/) });
    expect(readFlowsAnswer(JSON.stringify(flowsAnswer(good)), 100)).toEqual({ ok: false, error: 'JSON larger than the limit of 100 bytes' });
    expect(readFlowsAnswer(`{"flows": ${'['.repeat(100_000)}${']'.repeat(100_000)}}`)).toMatchObject({ ok: false, error: expect.stringMatching(/nested deeper than the limit of 64 levels/) });
  });

  it('caps the messages at 20 and counts the rest', () => {
    const many = Array.from({ length: 30 }, () => ({ ...good[0], destination: { ...good[0]!.destination, port: 0 } }));
    const r = readFlowsAnswer(JSON.stringify(flowsAnswer(many as never)));
    if (!r.ok) throw new Error(r.error);
    expect(r.answer.flows).toEqual([]);
    expect(r.problems).toHaveLength(21);
    expect(r.problems[20]).toBe('... 10 more bad records skipped');
  });
});
