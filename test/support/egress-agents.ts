/**
 * A real controller (in-process, ports 0, plaintext, the shipped example policy and inventory)
 * with agents played by hand over raw gRPC streams, each saying in its Hello what it knows of
 * egress: what /status, /metrics, `portcullis status` and `check --controller` report of them.
 */
import type pino from 'pino';
import { startController, type RunningController } from '../../src/controller/controller-main.js';
import { StaticInventoryFeed } from '../../src/controller/static-inventory-feed.js';
import { createLogger } from '../../src/logging.js';
import { defaultInventoryPath, defaultPolicyPath } from '../../src/package-root.js';
import type { EgressStatus } from '../../src/grpc/generated/portcullis/v1/EgressStatus.js';
import type { FlowStatus } from '../../src/grpc/generated/portcullis/v1/FlowStatus.js';
import { openRawStream, waitFor, type RawStream } from './grpc-harness.js';

export interface EgressAgents {
  readonly controller: RunningController;
  /** The status listener's base URL, for `--controller`. */
  readonly base: string;
  readonly streams: RawStream[];
  close(): Promise<void>;
}

/** Starts the controller and one raw stream per entry (`egress`, `flows` undefined = a Hello without it), each past its first state. */
export async function startEgressAgents(agents: readonly { hostId: string; egress?: EgressStatus; flows?: FlowStatus }[], logger?: pino.Logger): Promise<EgressAgents> {
  const controller = await startController({
    policyPath: defaultPolicyPath(),
    feed: () => new StaticInventoryFeed({ path: defaultInventoryPath(), debounceMs: 10, pollMs: 60_000 }),
    listen: { host: '127.0.0.1', port: 0 },
    statusListen: { host: '127.0.0.1', port: 0 },
    credentials: undefined,
    pollMs: 60_000,
    logger: logger ?? createLogger({ component: 'controller', level: 'silent' }),
  });
  const streams: RawStream[] = [];
  const close = async (): Promise<void> => {
    for (const s of streams) s.close();
    await controller.stop();
  };
  try {
    await waitFor('controller ready', () => controller.status.readiness().ready);
    for (const a of agents) {
      const stream = openRawStream(controller.grpcAddress);
      streams.push(stream);
      stream.send({ hello: { hostId: a.hostId, addresses: [], agentVersion: 'raw', appliedVersion: '', ...(a.egress ? { egress: a.egress } : {}), ...(a.flows ? { flows: a.flows } : {}) } });
      await waitFor(`a state for ${a.hostId}`, () => stream.messages.some((m) => m.msg === 'snapshot'));
    }
  } catch (e) {
    await close();
    throw e;
  }
  return { controller, base: `http://${controller.statusAddress}`, streams, close };
}
