/**
 * Small type guards for untrusted JSON from Marathon. They only check types: strings are kept
 * exactly as they came (ids may contain any characters), never trimmed or "cleaned".
 */
import { previewJson } from '../json/json-preview.js';

export type JsonRecord = Record<string, unknown>;

export function isRecord(v: unknown): v is JsonRecord {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function isNonEmptyString(v: unknown): v is string {
  return typeof v === 'string' && v.length > 0;
}

/** A TCP/UDP port number a task can hold on its host: an integer 1..65535. */
export function isHostPort(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 65535;
}

/** A port number as it appears in a definition: 0 means "assign one at random". */
export function isPortOrZero(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 65535;
}

/**
 * A labels object: string keys to string values. `undefined`/`null` is an empty map.
 * Returns null when the value has the wrong type (the caller reports it).
 */
export function readLabels(v: unknown): Record<string, string> | null {
  if (v === undefined || v === null) return {};
  if (!isRecord(v)) return null;
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(v)) {
    if (typeof val !== 'string') return null;
    out[k] = val;
  }
  return out;
}

/** For messages: a JSON-escaped preview of an untrusted value, bounded in length; never throws. */
export function preview(v: unknown, max = 80): string {
  return previewJson(v, max);
}
