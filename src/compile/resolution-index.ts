/**
 * The live resolutions of the incremental compiler: for every PortMatch key that some host's
 * claims use, its current allowed set and which hosts use it, indexed by the groups it reads.
 *
 * Contract: an entry exists exactly while at least one host uses its key (`acquire`/`release`
 * are counted per claim: each acquire names the claim, `U`, that uses the key). `get(key)` is the set last stored for the key; the owner keeps it equal
 * to the resolution under the current rule and label sets by calling `store` for every key of
 * `readingAny(changedGroups)` whenever group source sets change (nothing else can change a
 * resolution: networks and rules only change with the policy, which rebuilds the index).
 * This is what lets a task move re-resolve each affected distinct source set once, and find the
 * hosts to patch, instead of recompiling every dependent host; `users(key)` names the claims of
 * each host that use the key, so patching one costs its users, not every claim of their hosts.
 */
import type { AddressSet } from './address-set.js';
import type { PortMatch } from './host-claims.js';

interface Entry<U> {
  readonly match: PortMatch;
  set: AddressSet;
  /** The claims per host using the key (a claim once per owner whose match has the key). */
  readonly users: Map<string, U[]>;
}

export class ResolutionIndex<U> {
  private readonly entries = new Map<string, Entry<U>>();
  private readonly byGroup = new Map<string, Set<string>>();

  get(key: string): AddressSet | undefined {
    return this.entries.get(key)?.set;
  }

  match(key: string): PortMatch {
    return this.entries.get(key)!.match;
  }

  /** The hosts using `key`, each with its claims that use it, in acquire order (none for an unknown key). */
  users(key: string): Iterable<[string, readonly U[]]> {
    return this.entries.get(key)?.users ?? [];
  }

  /** `claim` of `hostId` uses `match` (once more), whose set is `set`. */
  acquire(hostId: string, match: PortMatch, set: AddressSet, claim: U): void {
    let e = this.entries.get(match.key);
    if (!e) {
      this.entries.set(match.key, (e = { match, set, users: new Map() }));
      for (const g of match.groups) {
        let keys = this.byGroup.get(g);
        if (!keys) this.byGroup.set(g, (keys = new Set()));
        keys.add(match.key);
      }
    }
    const claims = e.users.get(hostId);
    if (claims) claims.push(claim);
    else e.users.set(hostId, [claim]);
  }

  /** `claim` of `hostId` uses `key` once less; the entry goes when its last user does. */
  release(hostId: string, key: string, claim: U): void {
    const e = this.entries.get(key);
    const claims = e?.users.get(hostId);
    const at = claims ? claims.indexOf(claim) : -1;
    if (!e || !claims || at < 0) return;
    claims.splice(at, 1);
    if (claims.length === 0) e.users.delete(hostId);
    if (e.users.size > 0) return;
    this.entries.delete(key);
    for (const g of e.match.groups) {
      const keys = this.byGroup.get(g);
      keys?.delete(key);
      if (keys?.size === 0) this.byGroup.delete(g);
    }
  }

  /** Keys whose resolution reads at least one of `groups`. */
  readingAny(groups: Iterable<string>): Set<string> {
    const out = new Set<string>();
    for (const g of groups) for (const k of this.byGroup.get(g) ?? []) out.add(k);
    return out;
  }

  /** Replaces the set of a live key; returns the previous one. */
  store(key: string, set: AddressSet): AddressSet {
    const e = this.entries.get(key)!;
    const old = e.set;
    e.set = set;
    return old;
  }
}
