/**
 * What a real controller (in-process, the shipped example policy and inventory) shows of its
 * agents' flow recording, agents played over raw gRPC streams with hand-made Hellos: `/status`
 * `agents[].flows` (null for an agent of the previous release and for a host whose agent never
 * connected, cleaned when the agent's reason is hostile, updated by a Pong), and the rejected
 * records counter on `/metrics`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEgressAgents, type EgressAgents } from './support/egress-agents.js';
import { waitFor } from './support/grpc-harness.js';

const HOSTILE = 'ipset refused\u001b]0;pwned\u0007\nforged: line';
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

interface FlowsRow {
  recording: boolean;
  reason: string;
  intervalSeconds: number;
  maxEntries: number;
}
interface StatusDoc {
  agents: { hostId: string; connected: boolean; flows: FlowsRow | null }[];
}

let agents: EgressAgents;
const get = async (path: string): Promise<string> => (await fetch(new URL(path, agents.base), { signal: AbortSignal.timeout(5000) })).text();
const flowsOf = async (): Promise<Record<string, FlowsRow | null>> =>
  Object.fromEntries((JSON.parse(await get('/status')) as StatusDoc).agents.map((a) => [a.hostId, a.flows]));

beforeAll(async () => {
  agents = await startEgressAgents([
    { hostId: 'node-1', flows: { recording: true, reason: '', intervalSeconds: 10, maxEntries: 65_536 } },
    { hostId: 'node-2', flows: { recording: false, reason: HOSTILE, intervalSeconds: 10, maxEntries: 65_536 } },
    { hostId: 'node-3' }, // a release before flows
  ]);
}, 30_000);

afterAll(async () => {
  await agents?.close();
});

describe("the controller shows each agent's flow recording", () => {
  it('/status agents[].flows: as said, cleaned, null for the previous release and for a host never connected', async () => {
    const flows = await flowsOf();
    expect(flows['node-1']).toEqual({ recording: true, reason: '', intervalSeconds: 10, maxEntries: 65_536 });
    expect(flows['node-2']?.recording).toBe(false);
    expect(flows['node-2']?.reason).toMatch(/^ipset refused /);
    expect(flows['node-2']?.reason).not.toMatch(CONTROL);
    expect(flows['node-3']).toBeNull();
    expect(flows['node-4']).toBeNull();
  });

  it('a Pong with a new FlowStatus replaces the last one; a Pong without one keeps it', async () => {
    const [one, two] = agents.streams;
    one?.send({ pong: { nonce: 0, flows: { recording: false, reason: '--flow-interval off', intervalSeconds: 0, maxEntries: 0 } } });
    two?.send({ pong: { nonce: 0 } });
    await waitFor('node-1 no longer recording', () => agents.controller.status.agentReports().find((a) => a.hostId === 'node-1')?.flows?.recording === false);
    const flows = await flowsOf();
    expect(flows['node-1']).toEqual({ recording: false, reason: '--flow-interval off', intervalSeconds: 0, maxEntries: 0 });
    expect(flows['node-2']?.reason).toMatch(/^ipset refused /);
  });

  it('/metrics has portcullis_flow_records_rejected_total', async () => {
    expect(await get('/metrics')).toMatch(/^# TYPE portcullis_flow_records_rejected_total counter\nportcullis_flow_records_rejected_total 0$/m);
  });
});
