/**
 * Names of every kernel object the agent owns. Ownership is by prefix: chains `PCU-*`, ipsets
 * `pcu4-*` / `pcu6-*` (and their `-tmp` twins used for atomic swaps). The agent may create,
 * replace and delete objects with these names and nothing else; the only foreign touches are the
 * jump rules it inserts into the kernel's `PREROUTING` chain of table `mangle` and, when it
 * enforces per-app egress, into its `OUTPUT` chain.
 * Names are at most 31 characters (the ipset limit), `-tmp` included.
 *
 * Per-app egress objects (render-egress.ts) are named from a hash of the app id, never from the
 * id itself (app ids are untrusted and up to 512 characters): `<h>` = the first 16 lowercase hex
 * digits of sha256(app id); set `pcu4-eg-<h>` / `pcu6-eg-<h>`, chain `PCU-EG-<H>` (upper case).
 *
 * Flow recording (render-flows.ts, issue 11): sets `pcu?-fl-allow|deny|audit` (ingress) and
 * `pcu?-fa-<h>` / `pcu?-fd-<h>` / `pcu?-fw-<h>` (egress of local app <h>: allowed, denied,
 * would-be-denied), chains PCU-FL-ALLOW / PCU-FL-DENY / PCU-FL-AUDIT and `PCU-EGD-<H>` (an app's
 * recorded deny path). These sets are never swapped or flushed by an apply: their members are
 * what the kernel saw, not what a state says.
 */
import { createHash } from 'node:crypto';
import { SET_KINDS, type SetKind } from '../compile/desired-state.js';
import type { Family } from '../net/family.js';

export const SET_PREFIX: Readonly<Record<Family, string>> = { 4: 'pcu4-', 6: 'pcu6-' };
export const TABLE = 'mangle';
/** The kernel chain our one jump rule lives in. */
export const HOOK_CHAIN = 'PREROUTING';
export const ENTRY_CHAIN = 'PCU-PREROUTING';
export const MANAGED_CHAIN = 'PCU-MANAGED';
/** The kernel chain of the second jump (per-app egress of HOST-network tasks). */
export const OUTPUT_HOOK_CHAIN = 'OUTPUT';
export const EGRESS_OUTPUT_CHAIN = 'PCU-OUTPUT';
export const EGRESS_BRIDGE_CHAIN = 'PCU-EG-BRIDGE';
export const EGRESS_DENY_CHAIN = 'PCU-EG-DENY';
/** Suffix of the scratch set that `ipset restore` fills and swaps with the live one. */
export const TMP_SUFFIX = '-tmp';

/** The kinds rendered one set per kind (the egress kinds are rendered per local app: not here). */
const SET_BASE: Readonly<Partial<Record<SetKind, { readonly base: string; readonly family?: Family }>>> = {
  'managed-tcp': { base: 'managed-tcp' },
  'managed-udp': { base: 'managed-udp' },
  'failsafe-tcp': { base: 'failsafe-tcp' },
  'failsafe-udp': { base: 'failsafe-udp' },
  'allow-ip4': { base: 'allow-ip', family: 4 },
  'allow-net4': { base: 'allow-net', family: 4 },
  'allow-ip6': { base: 'allow-ip', family: 6 },
  'allow-net6': { base: 'allow-net', family: 6 },
};

/** The ipset that holds `kind` for `family`; undefined when the kind belongs to the other family. */
export function ipsetName(kind: SetKind, family: Family): string | undefined {
  const def = SET_BASE[kind];
  if (def === undefined) return undefined;
  if (def.family !== undefined && def.family !== family) return undefined;
  return SET_PREFIX[family] + def.base;
}

/** The set kinds rendered for `family`, in SET_KINDS order. */
export function setKindsOf(family: Family): SetKind[] {
  return SET_KINDS.filter((kind) => ipsetName(kind, family) !== undefined);
}

export function tmpSetName(name: string): string {
  return name + TMP_SUFFIX;
}

/** The 16 lowercase hex digits naming an app's egress objects. */
export function appHash(appId: string): string {
  return createHash('sha256').update(appId).digest('hex').slice(0, 16);
}

/** The set of every managed destination of the cluster (egress-managed4/6). */
export function egressManagedSetName(family: Family): string {
  return `${SET_PREFIX[family]}eg-managed`;
}

/** The set of the destinations local app `appId` may reach (its egress-ip4/6 members). */
export function egressAppSetName(appId: string, family: Family): string {
  return `${SET_PREFIX[family]}eg-${appHash(appId)}`;
}

/** The chain that judges the new connections of local app `appId`. */
export function egressAppChainName(appId: string): string {
  return `PCU-EG-${appHash(appId).toUpperCase()}`;
}

/** True for an egress set of ours (the managed set or a per-app one), live or `-tmp`. */
export function isEgressSetName(name: string): boolean {
  return /^pcu[46]-eg-[a-z0-9-]{1,23}$/.test(name);
}

/** A verdict class of flow recording: FlowVerdict of src/flows/flow-types.ts (a room of the same layer: not imported). */
export type FlowVerdict = 'allowed' | 'denied' | 'audit';

/** The ingress recording chains, by verdict class (render-flows.ts). */
export const FLOW_CHAIN: Readonly<Record<FlowVerdict, string>> = { allowed: 'PCU-FL-ALLOW', denied: 'PCU-FL-DENY', audit: 'PCU-FL-AUDIT' };
/** The unrecorded tail of the audit ports of a host that enforces (group modes): NFLOG + RETURN. */
export const AUDIT_CHAIN = 'PCU-AUDIT';
/** The unrecorded egress deny path of the local apps in audit while the state enforces. */
export const EGRESS_AUDIT_CHAIN = 'PCU-EG-AUDIT';

/** The set of the managed ports of `proto` in audit while the state enforces (group modes: audit-tcp / audit-udp). */
export function auditPortSetName(proto: 'tcp' | 'udp', family: Family): string {
  return `${SET_PREFIX[family]}audit-${proto}`;
}

const FLOW_SET_BASE: Readonly<Record<FlowVerdict, string>> = { allowed: 'fl-allow', denied: 'fl-deny', audit: 'fl-audit' };
const EGRESS_FLOW_SET_BASE: Readonly<Record<FlowVerdict, string>> = { allowed: 'fa', denied: 'fd', audit: 'fw' };

/** The ingress flow set of a verdict class: pcu4-fl-allow, pcu6-fl-deny, ... */
export function flowSetName(verdict: FlowVerdict, family: Family): string {
  return SET_PREFIX[family] + FLOW_SET_BASE[verdict];
}

/** The egress flow set of local app `appId` for a verdict class: pcu4-fa-<h>, pcu4-fd-<h>, pcu4-fw-<h>. */
export function egressFlowSetName(appId: string, verdict: FlowVerdict, family: Family): string {
  return `${SET_PREFIX[family]}${EGRESS_FLOW_SET_BASE[verdict]}-${appHash(appId)}`;
}

/** The chain of local app `appId`'s recorded deny path (egress recording only). */
export function egressFlowDenyChainName(appId: string): string {
  return `PCU-EGD-${appHash(appId).toUpperCase()}`;
}

const FLOW_SET = /^pcu([46])-(?:fl-(allow|deny|audit)|(fa|fd|fw)-([0-9a-f]{16}))$/;

/** What a flow set name says (family, direction, verdict, app hash); undefined for any other name. */
export function parseFlowSetName(name: string): { family: Family; verdict: FlowVerdict; appHash?: string } | undefined {
  const m = FLOW_SET.exec(name);
  if (m === null) return undefined;
  const family: Family = m[1] === '4' ? 4 : 6;
  if (m[2] !== undefined) return { family, verdict: m[2] === 'allow' ? 'allowed' : m[2] === 'deny' ? 'denied' : 'audit' };
  return { family, verdict: m[3] === 'fa' ? 'allowed' : m[3] === 'fd' ? 'denied' : 'audit', appHash: m[4] as string };
}

/** True for a flow set of ours (ingress or egress), never swapped or flushed by an apply. */
export function isFlowSetName(name: string): boolean {
  return FLOW_SET.test(name);
}

const OWNED_SET = /^pcu[46]-[a-z0-9-]{1,26}$/;
const OWNED_CHAIN = /^PCU-[A-Z0-9-]{1,24}$/;

/** True for any name under our set prefixes (live or `-tmp`, current or left by an older version). */
export function isOwnedSetName(name: string): boolean {
  return OWNED_SET.test(name);
}

/** True for any chain under our prefix. */
export function isOwnedChainName(name: string): boolean {
  return OWNED_CHAIN.test(name);
}
