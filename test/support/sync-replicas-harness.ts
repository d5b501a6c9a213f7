/**
 * Controller replicas and agents in one process over real gRPC (issue 12 tests): a replica is a
 * SyncService on its own MemoryStateSource bound to loopback (port 0 or a given one, so a
 * replica can come back on its port); an agent is a real SyncClient over ControllerTargets that
 * records every apply. Whatever is made is registered with `cleanups` (the caller runs them in
 * afterEach, in reverse).
 */
import * as grpc from '@grpc/grpc-js';
import type { ControllerTargets, Target } from '../../agent/controller-targets.js';
import { SyncClient, type SyncClientEvent } from '../../agent/sync-client.js';
import type { DesiredState } from '../../src/compile/desired-state.js';
import type { StateDelta } from '../../src/compile/state-delta.js';
import { SyncService, type SyncServiceOptions } from '../../src/grpc/sync-service.js';
import { startServer, stopServer, type RunningServer } from './grpc-harness.js';
import { MemoryStateSource } from './memory-state-source.js';

export interface Replica {
  readonly source: MemoryStateSource;
  readonly service: SyncService;
  readonly running: RunningServer;
  readonly target: Target;
  stop(): void;
}

export async function replica(cleanups: (() => unknown)[], options: SyncServiceOptions = {}, port = 0, source = new MemoryStateSource()): Promise<Replica> {
  const service = new SyncService(source, { insecure: true, pingIntervalMs: 200, ...options });
  const running = await startServer((server) => service.addToServer(server), undefined, port);
  let stopped = false;
  const stop = (): void => {
    if (stopped) return;
    stopped = true;
    service.close();
    stopServer(running);
  };
  cleanups.push(stop);
  return { source, service, running, target: running.target, stop };
}

export interface TestAgent {
  readonly client: SyncClient;
  readonly targets: ControllerTargets;
  readonly events: SyncClientEvent[];
  /** Every apply: the version and whether it came as a Delta. */
  readonly applies: { version: string; delta: boolean }[];
  held(): DesiredState | undefined;
}

export function agent(cleanups: (() => unknown)[], hostId: string, targets: ControllerTargets, extra: Partial<ConstructorParameters<typeof SyncClient>[0]> = {}): TestAgent {
  const events: SyncClientEvent[] = [];
  const applies: { version: string; delta: boolean }[] = [];
  let held: DesiredState | undefined;
  const client = new SyncClient({
    targets,
    credentials: grpc.credentials.createInsecure(),
    hostId,
    agentVersion: 'test',
    held: () => held,
    apply: async (s: DesiredState, d?: StateDelta) => {
      applies.push({ version: s.version, delta: d !== undefined });
      held = s;
    },
    backoff: { initialMs: 20, maxMs: 200 },
    firstMessageTimeoutMs: 5_000,
    onEvent: (e) => events.push(e),
    ...extra,
  });
  cleanups.push(() => client.close());
  client.start();
  return { client, targets, events, applies, held: () => held };
}

/** The replica serving `hostId` now (an open stream there). */
export function servingReplica(replicas: readonly Replica[], hostId: string): Replica | undefined {
  return replicas.find((r) => r.service.agent(hostId)?.connected === true);
}
