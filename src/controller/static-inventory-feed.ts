/**
 * The static inventory file as a ClusterFeed, hot-reloaded.
 *
 * Contract: loads once on `start`, then reloads on filesystem changes (a watch on the file's
 * directory, so editors that replace the file by rename are seen; debounced) and on a slow poll
 * timer as a safety net (src/sources/file-reload.ts, the watcher the policy uses too). A reload whose text is unchanged does nothing. A file that is missing
 * or does not parse is reported (logged through load-errors.ts, as a policy that fails, and in
 * `status().lastError`) and the last good cluster stays in force: `onCluster` only ever gets valid clusters. Restoring
 * the last good text after a broken edit is a new load like any other (valid again, re-applied).
 * A load never throws and never stops later loads: an unexpected exception (of the parser or of
 * `onCluster`) is reported like a parse error, at the file's 1:1.
 */
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { Diagnostic } from '../diagnostic.js';
import { reuseUnchangedApps, type ClusterState } from '../inventory/cluster-state.js';
import { parseStaticInventory } from '../inventory/static-inventory.js';
import { FileReload } from '../sources/file-reload.js';
import { readInventoryFile } from '../sources/inventory-file.js';
import type { ClusterFeed, ClusterFeedStatus } from './cluster-feed.js';
import { reportLoadFailure } from './load-errors.js';

export interface StaticInventoryFeedOptions {
  readonly path: string;
  /** Where loads and failed loads are logged (none: only status() tells). */
  readonly logger?: Logger;
  readonly debounceMs?: number;
  readonly pollMs?: number;
  readonly now?: () => number;
}

export interface StaticInventoryStatus extends ClusterFeedStatus {
  readonly source: 'file';
  readonly path: string;
  /** The file as last read parses (false while a broken edit is in place). */
  readonly valid: boolean;
  readonly loadedAt: string | null;
  readonly lastError: { readonly at: string; readonly diagnostics: readonly string[] } | null;
  readonly reloadErrors: number;
  readonly hosts: number;
  readonly apps: number;
  readonly tasks: number;
}

export class StaticInventoryFeed implements ClusterFeed {
  private onCluster: ((cluster: ClusterState) => void) | undefined;
  private cluster: ClusterState | undefined;
  private lastKey = '';
  private valid = false;
  private loadedAt: number | undefined;
  private lastError: { at: number; diagnostics: string[] } | undefined;
  private reloadErrors = 0;
  private readonly now: () => number;
  private readonly file: FileReload;

  constructor(private readonly options: StaticInventoryFeedOptions) {
    this.now = options.now ?? Date.now;
    this.file = new FileReload({
      path: options.path,
      watchDirOf: true,
      load: () => this.reloadOnce(),
      ...(options.debounceMs !== undefined ? { debounceMs: options.debounceMs } : {}),
      ...(options.pollMs !== undefined ? { pollMs: options.pollMs } : {}),
    });
  }

  async start(onCluster: (cluster: ClusterState) => void): Promise<void> {
    this.onCluster = onCluster;
    await this.reload();
    this.file.watch();
  }

  async stop(): Promise<void> {
    await this.file.stop();
  }

  /** Re-reads now; serialised with the watcher's reloads. */
  reload(): Promise<void> {
    return this.file.reload();
  }

  status(): StaticInventoryStatus {
    const c = this.cluster;
    return {
      source: 'file',
      ready: c !== undefined,
      path: this.options.path,
      valid: this.valid,
      loadedAt: this.loadedAt === undefined ? null : new Date(this.loadedAt).toISOString(),
      lastError: this.lastError ? { at: new Date(this.lastError.at).toISOString(), diagnostics: this.lastError.diagnostics } : null,
      reloadErrors: this.reloadErrors,
      hosts: c?.hosts.length ?? 0,
      apps: c?.apps.length ?? 0,
      tasks: c?.tasks.length ?? 0,
    };
  }

  private async reloadOnce(): Promise<void> {
    if (this.file.stopped) return;
    const file = this.options.path;
    const read = await readInventoryFile(file);
    const key = createHash('sha256').update(read.ok ? read.text : `\0error\0${read.error.message}`).digest('hex');
    if (key === this.lastKey) return;
    this.lastKey = key;
    try {
      const result = read.ok ? parseStaticInventory(file, read.text) : { ok: false as const, errors: [read.error] };
      if (!result.ok) return this.failed(result.errors);
      // Unchanged apps keep their objects: the compiler then redoes only what the edit changed.
      const cluster = this.cluster ? { ...result.cluster, apps: reuseUnchangedApps(this.cluster.apps, result.cluster.apps) } : result.cluster;
      this.onCluster?.(cluster);
      this.valid = true;
      this.lastError = undefined;
      this.cluster = cluster;
      this.loadedAt = this.now();
      const { hosts, apps, tasks } = cluster;
      this.options.logger?.info({ path: file, hosts: hosts.length, apps: apps.length, tasks: tasks.length }, 'inventory loaded');
    } catch (e) {
      const message = `cannot load the inventory: ${e instanceof Error ? e.message : String(e)}; the last good inventory stays in force`;
      this.failed([{ file, line: 1, col: 1, message, severity: 'error' }]);
    }
  }

  private failed(errors: readonly Diagnostic[]): void {
    this.valid = false;
    this.reloadErrors++;
    const diagnostics = reportLoadFailure(this.options.logger, {
      input: 'inventory',
      path: this.options.path,
      errors,
      message: this.cluster ? 'inventory is invalid: keeping the last good inventory' : 'inventory is invalid: no state is served until it is fixed',
    });
    this.lastError = { at: this.now(), diagnostics };
  }
}
