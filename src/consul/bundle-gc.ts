/**
 * Garbage collection of policy bundles under P/bundles/ (issue 12 item 5; layout in policy-kv.ts),
 * fenced so that it can never delete the bundle in force nor one a push is about to point to,
 * whoever runs it and however many run at once (a lock only makes it happen once; safety does
 * not rest on the lock, which is advisory and time-bounded in Consul).
 *
 * The rule, from how a push works (policy-kv.ts pushKvPolicy: read the ModifyIndex I of
 * P/current, write every key of the bundle, then switch P/current with `cas=I`):
 *  - a push whose switch can still succeed wrote its bundle AFTER reading I, the ModifyIndex that
 *    P/current has now, so each of its keys has a ModifyIndex above it. A bundle with any key at
 *    or above the pointer's ModifyIndex is therefore never touched ("young": maybe being pushed);
 *  - the bundle P/current names is never touched, nor those in `keepAlso`, nor the `keepNewest`
 *    newest of the other old bundles (by their newest key), so a rollback to a recent policy finds it;
 *  - every key is deleted with `cas=<its ModifyIndex>`: a push of the same content that rewrites
 *    the bundle meanwhile (content-addressed: same id) keeps every key it wrote;
 *  - P/current is read again before each bundle; if it moved, the round ends (the next one
 *    judges again), and `stillAllowed()` (the caller's lock) is asked before each bundle.
 * No pointer (nothing pushed yet), or one the readers refuse: nothing is judged, nothing deleted.
 */
import type { ConsulClient } from './consul-client.js';
import type { ConsulKvEntry } from './consul-payloads.js';
import { BUNDLE_ID, bundlePrefix, bundlesPrefix, parsePointer, policyPointerKey } from './policy-layout.js';

export interface CollectOptions {
  /** Old bundles kept besides the current one, newest first. */
  readonly keepNewest: number;
  /** Bundle ids never deleted (a push keeps the one it replaced). */
  readonly keepAlso?: ReadonlySet<string>;
  /** Judge this bundle only (a push that lost its race drops its own, under the same fence). */
  readonly only?: string;
  /** Asked before each bundle is deleted; false ends the round (the lock was lost). Default: always. */
  readonly stillAllowed?: () => boolean | Promise<boolean>;
}

export interface CollectResult {
  /** Bundles whose keys were deleted (every key, or what the cas let go). */
  readonly deleted: readonly string[];
  /** Bundles kept: the current one, the young ones, `keepAlso` and the newest old ones. */
  readonly kept: number;
  /** Why the round ended early, if it did. */
  readonly stopped?: string;
}

interface Bundle {
  readonly id: string;
  readonly keys: ConsulKvEntry[];
  newest: number;
}

/** One round of the rule above. Throws on a Consul error (nothing is deleted after it). */
export async function collectBundles(client: ConsulClient, prefix: string, o: CollectOptions): Promise<CollectResult> {
  const pointer = await readPointer(client, prefix);
  if (pointer === undefined) return { deleted: [], kept: 0, stopped: 'no policy pushed yet, or a pointer the readers refuse' };
  const base = bundlesPrefix(prefix);
  const bundles = new Map<string, Bundle>();
  for (const e of (await client.kvList(o.only === undefined ? base : bundlePrefix(prefix, o.only))).value) {
    const id = e.key.slice(base.length).split('/')[0] ?? '';
    if (!BUNDLE_ID.test(id) || (o.only !== undefined && id !== o.only)) continue;
    const b = bundles.get(id) ?? { id, keys: [], newest: 0 };
    b.keys.push(e);
    b.newest = Math.max(b.newest, e.modifyIndex);
    bundles.set(id, b);
  }
  const old = [...bundles.values()]
    .filter((b) => b.id !== pointer.bundle && !o.keepAlso?.has(b.id) && b.newest < pointer.modifyIndex)
    .sort((a, b) => b.newest - a.newest)
    .slice(Math.max(0, o.keepNewest));
  const deleted: string[] = [];
  for (const b of old) {
    if (o.stillAllowed && !(await o.stillAllowed())) return { deleted, kept: bundles.size - deleted.length, stopped: 'no longer allowed (the lock was lost)' };
    const now = await readPointer(client, prefix);
    if (now?.modifyIndex !== pointer.modifyIndex) return { deleted, kept: bundles.size - deleted.length, stopped: 'the policy changed during the round' };
    for (const key of b.keys) await client.kvDelete(key.key, { cas: key.modifyIndex });
    deleted.push(b.id);
  }
  return { deleted, kept: bundles.size - deleted.length };
}

async function readPointer(client: ConsulClient, prefix: string): Promise<{ bundle: string; modifyIndex: number } | undefined> {
  const got = (await client.kvGet(policyPointerKey(prefix))).value;
  if (!got) return undefined;
  // Read as the readers read it (policy-layout.ts), so the bundle protected is the one they take as
  // current; a pointer they refuse (altered by hand, another format) protects nothing by name: no round.
  const p = parsePointer(got.value);
  return typeof p === 'object' ? { bundle: p.bundle, modifyIndex: got.modifyIndex } : undefined;
}
