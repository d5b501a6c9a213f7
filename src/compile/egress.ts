/**
 * Per-app egress (issue 10): the egress kinds of every host's DesiredState, kept up to date as
 * the cluster changes. One instance per compile (compile.ts: every host at once) or per policy of
 * an incremental compiler (incremental-compiler.ts: the hosts an update names); both go through
 * `update`, so both compile paths emit the same lists.
 *
 * What it emits (desired-state.ts, docs/architecture.md "Egress"):
 *  - egress-task of host X: "<app>|<task>" for every valid task of X whose ids are member-safe
 *    (src/net/member-syntax.ts); the others are reported (`egress-unsafe-id`) and left out (the
 *    agent treats them as unmapped);
 *  - egress-managed4/6: "<address>,<proto>:<port>" for every address of every host × every
 *    managed claim of that host: ONE list object shared by every host's state;
 *  - egress-ip4/6 of host X: for each local app A (one with a task in egress-task), "A|<dest>" for
 *    every managed destination A on X may reach (egress-verdict.ts).
 *
 * Sharing, so that a task move (which changes egress-managed everywhere) costs O(change):
 *  - destinations are kept as text → owning claim keys (a text has two when two hosts list the
 *    same address: then every one must allow), and per claim key its texts;
 *  - an "allowed list" per (source class, group list) holds the destination texts allowed, an
 *    "app list" per (app, allowed list) the same with the "A|" prefix: hosts of one class running
 *    A share it; a host's egress-ip list is the concatenation of its local apps' lists in
 *    "<app>|" order (which is the sorted order of the whole list, since '|' is in no app id), the
 *    very app list when it is the only one;
 *  - a change of destinations patches each live list once (member-lists.ts, binary search), and
 *    the version sums follow from the edits (state-version.ts patchEgressList / seedEgressListSum);
 *    the edits of each patched list are kept (`editsFrom`) for the StateDelta of its hosts.
 * Lists are never mutated once built. Pure; no I/O.
 */
import { formatAddress } from '../net/address.js';
import { pairMember } from '../net/member.js';
import type { Policy } from '../policy/policy-model.js';
import type { AddressSet } from './address-set.js';
import { runSteps } from './cluster-index.js';
import type { CompileReport } from './compile-report.js';
import type { EgressKind, EgressSets } from './desired-state.js';
import { addTo, byString, countIn, egressSets, hostTasks, ListEditLog, removeFrom, sortedEdits, sortedUnique, type EgressInput, type ListEdits } from './egress-input.js';
import { EgressVerdicts, type SourceClass } from './egress-verdict.js';
import type { PortMatch } from './host-claims.js';
import { patchMemberList } from './member-lists.js';
import { egressListSum, patchEgressList, prefixedEgressList, seedEgressListSum } from './state-version.js';

export { egressClaims, egressInput, type EgressClaim, type EgressInput, type ListEdits } from './egress-input.js';

const FAMILIES = [4, 6] as const;
/** Hosts read or rebuilt between two yields of `steps`. */
const HOST_BATCH = 1;
/** Members hashed between two yields when a long list is summed whole. */
const SUM_CHUNK = 8192;
const IP_KIND = ['egress-ip4', 'egress-ip6'] as const;
const MANAGED_KIND = ['egress-managed4', 'egress-managed6'] as const;
const NONE: readonly string[] = Object.freeze([]);

interface Dest {
  readonly text: string;
  readonly fi: number;
  readonly claimKey: string;
}

interface AllowedList {
  readonly groups: readonly string[];
  readonly cls: SourceClass;
  list: readonly string[];
  refs: number;
}

interface AppList {
  /** "<app id>|". */
  readonly prefix: string;
  readonly allowedKey: string;
  list: readonly string[];
  readonly users: Set<string>;
}

/** An app's groups, sorted, and their text in allowed-list keys. */
interface GroupList {
  readonly groups: readonly string[];
  readonly text: string;
}

interface HostEgress {
  readonly tasks: readonly string[];
  /** App list keys per family index, in "<app>|" order. */
  readonly appKeys: readonly (readonly string[])[];
  /** The app lists the egress-ip lists were concatenated from, per family index. */
  parts: (readonly (readonly string[])[])[];
  sets: EgressSets;
  readonly reports: readonly CompileReport[];
}

export class EgressIndex {
  /** Built at the first update (after the cluster index has made the network sets), not with the instance. */
  private verdictsOf: EgressVerdicts | undefined;
  private readonly matchesOf = new Map<string, readonly PortMatch[]>();
  private readonly destsOfHost = new Map<string, readonly Dest[]>();
  /** Per family index: destination text → claim key → entries. */
  private readonly owners = [new Map<string, Map<string, number>>(), new Map<string, Map<string, number>>()];
  /** Per family index: claim key → destination text → entries. */
  private readonly textsOfClaim = [new Map<string, Map<string, number>>(), new Map<string, Map<string, number>>()];
  /** Per family index: group → the live claim keys whose resolution reads it. */
  private readonly keysReading = [new Map<string, Set<string>>(), new Map<string, Set<string>>()];
  /** Per family index: per source class, the allowed list of an app in no group (cleared when destinations change). */
  private readonly baselines = [new Map<string, readonly string[]>(), new Map<string, readonly string[]>()];
  private managed: readonly string[][] = [[], []];
  private readonly allowedLists = new Map<string, AllowedList>();
  /** The live allowed lists per source class and per group of their group list. */
  private readonly listsOfClass = new Map<string, { readonly cls: SourceClass; readonly keys: Set<string> }>();
  private readonly listsOfGroup = new Map<string, Set<string>>();
  private readonly groupsRead = new Map<string, readonly string[]>();
  private readonly appLists = new Map<string, AppList>();
  private readonly hosts = new Map<string, HostEgress>();
  private readonly edits = new ListEditLog();
  /** Per groups array of the cluster index (the same object while its app is unchanged). */
  private readonly groupLists = new WeakMap<readonly string[], GroupList>();

  constructor(
    private readonly policy: Policy,
    private readonly networkSet: (name: string) => AddressSet,
  ) {}

  /** Only read inside `steps`, after it has built them. */
  private get verdicts(): EgressVerdicts {
    return this.verdictsOf!;
  }

  /** The egress kinds of a host's state (empty lists for a host not seen). */
  sets(hostId: string): EgressSets {
    return this.hosts.get(hostId)?.sets ?? { 'egress-task': NONE, 'egress-managed4': this.managed[0]!, 'egress-managed6': this.managed[1]!, 'egress-ip4': NONE, 'egress-ip6': NONE };
  }

  /** `egress-unsafe-id` reports of every host (unsorted). */
  reports(): CompileReport[] {
    const out: CompileReport[] = [];
    for (const h of this.hosts.values()) out.push(...h.reports);
    return out;
  }

  /** The `egress-unsafe-id` reports of one host. */
  reportsOf(hostId: string): readonly CompileReport[] {
    return this.hosts.get(hostId)?.reports ?? [];
  }

  /** The edits that made `after` from `before`, when this index patched one into the other. */
  editsFrom(before: readonly string[], after: readonly string[]): ListEdits | undefined {
    return this.edits.from(before, after);
  }

  /**
   * Brings the lists up to date: `changed` are the hosts whose tasks, claims or addresses may
   * have changed (and new hosts), `removed` the hosts gone, `allHosts` every host now. Returns
   * the hosts whose egress sets changed (every host when egress-managed did).
   */
  update(input: EgressInput, changed: Iterable<string>, removed: Iterable<string>, allHosts: Iterable<string>): Set<string> {
    return runSteps(this.steps(input, changed, removed, allHosts));
  }

  /** `update` in steps: yields between batches of hosts (IncrementalCompiler.building spreads a large build over event-loop turns). */
  *steps(input: EgressInput, changed: Iterable<string>, removed: Iterable<string>, allHosts: Iterable<string>): Generator<void, Set<string>> {
    let n = 0;
    this.verdictsOf ??= yield* EgressVerdicts.create(this.policy, this.networkSet);
    const touched = [new Map<string, Map<string, number> | undefined>(), new Map<string, Map<string, number> | undefined>()];
    const rebuild = new Set<string>();
    for (const id of removed) {
      this.setDests(id, [], touched);
      this.releaseHost(id);
      this.hosts.delete(id);
    }
    for (const id of changed) {
      this.setDests(id, this.destsOf(input, id), touched);
      rebuild.add(id);
      if (++n % HOST_BATCH === 0) yield;
    }

    let managedChanged = false;
    const fromEmpty: number[] = [];
    for (let fi = 0; fi < FAMILIES.length; fi++) {
      const removes: string[] = [];
      const adds: string[] = [];
      for (const [text, before] of touched[fi]!) {
        const now = this.owners[fi]!.has(text);
        if (before && !now) removes.push(text);
        else if (!before && now) adds.push(text);
      }
      if (removes.length + adds.length === 0) continue;
      const list = this.managed[fi]!;
      const big = removes.length + adds.length > SUM_CHUNK;
      if (big) yield; // a full build: the family's whole list is sorted and its edits taken apart
      if (list.length === 0) fromEmpty.push(fi);
      const next = list.length === 0 ? adds.sort(byString) : patchEgressList(MANAGED_KIND[fi]!, list, removes, adds);
      if (big) yield;
      this.edits.keep(next, sortedEdits(list, removes, adds));
      this.managed = fi === 0 ? [next, this.managed[1]!] : [this.managed[0]!, next];
      managedChanged = true;
    }
    if (managedChanged) yield;
    // A list built from empty (a full build) is summed in chunks, with yields between them.
    for (const fi of fromEmpty) {
      const list = this.managed[fi]!;
      const chunks: string[][] = [];
      for (let i = 0; i < list.length; i += SUM_CHUNK) {
        chunks.push(list.slice(i, i + SUM_CHUNK));
        egressListSum(MANAGED_KIND[fi]!, chunks[chunks.length - 1]!);
        yield;
      }
      seedEgressListSum(MANAGED_KIND[fi]!, list, chunks);
    }

    FAMILIES.forEach((_, fi) => {
      if (touched[fi]!.size > 0) this.baselines[fi]!.clear();
    });
    if (managedChanged) yield;
    const concat = this.patchLists(touched);
    // The baselines of the rebuilt hosts' classes first, in steps (the first host of a class would pay for it at once).
    if (rebuild.size > HOST_BATCH * 16) for (const id of rebuild) for (const family of FAMILIES) yield* this.baselineSteps(this.verdicts.sourceClass(input.addresses(id), family));
    for (const id of rebuild) {
      this.rebuildHost(input, id);
      if (++n % HOST_BATCH === 0) yield;
    }
    for (const id of concat) if (!rebuild.has(id) && this.hosts.has(id)) this.concatHost(id);
    const out = new Set([...rebuild, ...concat]);
    if (managedChanged) {
      for (const id of allHosts) {
        const h = this.hosts.get(id);
        if (h) h.sets = egressSets(h.sets['egress-task'], this.managed, h.sets['egress-ip4'], h.sets['egress-ip6']);
        out.add(id);
      }
    }
    for (const id of removed) out.delete(id);
    return out;
  }

  /** The destination entries of a host: each address × each claim. */
  private destsOf(input: EgressInput, hostId: string): Dest[] {
    const claims = input.claims(hostId);
    if (claims.length === 0) return [];
    const keys = claims.map((c) => {
      const claimKey = c.matches.map((m) => m.key).join('\u0001');
      if (!this.matchesOf.has(claimKey)) this.matchesOf.set(claimKey, c.matches);
      return claimKey;
    });
    const out: Dest[] = [];
    const seen = new Set<string>();
    for (const a of input.addresses(hostId)) {
      const address = formatAddress(a.family, a.value);
      if (seen.has(address)) continue;
      seen.add(address);
      const fi = a.family === 4 ? 0 : 1;
      claims.forEach((c, i) => out.push({ text: pairMember(address, c.suffix), fi, claimKey: keys[i]! }));
    }
    return out;
  }

  /** Replaces a host's destination entries, noting each touched text's owners before the change. */
  private setDests(hostId: string, next: readonly Dest[], touched: Map<string, Map<string, number> | undefined>[]): void {
    const old = this.destsOfHost.get(hostId) ?? [];
    if (old.length === next.length && old.every((d, i) => d.text === next[i]!.text && d.claimKey === next[i]!.claimKey)) return;
    const edit = (d: Dest, delta: 1 | -1) => {
      const owners = this.owners[d.fi]!;
      let of = owners.get(d.text);
      if (!touched[d.fi]!.has(d.text)) touched[d.fi]!.set(d.text, of ? new Map(of) : undefined);
      if (!of) owners.set(d.text, (of = new Map()));
      countIn(of, d.claimKey, delta);
      if (of.size === 0) owners.delete(d.text);
      const byClaim = this.textsOfClaim[d.fi]!;
      let texts = byClaim.get(d.claimKey);
      if (!texts) {
        byClaim.set(d.claimKey, (texts = new Map()));
        for (const g of this.groupsOf(d.claimKey)) addTo(this.keysReading[d.fi]!, g, d.claimKey);
      }
      countIn(texts, d.text, delta);
      if (texts.size === 0) {
        byClaim.delete(d.claimKey);
        for (const g of this.groupsOf(d.claimKey)) removeFrom(this.keysReading[d.fi]!, g, d.claimKey);
      }
    };
    for (const d of old) edit(d, -1);
    for (const d of next) edit(d, 1);
    if (next.length === 0) this.destsOfHost.delete(hostId);
    else this.destsOfHost.set(hostId, next);
  }

  /** The groups a claim key's resolution reads. */
  private groupsOf(claimKey: string): readonly string[] {
    let groups = this.groupsRead.get(claimKey);
    if (!groups) this.groupsRead.set(claimKey, (groups = [...new Set(this.matchesOf.get(claimKey)!.flatMap((m) => m.groups))]));
    return groups;
  }

  /** Whether an allowed list holds a destination text with these owners. */
  private admits(al: Pick<AllowedList, 'groups' | 'cls'>, owners: ReadonlyMap<string, number> | undefined): boolean {
    if (!owners || owners.size === 0) return false;
    for (const claimKey of owners.keys()) if (!this.verdicts.allowed(al.groups, al.cls, claimKey, this.matchesOf.get(claimKey)!)) return false;
    return true;
  }

  /** Patches every live allowed list and app list for the touched texts; the hosts using a patched app list. */
  private patchLists(touched: readonly Map<string, Map<string, number> | undefined>[]): Set<string> {
    const hosts = new Set<string>();
    if (this.allowedLists.size === 0 || touched.every((t) => t.size === 0)) return hosts; // a full build: no list yet
    // Per touched text, only the lists whose groups its claims' resolutions read are judged one
    // by one; every other list of a class gets the verdict of an app in no group (egress-verdict.ts).
    const edits = new Map<string, { removes: string[]; adds: string[] }>();
    const edit = (key: string, text: string, was: boolean, is: boolean) => {
      if (was === is) return;
      let e = edits.get(key);
      if (!e) edits.set(key, (e = { removes: [], adds: [] }));
      (was ? e.removes : e.adds).push(text);
    };
    FAMILIES.forEach((family, fi) => {
      for (const [text, before] of touched[fi]!) {
        const after = this.owners[fi]!.get(text);
        const explicit = new Set<string>();
        for (const claimKey of new Set([...(before?.keys() ?? []), ...(after?.keys() ?? [])])) {
          for (const g of this.groupsOf(claimKey)) for (const key of this.listsOfGroup.get(g) ?? []) if (this.allowedLists.get(key)!.cls.family === family) explicit.add(key);
        }
        for (const key of explicit) {
          const al = this.allowedLists.get(key)!;
          edit(key, text, this.admits(al, before), this.admits(al, after));
        }
        for (const { cls, keys } of this.listsOfClass.values()) {
          if (cls.family !== family) continue;
          const none = { groups: NONE, cls };
          const was = this.admits(none, before);
          const is = this.admits(none, after);
          if (was !== is) for (const key of keys) if (!explicit.has(key)) edit(key, text, was, is);
        }
      }
    });
    for (const [key, e] of edits) {
      const al = this.allowedLists.get(key)!;
      al.list = patchMemberList(al.list, e.removes, e.adds);
    }
    if (edits.size === 0) return hosts;
    for (const app of this.appLists.values()) {
      const e = edits.get(app.allowedKey);
      if (!e) continue;
      const prefix = app.prefix;
      const removes = e.removes.map((t) => prefix + t);
      const adds = e.adds.map((t) => prefix + t);
      const list = app.list;
      app.list = patchEgressList(IP_KIND[this.allowedLists.get(app.allowedKey)!.cls.family === 4 ? 0 : 1]!, list, removes, adds);
      this.edits.keep(app.list, sortedEdits(list, removes, adds));
      for (const h of app.users) hosts.add(h);
    }
    return hosts;
  }

  /** A host's tasks, local apps and classes read again; its app lists acquired anew; its lists rebuilt. */
  private rebuildHost(input: EgressInput, hostId: string): void {
    const { members, local, reports } = hostTasks(hostId, input.tasksOn(hostId));
    const apps = [...local].map((appId) => ({ prefix: `${appId}|`, groups: this.sortedGroups(input.groupsOf(appId)) })).sort((a, b) => byString(a.prefix, b.prefix));
    const addresses = input.addresses(hostId);
    const appKeys = FAMILIES.map((family) => {
      const cls = this.verdicts.sourceClass(addresses, family);
      return apps.map((a) => this.acquire(hostId, a.prefix, a.groups, cls));
    });
    this.releaseHost(hostId, new Set(appKeys.flat()));
    const old = this.hosts.get(hostId);
    let tasks = sortedUnique(members);
    if (old && old.tasks.length === tasks.length && old.tasks.every((m, i) => m === tasks[i])) tasks = old.tasks as string[];
    const h: HostEgress = { tasks, appKeys, parts: old?.parts ?? [[], []], sets: old?.sets ?? this.sets(hostId), reports };
    this.hosts.set(hostId, h);
    this.concatHost(hostId, old?.appKeys ?? [[], []]);
  }

  private sortedGroups(groups: readonly string[]): GroupList {
    let g = this.groupLists.get(groups);
    if (!g) {
      const sorted = [...groups].sort(byString);
      this.groupLists.set(groups, (g = { groups: sorted, text: sorted.join('\n') }));
    }
    return g;
  }

  /** The app list of (app, class, groups) with one more user, built when new ("<app id>|" is `prefix`). */
  private acquire(hostId: string, prefix: string, { groups, text }: GroupList, cls: SourceClass): string {
    const allowedKey = `${cls.key}\0${text}`;
    const key = `${prefix}\0${allowedKey}`;
    let app = this.appLists.get(key);
    if (!app) {
      let al = this.allowedLists.get(allowedKey);
      if (!al) {
        this.allowedLists.set(allowedKey, (al = { groups, cls, list: this.buildAllowed(groups, cls), refs: 0 }));
        let ofClass = this.listsOfClass.get(cls.key);
        if (!ofClass) this.listsOfClass.set(cls.key, (ofClass = { cls, keys: new Set() }));
        ofClass.keys.add(allowedKey);
        for (const g of groups) addTo(this.listsOfGroup, g, allowedKey);
      }
      al.refs++;
      const list = prefixedEgressList(IP_KIND[cls.family === 4 ? 0 : 1]!, prefix, al.list);
      this.appLists.set(key, (app = { prefix, allowedKey, list, users: new Set() }));
    }
    app.users.add(hostId);
    return key;
  }

  /** The host no longer uses its app lists but `keep` (a list goes with its last user, an allowed list with its last app list). */
  private releaseHost(hostId: string, keep: ReadonlySet<string> = new Set()): void {
    for (const keys of this.hosts.get(hostId)?.appKeys ?? []) {
      for (const key of keys) {
        if (keep.has(key)) continue;
        const app = this.appLists.get(key);
        if (!app || !app.users.delete(hostId) || app.users.size > 0) continue;
        this.appLists.delete(key);
        const al = this.allowedLists.get(app.allowedKey)!;
        if (--al.refs > 0) continue;
        this.allowedLists.delete(app.allowedKey);
        const ofClass = this.listsOfClass.get(al.cls.key)!;
        ofClass.keys.delete(app.allowedKey);
        if (ofClass.keys.size === 0) this.listsOfClass.delete(al.cls.key);
        for (const g of al.groups) removeFrom(this.listsOfGroup, g, app.allowedKey);
      }
    }
  }

  /**
   * The destination texts of `cls`'s family an app with `groups` on a host of `cls` may reach,
   * sorted: the list of an app in no group (the baseline of the class), edited for the claims
   * whose resolution reads one of `groups` (only those can differ); the baseline itself when none does.
   */
  private buildAllowed(groups: readonly string[], cls: SourceClass): readonly string[] {
    const fi = cls.family === 4 ? 0 : 1;
    const base = runSteps(this.baselineSteps(cls));
    const probe = { groups, cls };
    const none = { groups: NONE, cls };
    const removes: string[] = [];
    const adds: string[] = [];
    const keys = new Set<string>();
    for (const g of groups) for (const claimKey of this.keysReading[fi]!.get(g) ?? []) keys.add(claimKey);
    const seen = new Set<string>();
    for (const claimKey of keys) {
      // One verdict pair per claim. A claim whose verdict `groups` leave alone changes none of its
      // texts: a text with another owner whose verdict changes is reached through that owner.
      const matches = this.matchesOf.get(claimKey)!;
      const was = this.verdicts.allowed(NONE, cls, claimKey, matches);
      const is = this.verdicts.allowed(groups, cls, claimKey, matches);
      if (was === is) continue;
      for (const text of this.textsOfClaim[fi]!.get(claimKey)!.keys()) {
        const owners = this.owners[fi]!.get(text)!;
        if (owners.size > 1) {
          if (seen.has(text)) continue; // judged once, with all its owners
          seen.add(text);
        }
        const admitted = owners.size === 1 ? was : this.admits(none, owners);
        if (owners.size === 1 || admitted !== this.admits(probe, owners)) (admitted ? removes : adds).push(text);
      }
    }
    return removes.length + adds.length === 0 ? base : patchMemberList(base, removes, adds);
  }

  /** The allowed list of an app in no group on a host of `cls` (a text with several claims, an address on two hosts, when all allow), in steps. */
  private *baselineSteps(cls: SourceClass): Generator<void, readonly string[]> {
    const fi = cls.family === 4 ? 0 : 1;
    let list = this.baselines[fi]!.get(cls.key);
    if (list) return list;
    const none = { groups: NONE, cls };
    const out: string[] = [];
    let n = 0;
    for (const [claimKey, texts] of this.textsOfClaim[fi]!) {
      // Often: with a large policy one claim's first verdict walks thousands of rules.
      if (++n % 16 === 0) yield;
      if (!this.verdicts.allowed(NONE, cls, claimKey, this.matchesOf.get(claimKey)!)) continue;
      for (const text of texts.keys()) {
        const owners = this.owners[fi]!.get(text)!;
        if (owners.size === 1 || (owners.keys().next().value === claimKey && this.admits(none, owners))) out.push(text);
      }
    }
    this.baselines[fi]!.set(cls.key, (list = out.sort(byString)));
    return list;
  }

  /** The host's egress-ip lists from its app lists (the edits recorded when its apps stayed the same). */
  private concatHost(hostId: string, oldKeys?: readonly (readonly string[])[]): void {
    const h = this.hosts.get(hostId)!;
    const sets = egressSets(h.tasks, this.managed, h.sets['egress-ip4'], h.sets['egress-ip6']) as Record<EgressKind, readonly string[]>;
    const sameApps = (fi: number) => (oldKeys ?? h.appKeys)[fi]!.length === h.appKeys[fi]!.length && (oldKeys ?? h.appKeys)[fi]!.every((k, i) => k === h.appKeys[fi]![i]);
    h.parts = FAMILIES.map((_, fi) => {
      const kind = IP_KIND[fi]!;
      const parts = h.appKeys[fi]!.map((k) => this.appLists.get(k)!.list);
      const before = h.sets[kind];
      const oldParts = h.parts[fi]!;
      if (parts.length === oldParts.length && parts.every((p, i) => p === oldParts[i])) return parts;
      const list = parts.length === 0 ? NONE : parts.length === 1 ? parts[0]! : ([] as string[]).concat(...parts);
      seedEgressListSum(kind, list, parts);
      if (parts.length > 1 && sameApps(fi)) {
        const removes: string[] = [];
        const adds: string[] = [];
        const complete = parts.every((p, i) => {
          if (p === oldParts[i]) return true;
          const e = this.editsFrom(oldParts[i]!, p);
          if (e) removes.push(...e.removes), adds.push(...e.adds);
          return e !== undefined;
        });
        if (complete) this.edits.keep(list, sortedEdits(before, removes, adds));
      }
      sets[kind] = list;
      return parts;
    });
    h.sets = sets;
  }
}
