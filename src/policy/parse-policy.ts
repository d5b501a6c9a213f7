/**
 * parsePolicy: policy files (path + text) → a validated Policy, or every error found.
 *
 * Contract:
 * - Pure: no I/O. Deterministic: files are sorted by path before anything else, so the same set of
 *   files always gives the same Policy (rules concatenated file by file, in file order).
 * - Networks and groups share ONE namespace across all files; `any` is reserved. A name defined
 *   twice (in one file, across files, or as both a network and a group) is an error citing both.
 * - `defaults` and `guardrails` may each appear in at most one file.
 * - All errors are collected (YAML syntax errors first: if any file has one, only syntax errors
 *   are reported, since whatever follows would be guesswork). Warnings never fail a parse.
 * - Rule names default to `<file basename>#<n>` (n = 1-based position in the file's `rules`).
 * - The result carries `sites`: where each rule's port specs and protocol were written, for
 *   lintPolicyAgainstCluster (the Policy types stay free of positions below the rule level).
 */
import type { Diagnostic } from '../diagnostic.js';
import { sortDiagnostics } from '../diagnostic.js';
import { parseYaml } from '../yaml/yaml-reader.js';
import { didYouMean } from '../yaml/suggest.js';
import { ANY } from './names.js';
import type { Defaults, GroupDef, GuardrailDeny, Guardrails, NetworkDef, PeerRef, Policy, RuleDef } from './policy-model.js';
import type { SourceLocation } from '../diagnostic.js';
import { DEFAULT_FAILSAFE, readPolicyFile } from './policy-file.js';
import type { NameRef, RawGuardrails, RawPolicyFile } from './policy-raw.js';

export interface PolicyFileText {
  readonly path: string;
  readonly text: string;
}

/** Where a rule's parts were written: `ports[i]` is the location of `rule.ports[i]`. */
export interface RuleSites {
  readonly ports: readonly SourceLocation[];
  readonly protocol: SourceLocation | undefined;
}

export interface PolicySites {
  /** By rule name. */
  readonly rules: ReadonlyMap<string, RuleSites>;
}

export type ParseResult =
  | { readonly ok: true; readonly policy: Policy; readonly warnings: Diagnostic[]; readonly sites: PolicySites }
  | { readonly ok: false; readonly errors: Diagnostic[] };

export const DEFAULT_DEFAULTS: Defaults = { mode: 'enforce', action: 'deny', failsafe: DEFAULT_FAILSAFE, egress: true };

type Kind = 'group' | 'network';

export function parsePolicy(files: readonly PolicyFileText[]): ParseResult {
  const sorted = [...files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const parsed = sorted.map((f) => parseYaml(f.path, f.text));
  const syntaxErrors = parsed.flatMap((p) => p.syntaxErrors);
  if (syntaxErrors.length > 0) return { ok: false, errors: sortDiagnostics(syntaxErrors) };

  const raws = parsed.map((p) => readPolicyFile(p.reader, p.root));
  const diagnostics: Diagnostic[] = parsed.flatMap((p) => p.reader.diagnostics);
  const err = (at: SourceLocation, message: string): void => {
    diagnostics.push({ file: at.file, line: at.line, col: at.col, message, severity: 'error' });
  };

  // One namespace for groups and networks.
  const names = new Map<string, { kind: Kind; at: SourceLocation }>();
  const define = (kind: Kind, name: string, at: SourceLocation): void => {
    if (name === ANY) {
      err(at, `'${ANY}' is a reserved name (it means every address); choose another name for this ${kind}`);
      return;
    }
    const prior = names.get(name);
    if (prior) {
      err(at, `${kind} '${name}' is already defined as a ${prior.kind} at ${where(prior.at)}; groups and networks share one namespace: rename or remove one of them`);
      return;
    }
    names.set(name, { kind, at });
  };
  for (const raw of raws) {
    for (const n of raw.networks) define('network', n.name, n.at);
    for (const g of raw.groups) define('group', g.name, g.at);
  }
  const groupNames = [...names].filter(([, v]) => v.kind === 'group').map(([k]) => k).sort();
  const networkNames = [...names].filter(([, v]) => v.kind === 'network').map(([k]) => k).sort();

  const resolver = new RefResolver(names, groupNames, networkNames, err);
  const defaults = single(raws, (r) => r.defaults, 'defaults', err);
  const guardrailsFile = single(raws, (r) => r.guardrails, 'guardrails', err);

  // Rules, with default names and one namespace of rule names.
  const basenames = raws.map((r) => r.file.slice(r.file.lastIndexOf('/') + 1));
  const useBasename = new Set(basenames).size === basenames.length;
  const ruleNames = new Map<string, SourceLocation>();
  const rules: RuleDef[] = [];
  const siteMap = new Map<string, RuleSites>();
  raws.forEach((raw, fileIndex) => {
    for (const rule of raw.rules) {
      const name = rule.name ?? `${useBasename ? basenames[fileIndex] : raw.file}#${rule.index}`;
      const prior = ruleNames.get(name);
      if (prior) err(rule.at, `rule name '${name}' is already used by the rule at ${where(prior)}; rule names must be unique`);
      else ruleNames.set(name, rule.at);
      const label = `rule '${name}'`;
      const from = rule.from && resolver.peers(rule.from, `'from' of ${label}`);
      const to = rule.to && resolver.groups(rule.to, `'to' of ${label}`);
      if (from && to && rule.ports && rule.protocols !== undefined && rule.action) {
        rules.push({ name, from, to, ports: rule.ports, protocols: rule.protocols, action: rule.action, at: rule.at });
        siteMap.set(name, { ports: rule.portSites, protocol: rule.protocolAt });
      }
    }
  });

  const guardrails = resolveGuardrails(guardrailsFile, resolver);

  const errors = diagnostics.filter((d) => d.severity !== 'warning');
  const warnings = sortDiagnostics(diagnostics.filter((d) => d.severity === 'warning'));
  if (errors.length > 0) return { ok: false, errors: sortDiagnostics(errors) };

  const byName = <T extends { name: string }>(a: T, b: T): number => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  const policy: Policy = {
    defaults: defaults?.value ?? DEFAULT_DEFAULTS,
    networks: raws.flatMap((r) => r.networks as NetworkDef[]).sort(byName),
    groups: raws.flatMap((r) => r.groups as GroupDef[]).sort(byName),
    rules,
    guardrails: guardrails ?? { sources: null, targets: null, deny: [] },
  };
  return { ok: true, policy, warnings, sites: { rules: siteMap } };
}

function where(at: SourceLocation): string {
  return `${at.file}:${at.line}:${at.col}`;
}

/** A section allowed in at most one file: the first one wins, every later one is an error. */
function single<T extends { at: SourceLocation }>(
  raws: readonly RawPolicyFile[],
  pick: (r: RawPolicyFile) => T | undefined,
  key: string,
  err: (at: SourceLocation, message: string) => void,
): T | undefined {
  let first: T | undefined;
  for (const raw of raws) {
    const v = pick(raw);
    if (!v) continue;
    if (first) err(v.at, `'${key}' is already set in ${where(first.at)}; '${key}' may appear in one policy file only: merge them`);
    else first = v;
  }
  return first;
}

function resolveGuardrails(raw: RawGuardrails | undefined, resolver: RefResolver): Guardrails | undefined {
  if (!raw) return undefined;
  const sources = raw.sources === null ? null : raw.sources && resolver.peers(raw.sources, "'guardrails.sources'");
  const targets = raw.targets === null ? null : raw.targets && resolver.groups(raw.targets, "'guardrails.targets'");
  const deny: GuardrailDeny[] = [];
  raw.deny.forEach((d, i) => {
    const what = `guardrails.deny entry #${i + 1}`;
    const from = d.from && resolver.peers(d.from, `'from' of ${what}`);
    const to = d.to && resolver.groups(d.to, `'to' of ${what}`);
    if (from && to) deny.push({ from, to, at: d.at });
  });
  if (sources === undefined || targets === undefined) return undefined;
  return { sources, targets, deny };
}

/** At most this many names are listed in one error message ("defined groups: ..."). */
const LISTED_NAMES = 20;
/** At most this many distinct unknown names get a "did you mean" per parse (each scans every name). */
const SUGGESTIONS = 200;

function listed(names: readonly string[]): string {
  if (names.length === 0) return '(none)';
  if (names.length <= LISTED_NAMES) return names.join(', ');
  return `${names.slice(0, LISTED_NAMES).join(', ')}, … (${names.length - LISTED_NAMES} more)`;
}

/**
 * Turns names into PeerRefs / group names, reporting unknown or misplaced ones. Errors stay small
 * and cheap however large the policy and however many references are broken: name lists are cut
 * at LISTED_NAMES, and suggestions are computed once per unknown name, for SUGGESTIONS names.
 */
class RefResolver {
  private readonly hints = new Map<string, string>();

  constructor(
    private readonly names: ReadonlyMap<string, { kind: Kind; at: SourceLocation }>,
    private readonly groupNames: readonly string[],
    private readonly networkNames: readonly string[],
    private readonly err: (at: SourceLocation, message: string) => void,
  ) {}

  private hint(name: string, among: 'peers' | 'groups'): string {
    const key = `${among}\0${name}`;
    let h = this.hints.get(key);
    if (h === undefined) {
      h = this.hints.size >= SUGGESTIONS ? '' : didYouMean(name, among === 'groups' ? this.groupNames : [...this.groupNames, ...this.networkNames, ANY]);
      this.hints.set(key, h);
    }
    return h;
  }

  peers(refs: readonly NameRef[], what: string): PeerRef[] | undefined {
    const out: PeerRef[] = [];
    let ok = true;
    for (const ref of refs) {
      if (ref.name === ANY) {
        out.push({ kind: 'any' });
        continue;
      }
      const def = this.names.get(ref.name);
      if (def) {
        out.push({ kind: def.kind, name: ref.name });
        continue;
      }
      ok = false;
      this.err(ref.at, `unknown group or network '${ref.name}' in ${what}${this.hint(ref.name, 'peers')}; ${this.defined()}`);
    }
    return ok ? out : undefined;
  }

  groups(refs: readonly NameRef[], what: string): string[] | undefined {
    const out: string[] = [];
    let ok = true;
    for (const ref of refs) {
      const def = this.names.get(ref.name);
      if (def?.kind === 'group') {
        out.push(ref.name);
        continue;
      }
      ok = false;
      if (ref.name === ANY) {
        this.err(ref.at, `${what} takes groups only, not '${ANY}'; to cover every app define a group with apps: ["/**"]`);
      } else if (def?.kind === 'network') {
        this.err(ref.at, `'${ref.name}' is a network, but ${what} takes groups only (the apps being protected); defined groups: ${this.groupList()}`);
      } else {
        this.err(ref.at, `unknown group '${ref.name}' in ${what}${this.hint(ref.name, 'groups')}; defined groups: ${this.groupList()}`);
      }
    }
    return ok ? out : undefined;
  }

  private groupList(): string {
    return listed(this.groupNames);
  }

  private defined(): string {
    return `defined groups: ${this.groupList()}; networks: ${listed(this.networkNames)}; or 'any'`;
  }
}
