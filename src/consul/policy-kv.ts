/**
 * The policy in Consul KV (issue 12, "Shared data lives in Consul KV"): how `portcullis policy
 * push` writes a checked policy, and how controller replicas read and follow it.
 *
 * Layout under a prefix P (default `portcullis/policy`):
 *
 *   P/current                          {"format":1,"bundle":"<16 hex>","files":["10-base.yaml", ...],
 *                                       "pushedAt":"<ISO 8601>","pushedBy":"<host>"}
 *   P/bundles/<bundle>/<file>/<nnnn>   the file's text, in chunks of at most 256 KiB (Consul refuses
 *                                      a value over 512 KiB), nnnn = 0000, 0001, ...
 *
 * A bundle is content-addressed: its id is the first 16 hex of sha256 over every file's name and
 * text in name order (`bundleId`), and a reader checks it, so a bundle still being written, or
 * altered by hand, is never taken for a policy (the reader says which and keeps what it had).
 * A push writes the whole bundle first and then switches `current` with check-and-set on the
 * ModifyIndex it read before checking (0: the key must not exist yet). So two pushes at once
 * cannot both land: the second `cas` fails and its author is told that the policy changed since
 * it was read, with nothing of the losing push in force. After a switch, bundles other than the
 * current and the previous one are deleted (best effort: a failed delete only leaves garbage,
 * which the controllers' housekeeping collects), fenced as bundle-gc.ts says, so a push's prune
 * never deletes the bundle of another push that is about to land; so is a losing push's drop of
 * its own bundle (another push of the same content may be about to land on it).
 *
 * Names: a file name must be what a policy directory holds (`[A-Za-z0-9._-]`, ending in .yaml or
 * .yml, not hidden), so a key never gets a '/' or anything Consul would read differently. The
 * files' texts are passed on as `PolicyFileText`s whose path names the key
 * (`consul:P/<file>`), so a policy error points at what to fix.
 */
import { createHash } from 'node:crypto';
import type { PolicyFileText } from '../policy/parse-policy.js';
import { followBlocking, type Follower, type FollowOptions } from './blocking-follow.js';
import type { ConsulClient } from './consul-client.js';
import type { ConsulKvEntry } from './consul-payloads.js';
import { collectBundles } from './bundle-gc.js';
import { bundlePrefix, fileNameError, parsePointer, policyPointerKey, POINTER_FORMAT, type PolicyPointer } from './policy-layout.js';

export { fileNameError, policyPointerKey, type PolicyPointer } from './policy-layout.js';

export const DEFAULT_POLICY_PREFIX = 'portcullis/policy';
export const CHUNK_BYTES = 256 * 1024;
const PREFIX = /^[A-Za-z0-9_-]+(\/[A-Za-z0-9._-]+)*$/;

/** One policy file as it is kept in KV: its name in the policy directory and its text. */
export interface KvPolicyFile {
  readonly name: string;
  readonly text: string;
}

/** The policy in force in KV: the pointer, its ModifyIndex (for check-and-set) and the files. */
export interface KvPolicy {
  readonly pointer: PolicyPointer;
  readonly modifyIndex: number;
  readonly files: readonly PolicyFileText[];
}

/** A push lost a check-and-set race (or found the policy changed since it was read). */
export class PolicyPushConflict extends Error {}

/** Why `prefix` cannot be a policy prefix, or undefined. */
export function prefixError(prefix: string): string | undefined {
  return PREFIX.test(prefix) && prefix.length <= 200 ? undefined : `KV prefix ${JSON.stringify(prefix.slice(0, 100))} is not segments of [A-Za-z0-9._-] joined by '/' (no leading or trailing '/')`;
}

/** The content address of a set of files (name order). */
export function bundleId(files: readonly KvPolicyFile[]): string {
  const h = createHash('sha256');
  for (const f of [...files].sort(byName)) h.update(`${f.name}\0${Buffer.byteLength(f.text)}\0`).update(f.text);
  return h.digest('hex').slice(0, 16);
}

function byName(a: KvPolicyFile, b: KvPolicyFile): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

const pointerKey = policyPointerKey;

/** The chunks of one text, each at most CHUNK_BYTES bytes, never splitting a character. */
export function chunks(text: string): string[] {
  const out: string[] = [];
  const bytes = Buffer.from(text, 'utf8');
  let at = 0;
  while (at < bytes.length) {
    let end = Math.min(at + CHUNK_BYTES, bytes.length);
    while (end < bytes.length && (bytes[end]! & 0xc0) === 0x80) end--; // not inside a UTF-8 sequence
    out.push(bytes.subarray(at, end).toString('utf8'));
    at = end;
  }
  return out.length === 0 ? [''] : out;
}

/** The files of a bundle from its KV entries, checked against the pointer and the bundle id. */
export function assembleBundle(prefix: string, pointer: PolicyPointer, entries: readonly ConsulKvEntry[]): KvPolicyFile[] | string {
  const base = bundlePrefix(prefix, pointer.bundle);
  const parts = new Map<string, Map<number, string>>();
  for (const e of entries) {
    if (!e.key.startsWith(base)) continue;
    const m = /^([^/]+)\/(\d{4})$/.exec(e.key.slice(base.length));
    if (!m) return `unexpected key ${JSON.stringify(e.key.slice(0, 200))} in bundle ${pointer.bundle}`;
    const byIndex = parts.get(m[1]!) ?? new Map<number, string>();
    byIndex.set(Number(m[2]), e.value.toString('utf8'));
    parts.set(m[1]!, byIndex);
  }
  const files: KvPolicyFile[] = [];
  for (const name of pointer.files) {
    const byIndex = parts.get(name);
    if (!byIndex) return `bundle ${pointer.bundle} has no file ${name} (still being written, or deleted)`;
    const text: string[] = [];
    for (let i = 0; i < byIndex.size; i++) {
      const chunk = byIndex.get(i);
      if (chunk === undefined) return `bundle ${pointer.bundle}: ${name} misses chunk ${i}`;
      text.push(chunk);
    }
    files.push({ name, text: text.join('') });
  }
  if (parts.size !== pointer.files.length) return `bundle ${pointer.bundle} holds files the pointer does not name`;
  const id = bundleId(files);
  return id === pointer.bundle ? files : `bundle ${pointer.bundle} does not match its content (${id}): altered or half written`;
}

function asPolicyFiles(prefix: string, files: readonly KvPolicyFile[]): PolicyFileText[] {
  return [...files].sort(byName).map((f) => ({ path: `consul:${prefix}/${f.name}`, text: f.text }));
}

/** The policy in force under `prefix`, undefined when none was pushed; throws on an unreadable one. */
export async function readKvPolicy(client: ConsulClient, prefix: string, signal?: AbortSignal): Promise<KvPolicy | undefined> {
  const got = await client.kvGet(pointerKey(prefix), signal ? { signal } : {});
  if (!got.value) return undefined;
  return loadPointed(client, prefix, got.value);
}

async function loadPointed(client: ConsulClient, prefix: string, entry: ConsulKvEntry, signal?: AbortSignal): Promise<KvPolicy> {
  const pointer = parsePointer(entry.value);
  if (typeof pointer === 'string') throw new Error(`${pointerKey(prefix)}: ${pointer}`);
  const listed = await client.kvList(bundlePrefix(prefix, pointer.bundle), signal ? { signal } : {});
  const files = assembleBundle(prefix, pointer, listed.value);
  if (typeof files === 'string') throw new Error(files);
  return { pointer, modifyIndex: entry.modifyIndex, files: asPolicyFiles(prefix, files) };
}

export interface PushOptions {
  /** The ModifyIndex of `current` the pusher checked against (from readKvPolicy; 0 = none yet). */
  readonly expectIndex: number;
  readonly pushedBy: string;
  readonly now?: () => Date;
}

/**
 * Writes `files` as a bundle and makes it current, check-and-set on `expectIndex`. Throws
 * PolicyPushConflict when `current` changed since (nothing of this push is in force then).
 * The caller has checked the policy: this only stores it.
 */
export async function pushKvPolicy(client: ConsulClient, prefix: string, files: readonly KvPolicyFile[], o: PushOptions): Promise<PolicyPointer> {
  const bad = prefixError(prefix) ?? files.map((f) => fileNameError(f.name)).find((e) => e !== undefined);
  if (bad !== undefined) throw new Error(bad);
  if (files.length === 0) throw new Error('no policy files to push');
  if (new Set(files.map((f) => f.name)).size !== files.length) throw new Error('two policy files with one name');
  const bundle = bundleId(files);
  for (const f of files) {
    const parts = chunks(f.text);
    for (let i = 0; i < parts.length; i++) {
      await client.kvPut(`${bundlePrefix(prefix, bundle)}${f.name}/${String(i).padStart(4, '0')}`, parts[i]!);
    }
  }
  const pointer: PolicyPointer = { bundle, files: files.map((f) => f.name).sort(), pushedAt: (o.now ?? (() => new Date()))().toISOString(), pushedBy: o.pushedBy };
  const before = await client.kvGet(pointerKey(prefix));
  const previous = before.value ? parsePointer(before.value.value) : undefined;
  const switched = await client.kvPut(pointerKey(prefix), JSON.stringify({ format: POINTER_FORMAT, ...pointer }), { cas: o.expectIndex });
  if (!switched) {
    await dropUnlessCurrent(client, prefix, bundle);
    throw new PolicyPushConflict(
      `the policy in Consul (${pointerKey(prefix)}) changed since it was read (index ${o.expectIndex}): another push landed first, and this one is not in force; read the new policy, merge, check and push again`,
    );
  }
  await pruneBundles(client, prefix, new Set([bundle, typeof previous === 'object' ? previous.bundle : bundle]));
  return pointer;
}

/**
 * After a lost race: the bundle written for nothing goes, fenced as any (bundle-gc.ts): not when it
 * is the one in force, nor when a key was written after the pointer's last switch. A push of the
 * same content (same bundle id) that read the new pointer may be writing it and about to land, and
 * a bare recursive delete would leave its pointer naming a bundle that is gone. A bundle kept
 * young here is collected by the next push's prune or by the housekeeping.
 */
async function dropUnlessCurrent(client: ConsulClient, prefix: string, bundle: string): Promise<void> {
  try {
    await collectBundles(client, prefix, { keepNewest: 0, only: bundle });
  } catch {
    // Best effort, as pruneBundles.
  }
}

/** Fenced (bundle-gc.ts): never a bundle a concurrent push wrote after this switch, nor one it rewrote. */
async function pruneBundles(client: ConsulClient, prefix: string, keep: ReadonlySet<string>): Promise<void> {
  try {
    await collectBundles(client, prefix, { keepNewest: 0, keepAlso: keep });
  } catch {
    // Best effort: an old bundle left behind is garbage, never in force.
  }
}

export interface PolicyFollowOptions extends Omit<FollowOptions<KvPolicy | undefined>, 'read' | 'fingerprint' | 'onChange'> {
  /** A new policy in force (or none any more: undefined). */
  readonly onPolicy: (policy: KvPolicy | undefined) => void;
}

/**
 * Follows `P/current` with blocking queries (blocking-follow.ts: the index going backwards
 * resets it, failures back off) and delivers each new policy once its bundle is read and checked.
 * A pointer whose bundle does not check is a failed read: retried with backoff, nothing delivered,
 * so the caller keeps the policy it has.
 */
export function followKvPolicy(client: ConsulClient, prefix: string, o: PolicyFollowOptions): Follower {
  return followBlocking<KvPolicy | undefined>({
    ...o,
    // The index too: the same bundle pushed again is named at a new ModifyIndex, its input stamp.
    fingerprint: (p) => (p ? `${p.pointer.bundle}@${p.modifyIndex}` : 'none'),
    // After a restore the same policy is named by a lower ModifyIndex: its input stamp changes.
    redeliverAfterReset: true,
    read: async (b) => {
      const got = await client.kvGet(pointerKey(prefix), b);
      return { index: got.index, skipped: got.skipped, value: got.value ? await loadPointed(client, prefix, got.value, b.signal) : undefined };
    },
    onChange: (value) => o.onPolicy(value),
  });
}
