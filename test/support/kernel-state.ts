/**
 * Reading what a namespace's kernel holds, for render/dataplane kernel tests: iptables-save and
 * ipset output normalised for comparison (no timestamps, no counters), and our own objects.
 */
import type { DesiredState } from '../../src/compile/desired-state.js';
import { isOwnedChainName, isOwnedSetName } from '../../src/render/owned-names.js';
import type { Family } from '../../src/net/family.js';
import { renderChains, ruleArgs } from '../../src/render/render-chains.js';
import { renderIpsetRestore } from '../../src/render/render-ipsets.js';
import { renderIptablesRestore, restoreCommand } from '../../src/render/render-iptables.js';
import type { TestNetwork } from './netns.js';

export async function saveTable(net: TestNetwork, ns: string, family: Family, table = 'mangle'): Promise<string> {
  const r = await net.exec(ns, [family === 4 ? 'iptables-save' : 'ip6tables-save', '-t', table]);
  if (r.code !== 0) throw new Error(`iptables-save failed: ${r.stderr}`);
  return r.stdout
    .split('\n')
    .filter((line) => !line.startsWith('#'))
    .map((line) => line.replace(/ \[\d+:\d+\]$/, ' [0:0]'))
    .join('\n');
}

/** Every table of a family, normalised. */
export async function saveAll(net: TestNetwork, ns: string, family: Family): Promise<string> {
  const tables = ['raw', 'mangle', 'nat', 'filter'];
  const parts = await Promise.all(tables.map((t) => saveTable(net, ns, family, t)));
  return parts.join('\n');
}

export async function ipsetNames(net: TestNetwork, ns: string): Promise<string[]> {
  const r = await net.exec(ns, ['ipset', 'list', '-n']);
  if (r.code !== 0) throw new Error(`ipset list failed: ${r.stderr}`);
  return r.stdout.split('\n').filter((l) => l !== '').sort();
}

export async function ipsetSave(net: TestNetwork, ns: string): Promise<string> {
  const r = await net.exec(ns, ['ipset', 'save']);
  if (r.code !== 0) throw new Error(`ipset save failed: ${r.stderr}`);
  return r.stdout.split('\n').sort().join('\n');
}

/**
 * `ipset save` as the enforced state: sorted, without `initval`, and without the members of the
 * flow sets (what the kernel recorded, src/render/render-flows.ts: they change with every new
 * connection and are no part of the state applied).
 */
export async function ipsetStateSave(net: TestNetwork, ns: string): Promise<string> {
  return (await ipsetSave(net, ns))
    .split('\n')
    .filter((line) => !/^add pcu[46]-(fl-|fa-|fd-|fw-)/.test(line))
    .join('\n')
    .replace(/ initval 0x[0-9a-f]+/g, '');
}

export async function ipsetMembers(net: TestNetwork, ns: string, name: string): Promise<string[]> {
  const r = await net.exec(ns, ['ipset', 'list', name]);
  if (r.code !== 0) throw new Error(`ipset list ${name} failed: ${r.stderr}`);
  const at = r.stdout.indexOf('Members:\n');
  return r.stdout.slice(at + 'Members:\n'.length).split('\n').filter((l) => l !== '').sort();
}

export interface OwnedIptables {
  readonly chains: string[];
  /** Argument vectors of PREROUTING rules that jump to one of our chains. */
  readonly jumps: string[][];
}

/** Our chains and our jumps, found in iptables-save text of table mangle. */
export function ownedIptables(saveText: string): OwnedIptables {
  const chains: string[] = [];
  const jumps: string[][] = [];
  for (const line of saveText.split('\n')) {
    const chain = /^:(\S+) /.exec(line);
    if (chain && isOwnedChainName(chain[1] as string)) chains.push(chain[1] as string);
    if (line.startsWith('-A PREROUTING ')) {
      const argv = splitSaveArgs(line.slice('-A PREROUTING '.length));
      const target = argv[argv.indexOf('-j') + 1];
      if (target !== undefined && isOwnedChainName(target)) jumps.push(argv);
    }
  }
  return { chains, jumps };
}

export async function ownedSets(net: TestNetwork, ns: string): Promise<string[]> {
  return (await ipsetNames(net, ns)).filter(isOwnedSetName);
}

async function execOk(net: TestNetwork, ns: string, argv: string[], input: string): Promise<void> {
  const r = await net.exec(ns, argv, { input });
  if (r.code !== 0) throw new Error(`${argv.join(' ')} exited ${r.code}: ${r.stderr}\n--- input ---\n${input.slice(0, 4000)}`);
}

/**
 * Applies a DesiredState with the renderer, as a minimal stand-in for the agent's dataplane
 * driver (tests of the renderer only): ipset restore, then `--test` and a real
 * `iptables-restore --noflush`, inserting the jump only when the current one is missing and
 * deleting stale ones.
 */
export async function applyRendered(net: TestNetwork, ns: string, state: DesiredState, family: Family): Promise<void> {
  await execOk(net, ns, ['ipset', 'restore'], renderIpsetRestore(state, family));
  const owned = ownedIptables(await saveTable(net, ns, family));
  const wanted = ruleArgs(renderChains(state, family).jump).join(' ');
  const stale = owned.jumps.filter((argv) => argv.join(' ') !== wanted);
  const insertJump = owned.jumps.length === stale.length;
  const text = renderIptablesRestore(state, family, { insertJump, deleteJumps: stale });
  await execOk(net, ns, [restoreCommand(family), '--test', '--noflush'], text);
  await execOk(net, ns, [restoreCommand(family), '--noflush'], text);
}

/**
 * Splits one `iptables-save` rule line (after `-A CHAIN`) into arguments: the inverse of
 * argsText for the lines we write (double quotes, backslash escapes inside them).
 */
export function splitSaveArgs(text: string): string[] {
  const args: string[] = [];
  let current = '';
  let inArg = false;
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string;
    if (quoted) {
      if (c === '\\' && i + 1 < text.length) current += text[++i];
      else if (c === '"') quoted = false;
      else current += c;
    } else if (c === '"') {
      quoted = true;
      inArg = true;
    } else if (c === ' ' || c === '\t') {
      if (inArg) args.push(current);
      current = '';
      inArg = false;
    } else {
      current += c;
      inArg = true;
    }
  }
  if (quoted) throw new Error(`unterminated quote in ${JSON.stringify(text)}`);
  if (inArg) args.push(current);
  return args;
}
