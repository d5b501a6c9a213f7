/**
 * `iptables-restore --noflush` / `ip6tables-restore --noflush` input for one host and family.
 *
 * Contract (verified on the nf_tables backend, see test/render-kernel.test.ts):
 * - One `*mangle ... COMMIT` block, applied as one transaction: the kernel sees the old rules or
 *   the new ones, never a mix. Nothing outside our chains is flushed.
 * - A `:PCU-X - [0:0]` line creates chain PCU-X, or flushes it when it exists (also with
 *   --noflush), so re-applying the text replaces our rules instead of appending to them.
 * - Rule lines are byte-identical to what `iptables-save` prints for them (drift detection).
 * - The jump into PREROUTING is inserted only when asked (`insertJump`), after deleting the stale
 *   jumps the caller found (`deleteJumps`, argument vectors as iptables-save shows them after
 *   `-A PREROUTING`), so re-applying never stacks duplicate jumps.
 * - Per-app egress (`egress`: the agent's local task map, render-egress.ts) adds its chains and a
 *   second jump, into mangle OUTPUT, handled the same way (`insertOutputJump`, `deleteOutputJumps`).
 * - `removeChains`: our chains the kernel has that this state does not render (an app that left
 *   the host, egress turned off): flushed and deleted in the same transaction, after the jumps to
 *   them are gone and our chains that referenced them are rewritten.
 * Uninstall deletes the jumps, flushes then deletes our chains, and touches nothing else.
 */
import type { DesiredState } from '../compile/desired-state.js';
import { HOOK_CHAIN, OUTPUT_HOOK_CHAIN, TABLE, isOwnedChainName } from './owned-names.js';
import type { Family } from '../net/family.js';
import { renderChains } from './render-chains.js';
import type { EgressMapping } from './render-egress.js';
import type { FlowRecording } from './render-flows.js';
import { appendLine, argsText } from './restore-text.js';
import { ruleArgs } from './rule-model.js';

export interface IptablesRenderOptions {
  readonly insertJump: boolean;
  readonly deleteJumps?: readonly (readonly string[])[];
  /** The local task map when the agent enforces per-app egress (rendered when the state has egress members). */
  readonly egress?: EgressMapping;
  /** Insert the jump into mangle OUTPUT (only when egress is rendered). */
  readonly insertOutputJump?: boolean;
  /** Our jumps in mangle OUTPUT to delete (argument vectors after `-A OUTPUT`). */
  readonly deleteOutputJumps?: readonly (readonly string[])[];
  /** Our chains in the kernel this state does not render: deleted. */
  readonly removeChains?: readonly string[];
  /** Flow recording (render-flows.ts), when the agent records. */
  readonly flows?: FlowRecording;
}

/** The restore command for a family: iptables-restore or ip6tables-restore. */
export function restoreCommand(family: Family): string {
  return family === 4 ? 'iptables-restore' : 'ip6tables-restore';
}

function header(what: string, family: Family): string {
  return `# portcullis ${what} (IPv${family}): for ${restoreCommand(family)} --noflush`;
}

function deleteLines(jumps: readonly (readonly string[])[], hook: string = HOOK_CHAIN): string[] {
  return jumps.map((argv) => {
    const target = argv[argv.indexOf('-j') + 1];
    if (!argv.includes('-j') || target === undefined || !isOwnedChainName(target)) {
      throw new Error(`refusing to delete ${JSON.stringify(argv)} from ${hook}: not a jump to one of our chains`);
    }
    return `-D ${hook} ${argsText(argv)}`;
  });
}

function ownedChains(names: readonly string[]): string[] {
  for (const chain of names) {
    if (!isOwnedChainName(chain)) throw new Error(`refusing to remove chain ${JSON.stringify(chain)}: not ours`);
  }
  return [...new Set(names)].sort();
}

export function renderIptablesRestore(state: DesiredState, family: Family, opts: IptablesRenderOptions): string {
  const { chains, jump, egress } = renderChains(state, family, opts.egress, opts.flows);
  const version = /^[0-9a-f]{16}$/.test(state.version) ? state.version : 'unversioned';
  const rendered = new Set(chains.map((c) => c.name));
  const remove = ownedChains((opts.removeChains ?? []).filter((c) => !rendered.has(c)));
  const lines = [
    header(`state ${version}, mode ${state.mode}`, family),
    `*${TABLE}`,
    ...chains.map((chain) => `:${chain.name} - [0:0]`),
    ...remove.map((chain) => `:${chain} - [0:0]`),
    ...chains.flatMap((chain) => chain.rules.map((rule) => appendLine(chain.name, rule))),
    ...deleteLines(opts.deleteJumps ?? []),
    ...(opts.insertJump ? [`-I ${HOOK_CHAIN} 1 ${argsText(ruleArgs(jump))}`] : []),
    ...deleteLines(opts.deleteOutputJumps ?? [], OUTPUT_HOOK_CHAIN),
    ...(egress && opts.insertOutputJump ? [`-I ${OUTPUT_HOOK_CHAIN} 1 ${argsText(ruleArgs(egress.outputJump))}`] : []),
    ...remove.map((chain) => `-X ${chain}`),
    'COMMIT',
  ];
  return lines.join('\n') + '\n';
}

export interface PresentObjects {
  /** Our chains that exist in the kernel (names must be owned). */
  readonly chains: readonly string[];
  /** Our jump rules in PREROUTING, argument vectors after `-A PREROUTING`. */
  readonly jumps: readonly (readonly string[])[];
  /** Our jump rules in OUTPUT (per-app egress), argument vectors after `-A OUTPUT`. */
  readonly outputJumps?: readonly (readonly string[])[];
}

export function renderUninstallIptables(family: Family, present: PresentObjects): string {
  const chains = ownedChains(present.chains);
  const lines = [
    header('uninstall', family),
    `*${TABLE}`,
    ...deleteLines(present.jumps),
    ...deleteLines(present.outputJumps ?? [], OUTPUT_HOOK_CHAIN),
    ...chains.map((chain) => `:${chain} - [0:0]`),
    ...chains.map((chain) => `-X ${chain}`),
    'COMMIT',
  ];
  return lines.join('\n') + '\n';
}
