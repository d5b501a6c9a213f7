/**
 * The controller end of the fanout benchmarks (bench-fanout.ts in its own process, every replica
 * of bench-replicas.ts in a process of its own, fanout-replica.ts): a SyncService on a grpc.Server
 * behind the controller's mTLS listener on 127.0.0.1, wired as src/controller/controller-main.ts
 * wires it, plus the measuring helpers they share (forced GC, memory after GC, the open-file
 * limit, the kernel's listen-queue overflows, CPU time).
 */
import { readFile } from 'node:fs/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import * as grpc from '@grpc/grpc-js';
import type { DesiredStateStore } from '../../src/controller/desired-state-store.js';
import { SyncService } from '../../src/grpc/sync-service.js';
import type { TlsMaterial } from '../../src/tls/credentials.js';
import { listenMtls, type MtlsListener } from '../../src/tls/mtls-listener.js';
import { handshakeAdmission, type HandshakeAdmission } from '../../src/tls/handshake-queue.js';
import { silentLogger } from '../../src/grpc/sync-logger.js';
import { TlsRefusals } from '../../src/tls/tls-refusals.js';

/** The name the controller's certificate carries and the agents check. */
export const SERVER_NAME = 'localhost';
const PING_INTERVAL_MS = 10_000;

export interface Controller {
  readonly server: grpc.Server;
  readonly sync: SyncService;
  readonly listener: MtlsListener;
  readonly port: number;
  readonly admission: HandshakeAdmission | undefined;
}

export function exposeGc(): () => void {
  const existing = (globalThis as { gc?: () => void }).gc;
  if (existing) return existing;
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as (() => void) | undefined;
  return gc ?? (() => undefined);
}

/** RSS and V8 heap + external after two forced GCs. */
export function memoryAfterGc(gc: () => void): { rss: number; heap: number } {
  gc();
  gc();
  const m = process.memoryUsage();
  return { rss: m.rss, heap: m.heapUsed + m.external };
}

/** Soft RLIMIT_NOFILE of this process (Node cannot change it), undefined when unknown. */
export async function openFileLimit(): Promise<number | undefined> {
  const text = await readFile('/proc/self/limits', 'utf8').catch(() => '');
  const soft = text.split('\n').find((l) => l.startsWith('Max open files'))?.split(/\s{2,}/)[1];
  return soft === undefined || soft === 'unlimited' ? undefined : Number(soft);
}

/** Throws when this process may not hold `connections` sockets. */
export async function checkOpenFileLimit(connections: number, holder: string): Promise<void> {
  const fdLimit = await openFileLimit();
  if (fdLimit !== undefined && fdLimit < connections + 256) {
    throw new Error(`the open-file limit (ulimit -n ${fdLimit}) is too low for ${connections} agent connections in ${holder}: raise it to at least ${connections + 256} (e.g. ulimit -n 65536)`);
  }
}

/** `maxAgents`: the replica's connection cap (SyncServiceOptions.maxAgents), 0 none; `maxHandshakes` as the controller's flag, 0 none. */
export async function startController(store: DesiredStateStore, port: number, material: TlsMaterial, maxAgents = 0, maxHandshakes = 0): Promise<Controller> {
  const deadline = Date.now() + 15_000;
  for (let attempt = 0; attempt < 1000; attempt++) {
    const server = new grpc.Server();
    const sync = new SyncService(store, { pingIntervalMs: PING_INTERVAL_MS, maxAgents });
    sync.addToServer(server);
    const admission = maxHandshakes > 0 ? handshakeAdmission(maxHandshakes, maxAgents, undefined, silentLogger) : undefined;
    try {
      const listener = await listenMtls(server, '127.0.0.1', port, { material, refusals: new TlsRefusals(), ...(admission ? { admission } : {}) });
      return { server, sync, listener, port: listener.port, admission };
    } catch (e) {
      sync.close();
      server.forceShutdown();
      // The old listener of a restart may still hold the port for a moment: retry, bounded.
      if (port === 0 || Date.now() > deadline) throw e;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
  throw new Error(`could not bind 127.0.0.1:${port}`);
}

export async function stopController(c: Controller | undefined): Promise<void> {
  if (!c) return;
  c.sync.close();
  c.server.forceShutdown();
  await c.listener.close();
}

/**
 * The kernel's count of connections dropped because a listen queue was full (TcpExt
 * ListenOverflows, system-wide; undefined off Linux). The mTLS listener uses Node's default backlog
 * (511), so a connection storm larger than that overflows it and the kernel drops SYNs, which
 * clients retransmit after 1 s, 3 s, 7 s...
 */
export async function listenOverflows(): Promise<number | undefined> {
  const text = await readFile('/proc/net/netstat', 'utf8').catch(() => '');
  const lines = text.split('\n').filter((l) => l.startsWith('TcpExt:'));
  if (lines.length < 2) return undefined;
  const names = lines[0]!.split(/\s+/);
  const values = lines[1]!.split(/\s+/);
  const i = names.indexOf('ListenOverflows');
  return i < 0 ? undefined : Number(values[i]);
}

export function overflowText(before: number | undefined, after: number | undefined): string {
  return before === undefined || after === undefined ? 'listen-queue overflows unknown' : `${after - before} listen-queue overflows (system-wide)`;
}

export const cpuMs = (u: NodeJS.CpuUsage): number => (u.user + u.system) / 1000;
