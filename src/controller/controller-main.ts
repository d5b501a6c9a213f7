/**
 * The controller process, wired: policy hot reload → DesiredStateStore ← cluster feed; the store
 * feeds the Sync service (gRPC, mTLS or plaintext) and the status endpoint reads everything.
 *
 * Contract
 * - `startController` resolves once both listeners are bound (the returned addresses carry the
 *   REAL ports, so port 0 works) and the first policy and inventory loads were attempted; it
 *   logs `{"msg":"controller listening","grpc":"host:port","status":"host:port"}`.
 * - A broken policy (at start or on an edit) never reaches the store: every diagnostic is logged
 *   at error level as `file:line:col: message`, the last good policy keeps being served, and the
 *   error shows in /status (`policy.lastError`) and /metrics. The same holds for the inventory
 *   through the ClusterFeed contract. Before the first good policy and inventory, /readyz is 503
 *   and agents get no state (the Sync service has none to send).
 * - Every policy load is bounded by `limits` (src/policy/policy-limits.ts): files over the size
 *   are not read, a reload is parsed in a worker thread (policy-parser.ts) and compiled in slices
 *   (DesiredStateStore.loadPolicy), so agent streams keep being served during a large reload; a
 *   policy over a limit is an invalid policy like any other (logged, /status, last good kept).
 * - Cluster changes are coalesced (`coalesceMs`) before a recompile; compiles are timed.
 * - `reload()` re-reads the policy and the feed (SIGHUP); `stop()` ends every agent stream,
 *   both listeners and every timer, so the process can exit on its own.
 * - Flows (issue 11): agents' records go to one FlowStore (through flow-intake-queue.ts, the Sync
 *   service's `flowSink`, which ingests in slices between event-loop turns),
 *   resolved against the policy and cluster in force (one FlowResolver per pair, rebuilt when
 *   either changes), read back from `<stateDir>/flows/` before the listeners open, saved
 *   every 30 s and once more by `stop()` (flow-persistence.ts).
 * - Flow peers (issue 12): with `flowPeers` targets or a Consul service, `/flows` merges the
 *   records of every peer replica (flow-peers.ts) and this replica serves the Peers service to
 *   them on its gRPC listener (src/grpc/peers-service.ts); without either it serves no Peers.
 * - Input stamp (src/grpc/input-stamp.ts): the store is told the policy's stamp (the Consul
 *   pointer's ModifyIndex, 0 for a directory) with each policy it takes, and reads the feed's
 *   freshness and the last Consul read; the Sync service re-checks held agents when it moves.
 * - With `consul.housekeeping`, old policy bundles are collected under the housekeeping lock
 *   (controller-consul.ts, policy-housekeeping.ts); `stop()` releases it.
 */
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { formatDiagnostic, type Diagnostic } from '../diagnostic.js';
import { DEFAULT_POLICY_LIMITS, PolicyLimitError, type PolicyLimits } from '../policy/policy-limits.js';
import type { Policy } from '../policy/policy-model.js';
import type { ClusterState } from '../inventory/cluster-state.js';
import { SyncService, type AgentStatus } from '../grpc/sync-service.js';
import { PolicyWatcher, type PolicyWatcherOptions } from '../sources/policy-watcher.js';
import { ConsulPolicyFeed } from './consul-policy-feed.js';
import { replicaCount, type ReplicaCount } from './replica-count.js';
import { controllerServiceId, registerController, startHousekeeping, type ControllerConsulOptions } from './controller-consul.js';
import type { PolicyHousekeeping } from './policy-housekeeping.js';
import type { ServiceRegistrar } from '../consul/service-registrar.js';
import type { TlsMaterial } from '../tls/credentials.js';
import { listenMtls, type MtlsListener } from '../tls/mtls-listener.js';
import { TlsRefusals } from '../tls/tls-refusals.js';
import { handshakeAdmission } from '../tls/handshake-queue.js';
import type { ClusterFeed } from './cluster-feed.js';
import { ControllerStatus, type PolicyInfo } from './controller-status.js';
import { DesiredStateStore } from './desired-state-store.js';
import { reportLoadFailure } from './load-errors.js';
import { workerPolicyParser } from './policy-parser.js';
import { formatHostPort, type HostPort } from './host-port.js';
import { StatusServer } from '../status/status-server.js';
import { FlowStore, type FlowStoreOptions } from '../flows/flow-store.js';
import { FlowResolver } from '../flows/resolve-flow.js';
import { FlowEventHub } from './flow-events.js';
import { FlowIntakeQueue } from './flow-intake-queue.js';
import { DEFAULT_CONTROLLER_STATE_DIR, FlowPersistence } from './flow-persistence.js';
import { FlowPeers } from './flow-peers.js';
import { PeersService } from '../grpc/peers-service.js';
import { SharedHostAddresses } from './shared-host-addresses.js';
import { DEFAULT_POLICY_PREFIX } from '../consul/policy-kv.js';

export interface FeedContext {
  /** What the Sync service knows of every agent (host ids, Hello addresses). */
  readonly agents: () => AgentStatus[];
  readonly logger: Logger;
  /**
   * With Consul and a service: the agents' Hello addresses shared between replicas
   * (shared-host-addresses.ts), made and followed on the first call (a feed that does not take
   * addresses from agents never calls it).
   */
  readonly sharedAddresses?: () => SharedHostAddresses;
}

export interface ControllerOptions {
  readonly policyPath: string;
  /** Builds the cluster feed (the static inventory file, or Marathon). */
  readonly feed: (ctx: FeedContext) => ClusterFeed | Promise<ClusterFeed>;
  readonly listen: HostPort;
  readonly statusListen: HostPort;
  /** mTLS: CA, certificate and key (src/tls/credentials.ts readTlsFiles); undefined = plaintext (`--insecure`). */
  readonly credentials: TlsMaterial | undefined;
  readonly pingIntervalMs?: number;
  /** `--max-agents`: open agent streams this replica takes at most (0 = no cap; SyncService). */
  readonly maxAgents?: number;
  /** `--max-handshakes` / `--handshake-queue-wait` (mTLS only; src/tls/handshake-queue.ts). Default 64 / 10 s. */
  readonly maxHandshakes?: number;
  readonly handshakeQueueWaitMs?: number;
  /**
   * Active rebalancing (`--rebalance-interval`, `--replicas`; src/grpc/agent-rebalance.ts): the
   * replica count is `replicas`, else its Consul service's passing instances. Absent: off.
   */
  readonly rebalance?: { readonly intervalMs: number; readonly replicas?: number; readonly slack?: number };
  /** Consul (`--consul`): the policy from KV and/or a service registration (controller-consul.ts). */
  readonly consul?: ControllerConsulOptions;
  readonly coalesceMs?: number;
  /** Policy poll period behind the file watch. Default 5 s. */
  readonly pollMs?: number;
  /** What one policy load may cost. Default DEFAULT_POLICY_LIMITS. */
  readonly limits?: PolicyLimits;
  /** Where the controller keeps what survives a restart (the recorded flows, in flows/). Default /var/lib/portcullis/controller. */
  readonly stateDir?: string;
  /** Flow windows, retention and bound (`--flow-window`, `--flow-retention`, `--flow-max-records`). */
  readonly flows?: FlowStoreOptions;
  /** Period of the flows save. Default 30 s. */
  readonly flowSaveIntervalMs?: number;
  /** Peer replicas whose flows /flows merges (`--flow-peer`, `--peer-name`; Consul peers come with `consul.service`). */
  readonly flowPeers?: { readonly targets?: readonly HostPort[]; readonly peerNames?: readonly string[]; readonly deadlineMs?: number };
  readonly logger: Logger;
}

export interface RunningController {
  /** `host:port` of the gRPC listener, real port. */
  readonly grpcAddress: string;
  /** `host:port` of the status listener, real port. */
  readonly statusAddress: string;
  readonly status: ControllerStatus;
  /** The recorded flows (what `/flows` serves). */
  readonly flows: FlowStore;
  reload(): Promise<void>;
  stop(): Promise<void>;
}

export async function startController(options: ControllerOptions): Promise<RunningController> {
  const log = options.logger;
  const limits = options.limits ?? DEFAULT_POLICY_LIMITS;
  const store = new DesiredStateStore({ coalesceMs: options.coalesceMs ?? 20, maxMembers: limits.maxMembers });
  // Where the policy comes from: the directory, or the pointer key of the policy in Consul KV.
  const policySource = options.consul?.policyPrefix !== undefined ? `consul:${options.consul.policyPrefix}/current` : options.policyPath;
  const policyInfo: PolicyInfo = { path: policySource, valid: false, loadedAt: null, lastError: null, reloadErrors: 0, warnings: [] };
  store.subscribe((changed, info) => {
    log.info({ trigger: info.trigger, hosts: store.hostIds().length, changedHosts: changed.length, durationMs: info.durationMs, reports: store.reports().length }, 'states compiled');
  });

  // Flows: resolved against the policy and cluster in force (a resolver per pair).
  let policyInForce: Policy | undefined;
  let resolver: FlowResolver | undefined;
  const flowStore = new FlowStore(() => {
    const cluster = store.currentCluster();
    if (policyInForce === undefined || cluster === undefined) return undefined;
    if (resolver?.policy !== policyInForce || resolver.cluster !== cluster) resolver = new FlowResolver(policyInForce, cluster);
    return resolver;
  }, options.flows);
  const flowEvents = new FlowEventHub(flowStore);
  const flowIntake = new FlowIntakeQueue(flowStore);
  const flowFiles = new FlowPersistence({
    stateDir: options.stateDir ?? DEFAULT_CONTROLLER_STATE_DIR,
    store: flowStore,
    logger: log.child({ module: 'flows' }),
    ...(options.flowSaveIntervalMs !== undefined ? { intervalMs: options.flowSaveIntervalMs } : {}),
  });
  await flowFiles.load();

  // Flow peers: /flows merges every peer replica's records; this one answers theirs (Peers service).
  let selfAddress = formatHostPort(options.listen.host, options.listen.port);
  let selfId: string | undefined;
  const consulService = options.consul?.service;
  const peerOptions = options.flowPeers;
  const flowPeers =
    (peerOptions?.targets?.length ?? 0) > 0 || (peerOptions?.peerNames?.length ?? 0) > 0 || consulService
      ? new FlowPeers({
          credentials: options.credentials,
          targets: peerOptions?.targets ?? [],
          peerNames: peerOptions?.peerNames ?? [],
          ...(options.consul && consulService ? { consul: { client: options.consul.client, service: consulService.name, selfId: () => selfId } } : {}),
          selfName: () => selfAddress,
          ...(peerOptions?.deadlineMs !== undefined ? { deadlineMs: peerOptions.deadlineMs } : {}),
          logger: log.child({ module: 'flow-peers' }),
        })
      : undefined;

  // Refused agents (another CA, no certificate, another host's name): logged, /status, /metrics.
  const refusals = options.credentials ? new TlsRefusals({ logger: log.child({ module: 'tls' }) }) : undefined;
  const handshakes = options.credentials ? handshakeAdmission(options.maxHandshakes, options.maxAgents, options.handshakeQueueWaitMs, log.child({ module: 'tls' })) : undefined;
  const replicas = rebalanceReplicas(options, log);
  const sync = new SyncService(store, {
    insecure: options.credentials === undefined,
    pingIntervalMs: options.pingIntervalMs ?? 10_000,
    logger: log.child({ module: 'sync' }),
    onCertificateRefused: (peer, reason, detail) => refusals?.record({ peer, reason, detail }, {}, false),
    flowSink: flowIntake,
    maxAgents: options.maxAgents ?? 0,
    ...(replicas && options.rebalance ? { rebalance: { replicas: () => replicas.current(), agents: () => store.hostIds().length, intervalMs: options.rebalance.intervalMs, ...(options.rebalance.slack !== undefined ? { slack: options.rebalance.slack } : {}) } } : {}),
  });
  // Shared host addresses (issue 12 item 1): replicas publish their agents' Hello addresses in KV
  // and follow the others', so every replica compiles the same bytes. Needs Consul and a service,
  // and a feed that takes host addresses from agents (Marathon's): made when the feed asks for it,
  // so a static inventory (whose file names every address) follows nothing in KV.
  let sharedAddresses: SharedHostAddresses | undefined;
  const consul = options.consul;
  const shareAddresses =
    consul?.service !== undefined
      ? (): SharedHostAddresses => {
          if (!sharedAddresses) {
            sharedAddresses = new SharedHostAddresses({ client: consul.client, prefix: consul.policyPrefix ?? DEFAULT_POLICY_PREFIX, logger: log });
            sharedAddresses.start();
          }
          return sharedAddresses;
        }
      : undefined;
  const feed = await Promise.resolve()
    .then(() => options.feed({ agents: () => sync.agents(), logger: log, ...(shareAddresses ? { sharedAddresses: shareAddresses } : {}) }))
    .catch(async (e: unknown) => {
      await sharedAddresses?.stop();
      throw e;
    });
  const status = new ControllerStatus({
    store,
    agents: () => sync.agents(),
    feed,
    policy: policyInfo,
    flowRecordsRejected: () => sync.flowRecordsRejected(),
    agentsRefusedAtCapacity: () => sync.agentsRefusedAtCapacity(),
    agentsRebalanced: () => sync.agentsRebalanced(),
    flows: { store: flowStore, events: flowEvents, ...(flowPeers ? { peers: flowPeers } : {}) },
    agentsHeldBehind: () => sync.agentsHeldBehind(),
    streamsSuperseded: () => sync.streamsSuperseded(),
    ...(refusals ? { tls: refusals } : {}),
    ...(handshakes ? { handshakes } : {}),
  });

  // Cluster changes: the first applies at once, later ones coalesce into one recompute.
  const onCluster = (cluster: ClusterState): void => {
    if (store.currentCluster() === undefined) store.setCluster(cluster);
    else store.queueCluster(cluster);
  };

  const policyFailed = (errors: readonly Diagnostic[]): void => {
    policyInfo.valid = false;
    policyInfo.reloadErrors++;
    const lines = reportLoadFailure(log, {
      input: 'policy',
      path: policySource,
      errors,
      fields: { servingLastGood: store.hasPolicy() },
      message: store.hasPolicy() ? 'policy reload failed: keeping the last good policy' : 'policy is invalid: no state is served until it is fixed',
    });
    policyInfo.lastError = { at: new Date().toISOString(), diagnostics: lines };
  };
  // The first compile (the policy came before any cluster) was over a limit: no policy is in force.
  store.onPolicyRejected = (e) => {
    policyInfo.loadedAt = null;
    policyInForce = undefined;
    watcher.refused();
    policyFailed([e.diagnostic(policySource)]);
  };
  const policyAccepted = (policy: Policy, warnings: readonly Diagnostic[]): void => {
    const first = policyInfo.loadedAt === null;
    policyInForce = policy;
    policyInfo.valid = true;
    policyInfo.loadedAt = new Date().toISOString();
    policyInfo.lastError = null;
    policyInfo.warnings = warnings.map(formatDiagnostic);
    for (const line of policyInfo.warnings) log.warn({ diagnostic: line }, line);
    log.info({ path: policySource, groups: policy.groups.length, rules: policy.rules.length, mode: policy.defaults.mode }, first ? 'policy loaded' : 'policy reloaded');
  };

  const policyPrefix = options.consul?.policyPrefix;
  // A Consul policy is stamped with the ModifyIndex of the pointer that named it; a directory: 0.
  const policyStamp = (): number => (watcher instanceof ConsulPolicyFeed ? watcher.loadingIndex : 0);
  const loads: Pick<PolicyWatcherOptions, 'parse' | 'onPolicy' | 'onRestored' | 'onError'> = {
    parse: workerPolicyParser(options.policyPath, limits),
    onPolicy: async (policy, warnings) => {
      // Compiled in slices; applied (and reported valid) only once it fits the limits.
      try {
        const changed = await store.loadPolicy(policy, policyStamp());
        if (changed === undefined) return false; // a newer load replaced it
        policyAccepted(policy, warnings);
        sync.restamped();
        return true;
      } catch (e) {
        // Anything but a limit is unexpected: the watcher reports it like a load error.
        if (!(e instanceof PolicyLimitError)) throw e;
        policyFailed([e.diagnostic(policySource)]);
        return false;
      }
    },
    onRestored: () => {
      store.setPolicyStamp(policyStamp());
      sync.restamped();
      policyInfo.valid = true;
      policyInfo.lastError = null;
      log.info({ path: policySource }, 'policy files valid again: they hold the policy in force, nothing to recompile');
    },
    onError: policyFailed,
  };
  // The policy directory (hot-reloaded), or the policy pushed to Consul KV (followed).
  const watcher =
    options.consul && policyPrefix !== undefined
      ? new ConsulPolicyFeed({ ...loads, client: options.consul.client, prefix: policyPrefix, logger: log.child({ module: 'policy-consul' }) })
      : new PolicyWatcher({ ...loads, path: options.policyPath, ...(options.pollMs !== undefined ? { pollMs: options.pollMs } : {}), maxBytes: limits.maxBytes });
  // Input stamp (src/grpc/input-stamp.ts): the policy pointer's ModifyIndex, the feed's freshness.
  store.stampInputs = { cluster: () => feed.freshAsOf?.() ?? 0, consulRead: () => (watcher instanceof ConsulPolicyFeed ? watcher.lastRead() : undefined) };
  let registrar: ServiceRegistrar | undefined;
  let housekeeping: PolicyHousekeeping | undefined;

  const server = new grpc.Server();
  const statusServer = new StatusServer(status);
  let mtls: MtlsListener | undefined;
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await registrar?.stop(); // deregistered first: agents stop picking this replica
    await housekeeping?.stop(); // the lock released: another replica takes over at once
    await watcher.stop(); // a policy load in flight ends before the store closes
    sync.close();
    await replicas?.stop();
    store.close();
    await feed.stop().catch((e: unknown) => log.warn({ err: String(e) }, 'cluster feed did not stop cleanly'));
    await sharedAddresses?.stop();
    await new Promise<void>((resolve) => {
      const force = setTimeout(() => {
        server.forceShutdown();
        resolve();
      }, 2000);
      server.tryShutdown(() => {
        clearTimeout(force);
        resolve();
      });
    });
    await mtls?.close();
    await flowPeers?.stop();
    flowEvents.close();
    await statusServer.close();
    flowIntake.flush();
    await flowFiles.stop();
  };

  try {
    sync.addToServer(server);
    if (flowPeers) {
      new PeersService({
        query: (q, now) => flowStore.query(q, now),
        insecure: options.credentials === undefined,
        isPeerName: (names) => flowPeers.isPeerName(names),
        logger: log.child({ module: 'peers' }),
        onRefused: (peer, detail) => refusals?.record({ peer, reason: 'not_a_peer', detail }, {}, false),
      }).addToServer(server);
    }
    flowFiles.start();
    await watcher.start();
    await feed.start(onCluster);
    const listenText = formatHostPort(options.listen.host, options.listen.port);
    let grpcPort: number;
    try {
      if (options.credentials && refusals) {
        mtls = await listenMtls(server, options.listen.host, options.listen.port, { material: options.credentials, refusals, logger: log.child({ module: 'tls' }), ...(handshakes ? { admission: handshakes } : {}) });
        grpcPort = mtls.port;
      } else {
        grpcPort = await new Promise<number>((resolve, reject) => {
          server.bindAsync(listenText, grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port)));
        });
      }
    } catch (err) {
      throw new Error(`cannot listen on ${listenText} (--listen): ${(err as Error).message}`);
    }
    let statusBound;
    try {
      statusBound = await statusServer.listen(options.statusListen.host, options.statusListen.port);
    } catch (e) {
      throw new Error(`cannot listen on ${formatHostPort(options.statusListen.host, options.statusListen.port)} (--status-listen): ${(e as Error).message}`);
    }
    const grpcAddress = formatHostPort(options.listen.host, grpcPort);
    const statusAddress = formatHostPort(options.statusListen.host, statusBound.port);
    if (options.credentials === undefined) log.warn({ grpc: grpcAddress }, 'gRPC is PLAINTEXT (--insecure): agents are not authenticated; use --ca/--cert/--key outside a local trial');
    if (options.consul) registrar = registerController(options.consul, grpcPort, options.statusListen.host, statusBound.port, log.child({ module: 'consul' }));
    selfAddress = grpcAddress;
    if (consulService) selfId = controllerServiceId(consulService.name, grpcPort);
    flowPeers?.start();
    if (options.consul) housekeeping = startHousekeeping(options.consul, log.child({ module: 'housekeeping' }));
    log.info({ grpc: grpcAddress, status: statusAddress, tls: options.credentials !== undefined, policy: policySource, inventory: feed.status().source }, 'controller listening');
    return {
      grpcAddress,
      statusAddress,
      status,
      flows: flowStore,
      reload: async () => {
        log.info('reload requested');
        await Promise.all([watcher.reload(), feed.reload?.()]);
      },
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}

/** The replica count rebalancing reads (replica-count.ts); undefined when rebalancing is off. */
function rebalanceReplicas(options: ControllerOptions, log: Logger): ReplicaCount | undefined {
  const r = options.rebalance;
  if (!r) return undefined;
  const service = options.consul?.service?.name;
  if (r.replicas === undefined && service === undefined) log.debug({ event: 'rebalance.off' }, 'rebalancing needs --replicas N or --consul-service NAME: no agent is shed');
  return replicaCount({
    ...(r.replicas !== undefined ? { fixed: r.replicas } : {}),
    ...(service !== undefined && options.consul ? { consul: { client: options.consul.client, service } } : {}),
    logger: log.child({ module: 'rebalance' }),
  });
}
