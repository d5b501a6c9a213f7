/**
 * Hot reload of the policy file or directory.
 *
 * Contract: `start()` loads once and then reloads on every filesystem change (fs.watch, debounced)
 * and on a slow timer (editors that replace files, network filesystems where inotify is blind);
 * the watching is src/sources/file-reload.ts, shared with the inventory file.
 * Every load ends in exactly one of:
 * - the files are as at the previous load (good or broken): nothing happens;
 * - they fail to read or parse: `onError` with every diagnostic; the last good policy stays in
 *   force (`onPolicy` is only ever called with valid policies);
 * - they hold exactly the content of the policy in force (a broken edit reverted): `onRestored`,
 *   so the caller can report the files valid again; there is nothing to recompile;
 * - they hold a new valid policy: `onPolicy`; the content counts as the policy in force only once
 *   `onPolicy` accepts it (it may refuse, e.g. a compile over a limit: then a later revert to the
 *   previous content is a restore, and the refused content again is not).
 * A load never throws and never stops later loads: an unexpected exception (of the parser or of
 * `onPolicy`) is reported through `onError` as a diagnostic at the policy path, 1:1.
 */
import { createHash } from 'node:crypto';
import type { Policy } from '../policy/policy-model.js';
import type { Diagnostic } from '../diagnostic.js';
import { FileReload } from './file-reload.js';
import { readPolicyFiles } from './policy-files.js';
import { parsePolicy, type ParseResult, type PolicyFileText } from '../policy/parse-policy.js';

export interface PolicyWatcherOptions {
  readonly path: string;
  /** A new valid policy; resolves false when the caller refused it (it reports why itself). */
  readonly onPolicy: (policy: Policy, warnings: readonly Diagnostic[]) => void | boolean | Promise<boolean>;
  readonly onError: (errors: readonly Diagnostic[]) => void;
  /** The files are valid again, with the content of the policy in force. */
  readonly onRestored: () => void;
  readonly debounceMs?: number;
  readonly pollMs?: number;
  /** Parses the files read (default parsePolicy, inline); the controller parses in a worker within its limits. */
  readonly parse?: (files: readonly PolicyFileText[]) => ParseResult | Promise<ParseResult>;
  /** Files over this many bytes in all are refused before they are read (PolicyLimits.maxBytes). */
  readonly maxBytes?: number;
}

/** What a policy source read: the files' texts, or why they could not be read. */
export interface PolicyRead {
  readonly files: readonly PolicyFileText[];
  readonly errors: readonly Diagnostic[];
  readonly warnings: readonly Diagnostic[];
}

/**
 * The load contract of the header, for any source of policy files (this watcher, and the
 * controller's Consul KV feed): each read is compared by content with the last one and with the
 * policy in force, then parsed and offered. Loads must be serialised by the caller.
 */
/** Identity of what a read holds: every file's path and text, and every diagnostic. */
function contentKey(read: PolicyRead): string {
  const digest = createHash('sha256');
  for (const file of read.files) digest.update(`${file.path}\0${file.text}\0`);
  for (const d of [...read.errors, ...read.warnings]) digest.update(`${d.file}\0${d.message}\0`);
  return digest.digest('hex');
}

export class PolicyLoads {
  /** Content key of the policy in force ('' before the first good one). */
  private goodKey = '';
  /** Content key of the last load, good or broken. */
  private lastKey = '';

  constructor(private readonly options: Omit<PolicyWatcherOptions, 'path' | 'debounceMs' | 'pollMs' | 'maxBytes'> & { readonly path: string }) {}

  get hasGood(): boolean {
    return this.goodKey !== '';
  }

  refused(): void {
    this.goodKey = '';
  }

  /**
   * `read` holds exactly what the last load held, and that is the policy in force (`load` would do
   * nothing): for a source that can name the same content again under a new version (Consul KV).
   */
  holdsInForce(read: PolicyRead): boolean {
    const key = contentKey(read);
    return key === this.lastKey && key === this.goodKey;
  }

  async load(read: PolicyRead): Promise<void> {
    const key = contentKey(read);
    if (key === this.lastKey) return;
    this.lastKey = key;
    if (key === this.goodKey) {
      this.options.onRestored();
      return;
    }
    try {
      const result = read.errors.length > 0 ? { ok: false as const, errors: [...read.errors] } : await (this.options.parse ?? parsePolicy)(read.files);
      if (!result.ok) {
        this.options.onError(result.errors);
        return;
      }
      const accepted = await this.options.onPolicy(result.policy, [...read.warnings, ...result.warnings]);
      if (accepted !== false) this.goodKey = key;
    } catch (e) {
      const message = `cannot load the policy: ${e instanceof Error ? e.message : String(e)}; the last good policy stays in force`;
      this.options.onError([{ file: this.options.path, line: 1, col: 1, message, severity: 'error' }]);
    }
  }
}

export class PolicyWatcher {
  private readonly loads: PolicyLoads;
  private readonly files: FileReload;

  constructor(private readonly options: PolicyWatcherOptions) {
    this.loads = new PolicyLoads(options);
    this.files = new FileReload({
      path: options.path,
      load: async () => this.loads.load(await readPolicyFiles(this.options.path, this.options.maxBytes)),
      ...(options.debounceMs !== undefined ? { debounceMs: options.debounceMs } : {}),
      ...(options.pollMs !== undefined ? { pollMs: options.pollMs } : {}),
    });
  }

  /** Loads the policy once; resolves to whether a good policy is in force. */
  async start(): Promise<boolean> {
    await this.reload();
    this.files.watch();
    return this.loads.hasGood;
  }

  async stop(): Promise<void> {
    await this.files.stop();
  }

  /**
   * The policy taken as in force was refused after all (its first compile, once a cluster came,
   * was over a limit): no content is the policy in force any more, so no later load is a restore.
   */
  refused(): void {
    this.loads.refused();
  }

  /** Reload now (also used by SIGHUP); serialised, so overlapping calls never interleave. */
  reload(): Promise<void> {
    return this.files.reload();
  }
}
