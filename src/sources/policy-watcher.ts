/**
 * Hot reload of the policy file or directory.
 *
 * Contract: `start()` loads once and then reloads on every filesystem change (fs.watch, debounced)
 * and on a slow timer (editors that replace files, network filesystems where inotify is blind).
 * A reload whose text is unchanged does nothing. A reload that fails to parse is reported through
 * `onError` with every diagnostic, and the last good policy stays in force: `onPolicy` is called
 * only with valid policies.
 */
import { watch, type FSWatcher } from 'node:fs';
import { createHash } from 'node:crypto';
import type { Policy } from '../policy/policy-model.js';
import type { Diagnostic } from '../diagnostic.js';
import { readPolicyFiles } from './policy-files.js';
import { parsePolicy, type ParseResult, type PolicyFileText } from '../policy/parse-policy.js';

export interface PolicyWatcherOptions {
  readonly path: string;
  readonly onPolicy: (policy: Policy, warnings: readonly Diagnostic[]) => void;
  readonly onError: (errors: readonly Diagnostic[]) => void;
  readonly debounceMs?: number;
  readonly pollMs?: number;
  /** Parses the files read (default parsePolicy, inline); the controller parses in a worker within its limits. */
  readonly parse?: (files: readonly PolicyFileText[]) => ParseResult | Promise<ParseResult>;
  /** Files over this many bytes in all are refused before they are read (PolicyLimits.maxBytes). */
  readonly maxBytes?: number;
}

export class PolicyWatcher {
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private lastDigest = '';
  private lastErrorDigest = '';
  private reloading: Promise<void> = Promise.resolve();
  private stopped = false;

  constructor(private readonly options: PolicyWatcherOptions) {}

  /** Loads the policy once; resolves to whether a good policy is in force. */
  async start(): Promise<boolean> {
    await this.reload();
    try {
      this.watcher = watch(this.options.path, { persistent: false }, () => this.schedule());
      this.watcher.on('error', () => undefined);
    } catch {
      // The path may be missing now and appear later: the poll timer covers it.
    }
    this.timer = setInterval(() => this.schedule(), this.options.pollMs ?? 5_000);
    this.timer.unref();
    return this.lastDigest !== '';
  }

  stop(): void {
    this.stopped = true;
    this.watcher?.close();
    clearInterval(this.timer);
    clearTimeout(this.debounce);
  }

  /** Reload now (also used by SIGHUP); serialised, so overlapping calls never interleave. */
  reload(): Promise<void> {
    this.reloading = this.reloading.then(() => this.reloadOnce());
    return this.reloading;
  }

  private schedule(): void {
    if (this.stopped) return;
    clearTimeout(this.debounce);
    this.debounce = setTimeout(() => void this.reload(), this.options.debounceMs ?? 100);
  }

  private async reloadOnce(): Promise<void> {
    const read = await readPolicyFiles(this.options.path, this.options.maxBytes);
    const digest = createHash('sha256');
    for (const file of read.files) digest.update(`${file.path}\0${file.text}\0`);
    for (const error of read.errors) digest.update(`${error.file}\0${error.message}\0`);
    const key = digest.digest('hex');
    if (key === this.lastDigest || key === this.lastErrorDigest) return;
    const result = read.errors.length > 0 ? { ok: false as const, errors: read.errors } : await (this.options.parse ?? parsePolicy)(read.files);
    if (result.ok) {
      this.lastDigest = key;
      this.lastErrorDigest = '';
      this.options.onPolicy(result.policy, result.warnings);
    } else {
      this.lastErrorDigest = key;
      this.options.onError(result.errors);
    }
  }
}
