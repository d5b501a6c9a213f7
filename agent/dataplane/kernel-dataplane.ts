/**
 * KernelDataplane: the one owner of the kernel's firewall in the agent. It alone writes it, and it
 * alone knows what it holds.
 *
 * What it knows (`held`): the last state the kernel accepted (with where it came from and when),
 * and whether the kernel holds exactly that state. After a failed write, found drift or a drift
 * check that could not read the kernel it is "unknown, needs a full write" (`exact: false`): the
 * state stays the last accepted one (it is what /status reports and what a drift check repairs
 * towards), but the next write is full. Uninstall forgets it. Nothing else in the agent keeps a
 * copy: the runner's /status, the Hello's applied version and the base of a wire Delta all read
 * `held`.
 *
 * One queue. Every kernel job (an apply, a drift check, a check-and-repair, uninstall) runs
 * through one promise queue of this instance, one at a time, and a check-and-repair is ONE job:
 * a drift check never reads the kernel half-way through an apply, never compares it with a state
 * a newer apply has replaced, and a repair never writes an older state back.
 *
 * One difference, two renderings. `apply(state, {delta})` asks kernel-difference.ts what
 * separates `held` from `state` (a wire Delta on the held version is that difference as sent; no
 * second diff), which also decides the path, by the rules of docs/architecture.md:
 * - Full: per family the sets are written with one `ipset restore` (each set filled as a temp set
 *   and swapped in, so a set is replaced atomically; sets first because rules name them), then
 *   our chains with one `iptables-restore --noflush --wait` (atomic per table). Exactly one jump
 *   into PCU-PREROUTING is kept in mangle PREROUTING: inserted at position 1 only when missing,
 *   duplicates and stale jumps deleted, a jump another tool pushed down is left where it is.
 *   Taken for the first write, when the kernel's content is unknown, a mode change, the state
 *   already held again, more than `maxDeltaMembers` (default 1,000) members changed, and every
 *   repair.
 * - Delta: per family whose sets changed one `ipset restore` of `add <set> <member> -exist` /
 *   `del <set> <member> -exist` lines (loosening lines first, member-delta.ts). No temp set, no
 *   swap, no flush, no iptables-restore (our chains depend only on the mode and the family). Each
 *   line is atomic in the kernel, so no set is ever empty or half-filled. If the delta's `ipset
 *   restore` fails, the same apply falls back to the full path once (logged as
 *   `dataplane.delta_failed`, counted in `deltaFallbacks`).
 * Member syntax is checked by the render layer (src/render/validate-member.ts), here through
 * `invalidMembers` (every member, full path) and `validateMember` (the added members, delta path)
 * before any command runs: an invalid member refuses the whole state, each member is checked once
 * per write. The shape and version of a state are checked where it enters the agent (the wire:
 * src/grpc/wire-state.ts and `applyDelta`; the disk: agent/state-store.ts), not here.
 *
 * Failures throw a DataplaneError carrying the tool's stderr; what was written before the failure
 * stays complete (a whole set, a whole table, a whole add/del line). The inputs are kept for an
 * operator (kept-inputs.ts): `last-apply.*` describes what the kernel holds, after a delta too
 * (its lines journaled in `last-apply.deltas*`); a failed write's inputs in `failed-apply.*` /
 * `failed-delta.*`. Each write is logged (`dataplane.applied` with `path` and `reason` or counts).
 *
 * Per-app egress (src/render/render-egress.ts): `setEgress(mapping, key)` gives the agent's local
 * task map (undefined: not enforcing, host-level only). It is rendered with every state that has
 * egress members. The egress layout (the map, its cgroup inodes in `key`, the local apps) is part
 * of the difference: a state with new local apps is a full write; a new map alone (a container
 * started, restarted, gone) is a chain rewrite (`path: 'chains'`: one iptables-restore per
 * family, no set touched, since the sets follow the state only), queued as its own job; member
 * changes of the egress kinds stay set swaps or delta lines. A full write also removes what the
 * state no longer renders (write-plan.ts): chains, the OUTPUT jump, egress sets.
 *
 * Flow recording (`flows`, src/render/render-flows.ts) is rendered with every state; a full write
 * makes the rendered flow sets exist (flow-sets.ts: created when missing, kept with their entries,
 * recreated when their parameters differ) and never swaps or flushes them; the flow sets it no
 * longer renders are destroyed after `beforeFlowSetsDestroyed` saw them. `flowLayout` tells the
 * flow reader which sets and overflow rules the kernel holds. Drift checks compare the recording
 * chains like any other, never the flow sets' members.
 *
 * `checkDrift()` reads the kernel and lists how it differs from `held` (drift.ts);
 * `checkAndRepair()` does that and, on drift, writes `held` again by the full path and counts the
 * repair; `uninstall()` removes our jumps, chains and sets, only names with our prefixes, and is
 * idempotent. Only objects we own are touched; no table is ever flushed. Commands run through a
 * CommandRunner (argv arrays, text on stdin). A family whose tools are missing (e.g. no
 * ip6tables) is skipped with one warning.
 */
import type { Logger } from 'pino';
import type { DesiredState } from '../../src/compile/desired-state.js';
import type { StateDelta } from '../../src/compile/state-delta.js';
import { TABLE, ipsetName, setKindsOf } from '../../src/render/owned-names.js';
import type { Family } from '../../src/net/family.js';
import { renderChains, rendersEgress, type RenderedChains } from '../../src/render/render-chains.js';
import type { EgressMapping } from '../../src/render/render-egress.js';
import { auditPortSets, type FlowRecording, type RenderedFlows } from '../../src/render/render-flows.js';
import { invalidMembers, renderIpsetRestore, setMembers, validateMember } from '../../src/render/render-ipsets.js';
import { renderIptablesRestore } from '../../src/render/render-iptables.js';
import type { CommandResult, CommandRunner } from './command-runner.js';
import { setDrift, tableDrift, type Drift, type DriftKind } from './drift.js';
import { flowSetHeaders, flowSetLines, type SetHeader } from './flow-sets.js';
import { KeptInputs, type Inputs } from './kept-inputs.js';
import { kernelDifference, type Difference, type KernelView } from './kernel-difference.js';
import { parseIpsetSave, parseIptablesSave } from './kernel-read.js';
import { isSortedState, renderDeltaRestore } from './member-delta.js';
import { planFullWrite } from './write-plan.js';
import { TOOLS, destroyStaleSets, probeFamilies, uninstallKernel, type TidyContext } from './kernel-tools.js';
import { DataplaneError, errorText, refusal } from './dataplane-error.js';

export { DataplaneError, type DataplaneErrorDetails } from './dataplane-error.js';
export { invalidMembers } from '../../src/render/render-ipsets.js';

/** Default `maxDeltaMembers`: far above a deploy's churn, far below a set rebuild's cost. */
export const DEFAULT_MAX_DELTA_MEMBERS = 1000;

export interface KernelDataplaneOptions {
  readonly runner: CommandRunner;
  /** Families to manage; default [4, 6]. */
  readonly families?: readonly Family[];
  /** Where rendered inputs are kept for operators (last-apply.*, failed-apply.*, failed-delta.*). */
  readonly stateDir?: string;
  /**
   * Largest number of members added plus removed (over all sets) written by the delta path;
   * default DEFAULT_MAX_DELTA_MEMBERS. 0 turns the delta path off (every apply is full).
   */
  readonly maxDeltaMembers?: number;
  /** Flow recording (`--flow-interval` not off): rendered with every state (flow-sets.ts). */
  readonly flows?: FlowRecording;
  /** Called with the flow sets a write is about to destroy (the flow reader reads them once more). */
  readonly beforeFlowSetsDestroyed?: (names: readonly string[]) => Promise<void>;
  readonly logger: Logger;
}

export interface FamilyApplyReport {
  readonly family: Family;
  readonly jumpInserted: boolean;
  readonly jumpsDeleted: number;
}

export interface ApplyReport {
  readonly version: string;
  /** Families written (delta path: every active family; a delta never touches the jump). */
  readonly families: readonly FamilyApplyReport[];
  readonly durationMs: number;
  /** How the kernel was written: every set and chain, only the changed members, or only the chains (a new local task map). */
  readonly path: 'full' | 'delta' | 'chains';
}

export interface DataplaneCounters {
  readonly applies: number;
  /** Of `applies`, those written by the delta path. */
  readonly deltaApplies: number;
  /** Deltas the kernel refused, each followed by a full apply in the same call. */
  readonly deltaFallbacks: number;
  readonly applyFailures: number;
  readonly lastApplyDurationMs: number;
  readonly repairs: number;
  readonly repairsByKind: Readonly<Partial<Record<DriftKind, number>>>;
}

/** Where an applied state came from (the agent's /status `appliedFrom`). */
export type AppliedFrom = 'disk' | 'controller';

/** What the kernel holds, as far as the dataplane knows (see the header). */
export interface HeldState {
  /** The last state the kernel accepted. */
  readonly state: DesiredState;
  readonly source: AppliedFrom | undefined;
  /** When it was written to the kernel (ISO 8601); a repair keeps it. */
  readonly at: string;
  /** The kernel holds exactly `state`; false after a failed write or found drift (the next write is full). */
  readonly exact: boolean;
}

export interface ApplyOptions {
  /** The wire Delta `state` was built from: on the held version it is the difference as sent. */
  readonly delta?: StateDelta;
  readonly source?: AppliedFrom;
}

/** A drift check of the state held: what drifted (empty: nothing), repaired by a full write when not empty. */
export interface DriftCheck {
  readonly version: string;
  readonly drift: readonly Drift[];
}

type DeltaDifference = Extract<Difference, { path: 'delta' }>;

export class KernelDataplane {
  private readonly runner: CommandRunner;
  private readonly wanted: readonly Family[];
  private readonly log: Logger;
  private readonly kept: KeptInputs;
  private readonly maxDeltaMembers: number;
  private active: Promise<Family[]> | undefined;
  /** The one queue of kernel jobs (see the header). */
  private queue: Promise<unknown> = Promise.resolve();
  private heldState: HeldState | undefined;
  /** The local task map (undefined: egress not enforced), its key, and the layout of the last accepted write. */
  private egress: { mapping: EgressMapping; key: string } | undefined;
  private heldLayout = '';
  /** Every list of the held state is strictly ascending (a later merge needs it). */
  private heldSorted = false;
  private counts = { applies: 0, deltaApplies: 0, deltaFallbacks: 0, applyFailures: 0, lastApplyDurationMs: 0, repairs: 0 };
  private readonly repairKinds: Partial<Record<DriftKind, number>> = {};
  private readonly flows: FlowRecording | undefined;
  /** The flow sets and overflow rules of the last accepted write, per family (undefined: not recording). */
  private heldFlows: readonly RenderedFlows[] | undefined;
  private readonly tidy: TidyContext;
  private readonly beforeFlowSetsDestroyed: ((names: readonly string[]) => Promise<void>) | undefined;

  constructor(options: KernelDataplaneOptions) {
    this.runner = options.runner;
    this.wanted = options.families ?? [4, 6];
    this.log = options.logger;
    this.kept = new KeptInputs(options.stateDir, options.logger);
    this.maxDeltaMembers = Math.max(0, options.maxDeltaMembers ?? DEFAULT_MAX_DELTA_MEMBERS);
    this.flows = options.flows;
    this.beforeFlowSetsDestroyed = options.beforeFlowSetsDestroyed;
    this.tidy = { runner: this.runner, log: this.log, must: (...a) => this.must(...a), families: () => this.families() };
  }

  /** Recording as rendered: off while the kernel refuses its rules (`flowsRefused` says why). */
  private get recording(): FlowRecording | undefined {
    return this.flowsRefused === undefined ? this.flows : undefined;
  }
  flowsRefused: string | undefined;

  /** The flow sets and overflow rules the kernel holds now, per family (undefined: not recording, or nothing written). */
  get flowLayout(): readonly RenderedFlows[] | undefined {
    return this.heldFlows;
  }

  get counters(): DataplaneCounters {
    return { ...this.counts, repairsByKind: { ...this.repairKinds } };
  }

  /** What the kernel holds (undefined before the first accepted write and after uninstall). */
  get held(): HeldState | undefined {
    return this.heldState;
  }

  /** Families whose tools exist (probed once). */
  families(): Promise<Family[]> {
    this.active ??= probeFamilies(this.runner, this.wanted, this.log);
    return this.active;
  }

  /** Makes the kernel hold `state` (full or delta, see the header); on success it is `held`. */
  apply(state: DesiredState, options: ApplyOptions = {}): Promise<ApplyReport> {
    return this.serial(() => this.write(state, options, false));
  }

  /** Lists how the kernel differs from the state held (nothing held: nothing to compare). */
  checkDrift(): Promise<Drift[]> {
    return this.serial(async () => (this.heldState ? this.driftNow(this.heldState.state) : []));
  }

  /**
   * One job: reads the kernel, and when it drifted from the state held writes that state again by
   * the full path, counting one repair and each drift kind. Undefined when nothing is held.
   */
  checkAndRepair(): Promise<DriftCheck | undefined> {
    return this.serial(async () => {
      const held = this.heldState;
      if (held === undefined) return undefined;
      const drift = await this.driftNow(held.state);
      if (drift.length === 0) return { version: held.state.version, drift };
      this.counts.repairs++;
      for (const d of drift) this.repairKinds[d.kind] = (this.repairKinds[d.kind] ?? 0) + 1;
      this.log.warn({ event: 'dataplane.repair', version: held.state.version, drift: drift.slice(0, 20), driftCount: drift.length }, 'repairing dataplane drift');
      await this.write(held.state, {}, true);
      return { version: held.state.version, drift };
    });
  }

  /**
   * The agent's local task map changed (or egress enforcement stopped: undefined). Renders the
   * held state with it when the egress layout differs (one full write, its own job); later
   * writes use it. `key` identifies the map, cgroup inodes included.
   */
  setEgress(mapping: EgressMapping | undefined, key = ''): Promise<ApplyReport | undefined> {
    return this.serial(async () => {
      this.egress = mapping === undefined ? undefined : { mapping, key };
      const held = this.heldState;
      const layout = { held: this.heldLayout, next: held === undefined ? '' : this.layoutOf(held.state) };
      if (held === undefined || layout.next === layout.held) return undefined;
      const options = held.source ? { source: held.source } : {};
      const diff = kernelDifference({ held: this.view(), next: held.state, limit: this.maxDeltaMembers, repair: false, layout });
      if (diff.path === 'chains') return this.writeChains(held.state, options, performance.now(), diff.reason);
      return this.writeFull(held.state, options, true, performance.now(), diff.path === 'full' ? diff.reason : 'egress layout changed');
    });
  }

  uninstall(): Promise<void> {
    return this.serial(() => {
      this.heldState = undefined;
      this.heldFlows = undefined;
      return uninstallKernel(this.tidy);
    });
  }

  /** Resolves once every job queued so far has finished. */
  async idle(): Promise<void> {
    await this.queue;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async must(argv: readonly string[], what: string, family?: Family, input?: string): Promise<CommandResult> {
    const result = await this.runner.run(argv, input);
    if (result.code !== 0) {
      throw new DataplaneError(`${what} failed (${argv.join(' ')} exited ${result.code})`, { family, argv, code: result.code, stderr: result.stderr });
    }
    return result;
  }

  private async readTable(family: Family) {
    const saved = await this.must([TOOLS[family].save, '-t', TABLE], `reading ${TABLE} table`, family);
    return parseIptablesSave(saved.stdout, TABLE);
  }

  /** The egress layout a write of `state` renders ('' when it renders no egress). */
  private layoutOf(state: DesiredState): string {
    if (!rendersEgress(state, this.egress?.mapping)) return '';
    return JSON.stringify([this.egress?.key, state.sets['egress-task']]);
  }

  private view(): KernelView | undefined {
    const held = this.heldState;
    return held && { state: held.state, exact: held.exact, sorted: this.heldSorted };
  }

  /** Until a write succeeds the kernel may hold anything between the held state and the next. */
  private markUnknown(): void {
    if (this.heldState?.exact) this.heldState = { ...this.heldState, exact: false };
  }

  /** The kernel accepted `state`; a repair keeps where the state came from and when. */
  private accept(state: DesiredState, options: ApplyOptions, repair: boolean, sorted: boolean): void {
    const previous = this.heldState;
    const keep = repair && previous !== undefined && previous.state === state;
    this.heldState = {
      state,
      source: keep ? previous.source : options.source,
      at: keep ? previous.at : new Date().toISOString(),
      exact: true,
    };
    this.heldSorted = sorted;
    this.heldLayout = this.layoutOf(state);
  }

  private async write(state: DesiredState, options: ApplyOptions, repair: boolean): Promise<ApplyReport> {
    const started = performance.now();
    const layout = { held: this.heldLayout, next: this.layoutOf(state) };
    const diff = kernelDifference({ held: this.view(), next: state, delta: options.delta, limit: this.maxDeltaMembers, repair, layout });
    this.markUnknown();
    if (diff.path === 'full') return this.writeFull(state, options, repair, started, diff.reason);
    if (diff.path === 'chains') return this.writeChains(state, options, started, diff.reason);
    const invalid: string[] = [];
    for (const [kind, change] of diff.kinds) {
      for (const member of change.adds) {
        const why = validateMember(kind, member);
        if (why !== undefined) invalid.push(why);
      }
    }
    if (invalid.length > 0) return this.failed(state, started, refusal(state, invalid), {});
    const inputs: Inputs = {};
    try {
      return await this.writeDelta(state, options, diff, started, inputs);
    } catch (e) {
      const err = e instanceof DataplaneError ? e : new DataplaneError(`delta apply failed: ${(e as Error).message}`);
      this.counts.deltaFallbacks++;
      inputs['error'] = errorText(state, err);
      await this.kept.failedDelta(inputs);
      this.log.warn({ event: 'dataplane.delta_failed', version: state.version, err: err.message, family: err.details.family }, 'delta apply failed: falling back to a full apply');
      return this.writeFull(state, options, repair, started, 'delta failed');
    }
  }

  private async writeDelta(state: DesiredState, options: ApplyOptions, diff: DeltaDifference, started: number, inputs: Inputs): Promise<ApplyReport> {
    const { kinds, total } = diff;
    const families = await this.families();
    if (families.length === 0) throw new DataplaneError('no address family can be managed: ipset/iptables tools are missing');
    const egress = this.layoutOf(state) !== '';
    const texts = families.map((family) => ({ family, text: renderDeltaRestore(family, kinds, state, egress) }));
    for (const { family, text } of texts) if (text !== '') inputs[`ipset${family}`] = text;
    for (const { family, text } of texts) {
      if (text !== '') await this.must(['ipset', 'restore'], `IPv${family} ipset restore (delta)`, family, text);
    }
    const durationMs = performance.now() - started;
    this.counts.applies++;
    this.counts.deltaApplies++;
    this.counts.lastApplyDurationMs = durationMs;
    // A merged difference checked the new lists' order; a wire Delta's state comes from
    // applyDelta, which keeps every list sorted (state-delta.ts).
    this.accept(state, options, false, true);
    await this.kept.delta(texts, state);
    const lines = texts.map(({ family, text }) => ({ family, lines: text === '' ? 0 : text.split('\n').length - 1 }));
    this.log.info({ event: 'dataplane.applied', path: 'delta', difference: diff.from, version: state.version, mode: state.mode, members: total, lines, durationMs }, 'dataplane applied (delta)');
    this.log.debug({ event: 'dataplane.delta_lines', version: state.version, ...inputs }, 'delta lines');
    const reports = families.map((family) => ({ family, jumpInserted: false, jumpsDeleted: 0 }));
    return { version: state.version, families: reports, durationMs, path: 'delta' };
  }

  private async writeFull(state: DesiredState, options: ApplyOptions, repair: boolean, started: number, reason: string): Promise<ApplyReport> {
    const inputs: Inputs = {};
    try {
      const invalid = invalidMembers(state);
      if (invalid.length > 0) throw refusal(state, invalid);
      const families = await this.families();
      if (families.length === 0) throw new DataplaneError('no address family can be managed: ipset/iptables tools are missing');
      const reports: FamilyApplyReport[] = [];
      const keptSets = new Set<string>();
      const flows: RenderedFlows[] = [];
      const present = this.recording ? await flowSetHeaders(this.runner) : new Map<string, SetHeader>();
      for (const family of families) {
        const rendered = renderChains(state, family, this.egress?.mapping, this.recording);
        for (const set of [...auditPortSets(state, family), ...(rendered.egress?.sets ?? []), ...(rendered.flows?.sets ?? [])]) keptSets.add(set.name);
        const ipsetText = renderIpsetRestore(state, family, { membersValidated: true, egress: rendered.egress !== undefined }) + flowSetLines(rendered.flows, present, this.recording, this.log);
        if (rendered.flows) flows.push(rendered.flows);
        inputs[`ipset${family}`] = ipsetText;
        await this.must(['ipset', 'restore'], `IPv${family} ipset restore`, family, ipsetText);

        reports.push(await this.writeTables(state, family, rendered, inputs));
      }
      await destroyStaleSets(this.tidy, keptSets, this.beforeFlowSetsDestroyed);
      this.heldFlows = this.recording ? flows : undefined;
      const durationMs = performance.now() - started;
      this.counts.applies++;
      this.counts.lastApplyDurationMs = durationMs;
      // A later merged difference needs these lists strictly ascending (checked once, here).
      this.accept(state, options, repair, this.maxDeltaMembers > 0 && isSortedState(state));
      await this.kept.full(inputs);
      this.log.info({ event: 'dataplane.applied', path: 'full', reason, version: state.version, mode: state.mode, families: reports, durationMs }, 'dataplane applied');
      return { version: state.version, families: reports, durationMs, path: 'full' };
    } catch (e) {
      const err = e instanceof DataplaneError ? e : new DataplaneError(`apply failed: ${(e as Error).message}`);
      if (this.recording === undefined || err.details.family === undefined) return this.failed(state, started, err, inputs);
      // The kernel may lack what recording needs (the SET target): enforce without it rather than not at all.
      this.flowsRefused = `the kernel refused the flow recording rules: ${err.message}`;
      this.log.warn({ event: 'dataplane.flows_refused', err: err.message }, 'writing again without flow recording');
      // A second failure is not recording's fault: the next write records again.
      return this.writeFull(state, options, repair, started, reason).catch((again: unknown) => ((this.flowsRefused = undefined), Promise.reject(again)));
    }
  }

  /** One family's chains and jumps, one iptables-restore (the tail of a full write, or a chain rewrite). */
  private async writeTables(state: DesiredState, family: Family, rendered: RenderedChains, inputs: Inputs): Promise<FamilyApplyReport> {
    const plan = planFullWrite(await this.readTable(family), rendered);
    const mapping = this.egress?.mapping;
    const iptablesText = renderIptablesRestore(state, family, { ...plan, ...(mapping ? { egress: mapping } : {}), ...(this.recording ? { flows: this.recording } : {}) });
    inputs[`iptables${family}`] = iptablesText;
    await this.must([TOOLS[family].restore, '--noflush', '--wait'], `IPv${family} ${TOOLS[family].restore}`, family, iptablesText);
    return { family, jumpInserted: plan.insertJump, jumpsDeleted: plan.deleteJumps.length };
  }

  /** The held state with a new local task map: our chains rewritten, no set touched (see the header). */
  private async writeChains(state: DesiredState, options: ApplyOptions, started: number, reason: string): Promise<ApplyReport> {
    const inputs: Inputs = {};
    this.markUnknown();
    try {
      const reports: FamilyApplyReport[] = [];
      for (const family of await this.families()) reports.push(await this.writeTables(state, family, renderChains(state, family, this.egress?.mapping, this.recording), inputs));
      const durationMs = performance.now() - started;
      this.counts.applies++;
      this.counts.lastApplyDurationMs = durationMs;
      this.accept(state, options, true, this.heldSorted);
      await this.kept.chains(inputs);
      this.log.info({ event: 'dataplane.applied', path: 'chains', reason, version: state.version, families: reports, durationMs }, 'dataplane applied (chains)');
      return { version: state.version, families: reports, durationMs, path: 'chains' };
    } catch (e) {
      return this.failed(state, started, e instanceof DataplaneError ? e : new DataplaneError(`chain rewrite failed: ${(e as Error).message}`), inputs);
    }
  }

  /** Counts, keeps the inputs and logs a failed write, and throws `err`. The kernel's content is unknown. */
  private async failed(state: DesiredState, started: number, err: DataplaneError, inputs: Inputs): Promise<never> {
    this.markUnknown();
    this.counts.applyFailures++;
    this.counts.lastApplyDurationMs = performance.now() - started;
    inputs['error'] = errorText(state, err);
    await this.kept.failedFull(inputs);
    this.log.error({ event: 'dataplane.apply_failed', version: state.version, err: err.message, family: err.details.family }, 'dataplane apply failed');
    throw err;
  }

  private async driftNow(state: DesiredState): Promise<Drift[]> {
    const drifts: Drift[] = [];
    try {
      await this.collectDrift(state, drifts);
    } catch (e) {
      this.markUnknown(); // could not tell what the kernel holds: the next write is full
      throw e;
    }
    // The kernel does not hold the state any more: the next write is full, even without a repair.
    if (drifts.length > 0) this.markUnknown();
    return drifts;
  }

  private async collectDrift(state: DesiredState, drifts: Drift[]): Promise<void> {
    for (const family of await this.families()) {
      const saved = await this.readTable(family);
      const rendered = renderChains(state, family, this.egress?.mapping, this.recording);
      drifts.push(...tableDrift(family, rendered.chains, saved, rendered.egress !== undefined));
      const sets = setKindsOf(family).map((kind) => ({ name: ipsetName(kind, family) as string, members: setMembers(kind, family, state.sets[kind] ?? []) }));
      for (const { name, members } of [...sets, ...auditPortSets(state, family), ...(rendered.egress?.sets ?? [])]) {
        const result = await this.runner.run(['ipset', 'save', name]);
        const actual = result.code === 0 ? (parseIpsetSave(result.stdout).get(name) ?? []) : undefined;
        drifts.push(...setDrift(family, name, members, actual));
      }
    }
  }
}
