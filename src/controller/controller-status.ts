/**
 * What the controller shows on /readyz, /status and /metrics, read from the live pieces (the
 * state store, the Sync service, the cluster feed) and the small record of policy reloads and
 * compiles that controller-main.ts keeps. Pure reads: building a page changes nothing.
 *
 * /status document (stable field names; `portcullis status` and the test harnesses read it):
 *   { ready, reason?, policy: PolicyInfo, inventory: <feed status>, compile: {...},
 *     agents: [{ hostId, connected, peer, addresses, agentVersion, appliedVersion,
 *                desiredVersion, inSync, lastError, lastSeen (ISO),
 *                egress: { supported, enforcing, reason, mappedTasks, unmappedTasks } | null,
 *                flows: { recording, reason, intervalSeconds, maxEntries } | null }],
 *     egress: { enforcing, hostLevel },
 *     groupModes: [{ group, mode, apps }]   groups with an explicit mode (groups.<name>.mode), apps = how many they select,
 *     tls: null (plaintext) | { refusals, byReason: {<reason>: n}, lastRefusal: {peer, reason, detail, at} | null } }
 *     tls: null (plaintext) | { refusals, byReason: {<reason>: n}, lastRefusal: {peer, reason, detail, at} | null },
 *     flows: null (no flow store) | { records, windows, oldest, newest, lost } }
 * `agents` lists every host that has a desired state or ever opened a stream, sorted by host id;
 * a host whose agent never connected has connected=false, agentVersion=null and appliedVersion=null.
 * `agentCounts` says how many of them are agents at all: `known` opened a stream at least once,
 * `connected` have one open now, `inSync` are connected with applied == desired. `egress` counts
 * the connected agents that enforce per-app egress (`enforcing`) and those that do not
 * (`hostLevel`: an agent of an earlier release, or one that cannot; its reason is in its row,
 * already cleaned).
 * Every field is documented in docs/status.md; a field added here gets its row there.
 *
 * The read-only views of what the controller serves (docs/status.md; read by `--controller`):
 *   /hosts            { ready, revision, hosts: [{ hostId, version }] }
 *   /hosts/<id>/state the host's DesiredState, the JSON `portcullis compile --format json` prints
 *   /cluster          the ClusterState in force, the one the states are compiled from
 *                     (src/inventory/cluster-document.ts); served even while no policy is valid
 *   /flows            { flows: ObservedFlow[], lost: [...], now } (src/flows/flow-store.ts query),
 *                     with peer replicas merged with theirs, plus replicas: [{ name, self?, ok, error?, flows? }]
 *   /flows/events     the changes of the flow store as Server-Sent Events (flow-events.ts)
 */
import type { DesiredState } from '../compile/desired-state.js';
import type { FlowStatusInfo } from '../flows/flow-types.js';
import { groupModeInfo, type GroupModeInfo } from '../compile/group-modes.js';
import type { ClusterState } from '../inventory/cluster-state.js';
import type { Policy } from '../policy/policy-model.js';
import type { EgressReport } from '../grpc/egress-status.js';
import type { AgentStatus } from '../grpc/host-record.js';
import { clusterDocument, type ClusterDocument } from '../inventory/cluster-document.js';
import type { TlsRefusals } from '../tls/tls-refusals.js';
import type { HandshakeAdmission } from '../tls/handshake-queue.js';
import type { DesiredStateStore } from './desired-state-store.js';
import type { ClusterFeed } from './cluster-feed.js';
import type { EventSubscription, JsonAnswer, Readiness, StatusSource } from '../status/status-server.js';
import { parseFlowQuery, type FlowQuery } from '../flows/flow-query.js';
import { flowMetrics } from '../flows/flow-metrics.js';
import type { FlowAnswer, FlowStore } from '../flows/flow-store.js';
import type { FlowEventHub } from './flow-events.js';

export interface PolicyInfo {
  readonly path: string;
  /** The policy files as last read parse (false while a broken edit is in place). */
  valid: boolean;
  /** ISO time the policy in force was loaded; null before the first good one. */
  loadedAt: string | null;
  /** The last failed reload since the last good one; null when the files are good. */
  lastError: { at: string; diagnostics: string[] } | null;
  reloadErrors: number;
  warnings: string[];
}

export interface AgentReport {
  readonly hostId: string;
  readonly connected: boolean;
  readonly peer: string | null;
  readonly addresses: readonly string[];
  readonly agentVersion: string | null;
  readonly appliedVersion: string | null;
  readonly desiredVersion: string | null;
  readonly inSync: boolean;
  readonly lastError: string | null;
  readonly lastSeen: string | null;
  /** What the agent last said about egress (src/grpc/egress-status.ts); null if it never connected. */
  readonly egress: EgressReport | null;
  /** What the agent last said about flow recording (src/grpc/flow-wire.ts); null if it never connected or its release has none. */
  readonly flows: FlowStatusInfo | null;
  /** Input stamp of the agent's applied state (src/grpc/input-stamp.ts); null when none is comparable. */
  readonly appliedStamp?: AgentStatus['appliedStamp'];
  /** Why this replica holds the agent (behind the state it applied); null when not held. */
  readonly heldBehind?: string | null;
}

export interface ControllerStatusInputs {
  readonly store: DesiredStateStore;
  readonly agents: () => readonly AgentStatus[];
  readonly feed: ClusterFeed;
  readonly policy: PolicyInfo;
  /** Agents refused for their certificate (mTLS only): `/status` `tls`, `portcullis_tls_refusals_total`. */
  readonly tls?: TlsRefusals;
  /** Handshake admission (mTLS only): `portcullis_tls_handshakes_*`, `portcullis_tls_busy_total`. */
  readonly handshakes?: HandshakeAdmission;
  /** Invalid flow records the agents sent, skipped (`portcullis_flow_records_rejected_total`; SyncService). */
  readonly flowRecordsRejected?: () => number;
  /** Recorded flows (`/flows`, `/flows/events`, `/status` flows, the flow metrics). */
  readonly flows?: FlowInputs;
  /** Hellos refused at `--max-agents` (`portcullis_agents_refused_at_capacity_total`; SyncService). */
  readonly agentsRefusedAtCapacity?: () => number;
  /** Agents asked to move by rebalancing (`portcullis_agents_rebalanced_total`; SyncService). */
  readonly agentsRebalanced?: () => number;
  /** Holds of an agent because this replica was behind it (`portcullis_agents_held_behind_total`; SyncService). */
  readonly agentsHeldBehind?: () => number;
  /** Streams ended by a newer one from the same host id (`portcullis_streams_superseded_total`; SyncService). */
  readonly streamsSuperseded?: () => number;
}

/** The flow store and its event hub. */
export interface FlowInputs {
  readonly store: FlowStore;
  readonly events: FlowEventHub;
  readonly now?: () => number;
  /** Peer replicas (flow-peers.ts): /flows answers their records merged with this one's, and `replicas`. */
  readonly peers?: { answer(q: FlowQuery, local: FlowAnswer, localKeys?: (keys: ReadonlySet<string>) => FlowAnswer): Promise<unknown>; counts(): { readonly peers: number; readonly answered: number; readonly unanswered: number } };
}

export class ControllerStatus implements StatusSource {
  /** The controller's status listener serves the dashboard (/ui/). */
  readonly ui = true;
  private modesOf: { readonly policy: Policy; readonly cluster: ClusterState | undefined; readonly info: readonly GroupModeInfo[] } | undefined;

  constructor(private readonly inputs: ControllerStatusInputs) {}

  readiness(): Readiness {
    const { policy, feed, store } = this.inputs;
    if (policy.loadedAt === null) return { ready: false, reason: `no valid policy loaded from ${policy.path}` };
    if (!feed.status().ready) return { ready: false, reason: 'no inventory loaded yet' };
    if (!store.ready()) return { ready: false, reason: 'states not compiled yet' };
    return { ready: true };
  }

  agentReports(): AgentReport[] {
    const { store } = this.inputs;
    const byHost = new Map<string, AgentReport>();
    for (const a of this.inputs.agents()) {
      byHost.set(a.hostId, {
        hostId: a.hostId,
        connected: a.connected,
        peer: a.peer ?? null,
        addresses: a.addresses,
        agentVersion: a.agentVersion === '' ? null : a.agentVersion,
        appliedVersion: a.appliedVersion ?? null,
        desiredVersion: a.desiredVersion ?? null,
        inSync: a.inSync,
        lastError: a.lastError ?? null,
        lastSeen: a.lastSeen === undefined ? null : new Date(a.lastSeen).toISOString(),
        egress: a.egress ?? null,
        flows: a.flows,
        appliedStamp: a.appliedStamp,
        heldBehind: a.heldBehind,
      });
    }
    for (const hostId of store.hostIds()) {
      if (byHost.has(hostId)) continue;
      byHost.set(hostId, {
        hostId,
        connected: false,
        peer: null,
        addresses: [],
        agentVersion: null,
        appliedVersion: null,
        desiredVersion: store.current(hostId)?.version ?? null,
        inSync: false,
        lastError: null,
        lastSeen: null,
        egress: null,
        flows: null,
      });
    }
    return [...byHost.values()].sort((a, b) => (a.hostId < b.hostId ? -1 : a.hostId > b.hostId ? 1 : 0));
  }

  /** The hosts that have a desired state, with its version (the content hash of the state). */
  hosts(): { ready: boolean; revision: number; hosts: { hostId: string; version: string }[] } {
    const { store } = this.inputs;
    const hosts = [...store.hostIds()].sort().flatMap((hostId) => {
      const version = store.current(hostId)?.version;
      return version === undefined ? [] : [{ hostId, version }];
    });
    return { ready: this.readiness().ready, revision: store.revision(), hosts };
  }

  /** What `hostId` must enforce, as served to its agent; undefined when it has no state. */
  hostState(hostId: string): DesiredState | undefined {
    return this.inputs.store.current(hostId);
  }

  /** The cluster the current states were compiled from; undefined before the first. */
  cluster(): ClusterDocument | undefined {
    const cluster = this.inputs.store.currentCluster();
    return cluster === undefined ? undefined : clusterDocument(cluster);
  }

  status(): unknown {
    const { store, feed, policy } = this.inputs;
    const agents = this.agentReports();
    const compile = store.stats();
    const readiness = this.readiness();
    return {
      ready: readiness.ready,
      ...(readiness.reason !== undefined ? { reason: readiness.reason } : {}),
      policy,
      inventory: feed.status(),
      compile: {
        hosts: store.hostIds().length,
        revision: store.revision(),
        compiles: compile.recomputes,
        lastDurationMs: compile.lastDurationMs,
        reports: store.reports(),
      },
      agentCounts: {
        known: this.inputs.agents().length,
        connected: agents.filter((a) => a.connected).length,
        inSync: agents.filter((a) => a.connected && a.inSync).length,
      },
      egress: egressCounts(this.inputs.agents()),
      groupModes: this.groupModes(),
      agents,
      tls: this.inputs.tls?.status() ?? null,
      flows: this.inputs.flows ? this.inputs.flows.store.summary(this.flowNow()) : null,
    };
  }

  /** Groups with an explicit mode in the policy in force, with the apps they select (cached per policy and cluster). */
  private groupModes(): readonly GroupModeInfo[] {
    const policy = this.inputs.store.currentPolicy?.();
    const cluster = this.inputs.store.currentCluster();
    if (!policy) return [];
    if (this.modesOf?.policy !== policy || this.modesOf.cluster !== cluster) {
      this.modesOf = { policy, cluster, info: groupModeInfo(policy, cluster?.apps ?? []) };
    }
    return this.modesOf.info;
  }

  private flowNow(): number {
    return (this.inputs.flows?.now ?? Date.now)();
  }

  flows(params: URLSearchParams): JsonAnswer | Promise<JsonAnswer> {
    const f = this.inputs.flows;
    if (!f) return { code: 404, body: { error: 'this controller keeps no flows' } };
    const now = this.flowNow();
    const q = parseFlowQuery(params, now);
    if (!q.ok) return { code: 400, body: { error: q.error } };
    const local = f.store.query(q.query, now);
    if (!f.peers) return { code: 200, body: local };
    const localKeys = (keys: ReadonlySet<string>) => f.store.query({ ...q.query, keys, limit: keys.size }, now);
    return f.peers.answer(q.query, local, localKeys).then((body) => ({ code: 200, body }));
  }

  flowEvents(params: URLSearchParams, send: (chunk: string) => void): EventSubscription | JsonAnswer {
    const f = this.inputs.flows;
    if (!f) return { code: 404, body: { error: 'this controller keeps no flows' } };
    const q = parseFlowQuery(params, this.flowNow());
    if (!q.ok) return { code: 400, body: { error: q.error } };
    if (f.events.full()) return { code: 503, body: { error: `already ${f.events.maxSubscribers} flow event streams open: try again later` } };
    return f.events.subscribe(q.query, send);
  }

  metrics(): string {
    const { store, feed, policy } = this.inputs;
    const compile = store.stats();
    const agents = this.inputs.agents();
    const feedStatus = feed.status() as unknown as Record<string, unknown>;
    const out: string[] = [];
    const metric = (name: string, type: 'gauge' | 'counter', help: string, value: number): void => {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, `${name} ${Number.isFinite(value) ? value : 0}`);
    };
    metric('portcullis_ready', 'gauge', 'Whether a valid policy and an inventory are loaded (1) or not (0).', this.readiness().ready ? 1 : 0);
    metric('portcullis_policy_valid', 'gauge', 'Whether the policy files as last read are valid (0 while a broken edit is in place; the last good policy is served).', policy.valid ? 1 : 0);
    metric('portcullis_policy_reload_errors_total', 'counter', 'Policy reloads that failed to parse or validate.', policy.reloadErrors);
    metric('portcullis_inventory_ready', 'gauge', 'Whether a good inventory was loaded at least once.', feed.status().ready ? 1 : 0);
    if (typeof feedStatus['reloadErrors'] === 'number') {
      metric('portcullis_inventory_valid', 'gauge', 'Whether the inventory file as last read is valid.', feedStatus['valid'] === true ? 1 : 0);
      metric('portcullis_inventory_reload_errors_total', 'counter', 'Inventory reloads that failed to parse.', feedStatus['reloadErrors']);
    }
    metric('portcullis_states_compiled', 'gauge', 'Hosts with a compiled desired state.', store.hostIds().length);
    metric('portcullis_compile_reports', 'gauge', 'Problems the compiler reported (see /status).', store.reports().length);
    metric('portcullis_compiles_total', 'counter', 'Recompiles run after a policy or inventory change.', compile.recomputes);
    metric('portcullis_compile_duration_seconds', 'gauge', 'Duration of the last recompile.', (compile.lastDurationMs ?? 0) / 1000);
    metric('portcullis_compile_duration_seconds_total', 'counter', 'Time spent recompiling.', compile.totalDurationMs / 1000);
    metric('portcullis_agents_known', 'gauge', 'Agents that opened a stream since the controller started.', agents.length);
    metric('portcullis_agents_connected', 'gauge', 'Agents with an open stream.', agents.filter((a) => a.connected).length);
    metric('portcullis_agents_in_sync', 'gauge', 'Agents whose applied version equals their desired version.', agents.filter((a) => a.inSync).length);
    metric('portcullis_agents_with_errors', 'gauge', 'Agents whose last apply failed.', agents.filter((a) => a.lastError !== undefined).length);
    const egress = egressCounts(agents);
    metric('portcullis_agents_egress_enforcing', 'gauge', 'Connected agents that enforce per-app egress.', egress.enforcing);
    metric('portcullis_agents_egress_host_level', 'gauge', 'Connected agents that do not enforce per-app egress (an earlier release, or no cgroup2, xt_cgroup or Mesos agent API: see /status).', egress.hostLevel);
    metric('portcullis_flow_records_rejected_total', 'counter', 'Flow records from agents that were invalid and skipped (logged as sync: flow records rejected).', this.inputs.flowRecordsRejected?.() ?? 0);
    metric('portcullis_agents_refused_at_capacity_total', 'counter', 'Agents refused because this replica was at --max-agents (they try another replica).', this.inputs.agentsRefusedAtCapacity?.() ?? 0);
    metric('portcullis_agents_rebalanced_total', 'counter', 'Agents this replica asked to move to another replica because it held more than its share (rebalancing).', this.inputs.agentsRebalanced?.() ?? 0);
    metric('portcullis_agents_held_behind_total', 'counter', 'Times this replica held an agent (sent it nothing new) because its policy or Marathon view was behind the state the agent applied.', this.inputs.agentsHeldBehind?.() ?? 0);
    metric('portcullis_streams_superseded_total', 'counter', 'Agent streams ended by a newer stream from the same host id (an agent reconnecting; often and for one host: two agents with one --host-id, said at warn in the log).', this.inputs.streamsSuperseded?.() ?? 0);
    metric('portcullis_agents_held_behind', 'gauge', 'Connected agents this replica holds now (behind the state they applied).', agents.filter((a) => a.connected && a.heldBehind !== null).length);
    const peers = this.inputs.flows?.peers?.counts();
    if (peers) {
      metric('portcullis_flow_peers', 'gauge', 'Peer replicas /flows asks for their records (--flow-peer and Consul).', peers.peers);
      out.push(
        '# HELP portcullis_flow_peer_queries_total Questions to peer replicas for their flow records, by outcome (unanswered: an error or past the deadline; logged as flow_peers.unanswered).',
        '# TYPE portcullis_flow_peer_queries_total counter',
        `portcullis_flow_peer_queries_total{result="answered"} ${peers.answered}`,
        `portcullis_flow_peer_queries_total{result="unanswered"} ${peers.unanswered}`,
      );
    }
    const flows = this.inputs.flows ? flowMetrics(this.inputs.flows.store, this.flowNow()) : '';
    return `${out.join('\n')}\n${this.inputs.tls?.metrics() ?? ''}${this.inputs.handshakes?.metrics() ?? ''}${flows}`;
  }
}

/** Connected agents that enforce egress, and those that do not (host-level only). */
function egressCounts(agents: readonly AgentStatus[]): { enforcing: number; hostLevel: number } {
  const connected = agents.filter((a) => a.connected);
  const enforcing = connected.filter((a) => a.egress?.enforcing === true).length;
  return { enforcing, hostLevel: connected.length - enforcing };
}
