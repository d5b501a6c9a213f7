/**
 * `--max-agents` in the running controller (startController, real gRPC and HTTP on port 0): the
 * replica takes that many agent streams, refuses the next Hello with a Rejected that tells the
 * agent to try another replica, and counts it on /metrics (the admission itself is
 * src/grpc/agent-cap.ts, tested with real agents in sync-replicas.test.ts).
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { RunningController } from '../src/controller/controller-main.js';
import { openRawStream, waitFor, type RawStream } from './support/grpc-harness.js';
import { shippedController } from './support/shipped-controller.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const controller = (maxAgents: number): Promise<RunningController> => shippedController(cleanups, { maxAgents });

function agent(c: RunningController, hostId: string): RawStream {
  const s = openRawStream(c.grpcAddress);
  cleanups.push(() => s.close());
  s.send({ hello: { hostId, addresses: [], agentVersion: 'raw', appliedVersion: '' } });
  return s;
}

describe('controller --max-agents', () => {
  it('takes that many streams and refuses the next with "at capacity", counted on /metrics', async () => {
    const c = await controller(1);
    const first = agent(c, 'node-1');
    await waitFor('the first agent served', () => first.messages.some((m) => m.msg === 'snapshot'));
    const second = agent(c, 'node-2');
    await waitFor('the second refused', () => second.messages.some((m) => m.msg === 'rejected'));
    expect(second.messages.find((m) => m.msg === 'rejected')?.rejected?.reason).toMatch(/at capacity \(1 agents?\): try another replica/);
    const metrics = await (await fetch(`http://${c.statusAddress}/metrics`)).text();
    expect(metrics).toMatch(/^portcullis_agents_refused_at_capacity_total 1$/m);
  });
});
