/**
 * Where the policy lives under a KV prefix P (the layout is described in policy-kv.ts): the
 * pointer key, the bundles' prefix and the form of a bundle id. Shared by the push and follow
 * (policy-kv.ts) and the bundle garbage collection (bundle-gc.ts).
 */

/** A bundle id: the first 16 hex of its content hash. */
export const BUNDLE_ID = /^[0-9a-f]{16}$/;

/** The key that names the policy in force. */
export const policyPointerKey = (prefix: string): string => `${prefix}/current`;

/** Where every bundle's keys are, and one bundle's. */
export const bundlesPrefix = (prefix: string): string => `${prefix}/bundles/`;
export const bundlePrefix = (prefix: string, bundle: string): string => `${bundlesPrefix(prefix)}${bundle}/`;
