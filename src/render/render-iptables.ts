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
 * Uninstall deletes the jumps, flushes then deletes our chains, and touches nothing else.
 */
import type { DesiredState } from '../compile/desired-state.js';
import { HOOK_CHAIN, TABLE, isOwnedChainName } from './owned-names.js';
import type { Family } from '../net/family.js';
import { renderChains } from './render-chains.js';
import { appendLine, argsText } from './restore-text.js';
import { ruleArgs } from './rule-model.js';

export interface IptablesRenderOptions {
  readonly insertJump: boolean;
  readonly deleteJumps?: readonly (readonly string[])[];
}

/** The restore command for a family: iptables-restore or ip6tables-restore. */
export function restoreCommand(family: Family): string {
  return family === 4 ? 'iptables-restore' : 'ip6tables-restore';
}

function header(what: string, family: Family): string {
  return `# portcullis ${what} (IPv${family}): for ${restoreCommand(family)} --noflush`;
}

function deleteLines(jumps: readonly (readonly string[])[]): string[] {
  return jumps.map((argv) => {
    const target = argv[argv.indexOf('-j') + 1];
    if (!argv.includes('-j') || target === undefined || !isOwnedChainName(target)) {
      throw new Error(`refusing to delete ${JSON.stringify(argv)} from ${HOOK_CHAIN}: not a jump to one of our chains`);
    }
    return `-D ${HOOK_CHAIN} ${argsText(argv)}`;
  });
}

export function renderIptablesRestore(state: DesiredState, family: Family, opts: IptablesRenderOptions): string {
  const { chains, jump } = renderChains(state, family);
  const version = /^[0-9a-f]{16}$/.test(state.version) ? state.version : 'unversioned';
  const lines = [
    header(`state ${version}, mode ${state.mode}`, family),
    `*${TABLE}`,
    ...chains.map((chain) => `:${chain.name} - [0:0]`),
    ...chains.flatMap((chain) => chain.rules.map((rule) => appendLine(chain.name, rule))),
    ...deleteLines(opts.deleteJumps ?? []),
    ...(opts.insertJump ? [`-I ${HOOK_CHAIN} 1 ${argsText(ruleArgs(jump))}`] : []),
    'COMMIT',
  ];
  return lines.join('\n') + '\n';
}

export interface PresentObjects {
  /** Our chains that exist in the kernel (names must be owned). */
  readonly chains: readonly string[];
  /** Our jump rules in PREROUTING, argument vectors after `-A PREROUTING`. */
  readonly jumps: readonly (readonly string[])[];
}

export function renderUninstallIptables(family: Family, present: PresentObjects): string {
  for (const chain of present.chains) {
    if (!isOwnedChainName(chain)) throw new Error(`refusing to remove chain ${JSON.stringify(chain)}: not ours`);
  }
  const chains = [...new Set(present.chains)].sort();
  const lines = [
    header('uninstall', family),
    `*${TABLE}`,
    ...deleteLines(present.jumps),
    ...chains.map((chain) => `:${chain} - [0:0]`),
    ...chains.map((chain) => `-X ${chain}`),
    'COMMIT',
  ];
  return lines.join('\n') + '\n';
}
