/**
 * What a full write must do besides rendering the state (kernel-dataplane.ts), from what the
 * kernel holds now. Pure.
 *
 * - Jumps: exactly one jump into PCU-PREROUTING in mangle PREROUTING, and (only while per-app
 *   egress is rendered) exactly one into PCU-OUTPUT in mangle OUTPUT: the first one found is kept
 *   where it is (another tool may have pushed it down: we do not fight it), duplicates and stale
 *   jumps to our chains are deleted, a missing one is inserted at position 1.
 * - Chains: our chains in the kernel that the state no longer renders (an app that left the
 *   host, egress turned off) are deleted in the same iptables-restore.
 * - Sets: egress sets of ours that the write no longer renders are destroyed after the
 *   iptables-restore (a set a rule names cannot be destroyed), `-tmp` leftovers included.
 */
import { EGRESS_OUTPUT_CHAIN, ENTRY_CHAIN, OUTPUT_HOOK_CHAIN, isEgressSetName, isOwnedChainName } from '../../src/render/owned-names.js';
import type { RenderedChains } from '../../src/render/render-chains.js';
import { findOurJumps } from './drift.js';
import { targetOf, type SavedTable } from './kernel-read.js';

export interface FullWritePlan {
  readonly insertJump: boolean;
  readonly deleteJumps: string[][];
  readonly insertOutputJump: boolean;
  readonly deleteOutputJumps: string[][];
  readonly removeChains: string[];
}

function keepOne(jumps: readonly (readonly string[])[], target: string | undefined): { insert: boolean; remove: string[][] } {
  const keep = target === undefined ? undefined : jumps.find((tokens) => targetOf(tokens) === target);
  return { insert: target !== undefined && keep === undefined, remove: jumps.filter((tokens) => tokens !== keep).map((tokens) => [...tokens]) };
}

export function planFullWrite(saved: SavedTable, rendered: RenderedChains): FullWritePlan {
  const entry = keepOne(findOurJumps(saved), ENTRY_CHAIN);
  const output = keepOne(findOurJumps(saved, OUTPUT_HOOK_CHAIN), rendered.egress ? EGRESS_OUTPUT_CHAIN : undefined);
  const names = new Set(rendered.chains.map((c) => c.name));
  return {
    insertJump: entry.insert,
    deleteJumps: entry.remove,
    insertOutputJump: output.insert,
    deleteOutputJumps: output.remove,
    removeChains: saved.chains.filter((c) => isOwnedChainName(c) && !names.has(c)),
  };
}

/** Egress sets in `listed` (`ipset list -n`) that are not in `rendered`: to destroy. */
export function staleEgressSets(listed: readonly string[], rendered: ReadonlySet<string>): string[] {
  return listed.filter((name) => isEgressSetName(name) && !rendered.has(name));
}
