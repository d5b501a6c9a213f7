/**
 * The agent process, wired: disk state → kernel at boot, then the Sync stream → kernel, and a
 * drift check on a timer.
 *
 * Contract
 * - Fail static. At boot the last state applied (agent/state-store.ts) is put into the kernel
 *   before any connection is tried (`applied` with source `disk`), and announced in Hello so an
 *   unchanged controller sends nothing new. Losing the controller changes nothing in the kernel;
 *   stopping the agent (SIGTERM) leaves the rules in place.
 * - One owner of the kernel. The dataplane (agent/dataplane/kernel-dataplane.ts) alone knows what
 *   the kernel holds (`held`) and runs every kernel job (an apply from the controller, a drift
 *   check and its repair) through its one queue. This runner keeps no copy: /status, readiness,
 *   the Hello's applied version and the base of a wire Delta (sync-client.ts) read `held`.
 * - A wire Delta goes to the dataplane as it came (with the full state `applyDelta` built once, for
 *   the disk and /status): on the held version it is the difference written, not diffed again.
 * - An apply is persisted to disk only after the kernel accepted it; a failed apply is reported
 *   to the controller (ApplyError) and the kernel keeps the previous state whole.
 * - Drift: every `refreshIntervalMs` the dataplane reads the kernel back and compares it with the
 *   state held; any difference (our chain flushed, our jump deleted, a set member removed) is
 *   repaired in the same job by writing that state again, logged as `drift repaired` and counted.
 * - Log lines the operator (and the end-to-end tests) rely on: `applied` {version, source:
 *   disk|controller; from disk also savedAt; from the controller seq}, `drift repaired` {drift,
 *   repairs}, `sync: stream ended` {reason}.
 * - Boot from disk is visible: /status has `appliedFrom` (disk|controller|null), `appliedAt`,
 *   and `bootedFromDisk` {version, savedAt, appliedAt} (null when the agent started without a
 *   saved state, or could not apply it); /metrics has portcullis_agent_applied_from_disk, 1
 *   while the state in force is the saved one (no controller state applied since boot).
 * - Per-app egress (`egress`): the EgressMapper (egress-mapper.ts) polls the local Mesos agent and
 *   hands the local task map to the dataplane; its first poll ends before the saved state is
 *   applied, so a boot from disk already enforces egress. /status has `egress` (the EgressStatus
 *   also sent to the controller), /metrics portcullis_agent_egress_enforcing and the mapped and
 *   unmapped task gauges. Without `egress` (or when the host cannot) the agent is host-level only
 *   and says so (`supported` true, `enforcing` false, `reason`).
 * - Flow recording (`flows`): the dataplane renders it with every state, and the FlowReader
 *   (flow-reader.ts) reads the kernel every `intervalSeconds`; it is the FlowSource the sync
 *   client takes reports from (its `flows` option; also `this.flows`; undefined with
 *   `--flow-interval off`). Flow sets about to be
 *   destroyed (an app left the host) are read once more first. /status has `flows`.
 */
import { statSync } from 'node:fs';
import type { Logger } from 'pino';
import type * as grpc from '@grpc/grpc-js';
import type { DesiredState } from '../src/compile/desired-state.js';
import type { StateDelta } from '../src/compile/state-delta.js';
import type { Family } from '../src/net/family.js';
import type { StatusSource } from '../src/status/status-server.js';
import type { CommandRunner } from './dataplane/command-runner.js';
import type { EgressStatus } from '../src/grpc/generated/portcullis/v1/EgressStatus.js';
import { DockerEngine } from '../src/mesos/docker-engine.js';
import { MesosAgentApi } from '../src/mesos/agent-api.js';
import type { UnmappedPolicy } from '../src/render/render-egress.js';
import { restoreCommand } from '../src/render/render-iptables.js';
import { EgressMapper } from './egress-mapper.js';
import { FlowReader } from './flow-reader.js';
import type { FlowSource } from '../src/flows/flow-types.js';
import type { FlowRecording } from '../src/render/render-flows.js';
import { KernelDataplane } from './dataplane/kernel-dataplane.js';
import { cleanStateDir, prepareStateDir, type StateDirCleanup } from './state-dir.js';
import { loadSavedState, saveState, statePath } from './state-store.js';
import { NO_STAMP, stampInfo, type InputStamp } from '../src/grpc/input-stamp.js';
import { SyncClient } from './sync-client.js';
import { ControllerTargets } from './controller-targets.js';
import { targetSource, type ControllerSource, type TargetSource } from './target-source.js';

export interface AgentOptions {
  /** The controller as given (`--controller`, or the Consul service), for logs and /status. */
  readonly controller: string;
  /** Where the replicas come from (target-source.ts). Default: `controller` as the one name. */
  readonly controllers?: ControllerSource;
  readonly credentials: grpc.ChannelCredentials;
  readonly channelOptions?: grpc.ChannelOptions;
  readonly hostId: string;
  readonly addresses: readonly string[];
  readonly stateDir: string;
  readonly refreshIntervalMs: number;
  readonly families: readonly Family[];
  readonly runner: CommandRunner;
  readonly agentVersion: string;
  readonly logger: Logger;
  /** Per-app egress: the local Mesos agent to learn tasks from; absent: host-level only. */
  readonly egress?: AgentEgressOptions;
  /** Flow recording (`--flow-interval`, `--flow-max-entries`, `--flow-timeout`); absent: off. */
  readonly flows?: AgentFlowOptions;
  /** `--connect-timeout`: a replica not connected within this long is left (SyncClient). Default 5 s. */
  readonly connectTimeoutMs?: number;
}

export interface AgentFlowOptions {
  readonly intervalSeconds: number;
  readonly recording: FlowRecording;
}

export interface AgentEgressOptions {
  /** Base URL of the local Mesos agent (--mesos-agent). */
  readonly mesosAgent: string;
  readonly pollIntervalMs: number;
  /** The cgroups root when the Mesos agent's GET_FLAGS does not say (--cgroups-root). */
  readonly cgroupsRoot: string;
  readonly unmapped: UnmappedPolicy;
  /** The Docker daemon's socket, asked where Docker-containerizer tasks run (--docker-socket); undefined: none. */
  readonly dockerSocket: string | undefined;
  /** Tests: the cgroup2 mount to use (null: none). */
  readonly cgroup2Mount?: string | null;
}

export class Agent implements StatusSource {
  private readonly dataplane: KernelDataplane;
  private readonly log: Logger;
  private client: SyncClient | undefined;
  private targets: TargetSource | undefined;
  private bootedFromDisk: { version: string; savedAt: string | null; appliedAt: string } | undefined;
  /** Input stamp of the state held (src/grpc/input-stamp.ts): saved with it, sent in Hello. */
  private appliedStamp: InputStamp = NO_STAMP;
  private driftTimer: NodeJS.Timeout | undefined;
  private driftChecks = 0;
  private driftCheckErrors = 0;
  private stopped = false;
  private egress: EgressMapper | undefined;
  private readonly flowReader: FlowReader | undefined;

  constructor(private readonly options: AgentOptions) {
    this.log = options.logger;
    const f = options.flows;
    const flows = f && { flows: f.recording, beforeFlowSetsDestroyed: (names: readonly string[]) => this.flowReader?.read(names) ?? Promise.resolve() };
    this.dataplane = new KernelDataplane({ runner: options.runner, families: options.families, stateDir: options.stateDir, logger: options.logger.child({ module: 'dataplane' }), ...flows });
    this.flowReader = f && new FlowReader({ runner: options.runner, layout: () => this.dataplane.flowLayout, refused: () => this.dataplane.flowsRefused, intervalSeconds: f.intervalSeconds, recording: f.recording, logger: options.logger.child({ module: 'flows' }) });
  }

  /** The recorded flows the sync client reports (undefined: `--flow-interval off`). */
  get flowSource(): FlowSource | undefined {
    return this.flowReader;
  }

  /** The EgressStatus now (sent in Hello, Ack, Pong; on /status). */
  egressStatus(): EgressStatus {
    if (this.egress) return this.egress.status(this.dataplane.held?.state);
    return { supported: true, enforcing: false, reason: 'per-app egress is off on this agent (no Mesos agent configured)', mappedTasks: 0, unmappedTasks: 0 };
  }

  private async startEgress(families: readonly Family[]): Promise<void> {
    const e = this.options.egress;
    if (!e) return;
    this.egress = new EgressMapper({
      // Polls never overlap (the next is scheduled after the last), so a slow answer only delays
      // the next one; GET_CONTAINERS gathers every container's statistics and can take seconds
      // on a busy agent, which a 1 s bound (4 polls at the default 250 ms) turned into failures.
      api: new MesosAgentApi({ url: e.mesosAgent, cgroupsRoot: e.cgroupsRoot, timeoutMs: Math.max(5000, e.pollIntervalMs * 4) }),
      dataplane: this.dataplane,
      runner: this.options.runner,
      hostAddresses: this.options.addresses,
      unmapped: e.unmapped,
      pollIntervalMs: e.pollIntervalMs,
      restoreCommand: restoreCommand(families[0] ?? 4),
      ...(e.dockerSocket !== undefined ? { docker: new DockerEngine({ socketPath: e.dockerSocket, timeoutMs: Math.max(5000, e.pollIntervalMs * 4) }) } : {}),
      ...(e.cgroup2Mount !== undefined ? { cgroup2Mount: e.cgroup2Mount } : {}),
      logger: this.log.child({ module: 'egress' }),
    });
    await this.egress.start().catch((err: Error) => this.log.error({ event: 'egress.start_failed', err: err.message }, 'egress: first poll failed: retrying'));
  }

  /** Applies the state saved on disk (if any), then connects and starts the drift timer. */
  async start(): Promise<void> {
    const families = await this.dataplane.families();
    if (families.length === 0) throw new Error(`none of the address families ${this.options.families.join(', ')} has working iptables/ipset tools`);
    await this.startEgress(families);
    await prepareStateDir(this.options.stateDir).catch((err: Error) => this.log.warn({ stateDir: this.options.stateDir, err: err.message }, 'cannot create the state directory: applied states will not survive a restart'));
    const stored = loadSavedState(this.options.stateDir, this.log);
    const saved = stored?.state;
    if (saved && saved.hostId !== this.options.hostId) {
      this.log.warn({ file: statePath(this.options.stateDir), savedHostId: saved.hostId }, 'saved state belongs to another host id: ignored');
    } else if (saved) {
      try {
        await this.dataplane.apply(saved, { source: 'disk' });
        this.appliedStamp = stored?.stamp ?? NO_STAMP;
        this.bootedFromDisk = { version: saved.version, savedAt: savedAt(this.options.stateDir), appliedAt: this.dataplane.held?.at ?? new Date().toISOString() };
        this.log.info({ version: saved.version, source: 'disk', savedAt: this.bootedFromDisk.savedAt, file: statePath(this.options.stateDir) }, 'applied');
      } catch (err) {
        this.log.error({ version: saved.version, err: (err as Error).message }, 'saved state could not be applied: waiting for the controller');
      }
    } else {
      this.log.info({ stateDir: this.options.stateDir }, 'no saved state: nothing is enforced until the controller answers');
    }
    if (this.stopped) return;
    const targets = await this.controllerTargets();
    this.client = new SyncClient({
      ...targets,
      credentials: this.options.credentials,
      ...(this.options.channelOptions ? { channelOptions: this.options.channelOptions } : {}),
      hostId: this.options.hostId,
      addresses: this.options.addresses,
      agentVersion: this.options.agentVersion,
      ...(this.options.connectTimeoutMs !== undefined ? { connectTimeoutMs: this.options.connectTimeoutMs } : {}),
      held: () => this.dataplane.held?.state,
      heldStamp: () => this.appliedStamp,
      egress: () => this.egressStatus(),
      ...(this.flowReader ? { flows: this.flowReader } : {}),
      // The dataplane renders audit-tcp/audit-udp/egress-audit (render-chains.ts, render-egress.ts).
      groupModes: true,
      apply: (state, delta, stamp) => this.applyFromController(state, delta, stamp),
      logger: this.log.child({ module: 'sync' }),
      onEvent: (event) => {
        if (event.type === 'applied') this.log.info({ version: event.version, seq: event.seq, source: 'controller' }, 'applied');
        else if (event.type === 'apply-failed') this.log.error({ version: event.version, seq: event.seq, err: event.message }, 'apply failed: the kernel keeps the previous state');
        else if (event.type === 'connecting') this.log.debug({ controller: this.client?.target ?? null }, 'connecting');
      },
    });
    this.client.start();
    this.flowReader?.start();
    this.targets?.start((list) => this.client?.setCandidates(list));
    this.log.info({ controller: this.options.controller, hostId: this.options.hostId, addresses: this.options.addresses, families }, 'agent started');
    this.scheduleDriftCheck();
  }

  /** The replicas to dial (several `--controller`, every address of a name, or Consul). */
  private async controllerTargets(): Promise<Pick<ConstructorParameters<typeof SyncClient>[0], 'targets' | 'refreshTargets' | 'channelOptionsFor'>> {
    const source = targetSource(this.options.controllers ?? { kind: 'list', controllers: [this.options.controller] }, { logger: this.log.child({ module: 'sync' }) });
    this.targets = source;
    const targets = new ControllerTargets(await source.initial());
    return { targets, refreshTargets: () => source.refresh(), channelOptionsFor: (t) => source.channelOptionsFor(t) };
  }

  /** Stops syncing and the timer; the kernel keeps what it has (fail static). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.driftTimer) clearTimeout(this.driftTimer);
    this.egress?.stop();
    this.flowReader?.stop();
    await this.targets?.stop();
    await this.client?.close();
    await this.dataplane.idle();
  }

  /** Removes every object the agent owns from the kernel, then every file it wrote in the state directory. */
  async uninstall(): Promise<StateDirCleanup> {
    await this.dataplane.uninstall();
    return cleanStateDir(this.options.stateDir);
  }

  readiness(): { ready: boolean; reason?: string } {
    return this.dataplane.held ? { ready: true } : { ready: false, reason: 'no state applied yet' };
  }

  status(): unknown {
    const c = this.dataplane.counters;
    const held = this.dataplane.held;
    return {
      hostId: this.options.hostId,
      controller: this.options.controller,
      controllerTarget: this.client?.target ?? null,
      connected: this.client?.connected ?? false,
      appliedVersion: held?.state.version ?? null,
      appliedFrom: held?.source ?? null,
      appliedAt: held?.at ?? null,
      appliedStamp: held ? stampInfo(this.appliedStamp) : null,
      bootedFromDisk: this.bootedFromDisk ?? null,
      mode: held?.state.mode ?? null,
      lastError: this.client?.lastError ?? null,
      dataplane: c,
      driftChecks: this.driftChecks,
      driftCheckErrors: this.driftCheckErrors,
      egress: this.egressStatus(),
      flows: this.flowReader ? { ...this.flowReader.status(), ...this.flowReader.counters } : null,
    };
  }

  metrics(): string {
    const c = this.dataplane.counters;
    const held = this.dataplane.held;
    const lines: string[] = [];
    const metric = (name: string, type: 'gauge' | 'counter', help: string, value: number, labels = ''): void => {
      if (!lines.some((l) => l === `# TYPE ${name} ${type}`)) lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
      lines.push(`${name}${labels} ${value}`);
    };
    metric('portcullis_agent_connected', 'gauge', 'Whether the Sync stream to the controller is open and the controller has answered on it.', this.client?.connected ? 1 : 0);
    metric('portcullis_agent_state_applied', 'gauge', 'Whether a state is applied (from disk or the controller).', held ? 1 : 0);
    metric('portcullis_agent_applied_from_disk', 'gauge', 'Whether the state in force is the one saved on disk, applied at boot (1) rather than one from the controller (0).', held?.source === 'disk' ? 1 : 0);
    metric('portcullis_agent_applies_total', 'counter', 'States written to the kernel.', c.applies);
    metric('portcullis_agent_apply_failures_total', 'counter', 'Applies the kernel refused.', c.applyFailures);
    metric('portcullis_agent_apply_duration_seconds', 'gauge', 'Duration of the last apply.', c.lastApplyDurationMs / 1000);
    metric('portcullis_agent_drift_checks_total', 'counter', 'Kernel read-backs compared with the applied state.', this.driftChecks);
    metric('portcullis_agent_drift_repairs_total', 'counter', 'Applies made because the kernel had drifted.', c.repairs);
    const egress = this.egressStatus();
    metric('portcullis_agent_egress_enforcing', 'gauge', 'Whether this agent enforces per-app egress now (0: host-level only, see /status egress.reason).', egress.enforcing ? 1 : 0);
    metric('portcullis_agent_egress_mapped_tasks', 'gauge', 'Local tasks of the applied state whose connections the agent can tell apart (a cgroup or a container address).', egress.mappedTasks ?? 0);
    metric('portcullis_agent_egress_unmapped_tasks', 'gauge', 'Local tasks of the applied state the agent has not mapped (see --egress-unmapped).', egress.unmappedTasks ?? 0);
    for (const [kind, n] of Object.entries(c.repairsByKind)) {
      metric('portcullis_agent_drift_repairs_by_kind_total', 'counter', 'Drift found, by kind.', n ?? 0, `{kind="${kind}"}`);
    }
    return `${lines.join('\n')}\n`;
  }

  private async applyFromController(state: DesiredState, delta: StateDelta | undefined, stamp: InputStamp = NO_STAMP): Promise<void> {
    await this.dataplane.apply(state, { source: 'controller', ...(delta ? { delta } : {}) });
    this.appliedStamp = stamp;
    await saveState(this.options.stateDir, state, stamp);
  }

  private scheduleDriftCheck(): void {
    if (this.stopped) return;
    this.driftTimer = setTimeout(() => {
      void this.checkDrift().finally(() => this.scheduleDriftCheck());
    }, this.options.refreshIntervalMs);
  }

  private async checkDrift(): Promise<void> {
    if (this.stopped || this.dataplane.held === undefined) return;
    this.driftChecks++;
    try {
      const checked = await this.dataplane.checkAndRepair();
      if (checked === undefined || checked.drift.length === 0) return;
      const { version, drift } = checked;
      this.log.warn({ version, drift: drift.slice(0, 20).map((d) => d.kind), driftCount: drift.length, repairs: this.dataplane.counters.repairs }, 'drift repaired');
    } catch (err) {
      this.driftCheckErrors++;
      this.log.error({ version: this.dataplane.held?.state.version, err: (err as Error).message }, 'drift check or repair failed: retrying at the next interval');
    }
  }
}

/** ISO modification time of the saved state file (when it was last written), or null. */
function savedAt(stateDir: string): string | null {
  try {
    return statSync(statePath(stateDir)).mtime.toISOString();
  } catch {
    return null;
  }
}
