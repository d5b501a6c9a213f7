/**
 * What `portcullis check | compile | explain | diff` share: strict option parsing (any parse
 * problem is a UsageError, exit 2), `--policy` / `--inventory` resolution against the caller's
 * working directory with the shipped examples as defaults, loading both inputs into Diagnostics
 * (never exceptions), turning compile reports into located warnings, and printing paths relative
 * to the working directory.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { CompileReport } from '../compile/compile-report.js';
import { formatDiagnostic, sortDiagnostics, type Diagnostic } from '../diagnostic.js';
import type { ClusterState } from '../inventory/cluster-state.js';
import type { PolicySites } from '../policy/parse-policy.js';
import type { PolicyLimits } from '../policy/policy-limits.js';
import type { Policy } from '../policy/policy-model.js';
import { loadInventory } from '../sources/inventory-file.js';
import { loadPolicy } from '../sources/policy-files.js';
import { type CliIO } from './command.js';
import { UsageError } from '../usage-error.js';
import { defaultInventoryPath, defaultPolicyPath } from '../package-root.js';

/** Help text lines for the options every one of these commands takes. */
export const POLICY_OPTION_HELP =
  '  --policy FILE|DIR   policy file, or directory of *.yaml files\n' +
  '                      (default: the shipped example, policies/shop/ of the install)';
export const INVENTORY_OPTION_HELP =
  '  --inventory FILE    static inventory file\n' +
  '                      (default: the shipped example, policies/inventory.yaml)';

/** Runs a node:util parseArgs call and turns its errors into UsageErrors. */
export function parseOptions<T>(parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
}

/** `--flag` options of a command without positional arguments, strictly parsed (UsageError on any problem). */
export function parseFlags<const T extends NonNullable<ParseArgsConfig['options']>>(args: readonly string[], options: T) {
  return parseOptions(() => parseArgs({ args: [...args], options, strict: true, allowPositionals: false })).values;
}

/** The value of an enumerated option, or a UsageError naming the choices. */
export function oneOf<T extends string>(option: string, value: string | undefined, allowed: readonly T[], fallback: T): T {
  if (value === undefined) return fallback;
  if ((allowed as readonly string[]).includes(value)) return value as T;
  throw new UsageError(`--${option} must be one of ${allowed.join(', ')}; got '${value}'`);
}

export function resolvePolicyPath(io: CliIO, given: string | undefined): string {
  return given === undefined ? defaultPolicyPath() : path.resolve(io.cwd, given);
}

export function resolveInventoryPath(io: CliIO, given: string | undefined): string {
  return given === undefined ? defaultInventoryPath() : path.resolve(io.cwd, given);
}

export interface LoadedPolicy {
  readonly path: string;
  readonly policy: Policy;
  readonly sites: PolicySites;
  readonly warnings: readonly Diagnostic[];
}

export type PolicyLoad = { readonly ok: true; readonly loaded: LoadedPolicy } | { readonly ok: false; readonly path: string; readonly errors: Diagnostic[] };

export async function loadPolicyInput(policyPath: string, limits?: PolicyLimits): Promise<PolicyLoad> {
  const result = await loadPolicy(policyPath, limits);
  if (!result.ok) return { ok: false, path: policyPath, errors: result.errors };
  return { ok: true, loaded: { path: policyPath, policy: result.policy, sites: result.sites, warnings: result.warnings } };
}

export interface LoadedInventory {
  readonly path: string;
  readonly cluster: ClusterState;
}

export type InventoryLoad = { readonly ok: true; readonly loaded: LoadedInventory } | { readonly ok: false; readonly path: string; readonly errors: Diagnostic[] };

export async function loadInventoryInput(inventoryPath: string): Promise<InventoryLoad> {
  const result = await loadInventory(inventoryPath);
  if (!result.ok) return { ok: false, path: inventoryPath, errors: result.errors };
  return { ok: true, loaded: { path: inventoryPath, cluster: result.cluster } };
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** 1-based line and column of the first `id: <value>` (quoted or not) in `text`. */
function locateId(text: string, value: string): { line: number; col: number } | undefined {
  const re = new RegExp(`\\bid:\\s*["']?${escapeRegExp(value)}["']?\\s*(?:[,}#]|$)`);
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const m = re.exec(lines[i]!);
    if (m) return { line: i + 1, col: m.index + 1 };
  }
  return undefined;
}

/**
 * Compile reports as warnings located in the inventory file: at the report's app definition, or
 * its host's, found by a text search (best effort: line 1, col 1 when not found). Sorted.
 */
export async function reportsAsDiagnostics(reports: readonly CompileReport[], inventoryPath: string): Promise<Diagnostic[]> {
  if (reports.length === 0) return [];
  let text = '';
  try {
    text = await readFile(inventoryPath, 'utf8');
  } catch {
    // Located at 1:1 below.
  }
  const out = reports.map((r): Diagnostic => {
    const at =
      (r.appId !== undefined ? locateId(text, r.appId) : undefined) ??
      (r.hostId !== undefined ? locateId(text, r.hostId) : undefined) ?? { line: 1, col: 1 };
    return { file: inventoryPath, line: at.line, col: at.col, message: `${r.message} [${r.kind}]`, severity: 'warning' };
  });
  return sortDiagnostics(out);
}

/** Shortens paths under the working directory to relative ones, for text meant for a person. */
export function relativizer(io: CliIO): (text: string) => string {
  const prefix = io.cwd.endsWith(path.sep) ? io.cwd : io.cwd + path.sep;
  if (prefix === path.sep) return (text) => text;
  return (text) => text.split(prefix).join('');
}

/** Writes each diagnostic as one `file:line:col: message` line. */
export function writeDiagnostics(write: (text: string) => void, io: CliIO, diagnostics: readonly Diagnostic[]): void {
  if (diagnostics.length === 0) return;
  const shown = relativizer(io);
  write(diagnostics.map((d) => shown(formatDiagnostic(d)) + '\n').join(''));
}

export function countErrors(diagnostics: readonly Diagnostic[]): number {
  return diagnostics.filter((d) => d.severity !== 'warning').length;
}

export function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}
