/**
 * Names and peers for `suggest` (suggest.ts): which existing groups cover a set of apps, the
 * smallest named network holding an address, and fresh names for proposed groups, networks and
 * rules that follow the policy's name rules and collide with nothing the policy defines.
 */
import { hash } from 'node:crypto';
import type { ClusterState } from '../inventory/cluster-state.js';
import { appMatchesGroup } from '../policy/app-selector.js';
import { ANY, NAME_RE } from '../policy/names.js';
import type { Policy } from '../policy/policy-model.js';
import { LENIENT, parseCidr } from '../net/cidr.js';
import { tryParseAddress, type ParsedAddress } from '../net/address.js';

/** A group of the policy with the apps of the cluster it selects now. */
export interface GroupMembers {
  readonly name: string;
  readonly members: ReadonlySet<string>;
  /** Every app pattern is a literal id (no glob), and no labels: it names exactly its apps. */
  readonly literal: boolean;
  readonly order: number;
}

export function groupMembers(policy: Policy, cluster: ClusterState): GroupMembers[] {
  return policy.groups.map((g, order) => ({
    name: g.name,
    members: new Set(cluster.apps.filter((a) => appMatchesGroup(a, g)).map((a) => a.id)),
    literal: g.apps.length > 0 && g.apps.every((p) => !p.includes('*')) && Object.keys(g.labels).length === 0,
    order,
  }));
}

/** A part of a cover: an existing group, or the apps no existing group covers (a proposed group). */
export type CoverPart = { readonly group: string; readonly apps: ReadonlySet<string> } | { readonly proposed: readonly string[]; readonly apps: ReadonlySet<string> };

/**
 * `apps` as existing groups whose apps (now) all lie in `apps`, largest first (then literal
 * groups, then policy order), each taken only when it adds an app not yet covered; what is left
 * is one proposed group listing exactly those apps. No part holds an app outside `apps`.
 */
export function coverApps(apps: ReadonlySet<string>, groups: readonly GroupMembers[]): CoverPart[] {
  const candidates = groups
    .filter((g) => g.members.size > 0 && [...g.members].every((a) => apps.has(a)))
    .sort((a, b) => b.members.size - a.members.size || Number(b.literal) - Number(a.literal) || a.order - b.order);
  const covered = new Set<string>();
  const parts: CoverPart[] = [];
  for (const g of candidates) {
    if (![...g.members].some((a) => !covered.has(a))) continue;
    for (const a of g.members) covered.add(a);
    parts.push({ group: g.name, apps: g.members });
  }
  const rest = [...apps].filter((a) => !covered.has(a)).sort();
  if (rest.length > 0) parts.push({ proposed: rest, apps: new Set(rest) });
  return parts;
}

interface Range {
  readonly family: 4 | 6;
  readonly first: bigint;
  readonly last: bigint;
}

/** The policy's networks parsed once: which hold an address, and the smallest of them. */
export class NetworkIndex {
  private readonly nets: { readonly name: string; readonly size: bigint; readonly cidrs: Range[]; readonly except: Range[] }[];

  constructor(policy: Policy) {
    const ranges = (cidrs: readonly string[]): Range[] =>
      cidrs.flatMap((c) => {
        const p = parseCidr(c, LENIENT);
        return p.ok ? [{ family: p.family, first: p.first, last: p.last }] : [];
      });
    const size = (list: readonly Range[]) => list.reduce((n, r) => n + (r.last - r.first + 1n), 0n);
    this.nets = policy.networks.map((n) => {
      const cidrs = ranges(n.cidrs);
      const except = ranges(n.except);
      return { name: n.name, size: size(cidrs) - size(except), cidrs, except };
    });
  }

  /** The networks holding `address`, in policy order ([] for text that is not an address). */
  networksOf(address: string): string[] {
    const a = tryParseAddress(address);
    return a ? this.networksOfParsed(a) : [];
  }

  /** networksOf for an address parsed already. */
  networksOfParsed(a: ParsedAddress): string[] {
    const inside = (list: readonly Range[]) => {
      for (const r of list) if (r.family === a.family && r.first <= a.value && a.value <= r.last) return true;
      return false;
    };
    const out: string[] = [];
    for (const n of this.nets) if (inside(n.cidrs) && !inside(n.except)) out.push(n.name);
    return out;
  }

  /** The smallest network holding `address` (ties: policy order), if any. */
  smallest(address: string): string | undefined {
    return this.smallestOf(this.networksOf(address));
  }

  /** The smallest of `networks` (names of networks holding an address; ties: policy order). */
  smallestOf(networks: readonly string[]): string | undefined {
    if (networks.length === 0) return undefined;
    const holding = new Set(networks);
    let best: { name: string; size: bigint } | undefined;
    for (const n of this.nets) if (holding.has(n.name) && (best === undefined || n.size < best.size)) best = n;
    return best?.name;
  }
}

/** The smallest network of the policy that holds `address` (ties: policy order), if any. */
export function smallestNetwork(policy: Policy, address: string): string | undefined {
  return new NetworkIndex(policy).smallest(address);
}

/** An app id a group's `apps:` can name exactly: absolute, and no glob character. */
export function nameableAppId(id: string): boolean {
  return id.startsWith('/') && !id.includes('*') && id.length <= 1024;
}

/** Fresh names: valid (NAME_RE), never one the policy (or an earlier call) already uses. */
export class NameBook {
  private readonly peers = new Set<string>([ANY]);
  private readonly rules = new Set<string>();

  constructor(policy: Policy) {
    for (const g of policy.groups) this.peers.add(g.name);
    for (const n of policy.networks) this.peers.add(n.name);
    for (const r of policy.rules) this.rules.add(r.name);
  }

  /** A new group or network name from `words`. */
  peer(words: string): string {
    return fresh(nameBase(words), this.peers);
  }

  /** peer() of words whose nameBase is `base`. */
  peerOfBase(base: string): string {
    return fresh(base, this.peers);
  }

  rule(words: string): string {
    return fresh(nameBase(words), this.rules);
  }
}

/** Lowercase letters, digits and single '-' from any text (an app id, an address). */
export function slug(text: string): string {
  return text
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '');
}

/** The first name tried for `words`: its slug, or when that is empty or too long a cut of it and a hash of the words. */
export function nameBase(words: string): string {
  const base = slug(words);
  return base.length > 50 || base === '' ? `${base.slice(0, 40).replace(/-+$/, '')}-${hash('sha256', words, 'hex').slice(0, 8)}`.replace(/^-+/, '') : base;
}

/**
 * The FAMILY of a base: the base without its trailing `-<digits>` parts. The names tried for a
 * base are the base, then base-2, base-3, ...; two bases whose tries can meet (one is the other
 * or the other with `-<digits>` after it) have one family, so a name given from a base depends
 * on the names given before it from bases of its family only (suggest-select.ts names the
 * proposed peers of some families alone).
 */
export function nameFamily(base: string): string {
  return base.replace(/(-[0-9]+)+$/, '');
}

function fresh(base: string, taken: Set<string>): string {
  for (let n = 1; ; n++) {
    const name = n === 1 ? base : `${base}-${n}`;
    if (!taken.has(name) && NAME_RE.test(name)) {
      taken.add(name);
      return name;
    }
  }
}
