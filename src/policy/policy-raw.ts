/**
 * The per-file intermediate form of a policy: what one file says, with every value checked on its
 * own but references (group and network names) not yet resolved. parse-policy.ts merges the files
 * and resolves references. Fields are undefined where the file had an error already reported.
 */
import type { Defaults, GroupDef, NetworkDef, PortSpec, Protocol, RuleAction } from './policy-model.js';
import type { SourceLocation } from '../diagnostic.js';

/** A group/network/any name used somewhere, with where it was written. */
export interface NameRef {
  readonly name: string;
  readonly at: SourceLocation;
}

export interface RawRule {
  /** Given in the file; undefined = default name. */
  readonly name: string | undefined;
  /** 1-based position of the rule in its file's `rules` list. */
  readonly index: number;
  readonly from: readonly NameRef[] | undefined;
  readonly to: readonly NameRef[] | undefined;
  readonly ports: readonly PortSpec[] | undefined;
  /** Aligned with `ports`. */
  readonly portSites: readonly SourceLocation[];
  readonly protocols: readonly Protocol[] | null | undefined;
  readonly protocolAt: SourceLocation | undefined;
  readonly action: RuleAction | undefined;
  readonly at: SourceLocation;
}

export interface RawGuardrailDeny {
  readonly from: readonly NameRef[] | undefined;
  readonly to: readonly NameRef[] | undefined;
  readonly at: SourceLocation;
}

export interface RawGuardrails {
  readonly sources: readonly NameRef[] | null | undefined;
  readonly targets: readonly NameRef[] | null | undefined;
  readonly deny: readonly RawGuardrailDeny[];
  /** Location of the `guardrails` key. */
  readonly at: SourceLocation;
}

export interface RawPolicyFile {
  readonly file: string;
  /** `at` is the location of the `defaults` key. */
  readonly defaults: { readonly value: Defaults; readonly at: SourceLocation } | undefined;
  readonly networks: readonly NetworkDef[];
  readonly groups: readonly GroupDef[];
  readonly rules: readonly RawRule[];
  readonly guardrails: RawGuardrails | undefined;
}
