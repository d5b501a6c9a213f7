/**
 * `ipset restore` input for one host and family: every owned set replaced atomically.
 *
 * Contract (verified on this kernel, see test/render-kernel.test.ts):
 * - For each set: `create <name> ... -exist` (so the first apply has something to swap with),
 *   `create <name>-tmp ... -exist`, `flush <name>-tmp`, one `add` per member, `swap`, `destroy`.
 *   Rules that reference a set keep working across the swap; packets see the old members or the
 *   new ones, never a half-filled set.
 * - Sizes. `create -exist` on an existing set fails when `maxelem` differs (the kernel compares
 *   it; it ignores hashsize, which grows by itself), and `swap` also swaps the headers, so a
 *   maxelem sized per apply would break the next apply's `create -exist`. Hence maxelem is one
 *   constant ceiling (HASH_MAXELEM, far above the default 65536 that 100k members overflow) and
 *   only the initial hashsize follows the member count (fewer rehashes while loading).
 * - Every member is validated (validate-member.ts); an invalid member throws, nothing is rendered.
 *   A caller that has already validated the whole state (`invalidMembers(state)` was empty, as
 *   the agent's dataplane does before any command) passes `{ membersValidated: true }` so 100,000
 *   members are not checked twice per apply.
 *   `/0` CIDRs, which hash:net refuses, are written as the two `/1` halves (src/net/member.ts, the
 *   halves the compiler writes itself). Duplicates are dropped.
 * - The audit port sets of group modes (pcu?-audit-tcp / -udp, bitmap:port; render-flows.ts
 *   `auditPortSets`) follow the state's sets when it has audit ports; otherwise nothing of them.
 * - Per-app egress sets (render-egress.ts `egressSets`: pcu?-eg-managed and one pcu?-eg-<h> per
 *   local app, hash:ip,port) follow, written the same way, when asked (`egress`).
 * Output is deterministic: sets in SET_KINDS order, then the egress sets, members in the given (sorted) order.
 */
import { SET_KINDS, hasEgressMembers, type DesiredState, type SetKind } from '../compile/desired-state.js';
import type { Family } from '../net/family.js';
import { isZeroPrefixMember, netEntries } from '../net/member.js';
import { ipsetName, isOwnedSetName, setKindsOf, tmpSetName } from './owned-names.js';
import { egressSets } from './render-egress.js';
import { auditPortSets } from './render-flows.js';
import { validateMember } from './validate-member.js';

export { validateMember } from './validate-member.js';

/** maxelem of every hash set; constant so `create -exist` always matches the live set. */
export const HASH_MAXELEM = 4_194_304;
const MIN_HASHSIZE = 1024;
const MAX_HASHSIZE = 1_048_576;

/** Initial hashsize for `count` members: a power of two, at least 1024. */
export function hashsizeFor(count: number): number {
  let size = MIN_HASHSIZE;
  while (size < count && size < MAX_HASHSIZE) size *= 2;
  return size;
}

export function setTypeArgs(kind: SetKind, family: Family, count: number): string {
  const inet = family === 4 ? 'inet' : 'inet6';
  if (kind.startsWith('managed-') || kind.startsWith('failsafe-') || kind.startsWith('audit-')) return 'bitmap:port range 0-65535';
  const type = kind.startsWith('allow-ip') ? 'hash:ip,port' : 'hash:net,port';
  return `${type} family ${inet} hashsize ${hashsizeFor(count)} maxelem ${HASH_MAXELEM}`;
}

/** Every invalid member of a state, one message each (empty when valid). */
export function invalidMembers(state: DesiredState): string[] {
  const problems: string[] = [];
  for (const kind of SET_KINDS) {
    for (const member of state.sets[kind] ?? []) {
      const why = validateMember(kind, member);
      if (why !== undefined) problems.push(why);
    }
  }
  return problems;
}

/** The kernel entries of one validated member: itself, or the two `/1` halves of a `/0` net. */
export function expandMember(kind: SetKind, family: Family, member: string): string[] {
  return kind === 'allow-net4' || kind === 'allow-net6' ? netEntries(member, family) : [member];
}

/**
 * Validated, expanded, de-duplicated members of one set; throws on the first invalid member.
 * `membersValidated`: the caller has validated them already (see the header); not checked again.
 */
export function setMembers(kind: SetKind, family: Family, members: readonly string[], membersValidated = false): string[] {
  const net = kind === 'allow-net4' || kind === 'allow-net6';
  const out: string[] = [];
  // A strictly ascending list (as DesiredState keeps them) without /0 has no duplicate to drop.
  let unique = true;
  for (let i = 0; i < members.length; i++) {
    const member = members[i] as string;
    if (!membersValidated) {
      const error = validateMember(kind, member);
      if (error !== undefined) throw new Error(error);
    }
    if (i > 0 && !((members[i - 1] as string) < member)) unique = false;
    if (net && isZeroPrefixMember(member)) {
      unique = false;
      for (const m of netEntries(member, family)) out.push(m);
    } else {
      out.push(member);
    }
  }
  return unique ? out : [...new Set(out)];
}

export interface RenderIpsetOptions {
  /** True only when `invalidMembers(state)` was empty: members are not validated again. */
  readonly membersValidated?: boolean;
  /** Also write the per-app egress sets (the agent enforces egress), when the state has egress members. */
  readonly egress?: boolean;
}

/** The restore lines that replace set `name` by `members` atomically (see the header). */
function replaceSetLines(parts: string[], name: string, type: string, members: readonly string[]): void {
  const tmp = tmpSetName(name);
  parts.push(`create ${name} ${type} -exist\ncreate ${tmp} ${type} -exist\nflush ${tmp}\n`);
  if (members.length > 0) parts.push(`add ${tmp} ${members.join(`\nadd ${tmp} `)}\n`);
  parts.push(`swap ${tmp} ${name}\ndestroy ${tmp}\n`);
}

/** The type arguments of an egress set (hash:ip,port) for `count` members. */
export function egressSetTypeArgs(family: Family, count: number): string {
  return `hash:ip,port family ${family === 4 ? 'inet' : 'inet6'} hashsize ${hashsizeFor(count)} maxelem ${HASH_MAXELEM}`;
}

export function renderIpsetRestore(state: DesiredState, family: Family, options: RenderIpsetOptions = {}): string {
  const parts: string[] = [];
  for (const kind of setKindsOf(family)) {
    const members = setMembers(kind, family, state.sets[kind] ?? [], options.membersValidated === true);
    replaceSetLines(parts, ipsetName(kind, family) as string, setTypeArgs(kind, family, members.length), members);
  }
  for (const set of auditPortSets(state, family)) {
    const members = setMembers('audit-tcp', family, set.members, options.membersValidated === true);
    replaceSetLines(parts, set.name, setTypeArgs('audit-tcp', family, members.length), members);
  }
  if (options.egress && hasEgressMembers(state.sets)) {
    if (options.membersValidated !== true) {
      const error = invalidMembers(state)[0];
      if (error !== undefined) throw new Error(error);
    }
    for (const set of egressSets(state, family)) replaceSetLines(parts, set.name, egressSetTypeArgs(family, set.members.length), set.members);
  }
  return parts.join('');
}

/** `destroy` lines for sets we own (run after the iptables uninstall: referenced sets cannot go). */
export function renderIpsetUninstall(names: readonly string[]): string {
  for (const name of names) {
    if (!isOwnedSetName(name)) throw new Error(`refusing to destroy set ${JSON.stringify(name)}: not ours`);
  }
  return [...new Set(names)].map((name) => `destroy ${name}\n`).join('');
}
