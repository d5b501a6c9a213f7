/**
 * The agent's EgressStatus on the wire: the sync client sends it in Hello, in every Ack and in
 * every Pong (a real gRPC server bound to port 0 records what arrives).
 */
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { SyncClient } from '../agent/sync-client.js';
import type { EgressStatus } from '../src/grpc/generated/portcullis/v1/EgressStatus.js';
import { loadSyncProto, type AgentMessage__Output, type ControllerMessage } from '../src/grpc/proto.js';
import { snapshotMessage } from '../src/grpc/wire-state.js';
import { startServer, stopServer, waitFor, type RunningServer } from './support/grpc-harness.js';
import { makeState } from './support/memory-state-source.js';

let running: RunningServer | undefined;
let client: SyncClient | undefined;
afterEach(async () => {
  await client?.close();
  stopServer(running);
});

describe('EgressStatus in Hello, Ack and Pong', () => {
  it('carries the status as it is at each message', async () => {
    const state = makeState('h1', { 'egress-task': ['/a|t.1'], 'egress-managed4': ['10.0.0.2,tcp:5432'] });
    const received: AgentMessage__Output[] = [];
    running = await startServer((server) => {
      server.addService(loadSyncProto().service, {
        Sync: (call: grpc.ServerDuplexStream<AgentMessage__Output, ControllerMessage>) => {
          call.on('data', (m: AgentMessage__Output) => {
            received.push(m);
            if (m.msg === 'hello') call.write({ snapshot: snapshotMessage(state, 1) });
            if (m.msg === 'ack') call.write({ ping: { nonce: 7 } });
          });
          call.on('error', () => undefined);
        },
      });
    });
    let status: EgressStatus = { supported: true, enforcing: false, reason: 'waiting for the Mesos agent', mappedTasks: 0, unmappedTasks: 0 };
    client = new SyncClient({
      target: running.target,
      credentials: grpc.credentials.createInsecure(),
      hostId: 'h1',
      agentVersion: 'test',
      egress: () => status,
      apply: async () => {
        status = { supported: true, enforcing: true, reason: '', mappedTasks: 1, unmappedTasks: 0 };
      },
    });
    client.start();
    await waitFor('hello, ack and pong', () => received.some((m) => m.msg === 'pong'));
    const byKind = Object.fromEntries(received.map((m) => [m.msg, m]));
    expect(byKind.hello?.hello?.egress).toEqual({ supported: true, enforcing: false, reason: 'waiting for the Mesos agent', mappedTasks: 0, unmappedTasks: 0 });
    expect(byKind.ack?.ack?.egress).toEqual({ supported: true, enforcing: true, reason: '', mappedTasks: 1, unmappedTasks: 0 });
    expect(byKind.pong?.pong).toMatchObject({ nonce: 7, egress: { enforcing: true, mappedTasks: 1 } });
  });
});
