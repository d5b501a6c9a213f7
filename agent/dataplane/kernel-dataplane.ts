/**
 * KernelDataplane: the only code in the agent that writes the kernel's firewall.
 *
 * Contract
 * - `apply(state)` makes the kernel equal to the state for every active family (4, 6): members are
 *   validated first (an invalid member refuses the whole state before any command runs); then per
 *   family the sets are written with one `ipset restore` (each set filled as a temp set and
 *   swapped in, so a set is replaced atomically; sets first because rules name them), then our
 *   chains with one `iptables-restore --noflush --wait` (atomic per table). Exactly one jump into
 *   PCU-PREROUTING is kept in mangle PREROUTING: inserted at position 1 only when missing,
 *   duplicates and stale jumps deleted, a jump another tool pushed down is left where it is.
 *   On failure it throws a DataplaneError carrying the tool's stderr; what was written before the
 *   failure stays complete (a whole set, a whole table), and the rendered inputs are kept in
 *   `<stateDir>/failed-apply.*` for an operator. On success they are kept in `last-apply.*`.
 * - `checkDrift(state)` reads the kernel and lists how it differs (see drift.ts); `repair` applies
 *   again and counts; `uninstall()` removes our jumps, chains and sets, only names with our
 *   prefixes, and is idempotent.
 * - Only objects we own are touched; no table is ever flushed. Commands run through a
 *   CommandRunner (argv arrays, text on stdin). Calls on one instance are serialised, so a drift
 *   check never reads the kernel half-way through an apply.
 * - A family whose tools are missing (e.g. no ip6tables) is skipped with one warning.
 */
import { rm } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { SET_KINDS, type DesiredState } from '../../src/compile/desired-state.js';
import { ENTRY_CHAIN, TABLE, ipsetName, isOwnedChainName, isOwnedSetName, setKindsOf, type Family } from '../../src/render/owned-names.js';
import { renderChains } from '../../src/render/render-chains.js';
import { renderIpsetRestore, renderIpsetUninstall, setMembers, validateMember } from '../../src/render/render-ipsets.js';
import { renderIptablesRestore, renderUninstallIptables } from '../../src/render/render-iptables.js';
import { writeFileAtomic } from './atomic-write.js';
import type { CommandResult, CommandRunner } from './command-runner.js';
import { findOurJumps, setDrift, tableDrift, type Drift, type DriftKind } from './drift.js';
import { parseIpsetSave, parseIptablesSave, targetOf } from './kernel-read.js';

const TOOLS: Readonly<Record<Family, { save: string; restore: string }>> = {
  4: { save: 'iptables-save', restore: 'iptables-restore' },
  6: { save: 'ip6tables-save', restore: 'ip6tables-restore' },
};
const MAX_INVALID_REPORTED = 20;
const INPUT_SUFFIXES = ['ipset4', 'ipset6', 'iptables4', 'iptables6', 'error'];

export interface KernelDataplaneOptions {
  readonly runner: CommandRunner;
  /** Families to manage; default [4, 6]. */
  readonly families?: readonly Family[];
  /** Where rendered inputs are kept for operators (last-apply.*, failed-apply.*). */
  readonly stateDir?: string;
  readonly logger: Logger;
}

export interface FamilyApplyReport {
  readonly family: Family;
  readonly jumpInserted: boolean;
  readonly jumpsDeleted: number;
}

export interface ApplyReport {
  readonly version: string;
  readonly families: readonly FamilyApplyReport[];
  readonly durationMs: number;
}

export interface DataplaneCounters {
  readonly applies: number;
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

/** Every invalid member of a state, one message each (empty when valid). */
export function invalidMembers(state: DesiredState): string[] {
  const problems: string[] = [];
  for (const kind of SET_KINDS) {
    for (const member of state.sets[kind] ?? []) {
      const why = validateMember(kind, member);
      if (why !== undefined) problems.push(why);
    }
  }
  return problems;
}

export class KernelDataplane {
  private readonly runner: CommandRunner;
  private readonly wanted: readonly Family[];
  private readonly stateDir: string | undefined;
  private readonly log: Logger;
  private active: Promise<Family[]> | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private counts = { applies: 0, applyFailures: 0, lastApplyDurationMs: 0, repairs: 0 };
  private readonly repairKinds: Partial<Record<DriftKind, number>> = {};

  constructor(options: KernelDataplaneOptions) {
    this.runner = options.runner;
    this.wanted = options.families ?? [4, 6];
    this.stateDir = options.stateDir;
    this.log = options.logger;
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
    return this.serial(() => this.applyNow(state));
  }

  checkDrift(state: DesiredState): Promise<Drift[]> {
    return this.serial(() => this.driftNow(state));
  }

  /** Apply again because of `drift`; counts one repair and each drift kind. */
  repair(state: DesiredState, drift: readonly Drift[] = []): Promise<ApplyReport> {
    this.counts.repairs++;
    for (const d of drift) this.repairKinds[d.kind] = (this.repairKinds[d.kind] ?? 0) + 1;
    this.log.warn({ event: 'dataplane.repair', version: state.version, drift: drift.slice(0, 20), driftCount: drift.length }, 'repairing dataplane drift');
    return this.apply(state);
  }

  /** Check, and repair when anything drifted. Returns the drift found. */
  async checkAndRepair(state: DesiredState): Promise<Drift[]> {
    const drift = await this.checkDrift(state);
    if (drift.length > 0) await this.repair(state, drift);
    return drift;
  }

  uninstall(): Promise<void> {
    return this.serial(() => this.uninstallNow());
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

  private async applyNow(state: DesiredState): Promise<ApplyReport> {
    const started = performance.now();
    const inputs: Record<string, string> = {};
    try {
      const invalid = invalidMembers(state);
      if (invalid.length > 0) {
        const shown = invalid.slice(0, MAX_INVALID_REPORTED).join('; ');
        throw new DataplaneError(`state ${state.version} refused: ${invalid.length} invalid member(s): ${shown}`);
      }
      const families = await this.families();
      if (families.length === 0) throw new DataplaneError('no address family can be managed: ipset/iptables tools are missing');
      const reports: FamilyApplyReport[] = [];
      for (const family of families) {
        const ipsetText = renderIpsetRestore(state, family);
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
      await this.keepInputs('last-apply', inputs);
      this.log.info({ event: 'dataplane.applied', version: state.version, mode: state.mode, families: reports, durationMs }, 'dataplane applied');
      return { version: state.version, families: reports, durationMs };
    } catch (e) {
      this.counts.applyFailures++;
      this.counts.lastApplyDurationMs = performance.now() - started;
      const err = e instanceof DataplaneError ? e : new DataplaneError(`apply failed: ${(e as Error).message}`);
      inputs['error'] = `${JSON.stringify({ version: state.version, message: err.message, ...err.details }, null, 2)}\n`;
      await this.keepInputs('failed-apply', inputs);
      this.log.error({ event: 'dataplane.apply_failed', version: state.version, err: err.message, family: err.details.family }, 'dataplane apply failed');
      throw err;
    }
  }

  private async keepInputs(prefix: string, inputs: Record<string, string>): Promise<void> {
    if (this.stateDir === undefined) return;
    for (const suffix of new Set([...INPUT_SUFFIXES, ...Object.keys(inputs)])) {
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
    return drifts;
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
