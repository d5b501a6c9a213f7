/**
 * The live resolutions of the incremental compiler: for every PortMatch key that some host's
 * claims use, its current allowed set and which hosts use it, indexed by the groups it reads.
 *
 * Contract: an entry exists exactly while at least one host uses its key (`acquire`/`release`
 * are counted per host). `get(key)` is the set last stored for the key; the owner keeps it equal
 * to the resolution under the current rule and label sets by calling `store` for every key of
 * `readingAny(changedGroups)` whenever group source sets change (nothing else can change a
 * resolution: networks and rules only change with the policy, which rebuilds the index).
 * This is what lets a task move re-resolve each affected distinct source set once, and find the
 * hosts to patch, instead of recompiling every dependent host.
 */
import type { AddressSet } from './address-set.js';
import type { PortMatch } from './host-claims.js';

interface Entry {
  readonly match: PortMatch;
  set: AddressSet;
  /** Claims per host using the key. */
  readonly users: Map<string, number>;
}

export class ResolutionIndex {
  private readonly entries = new Map<string, Entry>();
  private readonly byGroup = new Map<string, Set<string>>();

  get(key: string): AddressSet | undefined {
    return this.entries.get(key)?.set;
  }

  match(key: string): PortMatch {
    return this.entries.get(key)!.match;
  }

  /** Hosts using `key` (none for an unknown key). */
  users(key: string): Iterable<string> {
    return this.entries.get(key)?.users.keys() ?? [];
  }

  /** One more claim of `hostId` uses `match`, whose set is `set`. */
  acquire(hostId: string, match: PortMatch, set: AddressSet): void {
    let e = this.entries.get(match.key);
    if (!e) {
      this.entries.set(match.key, (e = { match, set, users: new Map() }));
      for (const g of match.groups) {
        let keys = this.byGroup.get(g);
        if (!keys) this.byGroup.set(g, (keys = new Set()));
        keys.add(match.key);
      }
    }
    e.users.set(hostId, (e.users.get(hostId) ?? 0) + 1);
  }

  /** One claim of `hostId` no longer uses `key`; the entry goes when its last user does. */
  release(hostId: string, key: string): void {
    const e = this.entries.get(key);
    if (!e) return;
    const n = (e.users.get(hostId) ?? 0) - 1;
    if (n > 0) e.users.set(hostId, n);
    else e.users.delete(hostId);
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
