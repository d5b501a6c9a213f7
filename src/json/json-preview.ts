/**
 * A short, JSON-escaped preview of an untrusted value, for log lines and error messages.
 *
 * Contract: never throws, whatever the value (100,000 levels deep, a million keys, a 60 MB
 * string, a cycle, a Proxy whose traps throw); work and output are bounded by `max`, not by the
 * size of the value. The walk is iterative (an explicit stack) and stops as soon as `max`
 * characters were produced, so `JSON.stringify` and `String()` — both recursive, both able to
 * throw RangeError — are never called on a container. Strings are JSON-escaped (quotes, control
 * characters and newlines become `\"`, `\u0007`, `\n`), so a preview cannot break a log line.
 * Output is the compact JSON text of the value when it fits, else its first `max` characters
 * and `…`.
 */

type Frame = { readonly items: readonly unknown[]; i: number } | { readonly obj: Record<string, unknown>; readonly keys: readonly string[]; i: number };

export function previewJson(v: unknown, max = 80): string {
  let s: string;
  try {
    s = render(v, max + 1);
  } catch {
    return '<unprintable value>';
  }
  if (s.length <= max) return s;
  // Do not cut a surrogate pair in half (a lone surrogate is not valid UTF-8 in a log line).
  const code = s.charCodeAt(max - 1);
  const end = code >= 0xd800 && code <= 0xdbff ? max - 1 : max;
  return `${s.slice(0, end)}…`;
}

/** Compact JSON-ish text of `root`, cut off once it reaches `limit` characters. */
function render(root: unknown, limit: number): string {
  let out = '';
  const stack: Frame[] = [];
  let pending: { value: unknown } | null = { value: root };
  while (out.length < limit) {
    if (pending !== null) {
      const value = pending.value;
      pending = null;
      if (Array.isArray(value)) {
        out += '[';
        stack.push({ items: value, i: 0 });
      } else if (typeof value === 'object' && value !== null) {
        out += '{';
        stack.push({ obj: value as Record<string, unknown>, keys: Object.keys(value), i: 0 });
      } else {
        out += scalar(value, limit - out.length);
      }
      continue;
    }
    const top = stack[stack.length - 1];
    if (top === undefined) break;
    if ('items' in top) {
      if (top.i >= top.items.length) {
        out += ']';
        stack.pop();
        continue;
      }
      if (top.i > 0) out += ',';
      pending = { value: top.items[top.i++] };
    } else {
      if (top.i >= top.keys.length) {
        out += '}';
        stack.pop();
        continue;
      }
      const key = top.keys[top.i++] as string;
      out += `${top.i > 1 ? ',' : ''}${scalar(key, limit - out.length)}:`;
      pending = { value: top.obj[key] };
    }
  }
  return out;
}

function scalar(v: unknown, room: number): string {
  switch (typeof v) {
    case 'string':
      // Only the part that can show is escaped: a huge string costs no more than a short one.
      return JSON.stringify(v.length > room ? v.slice(0, Math.max(room, 0)) : v);
    case 'number':
    case 'boolean':
      return String(v);
    case 'bigint':
      return `${v.toString()}n`;
    case 'undefined':
      return 'undefined';
    case 'symbol':
      return '<symbol>';
    case 'function':
      return '<function>';
    default:
      return 'null';
  }
}
