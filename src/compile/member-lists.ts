/**
 * Member lists as the compiler makes them: sorted (plain string order), free of duplicates, and
 * never mutated after they are built.
 *
 * `patchMemberList` is how the incremental compiler changes a host's list without re-emitting
 * it: a copy with some members removed and some inserted, each placed by binary search (or, for
 * many edits, one merge with the sorted edits). Its contract: every removed member is in the
 * list, no added member is (after the removals); a violation is a compiler bug and throws rather
 * than producing a wrong list. A list travels with its text (`MemberList`: every member followed
 * by '\n', what the state version hashes), and the patch derives the new text from the old one by
 * splicing, so re-hashing a patched host does not re-join it. The caller keeps the pair (the
 * incremental compiler keeps the texts of the lists it patched, per host).
 */

/** A sorted, duplicate-free member list and its text (see memberListText). */
export interface MemberList {
  readonly members: readonly string[];
  readonly text: string;
}

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

/** Every member followed by '\n'. */
export function memberListText(list: readonly string[]): string {
  return list.length === 0 ? '' : `${list.join('\n')}\n`;
}

/** A list with its text computed. */
export function memberList(members: readonly string[]): MemberList {
  return { members, text: memberListText(members) };
}

/** Few edits are spliced in place (text included); more are merged in one pass. */
const SPLICE_MAX = 16;

function byString(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The merge variant of patchMemberList, for many edits. */
function mergeMemberList(list: readonly string[], removes: readonly string[], adds: readonly string[]): MemberList {
  const rs = removes.slice().sort(byString);
  const as = adds.slice().sort(byString);
  const out: string[] = [];
  let r = 0;
  let a = 0;
  for (const m of list) {
    while (a < as.length && as[a]! < m) out.push(as[a++]!);
    if (a < as.length && as[a] === m) throw new Error(`member list patch: '${m}' is already in the list`);
    if (r < rs.length && rs[r] === m) r++;
    else out.push(m);
  }
  while (a < as.length) out.push(as[a++]!);
  if (r < rs.length) throw new Error(`member list patch: '${rs[r]}' is not in the list`);
  for (let i = 1; i < out.length; i++) if (out[i - 1] === out[i]) throw new Error(`member list patch: '${out[i]}' added twice`);
  return memberList(out);
}

/**
 * A new list: `from` without `removes`, with `adds` (see the header). The edits are placed by
 * binary search in the old list, then the new list and its text are assembled in one pass from
 * the unchanged runs between them (text runs are slices of the old text).
 */
export function patchMemberList(from: MemberList, removes: readonly string[], adds: readonly string[]): MemberList {
  const list = from.members;
  if (removes.length + adds.length > SPLICE_MAX) return mergeMemberList(list, removes, adds);
  // Edits as [old index, member or undefined for a removal]; an add goes before old element `index`.
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
  const text = from.text;
  const out: string[] = [];
  let newText = '';
  let at = 0; // old index copied up to
  let off = 0; // text offset of old element `at`
  let runStart = 0; // text offset where the current unchanged run starts
  for (const [index, m] of edits) {
    for (; at < index; at++) {
      out.push(list[at]!);
      off += list[at]!.length + 1;
    }
    newText += text.slice(runStart, off);
    if (m === undefined) {
      if (at !== index) throw new Error('member list patch: one member removed twice');
      off += list[at]!.length + 1;
      at++;
    } else {
      if (out.length > 0 && out[out.length - 1] === m) throw new Error(`member list patch: '${m}' added twice`);
      out.push(m);
      newText += `${m}\n`;
    }
    runStart = off;
  }
  for (; at < list.length; at++) out.push(list[at]!);
  newText += text.slice(runStart);
  return { members: out, text: newText };
}
