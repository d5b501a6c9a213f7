/**
 * Member lists as the compiler makes them: sorted (plain string order), free of duplicates, and
 * never mutated after they are built.
 *
 * `patchMemberList` is how the incremental compiler changes a host's list without re-emitting
 * it: a copy with some members removed and some inserted, each placed by binary search (or, for
 * many edits, one merge with the sorted edits). Its contract: every removed member is in the
 * list, no added member is (after the removals); a violation is a compiler bug and throws rather
 * than producing a wrong list. (The state version does not read the lists of a patched host:
 * state-version.ts updates it from the claims that changed.)
 */

/** Index of `m` in sorted `list`, or -(insertion point) - 1. */
function search(list: readonly string[], m: string): number {
  let lo = 0;
  let hi = list.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const v = list[mid]!;
    if (v < m) lo = mid + 1;
    else if (v > m) hi = mid - 1;
    else return mid;
  }
  return -lo - 1;
}

/** Few edits are placed by binary search; more are merged in one pass. */
const SPLICE_MAX = 16;

function byString(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * The merge variant of patchMemberList, for many edits: one pass into an array of the final
 * length (an indexed fill is several times cheaper than pushes).
 */
function mergeMemberList(list: readonly string[], removes: readonly string[], adds: readonly string[]): string[] {
  const rs = removes.slice().sort(byString);
  const as = adds.slice().sort(byString);
  const size = list.length - rs.length + as.length;
  const out = new Array<string>(Math.max(0, size));
  let w = 0;
  let r = 0;
  let a = 0;
  for (const m of list) {
    while (a < as.length && as[a]! < m) out[w++] = as[a++]!;
    if (a < as.length && as[a] === m) throw new Error(`member list patch: '${m}' is already in the list`);
    if (r < rs.length && rs[r] === m) r++;
    else out[w++] = m;
  }
  while (a < as.length) out[w++] = as[a++]!;
  if (r < rs.length) throw new Error(`member list patch: '${rs[r]}' is not in the list`);
  for (let i = 1; i < w; i++) if (out[i - 1] === out[i]) throw new Error(`member list patch: '${out[i]}' added twice`);
  return out;
}

type ToSpliced = (this: readonly string[], start: number, deleteCount: number, ...items: string[]) => string[];
/** Array.prototype.toSpliced (ES2023, in Node 20; the project's lib is ES2022): one native copy with one edit. */
const toSpliced = (Array.prototype as unknown as { readonly toSpliced: ToSpliced }).toSpliced;

/**
 * A new list: `list` without `removes`, with `adds` (see the header). The edits are placed by
 * binary search in the old list and grouped by place (an old index: the adds before it, and
 * whether the old element there goes). One place is one native copy-with-splice; more are one
 * indexed fill of an array of the final length. A patched host costs O(edits) searches and one
 * copy of its list.
 */
export function patchMemberList(list: readonly string[], removes: readonly string[], adds: readonly string[]): string[] {
  if (removes.length + adds.length > SPLICE_MAX) return mergeMemberList(list, removes, adds);
  // Edits as [old index, member or undefined for a removal]; an add goes before old element
  // `index`; at one index the adds (in order) come before the removal.
  const edits: [number, string | undefined][] = [];
  for (const m of removes) {
    const i = search(list, m);
    if (i < 0) throw new Error(`member list patch: '${m}' is not in the list`);
    edits.push([i, undefined]);
  }
  for (const m of adds) {
    const i = search(list, m);
    if (i >= 0) throw new Error(`member list patch: '${m}' is already in the list`);
    edits.push([-i - 1, m]);
  }
  edits.sort((x, y) => x[0] - y[0] || (x[1] === undefined ? 1 : y[1] === undefined ? -1 : byString(x[1], y[1])));
  const places: { index: number; adds: string[]; remove: boolean }[] = [];
  for (const [index, m] of edits) {
    let place = places[places.length - 1];
    if (!place || place.index !== index) places.push((place = { index, adds: [], remove: false }));
    if (m === undefined) {
      if (place.remove) throw new Error('member list patch: one member removed twice');
      place.remove = true;
    } else {
      if (place.adds[place.adds.length - 1] === m) throw new Error(`member list patch: '${m}' added twice`);
      place.adds.push(m);
    }
  }
  if (places.length === 0) return list.slice();
  if (places.length === 1) return toSpliced.call(list, places[0]!.index, places[0]!.remove ? 1 : 0, ...places[0]!.adds);
  const out = new Array<string>(list.length - removes.length + adds.length);
  let w = 0;
  let r = 0;
  for (const place of places) {
    while (r < place.index) out[w++] = list[r++]!;
    for (const m of place.adds) out[w++] = m;
    if (place.remove) r++;
  }
  while (r < list.length) out[w++] = list[r++]!;
  return out;
}
