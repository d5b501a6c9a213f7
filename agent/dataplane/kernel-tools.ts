/**
 * The dataplane's tools (which families can be managed) and its removals (kernel-dataplane.ts
 * runs them in its one queue): the sets of ours a full write no longer renders, and uninstall. Only names with our prefixes are touched, jumps
 * and rules first (a set a rule names cannot be destroyed), no table is ever flushed.
 */
import type { Logger } from 'pino';
import { OUTPUT_HOOK_CHAIN, TABLE, isOwnedChainName, isOwnedSetName } from '../../src/render/owned-names.js';
import type { Family } from '../../src/net/family.js';
import { renderIpsetUninstall } from '../../src/render/render-ipsets.js';
import { renderUninstallIptables } from '../../src/render/render-iptables.js';
import type { CommandResult, CommandRunner } from './command-runner.js';
import { DataplaneError } from './dataplane-error.js';
import { findOurJumps } from './drift.js';
import { staleOwnedSets } from './flow-sets.js';
import { parseIptablesSave } from './kernel-read.js';

export const TOOLS: Readonly<Record<Family, { save: string; restore: string }>> = {
  4: { save: 'iptables-save', restore: 'iptables-restore' },
  6: { save: 'ip6tables-save', restore: 'ip6tables-restore' },
};

/** Families whose tools exist (ipset, and the family's restore and save). */
export async function probeFamilies(runner: CommandRunner, wanted: readonly Family[], log: Logger): Promise<Family[]> {
  const ipset = await runner.run(['ipset', '--version']);
  const usable: Family[] = [];
  for (const family of wanted) {
    const restore = ipset.code === 0 ? await runner.run([TOOLS[family].restore, '--version']) : ipset;
    const save = restore.code === 0 ? await runner.run([TOOLS[family].save, '--version']) : restore;
    if (save.code === 0) usable.push(family);
    else log.warn({ event: 'dataplane.family_skipped', family, stderr: save.stderr.trim() }, `IPv${family} tools missing; IPv${family} is not managed`);
  }
  return usable;
}

/** What a removal needs of the dataplane. */
export interface TidyContext {
  readonly runner: CommandRunner;
  readonly log: Logger;
  must(argv: readonly string[], what: string, family?: Family, input?: string): Promise<CommandResult>;
  families(): Promise<Family[]>;
}

/**
 * Destroys the egress and flow sets of ours no rule names any more (after the iptables-restore
 * of every family); `beforeDestroy` sees the flow sets first (the flow reader reads them once more).
 */
export async function destroyStaleSets(ctx: TidyContext, rendered: ReadonlySet<string>, beforeDestroy?: (names: readonly string[]) => Promise<void>): Promise<void> {
  const listed = await ctx.runner.run(['ipset', 'list', '-n']);
  if (listed.code !== 0) return; // nothing to tidy is known; the next full write tries again
  const stale = staleOwnedSets(listed.stdout.split('\n').map((l) => l.trim()), rendered);
  if (stale.length === 0) return;
  if (beforeDestroy) await beforeDestroy(stale).catch((err: Error) => ctx.log.warn({ event: 'dataplane.flow_read_failed', err: err.message }, 'reading flow sets before destroying them failed'));
  await ctx.must(['ipset', 'restore'], 'destroying sets no longer rendered', undefined, renderIpsetUninstall(stale));
}

/** Removes our jumps, chains and sets (see the header); idempotent. */
export async function uninstallKernel(ctx: TidyContext): Promise<void> {
  for (const family of await ctx.families()) {
    const saved = parseIptablesSave((await ctx.must([TOOLS[family].save, '-t', TABLE], `reading ${TABLE} table`, family)).stdout, TABLE);
    const chains = saved.chains.filter(isOwnedChainName);
    const jumps = findOurJumps(saved).map((tokens) => [...tokens]);
    const outputJumps = findOurJumps(saved, OUTPUT_HOOK_CHAIN).map((tokens) => [...tokens]);
    if (chains.length === 0 && jumps.length === 0 && outputJumps.length === 0) continue;
    const text = renderUninstallIptables(family, { chains, jumps, outputJumps });
    await ctx.must([TOOLS[family].restore, '--noflush', '--wait'], `IPv${family} uninstall`, family, text);
  }
  const listed = await ctx.runner.run(['ipset', 'list', '-n']);
  if (listed.code !== 0) {
    if ((await ctx.families()).length === 0) return; // no ipset at all: nothing of ours can exist
    throw new DataplaneError('listing ipsets failed', { argv: ['ipset', 'list', '-n'], code: listed.code, stderr: listed.stderr });
  }
  const names = listed.stdout.split('\n').map((s) => s.trim()).filter((s) => s !== '' && isOwnedSetName(s));
  if (names.length > 0) await ctx.must(['ipset', 'restore'], 'ipset uninstall', undefined, renderIpsetUninstall(names));
  ctx.log.info({ event: 'dataplane.uninstalled', sets: names.length }, 'dataplane uninstalled');
}
