/**
 * The validated policy: what `parsePolicy` produces from one file or a directory of YAML files,
 * and what the compiler and the reference evaluator consume.
 *
 * Contract: every value here has been checked (names resolve, CIDRs are canonical, ports are in
 * range), so consumers never re-validate. Objects are plain data, never mutated after parsing.
 * Order matters in exactly one place: `rules`, which are evaluated first-match in the order
 * given (files of a directory sorted by name, then rules in file order).
 */
import type { SourceLocation } from '../diagnostic.js';

export type Protocol = 'tcp' | 'udp';
export const PROTOCOLS: readonly Protocol[] = ['tcp', 'udp'];

export type RuleAction = 'allow' | 'deny' | 'pass';
export type DefaultAction = 'allow' | 'deny';
export type Mode = 'enforce' | 'audit';

/** A named set of addresses: `cidrs` minus `except`. CIDRs are canonical (`10.0.0.0/8`, `fd00::/8`). */
export interface NetworkDef {
  readonly name: string;
  readonly cidrs: readonly string[];
  readonly except: readonly string[];
  readonly at: SourceLocation;
}

/**
 * A named set of Marathon apps. An app belongs to the group when its id matches one of `apps`
 * (glob: `*` = any characters except `/`, `**` = any characters) — or `apps` is empty — AND it
 * carries every label in `labels` with exactly that value. At least one of the two is non-empty.
 */
export interface GroupDef {
  readonly name: string;
  readonly apps: readonly string[];
  readonly labels: Readonly<Record<string, string>>;
  /**
   * `groups.<name>.mode` (staged rollout per group); absent = the group has no say and its apps
   * follow `defaults.mode`. An app in some group with an explicit mode is in audit when any of
   * those says audit, else it enforces (src/compile/group-modes.ts). Present only when written.
   */
  readonly mode?: Mode;
  readonly at: SourceLocation;
}

/** Where traffic may come from: every address, a named network, or the hosts that run a group's tasks. */
export type PeerRef =
  | { readonly kind: 'any' }
  | { readonly kind: 'network'; readonly name: string }
  | { readonly kind: 'group'; readonly name: string };

/**
 * Which task ports a rule covers. A number or range is compared with the task's HOST port (what
 * clients connect to); a name with the `name` of the app's port definition / port mapping.
 */
export type PortSpec =
  | { readonly kind: 'number'; readonly port: number }
  | { readonly kind: 'range'; readonly from: number; readonly to: number }
  | { readonly kind: 'name'; readonly name: string };

export interface RuleDef {
  /** Given in the file, or `<file>#<index>` when the rule has no name. Unique. */
  readonly name: string;
  readonly from: readonly PeerRef[];
  /** Group names. */
  readonly to: readonly string[];
  /** Empty = every port of the target apps. */
  readonly ports: readonly PortSpec[];
  /** null = whatever protocol the matched port uses. */
  readonly protocols: readonly Protocol[] | null;
  readonly action: RuleAction;
  readonly at: SourceLocation;
}

/** A pair developers may never open through labels, even where no policy rule decides. */
export interface GuardrailDeny {
  readonly from: readonly PeerRef[];
  readonly to: readonly string[];
  readonly at: SourceLocation;
}

/**
 * Bounds on what app developers may declare in Marathon labels (tier 2).
 * `sources`: the peers a label may name; null = every group and network (never `any` unless listed).
 * `targets`: groups whose apps may carry declarations; null = every app.
 */
export interface Guardrails {
  readonly sources: readonly PeerRef[] | null;
  readonly targets: readonly string[] | null;
  readonly deny: readonly GuardrailDeny[];
}

export interface PortRef {
  readonly protocol: Protocol;
  readonly port: number;
}

export interface Defaults {
  readonly mode: Mode;
  /** Verdict for a managed task port when no tier decides. */
  readonly action: DefaultAction;
  /** Never blocked, whatever the policy (sshd, the controller, the Mesos agent...). */
  readonly failsafe: readonly PortRef[];
  /**
   * Per-app egress: each agent also checks, on the source host, that a task's app may reach a
   * managed destination (sources are apps, not only host addresses). Default true.
   */
  readonly egress: boolean;
}

export interface Policy {
  readonly defaults: Defaults;
  readonly networks: readonly NetworkDef[];
  readonly groups: readonly GroupDef[];
  readonly rules: readonly RuleDef[];
  readonly guardrails: Guardrails;
}

/** Label keys developers use on a Marathon app (all its ports) or on one port definition. */
export const ALLOW_FROM_LABEL = 'portcullis.allow-from';
