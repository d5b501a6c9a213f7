/**
 * The rendered inputs the dataplane keeps in `--state-dir` for an operator (see
 * kernel-dataplane.ts and agent/state-dir.ts): `<prefix>.<suffix>` files.
 *
 * - `last-apply.*` describes what the kernel holds. After a full write: its inputs
 *   (`ipset4`, `ipset6`, `iptables4`, `iptables6`), and no delta journal. After each delta write
 *   its `add`/`del` lines are appended to `last-apply.deltas4` / `deltas6`, so replaying
 *   `ipset restore < last-apply.ipset4` then `< last-apply.deltas4` gives the kernel's IPv4 sets
 *   (the chains do not change in a delta). An append costs O(change), and the journal stays
 *   bounded: once it is larger than the full ipset text (and at least FOLD_MIN_BYTES) it is folded
 *   into a fresh `last-apply.ipset*` rendered from the state held, and removed. A failed append
 *   folds at the next delta.
 * - `failed-apply.*`: the inputs of a failed full write and its `error`; `failed-delta.*`
 *   (`ipset4`, `ipset6`, `error`): those of a delta the kernel refused.
 * - A file of an earlier write that the new one did not render is removed (it would mislead).
 * Failing to keep a file is logged (`dataplane.keep_input_failed`) and never fails a write.
 */
import { appendFile, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import type { DesiredState } from '../../src/compile/desired-state.js';
import type { Family } from '../../src/net/family.js';
import { renderIpsetRestore } from '../../src/render/render-ipsets.js';
import { writeFileAtomic } from './atomic-write.js';

/** Files `<prefix>.<suffix>` kept in the state directory (see agent/state-dir.ts). */
export const KEPT_INPUT_PREFIXES = ['last-apply', 'failed-apply', 'failed-delta'] as const;
export const INPUT_SUFFIXES = ['ipset4', 'ipset6', 'iptables4', 'iptables6', 'deltas4', 'deltas6', 'error'];
const DELTA_SUFFIXES = ['ipset4', 'ipset6', 'error'];
/** A journal smaller than this is never folded (a fold rewrites every set's text). */
export const FOLD_MIN_BYTES = 64 * 1024;

export type Inputs = Record<string, string>;

export class KeptInputs {
  /** Bytes in the last-apply.deltas* journal, and in the last-apply.ipset* it applies on. */
  private journalBytes = 0;
  private fullBytes = 0;

  constructor(
    private readonly stateDir: string | undefined,
    private readonly log: Logger,
  ) {}

  /** A full write succeeded: `inputs` are what the kernel holds now. */
  async full(inputs: Inputs): Promise<void> {
    await this.keep('last-apply', inputs);
    this.journalBytes = 0;
    this.fullBytes = Object.entries(inputs).reduce((n, [suffix, text]) => (suffix.startsWith('ipset') ? n + text.length : n), 0);
  }

  /** A chain rewrite succeeded (per-app egress layout): the sets and the delta journal stay as they are. */
  async chains(inputs: Inputs): Promise<void> {
    await this.keep('last-apply', inputs, ['iptables4', 'iptables6']);
  }

  async failedFull(inputs: Inputs): Promise<void> {
    await this.keep('failed-apply', inputs);
  }

  async failedDelta(inputs: Inputs): Promise<void> {
    await this.keep('failed-delta', inputs, DELTA_SUFFIXES);
  }

  /** A delta write succeeded: its lines per family (`''`: none); `state` is what the kernel holds now. */
  async delta(texts: readonly { family: Family; text: string }[], state: DesiredState): Promise<void> {
    if (this.stateDir === undefined) return;
    const added = texts.reduce((n, t) => n + t.text.length, 0);
    if (this.journalBytes + added > Math.max(FOLD_MIN_BYTES, this.fullBytes)) {
      await this.fold(texts.map((t) => t.family), state);
      return;
    }
    for (const { family, text } of texts) {
      if (text === '') continue;
      const file = path.join(this.stateDir, `last-apply.deltas${family}`);
      try {
        await appendFile(file, text, { mode: 0o600 });
        this.journalBytes += text.length;
      } catch (e) {
        this.journalBytes = Number.POSITIVE_INFINITY; // the journal may be torn: fold at the next delta
        this.log.warn({ event: 'dataplane.keep_input_failed', file, err: (e as Error).message }, 'could not keep rendered input');
      }
    }
  }

  /** Replaces the journal by `last-apply.ipset*` rendered from `state` (members validated when it was written). */
  private async fold(families: readonly Family[], state: DesiredState): Promise<void> {
    const inputs: Inputs = {};
    for (const family of families) inputs[`ipset${family}`] = renderIpsetRestore(state, family, { membersValidated: true });
    const dir = this.stateDir as string;
    for (const [suffix, text] of Object.entries(inputs)) await this.write(path.join(dir, `last-apply.${suffix}`), text);
    for (const family of [4, 6] as const) await this.write(path.join(dir, `last-apply.deltas${family}`), undefined);
    this.journalBytes = 0;
    this.fullBytes = Object.values(inputs).reduce((n, text) => n + text.length, 0);
    this.log.debug({ event: 'dataplane.inputs_folded', version: state.version }, 'delta journal folded into last-apply.ipset*');
  }

  private async keep(prefix: string, inputs: Inputs, suffixes: readonly string[] = INPUT_SUFFIXES): Promise<void> {
    if (this.stateDir === undefined) return;
    for (const suffix of new Set([...suffixes, ...Object.keys(inputs)])) {
      await this.write(path.join(this.stateDir, `${prefix}.${suffix}`), inputs[suffix]);
    }
  }

  /** Writes `text` atomically, or removes the file when `text` is undefined; failures are logged. */
  private async write(file: string, text: string | undefined): Promise<void> {
    try {
      if (text === undefined) await rm(file, { force: true });
      else await writeFileAtomic(file, text);
    } catch (e) {
      this.log.warn({ event: 'dataplane.keep_input_failed', file, err: (e as Error).message }, 'could not keep rendered input');
    }
  }
}
