/**
 * Text for `iptables-restore`: one argument vector to one line, quoted the way `iptables-save`
 * prints it (the comment argument in double quotes, everything else bare), so a rendered
 * `-A CHAIN ...` line is byte-identical to the line `iptables-save` shows once it is loaded.
 * Arguments that could break out of their line or their quotes are refused (throws).
 */
import type { Rule } from './rule-model.js';
import { ruleArgs } from './rule-model.js';

const BARE = /^[A-Za-z0-9_.:,/!+=@%-]+$/;
const QUOTABLE = /^[\x20-\x7e]*$/;

/** Quotes one argument for restore text; throws on characters a line cannot carry. */
export function quoteArg(arg: string, forceQuotes = false): string {
  if (!QUOTABLE.test(arg) || arg.includes('"') || arg.includes('\\')) {
    throw new Error(`refusing iptables argument ${JSON.stringify(arg)}: control, quote or backslash character`);
  }
  if (!forceQuotes && BARE.test(arg)) return arg;
  return `"${arg}"`;
}

/** What iptables-save prints bare in a string option (xtables_save_string); anything else is quoted. */
const SAVE_BARE = /^[A-Za-z0-9_-]+$/;
/** Options whose value iptables-save prints as a string (quoted unless SAVE_BARE). */
const STRING_OPTIONS = new Set(['--comment', '--path']);

/**
 * Arguments as one line; the value of a string option (`--comment`, the cgroup match's `--path`)
 * is quoted unless it is only letters, digits, '_' and '-', as iptables-save does.
 */
export function argsText(args: readonly string[]): string {
  return args.map((arg, i) => {
    const stringOption = i > 0 && STRING_OPTIONS.has(args[i - 1] as string);
    return quoteArg(arg, stringOption && (args[i - 1] === '--comment' || !SAVE_BARE.test(arg)));
  }).join(' ');
}

/** `-A <chain> <rule>` exactly as iptables-save prints it. */
export function appendLine(chain: string, rule: Rule): string {
  return `-A ${chain} ${argsText(ruleArgs(rule))}`;
}
