/**
 * The cap of `portcullis suggest --top N` (suggest.ts): which rules of the aggregate are kept,
 * and the names of the proposed groups and networks, worked out for the kept rules only.
 *
 * Contract: the rules kept are the first N of the whole answer in its order (connections
 * descending, then `from`, `to` and port as text), with exactly the names the whole answer
 * gives them and their peers; what is left out is summed (rules, connections, bytes, records).
 * test/flows-suggest-top.test.ts compares a capped answer with the first N rules of the whole.
 *
 * How: the connections of every rule (tallied already) give the N-th largest count; every rule
 * above it is kept, and among the rules of exactly that count (a tie) the first by name. Names
 * are needed for those rules only: the kept ones and the tie. A proposed peer's name is the
 * first free try of its base (suggest-names.ts nameBase, nameFamily), given in the order of the
 * aggregate's list, and only the names given before it from bases of its own family can take
 * one of its tries; so the families of the needed peers are named alone, in that order, and
 * give the names the whole answer gives. The other proposed peers get a base (to know their
 * family) but no name, no Set, no rule text, no evidence, no YAML.
 */
import type { Aggregate, ProposedPeer, RuleTally } from './suggest-lists.js';
import { proposedIndex } from './suggest-lists.js';
import { nameBase, nameFamily, type NameBook } from './suggest-names.js';
import type { LeftOut, SuggestedGroup, SuggestedNetwork } from './suggest-types.js';

/** The rules kept and the names of their peers. */
export interface Chosen {
  /** Kept, in no order (suggest.ts orders them). */
  readonly rules: readonly RuleTally[];
  /** The name of a rule's `from` / `to` (a policy name, or a proposed peer's). */
  readonly name: (ref: string) => string;
  /** The proposed groups and networks named (every one, or those of the needed families). */
  readonly groups: ReadonlyMap<string, SuggestedGroup>;
  readonly networks: ReadonlyMap<string, SuggestedNetwork>;
  /** With a cap: what it left out. */
  readonly leftOut?: LeftOut;
}

export function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The order of the answer: connections descending, then from, to and port as text. */
export function byTraffic(ca: number, cb: number, a: { readonly from: string; readonly to: string; readonly port: string | number }, b: typeof a): number {
  return cb - ca || cmp(a.from, b.from) || cmp(a.to, b.to) || cmp(String(a.port), String(b.port));
}

/** The rules of `a` kept under a cap of `top` rules (0: no cap; undefined: none asked), named. */
export function chooseRules(a: Aggregate, top: number | undefined): Chosen {
  const all = a.rules;
  if (top === undefined || top === 0 || all.length <= top) return named(a, all, undefined, top === undefined ? undefined : leftOut([]));
  if (all.some((r) => Number.isNaN(r.connections))) {
    // Counts that do not compare (not from a /flows answer): every name, the whole order, then the cut.
    const n = nameProposed(a.proposed, a.book, undefined);
    const order = [...all].sort((x, y) => byTraffic(x.connections, y.connections, named1(x, n), named1(y, n)));
    return named(a, order.slice(0, top), n, leftOut(order.slice(top)));
  }
  const counts = Float64Array.from(all, (r) => r.connections).sort();
  const cut = counts[counts.length - top]!;
  const above = all.filter((r) => r.connections > cut);
  const tie = all.filter((r) => r.connections === cut);
  const needed = new Set<number>();
  for (const r of [...above, ...tie]) for (const ref of [r.from, r.to]) if (proposedIndex(ref) !== undefined) needed.add(proposedIndex(ref)!);
  const n = nameProposed(a.proposed, a.book, needed);
  const tieOrder = tie.map((r) => ({ r, key: named1(r, n) })).sort((x, y) => byTraffic(0, 0, x.key, y.key));
  const kept = [...above, ...tieOrder.slice(0, top - above.length).map((x) => x.r)];
  const out = new Set(tieOrder.slice(top - above.length).map((x) => x.r));
  return named(a, kept, n, leftOut(all.filter((r) => r.connections < cut || out.has(r))));
}

/** `r`'s from, to and port with the proposed peers' names `n`. */
function named1(r: RuleTally, n: readonly (string | undefined)[]): { from: string; to: string; port: string | number } {
  const name = (ref: string) => n[proposedIndex(ref) ?? -1] ?? ref;
  return { from: name(r.from), to: name(r.to), port: r.port };
}

function leftOut(rules: readonly RuleTally[]): LeftOut {
  const out = { rules: rules.length, connections: 0, bytes: 0, flows: 0 };
  for (const r of rules) {
    out.connections += r.connections;
    out.bytes += r.bytes;
    out.flows += r.flows;
  }
  return out;
}

function named(a: Aggregate, rules: readonly RuleTally[], n: readonly (string | undefined)[] | undefined, out: LeftOut | undefined): Chosen {
  const names = n ?? nameProposed(a.proposed, a.book, undefined);
  const groups = new Map<string, SuggestedGroup>();
  const networks = new Map<string, SuggestedNetwork>();
  a.proposed.forEach((p, i) => {
    const name = names[i];
    if (name === undefined) return;
    if ('apps' in p) groups.set(name, { name, apps: p.apps });
    else networks.set(name, { name, cidrs: p.cidrs });
  });
  const name = (ref: string) => {
    const i = proposedIndex(ref);
    return i === undefined ? ref : names[i]!;
  };
  return { rules, name, groups, networks, ...(out ? { leftOut: out } : {}) };
}

/**
 * The names of the proposed peers, given in their order: every one (`needed` undefined), or
 * those of the families of the `needed` ones (the others undefined), which come out the same.
 */
export function nameProposed(proposed: readonly ProposedPeer[], book: NameBook, needed: ReadonlySet<number> | undefined): (string | undefined)[] {
  const bases = proposed.map((p) => nameBase(p.words));
  if (needed === undefined) return bases.map((b) => book.peerOfBase(b));
  const families = new Set([...needed].map((i) => nameFamily(bases[i]!)));
  return bases.map((b) => (families.has(nameFamily(b)) ? book.peerOfBase(b) : undefined));
}
