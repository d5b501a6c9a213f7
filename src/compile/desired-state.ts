/**
 * What one host must enforce: the compiler's output, the wire payload and the agent's input.
 *
 * It is data, not iptables text: named sets of members plus a mode. The agent renders it for its
 * own kernel (see src/render). Every list is sorted and free of duplicates, so equal states
 * serialise to equal bytes and `version` (a content hash) identifies a state across replicas.
 *
 * Member formats (validated by the compiler; the agent validates again before writing):
 *   managed-* / failsafe-*:  "<port>"                         e.g. "31000"
 *   allow-ip4 / allow-ip6:   "<address>,<proto>:<port>"       e.g. "10.0.1.5,tcp:31000"
 *   allow-net4 / allow-net6: "<cidr>,<proto>:<port>"          e.g. "10.0.100.0/24,udp:53"
 * A source that is one address (/32, /128) goes in allow-ip*, any other prefix in allow-net*.
 *
 * Egress (per-app sources, enforced by the agent of the source host; docs/architecture.md, "Egress"):
 *   egress-task:                   "<app id>|<task id>"              every mapped task of THIS host
 *   egress-managed4 / 6:           "<address>,<proto>:<port>"        every managed destination of the cluster
 *   egress-ip4 / egress-ip6:       "<app id>|<address>,<proto>:<port>"  what a local app may reach
 * An app id in a member is '/' and 1-512 of [A-Za-z0-9._/-]; a task id 1-255 of [A-Za-z0-9_.-]
 * (src/net/member-syntax.ts): a task whose ids are not is left out (and reported). Every app of
 * egress-ip* has a task in egress-task. With `defaults.egress: false` the egress kinds are empty.
 *
 * Per-group mode (`groups.<name>.mode`), exceptions to a state whose mode is `enforce`; all empty
 * when every app has one mode (the state's `mode` says it):
 *   audit-tcp / audit-udp:         "<port>"        managed ports of this host in audit (⊆ managed-*)
 *   egress-audit:                  "<app id>"      local apps whose egress is in audit (apps of egress-task)
 */
import type { Mode } from '../policy/policy-model.js';

export const SET_KINDS = [
  'managed-tcp',
  'managed-udp',
  'failsafe-tcp',
  'failsafe-udp',
  'allow-ip4',
  'allow-net4',
  'allow-ip6',
  'allow-net6',
  'egress-task',
  'egress-managed4',
  'egress-managed6',
  'egress-ip4',
  'egress-ip6',
  'audit-tcp',
  'audit-udp',
  'egress-audit',
] as const;
export type SetKind = (typeof SET_KINDS)[number];

/** The kinds whose members are "<source>,<proto>:<port>", in SET_KINDS order. */
export const ALLOW_KINDS = ['allow-ip4', 'allow-net4', 'allow-ip6', 'allow-net6'] as const satisfies readonly SetKind[];
export type AllowKind = (typeof ALLOW_KINDS)[number];

/** The destination-side kinds: every kind a state had before egress (what an agent without egress support reads). */
export const INGRESS_KINDS = SET_KINDS.slice(0, 8) as readonly SetKind[];

/** The egress kinds, in SET_KINDS order. */
export const EGRESS_KINDS = ['egress-task', 'egress-managed4', 'egress-managed6', 'egress-ip4', 'egress-ip6'] as const satisfies readonly SetKind[];
export type EgressKind = (typeof EGRESS_KINDS)[number];

/**
 * The per-group mode kinds (`groups.<name>.mode`): exceptions to an `enforce` state's mode,
 * empty unless some groups audit while others enforce. In SET_KINDS order.
 */
export const AUDIT_KINDS = ['audit-tcp', 'audit-udp', 'egress-audit'] as const satisfies readonly SetKind[];
export type AuditKind = (typeof AUDIT_KINDS)[number];

/** The egress kinds of one state. */
export type EgressSets = Readonly<Record<EgressKind, readonly string[]>>;

export type SetContents = Readonly<Record<SetKind, readonly string[]>>;

export interface DesiredState {
  readonly hostId: string;
  readonly mode: Mode;
  readonly sets: SetContents;
  /** Content hash of {mode, sets}: 16 lowercase hex characters. */
  readonly version: string;
}

/** True when some egress kind has a member (a state without one is what it was before egress). */
export function hasEgressMembers(sets: SetContents): boolean {
  return EGRESS_KINDS.some((kind) => (sets[kind]?.length ?? 0) > 0);
}

/** True when some per-group mode kind has a member (a state without one is what it was before group modes). */
export function hasAuditMembers(sets: SetContents): boolean {
  return AUDIT_KINDS.some((kind) => (sets[kind]?.length ?? 0) > 0);
}

/** Fresh empty lists of every kind. */
export function emptySets(): Record<SetKind, string[]> {
  return Object.fromEntries(SET_KINDS.map((kind) => [kind, []])) as unknown as Record<SetKind, string[]>;
}
