/**
 * KernelDataplane: the only code in the agent that writes the kernel's firewall.
 *
 * Contract
 * - `apply(state)` makes the kernel equal to the state for every active family (4, 6), by one of
 *   two paths. Either way members are validated first: an invalid member refuses the whole state
 *   before any command runs, and each member is validated once per apply.
 * - Full path: per family the sets are written with one `ipset restore` (each set filled as a
 *   temp set and swapped in, so a set is replaced atomically; sets first because rules name
 *   them), then our chains with one `iptables-restore --noflush --wait` (atomic per table).
 *   Exactly one jump into PCU-PREROUTING is kept in mangle PREROUTING: inserted at position 1
 *   only when missing, duplicates and stale jumps deleted, a jump another tool pushed down is left
 *   where it is. On success the rendered inputs are kept in `<stateDir>/last-apply.*`.
 * - Delta path: when this instance applied a state successfully (its "base") and since then no
 *   apply failed, no drift was found, no repair and no uninstall ran, and the new state has the
 *   same mode, a different version and at most `maxDeltaMembers` (default 1,000) members added
 *   plus removed over all sets (counted once per SetKind; lists compared by merging, see
 *   member-delta.ts), only the changes are written: the added members are validated, then per
 *   family whose sets changed one `ipset restore` of `add <set> <member> -exist` /
 *   `del <set> <member> -exist` lines (loosening lines first). No temp set, no swap, no flush, no
 *   iptables-restore (our chains depend only on the mode and the family). Each line is atomic in
 *   the kernel, so no set is ever empty or half-filled. The delta path trusts that the kernel
 *   still holds the base: finding drift is `checkDrift`'s job, and it drops the base.
 *   Everything else takes the full path: the first apply, a mode change, a larger difference,
 *   re-applying the very state already applied, the first apply after a failure, drift or
 *   uninstall, and every `repair`.
 *   If a delta's `ipset restore` fails, the same apply falls back to the full path once (logged as
 *   `dataplane.delta_failed`, counted in `deltaFallbacks`), which rewrites every set and chain.
 * - Failures throw a DataplaneError carrying the tool's stderr; what was written before the
 *   failure stays complete (a whole set, a whole table, a whole add/del line), and the inputs are
 *   kept for an operator: the full path's in `<stateDir>/failed-apply.*`, a failed delta's in
 *   `<stateDir>/failed-delta.*`. A successful delta writes no file (its cost is the point):
 *   `last-apply.*` stays the inputs of the last full apply, and each delta is logged
 *   (`dataplane.applied` with `path: "delta"` and its counts; the lines at debug level).
 * - `checkDrift(state)` reads the kernel and lists how it differs (see drift.ts); `repair` applies
 *   again by the full path and counts; `uninstall()` removes our jumps, chains and sets, only names
 *   with our prefixes, and is idempotent.
 * - Only objects we own are touched; no table is ever flushed. Commands run through a
 *   CommandRunner (argv arrays, text on stdin). Calls on one instance are serialised, so a drift
 *   check never reads the kernel half-way through an apply.
 * - A family whose tools are missing (e.g. no ip6tables) is skipped with one warning.
 */
import { rm } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import type { DesiredState, SetKind } from '../../src/compile/desired-state.js';
import { ENTRY_CHAIN, TABLE, ipsetName, isOwnedChainName, isOwnedSetName, setKindsOf } from '../../src/render/owned-names.js';
import type { Family } from '../../src/net/family.js';
import { renderChains } from '../../src/render/render-chains.js';
import { invalidMembers, renderIpsetRestore, renderIpsetUninstall, setMembers, validateMember } from '../../src/render/render-ipsets.js';
import { renderIptablesRestore, renderUninstallIptables } from '../../src/render/render-iptables.js';
import { writeFileAtomic } from './atomic-write.js';
import type { CommandResult, CommandRunner } from './command-runner.js';
import { findOurJumps, setDrift, tableDrift, type Drift, type DriftKind } from './drift.js';
import { parseIpsetSave, parseIptablesSave, targetOf } from './kernel-read.js';
import { isSortedState, memberChanges, renderDeltaRestore, type KindChange } from './member-delta.js';

export { invalidMembers } from '../../src/render/render-ipsets.js';

const TOOLS: Readonly<Record<Family, { save: string; restore: string }>> = {
  4: { save: 'iptables-save', restore: 'iptables-restore' },
  6: { save: 'ip6tables-save', restore: 'ip6tables-restore' },
};
const MAX_INVALID_REPORTED = 20;
/** Files `<prefix>.<suffix>` this module keeps in the state directory (see agent/state-dir.ts). */
export const KEPT_INPUT_PREFIXES = ['last-apply', 'failed-apply', 'failed-delta'] as const;
export const INPUT_SUFFIXES = ['ipset4', 'ipset6', 'iptables4', 'iptables6', 'error'];
const DELTA_SUFFIXES = ['ipset4', 'ipset6', 'error'];
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
  /** How the kernel was written: every set and chain, or only the changed members. */
  readonly path: 'full' | 'delta';
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

export interface DataplaneErrorDetails {
  readonly family?: Family;
  readonly argv?: readonly string[];
  readonly code?: number;
  readonly stderr?: string;
}

export class DataplaneError extends Error {
  constructor(
    message: string,
    readonly details: DataplaneErrorDetails = {},
  ) {
    super(details.stderr ? `${message}: ${details.stderr.trim()}` : message);
    this.name = 'DataplaneError';
  }
}

function refusal(state: DesiredState, invalid: readonly string[]): DataplaneError {
  const shown = invalid.slice(0, MAX_INVALID_REPORTED).join('; ');
  return new DataplaneError(`state ${state.version} refused: ${invalid.length} invalid member(s): ${shown}`);
}

/** The members a delta writes, or why the apply takes the full path (see the header). */
type DeltaPlan = { readonly kinds: ReadonlyMap<SetKind, KindChange>; readonly total: number } | { readonly skip: string };

export class KernelDataplane {
  private readonly runner: CommandRunner;
  private readonly wanted: readonly Family[];
  private readonly stateDir: string | undefined;
  private readonly log: Logger;
  private active: Promise<Family[]> | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private readonly maxDeltaMembers: number;
  /**
   * The state the kernel holds as far as this instance knows: the last state applied with
   * success, with every list strictly ascending. Undefined after any failure, drift found,
   * repair request or uninstall: the next apply is full.
   */
  private base: DesiredState | undefined;
  private counts = { applies: 0, deltaApplies: 0, deltaFallbacks: 0, applyFailures: 0, lastApplyDurationMs: 0, repairs: 0 };
  private readonly repairKinds: Partial<Record<DriftKind, number>> = {};

  constructor(options: KernelDataplaneOptions) {
    this.runner = options.runner;
    this.wanted = options.families ?? [4, 6];
    this.stateDir = options.stateDir;
    this.log = options.logger;
    this.maxDeltaMembers = Math.max(0, options.maxDeltaMembers ?? DEFAULT_MAX_DELTA_MEMBERS);
  }

  get counters(): DataplaneCounters {
    return { ...this.counts, repairsByKind: { ...this.repairKinds } };
  }

  /** Families whose tools exist (probed once). */
  families(): Promise<Family[]> {
    this.active ??= this.probe();
    return this.active;
  }

  apply(state: DesiredState): Promise<ApplyReport> {
    return this.serial(() => this.applyNow(state, false));
  }

  checkDrift(state: DesiredState): Promise<Drift[]> {
    return this.serial(() => this.driftNow(state));
  }

  /** Apply again because of `drift`; counts one repair and each drift kind. */
  repair(state: DesiredState, drift: readonly Drift[] = []): Promise<ApplyReport> {
    this.counts.repairs++;
    for (const d of drift) this.repairKinds[d.kind] = (this.repairKinds[d.kind] ?? 0) + 1;
    this.log.warn({ event: 'dataplane.repair', version: state.version, drift: drift.slice(0, 20), driftCount: drift.length }, 'repairing dataplane drift');
    return this.serial(() => this.applyNow(state, true));
  }

  /** Check, and repair when anything drifted. Returns the drift found. */
  async checkAndRepair(state: DesiredState): Promise<Drift[]> {
    const drift = await this.checkDrift(state);
    if (drift.length > 0) await this.repair(state, drift);
    return drift;
  }

  uninstall(): Promise<void> {
    return this.serial(() => {
      this.base = undefined;
      return this.uninstallNow();
    });
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async probe(): Promise<Family[]> {
    const ipset = await this.runner.run(['ipset', '--version']);
    const usable: Family[] = [];
    for (const family of this.wanted) {
      const restore = ipset.code === 0 ? await this.runner.run([TOOLS[family].restore, '--version']) : ipset;
      const save = restore.code === 0 ? await this.runner.run([TOOLS[family].save, '--version']) : restore;
      if (save.code === 0) usable.push(family);
      else this.log.warn({ event: 'dataplane.family_skipped', family, stderr: save.stderr.trim() }, `IPv${family} tools missing; IPv${family} is not managed`);
    }
    return usable;
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

  /** The delta from the base to `state`, or why the full path is taken (see the header). */
  private planDelta(state: DesiredState, forceFull: boolean): DeltaPlan {
    const base = this.base;
    if (forceFull) return { skip: 'repair' };
    if (base === undefined) return { skip: 'no base' };
    if (this.maxDeltaMembers === 0) return { skip: 'delta path off' };
    if (base.mode !== state.mode) return { skip: 'mode changed' };
    if (base.version === state.version) return { skip: 'same state again' };
    const changes = memberChanges(base, state, this.maxDeltaMembers);
    if (!changes.ok) return { skip: changes.reason === 'too-many' ? `more than ${this.maxDeltaMembers} members changed` : 'a member list is not sorted' };
    return { kinds: changes.kinds, total: changes.total };
  }

  private async applyNow(state: DesiredState, forceFull: boolean): Promise<ApplyReport> {
    const started = performance.now();
    const plan = this.planDelta(state, forceFull);
    this.base = undefined; // until this apply succeeds
    let fellBack = false;
    if ('kinds' in plan) {
      const invalid: string[] = [];
      for (const [kind, change] of plan.kinds) {
        for (const member of change.adds) {
          const why = validateMember(kind, member);
          if (why !== undefined) invalid.push(why);
        }
      }
      if (invalid.length > 0) return this.failed(state, started, refusal(state, invalid), {}, 'failed-apply');
      const inputs: Record<string, string> = {};
      try {
        return await this.applyDelta(state, plan.kinds, plan.total, started, inputs);
      } catch (e) {
        const err = e instanceof DataplaneError ? e : new DataplaneError(`delta apply failed: ${(e as Error).message}`);
        this.counts.deltaFallbacks++;
        inputs['error'] = `${JSON.stringify({ version: state.version, message: err.message, ...err.details }, null, 2)}\n`;
        await this.keepInputs('failed-delta', inputs, DELTA_SUFFIXES);
        this.log.warn({ event: 'dataplane.delta_failed', version: state.version, err: err.message, family: err.details.family }, 'delta apply failed: falling back to a full apply');
        fellBack = true;
      }
    }
    const reason = fellBack ? 'delta failed' : 'skip' in plan ? plan.skip : '';
    return this.applyFull(state, started, reason);
  }

  private async applyDelta(state: DesiredState, kinds: ReadonlyMap<SetKind, KindChange>, total: number, started: number, inputs: Record<string, string>): Promise<ApplyReport> {
    const families = await this.families();
    if (families.length === 0) throw new DataplaneError('no address family can be managed: ipset/iptables tools are missing');
    const texts = families.map((family) => ({ family, text: renderDeltaRestore(family, kinds, state) }));
    for (const { family, text } of texts) if (text !== '') inputs[`ipset${family}`] = text;
    for (const { family, text } of texts) {
      if (text !== '') await this.must(['ipset', 'restore'], `IPv${family} ipset restore (delta)`, family, text);
    }
    const durationMs = performance.now() - started;
    this.counts.applies++;
    this.counts.deltaApplies++;
    this.counts.lastApplyDurationMs = durationMs;
    this.base = state;
    const lines = texts.map(({ family, text }) => ({ family, lines: text === '' ? 0 : text.split('\n').length - 1 }));
    this.log.info({ event: 'dataplane.applied', path: 'delta', version: state.version, mode: state.mode, members: total, lines, durationMs }, 'dataplane applied (delta)');
    this.log.debug({ event: 'dataplane.delta_lines', version: state.version, ...inputs }, 'delta lines');
    const reports = families.map((family) => ({ family, jumpInserted: false, jumpsDeleted: 0 }));
    return { version: state.version, families: reports, durationMs, path: 'delta' };
  }

  private async applyFull(state: DesiredState, started: number, reason: string): Promise<ApplyReport> {
    const inputs: Record<string, string> = {};
    try {
      const invalid = invalidMembers(state);
      if (invalid.length > 0) throw refusal(state, invalid);
      const families = await this.families();
      if (families.length === 0) throw new DataplaneError('no address family can be managed: ipset/iptables tools are missing');
      const reports: FamilyApplyReport[] = [];
      for (const family of families) {
        const ipsetText = renderIpsetRestore(state, family, { membersValidated: true });
        inputs[`ipset${family}`] = ipsetText;
        await this.must(['ipset', 'restore'], `IPv${family} ipset restore`, family, ipsetText);

        const saved = await this.readTable(family);
        const ours = findOurJumps(saved);
        const keep = ours.find((tokens) => targetOf(tokens) === ENTRY_CHAIN);
        const deleteJumps = ours.filter((tokens) => tokens !== keep).map((tokens) => [...tokens]);
        const insertJump = keep === undefined;
        const iptablesText = renderIptablesRestore(state, family, { insertJump, deleteJumps });
        inputs[`iptables${family}`] = iptablesText;
        await this.must([TOOLS[family].restore, '--noflush', '--wait'], `IPv${family} ${TOOLS[family].restore}`, family, iptablesText);
        reports.push({ family, jumpInserted: insertJump, jumpsDeleted: deleteJumps.length });
      }
      const durationMs = performance.now() - started;
      this.counts.applies++;
      this.counts.lastApplyDurationMs = durationMs;
      // A later delta merges against these lists, which needs them strictly ascending.
      this.base = this.maxDeltaMembers > 0 && isSortedState(state) ? state : undefined;
      await this.keepInputs('last-apply', inputs);
      this.log.info({ event: 'dataplane.applied', path: 'full', reason, version: state.version, mode: state.mode, families: reports, durationMs }, 'dataplane applied');
      return { version: state.version, families: reports, durationMs, path: 'full' };
    } catch (e) {
      const err = e instanceof DataplaneError ? e : new DataplaneError(`apply failed: ${(e as Error).message}`);
      return this.failed(state, started, err, inputs, 'failed-apply');
    }
  }

  /** Counts, keeps the inputs and logs a failed apply, and throws `err`. */
  private async failed(state: DesiredState, started: number, err: DataplaneError, inputs: Record<string, string>, prefix: string): Promise<never> {
    this.base = undefined;
    this.counts.applyFailures++;
    this.counts.lastApplyDurationMs = performance.now() - started;
    inputs['error'] = `${JSON.stringify({ version: state.version, message: err.message, ...err.details }, null, 2)}\n`;
    await this.keepInputs(prefix, inputs);
    this.log.error({ event: 'dataplane.apply_failed', version: state.version, err: err.message, family: err.details.family }, 'dataplane apply failed');
    throw err;
  }

  private async keepInputs(prefix: string, inputs: Record<string, string>, suffixes: readonly string[] = INPUT_SUFFIXES): Promise<void> {
    if (this.stateDir === undefined) return;
    for (const suffix of new Set([...suffixes, ...Object.keys(inputs)])) {
      const file = path.join(this.stateDir, `${prefix}.${suffix}`);
      const text = inputs[suffix];
      try {
        // A file of an earlier apply that this one did not render would mislead: remove it.
        if (text === undefined) await rm(file, { force: true });
        else await writeFileAtomic(file, text);
      } catch (e) {
        this.log.warn({ event: 'dataplane.keep_input_failed', file, err: (e as Error).message }, 'could not keep rendered input');
      }
    }
  }

  private async driftNow(state: DesiredState): Promise<Drift[]> {
    const drifts: Drift[] = [];
    try {
      await this.collectDrift(state, drifts);
    } catch (e) {
      this.base = undefined; // could not tell what the kernel holds: the next apply is full
      throw e;
    }
    // The kernel does not hold the base any more: the next apply is full, even without a repair.
    if (drifts.length > 0) this.base = undefined;
    return drifts;
  }

  private async collectDrift(state: DesiredState, drifts: Drift[]): Promise<void> {
    for (const family of await this.families()) {
      const saved = await this.readTable(family);
      drifts.push(...tableDrift(family, renderChains(state, family).chains, saved));
      for (const kind of setKindsOf(family)) {
        const name = ipsetName(kind, family) as string;
        const desired = setMembers(kind, family, state.sets[kind] ?? []);
        const result = await this.runner.run(['ipset', 'save', name]);
        const actual = result.code === 0 ? (parseIpsetSave(result.stdout).get(name) ?? []) : undefined;
        drifts.push(...setDrift(family, name, desired, actual));
      }
    }
  }

  private async uninstallNow(): Promise<void> {
    for (const family of await this.families()) {
      const saved = await this.readTable(family);
      const chains = saved.chains.filter(isOwnedChainName);
      const jumps = findOurJumps(saved).map((tokens) => [...tokens]);
      if (chains.length === 0 && jumps.length === 0) continue;
      const text = renderUninstallIptables(family, { chains, jumps });
      await this.must([TOOLS[family].restore, '--noflush', '--wait'], `IPv${family} uninstall`, family, text);
    }
    const listed = await this.runner.run(['ipset', 'list', '-n']);
    if (listed.code !== 0) {
      if ((await this.families()).length === 0) return; // no ipset at all: nothing of ours can exist
      throw new DataplaneError('listing ipsets failed', { argv: ['ipset', 'list', '-n'], code: listed.code, stderr: listed.stderr });
    }
    const names = listed.stdout.split('\n').map((s) => s.trim()).filter((s) => s !== '' && isOwnedSetName(s));
    if (names.length > 0) await this.must(['ipset', 'restore'], 'ipset uninstall', undefined, renderIpsetUninstall(names));
    this.log.info({ event: 'dataplane.uninstalled', sets: names.length }, 'dataplane uninstalled');
  }
}
