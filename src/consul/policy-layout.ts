/**
 * Where the policy lives under a KV prefix P (the layout is described in policy-kv.ts): the
 * pointer key, the bundles' prefix, the form of a bundle id and of a file name, and the one
 * reading of the pointer (untrusted KV text). Shared by the push and follow (policy-kv.ts) and
 * the bundle garbage collection (bundle-gc.ts), so the collection protects exactly the bundle the
 * readers take as current.
 */
import { parseBoundedJson } from '../json/bounded-json.js';


/** A bundle id: the first 16 hex of its content hash. */
export const BUNDLE_ID = /^[0-9a-f]{16}$/;

/** The key that names the policy in force. */
export const policyPointerKey = (prefix: string): string => `${prefix}/current`;

/** Where every bundle's keys are, and one bundle's. */
export const bundlesPrefix = (prefix: string): string => `${prefix}/bundles/`;
export const bundlePrefix = (prefix: string, bundle: string): string => `${bundlesPrefix(prefix)}${bundle}/`;

/** The format `P/current` is written in. */
export const POINTER_FORMAT = 1;
const FILE_NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}\.ya?ml$/;

/** What `P/current` says. */
export interface PolicyPointer {
  readonly bundle: string;
  readonly files: readonly string[];
  readonly pushedAt: string;
  readonly pushedBy: string;
}

/** Why `name` cannot be a policy file's name in KV, or undefined. */
export function fileNameError(name: string): string | undefined {
  return FILE_NAME.test(name) ? undefined : `policy file name ${JSON.stringify(name.slice(0, 100))} is not a visible name of [A-Za-z0-9._-] ending in .yaml or .yml`;
}

/** The pointer in `value`, or why it is not one. */
export function parsePointer(value: Buffer): PolicyPointer | string {
  const parsed = parseBoundedJson(value.toString('utf8'), { maxBytes: 1024 * 1024, maxDepth: 4 });
  if (!parsed.ok) return `not JSON: ${parsed.error}`;
  const p = parsed.value as Record<string, unknown> | null;
  if (typeof p !== 'object' || p === null || p.format !== POINTER_FORMAT) return `not a format ${POINTER_FORMAT} pointer`;
  if (typeof p.bundle !== 'string' || !BUNDLE_ID.test(p.bundle)) return 'bundle is not 16 hex digits';
  if (!Array.isArray(p.files) || p.files.length === 0 || !p.files.every((f) => typeof f === 'string' && fileNameError(f) === undefined)) return 'files is not a list of policy file names';
  return { bundle: p.bundle, files: p.files as string[], pushedAt: typeof p.pushedAt === 'string' ? p.pushedAt : '', pushedBy: typeof p.pushedBy === 'string' ? p.pushedBy : '' };
}
