/**
 * Real gRPC plumbing for Sync stream tests: servers bound to loopback port 0, raw client
 * streams that record every controller message, and a deadline-bounded condition wait.
 */
import * as grpc from '@grpc/grpc-js';
import { loadSyncProto, type AgentMessage, type ControllerMessage__Output, type SyncStubClient } from '../../src/grpc/proto.js';

/** Polls `condition` until true; fails with `what` after `timeoutMs`. Bounded in time and count. */
export async function waitFor(what: string, condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 100_000; i++) {
    if (condition()) return;
    if (Date.now() > deadline) break;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`);
}

export interface RunningServer {
  readonly server: grpc.Server;
  readonly port: number;
  readonly target: string;
}

export async function startServer(
  register: (server: grpc.Server) => void,
  credentials: grpc.ServerCredentials = grpc.ServerCredentials.createInsecure(),
  port = 0,
): Promise<RunningServer> {
  const server = new grpc.Server();
  register(server);
  const bound = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`127.0.0.1:${port}`, credentials, (err, p) => (err ? reject(err) : resolve(p)));
  });
  return { server, port: bound, target: `127.0.0.1:${bound}` };
}

export function stopServer(running: RunningServer | undefined): void {
  running?.server.forceShutdown();
}

export interface RawStream {
  readonly client: SyncStubClient;
  readonly call: grpc.ClientDuplexStream<AgentMessage, ControllerMessage__Output>;
  readonly messages: ControllerMessage__Output[];
  /** Set once the call ended: its status code and details. */
  status: { code: number; details: string } | undefined;
  send(message: AgentMessage): void;
  /** Messages of a kind, in arrival order. */
  of(kind: NonNullable<ControllerMessage__Output['msg']>): ControllerMessage__Output[];
  close(): void;
}

/** A bare client stream (no SyncClient logic): the test plays the agent by hand. */
export function openRawStream(
  target: string,
  credentials: grpc.ChannelCredentials = grpc.credentials.createInsecure(),
  options: grpc.ChannelOptions = {},
): RawStream {
  const proto = loadSyncProto();
  const client = new proto.Client(target, credentials, options);
  const call = client.Sync();
  const raw: RawStream = {
    client,
    call,
    messages: [],
    status: undefined,
    send: (message) => void call.write(message),
    of: (kind) => raw.messages.filter((m) => m.msg === kind),
    close: () => {
      call.cancel();
      client.close();
    },
  };
  call.on('data', (m: ControllerMessage__Output) => raw.messages.push(m));
  call.on('status', (s: grpc.StatusObject) => {
    raw.status ??= { code: s.code, details: s.details };
  });
  call.on('error', () => undefined);
  return raw;
}

/** A SyncService-like thing served on loopback port 0, and a stop that may be called more than once. */
export async function serveOnce(service: { addToServer(server: grpc.Server): void; close(): void }): Promise<{ running: RunningServer; stop: () => void }> {
  const running = await startServer((server) => service.addToServer(server));
  let stopped = false;
  return {
    running,
    stop: () => {
      if (stopped) return;
      stopped = true;
      service.close();
      stopServer(running);
    },
  };
}
