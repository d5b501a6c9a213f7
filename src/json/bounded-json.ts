/**
 * Untrusted JSON text → a value, bounded in size and nesting depth BEFORE anything walks it.
 *
 * Every JSON payload that comes from outside the controller — Marathon answers and event-stream
 * data today; the Mesos agent API and Consul clients when they are written — goes through
 * `parseBoundedJson`, never through a bare `JSON.parse`. Why: `JSON.parse` itself copes with
 * deep input, but everything after it that recurses (JSON.stringify, String(array), pino's
 * serialisers, a recursive walker) dies with `RangeError: Maximum call stack size exceeded` on
 * `[[[[...]]]]` 100,000 levels deep, and a huge answer can exhaust the heap. So:
 *  - the text is rejected when longer than `maxBytes` (UTF-8 bytes);
 *  - a linear scan of the text (no recursion, O(length), strings and escapes skipped) rejects it
 *    when `[`/`{` nest deeper than `maxDepth`, and stops at the first level too deep;
 *  - only then `JSON.parse` runs (its own syntax errors come back as errors, never thrown).
 * A value that passed is at most `maxDepth` deep, so code walking it recursively is safe.
 * The result is a value or a one-line error naming the limit; this function never throws.
 *
 * Defaults: 64 MiB and depth 64. Marathon's deepest documented payloads (apps with embedded
 * tasks, deployment plans holding groups) stay under depth 20; 64 MiB holds tens of thousands
 * of apps with their tasks. Readers of a stream should also stop reading past `maxBytes`
 * (http-client.ts does, and bounds SSE event data the same way).
 */

export interface JsonLimits {
  /** Largest accepted text, in UTF-8 bytes. */
  readonly maxBytes: number;
  /** Deepest accepted nesting of arrays and objects (`[]` is depth 1, `{"a":[1]}` depth 2). */
  readonly maxDepth: number;
}

export const DEFAULT_JSON_LIMITS: JsonLimits = { maxBytes: 64 * 1024 * 1024, maxDepth: 64 };

export type BoundedJson = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly error: string };

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;

export function parseBoundedJson(text: string, limits: Partial<JsonLimits> = {}): BoundedJson {
  const maxBytes = limits.maxBytes ?? DEFAULT_JSON_LIMITS.maxBytes;
  const maxDepth = limits.maxDepth ?? DEFAULT_JSON_LIMITS.maxDepth;
  // A UTF-16 code unit is 1-3 UTF-8 bytes: count exactly only when the cheap bounds disagree.
  if (text.length > maxBytes || (text.length * 3 > maxBytes && Buffer.byteLength(text, 'utf8') > maxBytes)) {
    return { ok: false, error: `JSON larger than the limit of ${maxBytes} bytes` };
  }
  const deep = depthViolation(text, maxDepth);
  if (deep !== null) return { ok: false, error: `JSON nested deeper than the limit of ${maxDepth} levels (at character ${deep})` };
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch (e) {
    return { ok: false, error: `invalid JSON (${e instanceof Error ? e.message : 'unparseable'})` };
  }
}

/**
 * The index where nesting first exceeds `maxDepth`, or null. Brackets inside strings do not
 * count. Unbalanced or otherwise invalid text is left to JSON.parse to reject.
 */
export function depthViolation(text: string, maxDepth: number): number | null {
  let depth = 0;
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      // Skip the string: to the next quote not escaped by a backslash.
      for (i++; i < n; i++) {
        const s = text.charCodeAt(i);
        if (s === BACKSLASH) i++;
        else if (s === QUOTE) break;
      }
    } else if (c === OPEN_ARRAY || c === OPEN_OBJECT) {
      if (++depth > maxDepth) return i;
    } else if (c === CLOSE_ARRAY || c === CLOSE_OBJECT) {
      depth--;
    }
  }
  return null;
}
