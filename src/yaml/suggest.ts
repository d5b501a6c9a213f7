/**
 * "Did you mean" helpers for error messages: the nearest known word by edit distance.
 * Cost: a suggestion is only ever within `limit` edits (a third of the word), so candidates whose
 * length differs by more are skipped and a distance stops as soon as it must exceed the limit;
 * a policy with tens of thousands of names still suggests in milliseconds per word.
 */

/** Optimal string alignment distance: insertions, deletions, substitutions and adjacent swaps. */
export function editDistance(a: string, b: string, cap = Infinity): number {
  return boundedDistance(a, b, cap);
}

/**
 * editDistance(a, b) when it is at most `max`, else some number above `max`: stops as soon as a
 * whole row exceeds `max`, and keeps three rows, not the whole table.
 */
function boundedDistance(a: string, b: string, max: number): number {
  if (Math.abs(a.length - b.length) > max) return max + 1;
  let before = new Array<number>(b.length + 1).fill(0);
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  let row = new Array<number>(b.length + 1).fill(0);
  for (let i = 1; i <= a.length; i++) {
    row[0] = i;
    let rowMin = i;
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, before[j - 2]! + 1);
      row[j] = d;
      if (d < rowMin) rowMin = d;
    }
    if (rowMin > max) return max + 1;
    [before, prev, row] = [prev, row, before];
  }
  return prev[b.length]!;
}

/** Words longer than this get no suggestion (names are at most 63 characters). */
const MAX_SUGGESTED_WORD = 100;

/** The closest candidate when it is close enough to be a plausible typo, else undefined. */
export function nearest(word: string, candidates: Iterable<string>): string | undefined {
  if (word.length > MAX_SUGGESTED_WORD) return undefined;
  const limit = Math.max(1, Math.floor(word.length / 3));
  const w = word.toLowerCase();
  let best: string | undefined;
  let bestDistance = limit + 1;
  for (const c of candidates) {
    if (Math.abs(c.length - w.length) > limit) continue; // cheap: the distance is at least that
    const d = boundedDistance(w, c.toLowerCase(), Math.min(limit, bestDistance));
    if (d < bestDistance || (d === bestDistance && d <= limit && best !== undefined && c < best)) {
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
