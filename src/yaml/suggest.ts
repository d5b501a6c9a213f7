/**
 * "Did you mean" helpers for error messages: the nearest known word by edit distance.
 * Cost: a suggestion is only ever within `limit` edits (a third of the word), so candidates whose
 * length differs by more are skipped and a distance stops as soon as it must exceed the limit;
 * a policy with tens of thousands of names still suggests in milliseconds per word.
 */

/** Optimal string alignment distance: insertions, deletions, substitutions and adjacent swaps. */
export function editDistance(a: string, b: string, cap = Infinity): number {
  const rows: number[][] = [];
  for (let i = 0; i <= a.length; i++) {
    const row: number[] = [];
    for (let j = 0; j <= b.length; j++) {
      if (i === 0 || j === 0) {
        row.push(i + j);
        continue;
      }
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(rows[i - 1]![j]! + 1, row[j - 1]! + 1, rows[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, rows[i - 2]![j - 2]! + 1);
      row.push(d);
    }
    rows.push(row);
    // Every later cell is at least the smallest of this row (or the one before, for a swap).
    if (i > 1 && Math.min(...row) > cap && Math.min(...rows[i - 1]!) > cap) return cap + 1;
  }
  return rows[a.length]![b.length]!;
}
/** The closest candidate when it is close enough to be a plausible typo, else undefined. */
export function nearest(word: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  const limit = Math.max(1, Math.floor(word.length / 3));
  const lower = word.toLowerCase();
  for (const c of candidates) {
    const other = c.toLowerCase();
    if (Math.abs(other.length - lower.length) > limit) continue; // at least that many edits
    const d = editDistance(lower, other, Math.min(limit, bestDistance));
    if (d < bestDistance || (d === bestDistance && best !== undefined && c < best)) {
      best = c;
      bestDistance = d;
    }
  }
  return best !== undefined && bestDistance <= limit ? best : undefined;
}

/** ` (did you mean 'x'?)` or the empty string. */
export function didYouMean(word: string, candidates: Iterable<string>): string {
  const n = nearest(word, candidates);
  return n === undefined ? '' : ` (did you mean '${n}'?)`;
}
