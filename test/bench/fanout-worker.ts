/**
 * A fanout benchmark worker: a child process (node:child_process fork, IPC channel) hosting a
 * slice of the simulated agents. Each agent is the real agent/sync-client.ts SyncClient with its
 * own channel (one per controller replica it dials), its own TLS connection and its own host certificate (issued here, in process, by
 * fanout-certs.ts with the benchmark CA), and a recording dataplane: `apply` only notes the
 * version and the wall time, and the client then acks as a real agent does.
 *
 * Protocol (fanout-protocol.ts): init → ready; connect → streams of `applied` batches (every
 * 10 ms at most) and `rejected` events; stats → stats; stop → every client closed, `stopped`,
 * exit. The worker exits on its own when the parent goes away (IPC disconnect).
 */
import { readFileSync } from 'node:fs';
import { ControllerTargets } from '../../agent/controller-targets.js';
import { SyncClient } from '../../agent/sync-client.js';
import type { DesiredState } from '../../src/compile/desired-state.js';
import { clientCredentialsFrom } from '../../src/tls/credentials.js';
import { AgentCertIssuer } from './fanout-certs.js';
import { wallNow, type FromWorker, type ToWorker, type WorkerInit, type WorkerStats } from './fanout-protocol.js';
import { hostAddress, hostId } from './synthetic-cluster.js';

const clients: SyncClient[] = [];
const counters = { applied: 0, rejected: 0, applyFailed: 0, disconnects: 0 };
const reasons = new Map<string, number>();
let batch: { hosts: number[]; versions: string[]; at: number[]; deltas: number[] } = { hosts: [], versions: [], at: [], deltas: [] };
let flushTimer: NodeJS.Timeout | undefined;

function send(message: FromWorker): void {
  if (process.connected) process.send?.(message);
}

function flush(): void {
  flushTimer = undefined;
  if (batch.hosts.length === 0) return;
  const out = batch;
  batch = { hosts: [], versions: [], at: [], deltas: [] };
  send({ type: 'applied', ...out });
}

function recordApply(host: number, version: string, delta: boolean): void {
  batch.hosts.push(host);
  batch.versions.push(version);
  batch.at.push(wallNow());
  batch.deltas.push(delta ? 1 : 0);
  counters.applied++;
  flushTimer ??= setTimeout(flush, 10);
}

function stats(): WorkerStats {
  const cpu = process.cpuUsage();
  return { agents: clients.length, ...counters, connected: clients.filter((c) => c.connected).length, rssBytes: process.memoryUsage().rss, cpuMs: (cpu.user + cpu.system) / 1000, reasons: Object.fromEntries(reasons) };
}

function init(m: WorkerInit): void {
  let t = performance.now();
  const issuer = new AgentCertIssuer(readFileSync(m.caCertFile), readFileSync(m.caKeyFile));
  const ca = readFileSync(m.caCertFile);
  const certs = [];
  for (let k = 0; k < m.count; k++) certs.push(issuer.issue(hostId(m.first + k)));
  const issueMs = performance.now() - t;
  t = performance.now();
  for (let k = 0; k < m.count; k++) {
    const index = m.first + k;
    const { certPem, keyPem } = certs[k]!;
    let held: DesiredState | undefined;
    clients.push(new SyncClient({
      ...(m.targets ? { targets: new ControllerTargets(m.targets) } : { target: m.target }),
      // The agent's own credentials (src/cli/commands/agent.ts: loadClientCredentials), which also
      // close a handshake the agent gave up on (src/tls/agent-channel-credentials.ts).
      credentials: clientCredentialsFrom({ ca, key: Buffer.from(keyPem), cert: Buffer.from(certPem) }),
      channelOptions: { 'grpc.ssl_target_name_override': m.serverName, 'grpc.default_authority': m.serverName },
      hostId: hostId(index),
      addresses: [hostAddress(index + 256)],
      agentVersion: 'bench-fanout',
      // The recording dataplane: the agent's apply is where the state "reaches" the host, and
      // what it last accepted is what the "kernel" holds (the base of the next Delta).
      held: () => held,
      apply: async (state, delta) => {
        recordApply(index, state.version, delta !== undefined);
        held = state;
      },
      onEvent: (e) => {
        if (e.type === 'disconnected') {
          counters.disconnects++;
          const reason = e.reason.split('. Last error')[0]!.replace(/\d+/g, 'N').slice(0, 80);
          reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
        }
        else if (e.type === 'rejected') {
          counters.rejected++;
          send({ type: 'rejected', host: index, reason: e.reason });
        } else if (e.type === 'apply-failed') counters.applyFailed++;
      },
    }));
  }
  send({ type: 'ready', issueMs, clientsMs: performance.now() - t });
}

async function stop(): Promise<void> {
  flush();
  // Close every client; a close that hangs must not keep the worker alive (bounded).
  await Promise.race([Promise.allSettled(clients.map((c) => c.close())), new Promise((resolve) => setTimeout(resolve, 10_000).unref())]);
  send({ type: 'stopped', stats: stats() });
  process.disconnect?.();
  setTimeout(() => process.exit(0), 200).unref();
}

process.on('message', (m: ToWorker) => {
  try {
    switch (m.type) {
      case 'init':
        init(m);
        return;
      case 'connect':
        for (const c of clients) c.start();
        return;
      case 'stats':
        send({ type: 'stats', stats: stats() });
        return;
      case 'stop':
        void stop();
        return;
    }
  } catch (e) {
    send({ type: 'error', message: (e as Error).stack ?? String(e) });
  }
});

// The benchmark process is gone (crash, kill): nothing else would ever end this process.
process.on('disconnect', () => process.exit(0));
