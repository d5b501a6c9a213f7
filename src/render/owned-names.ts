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
