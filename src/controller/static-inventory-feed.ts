/**
 * The static inventory file as a ClusterFeed, hot-reloaded.
 *
 * Contract: loads once on `start`, then reloads on filesystem changes (a watch on the file's
 * directory, so editors that replace the file by rename are seen; debounced) and on a slow poll
 * timer as a safety net. A reload whose text is unchanged does nothing. A file that is missing
 * or does not parse is reported (every diagnostic through `onError`, and in `status().lastError`)
 * and the last good cluster stays in force: `onCluster` only ever gets valid clusters.
 */
import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { formatDiagnostic, type Diagnostic } from '../diagnostic.js';
import type { ClusterState } from '../inventory/cluster-state.js';
import { parseStaticInventory } from '../inventory/static-inventory.js';
import type { ClusterFeed, ClusterFeedStatus } from './cluster-feed.js';

export interface StaticInventoryFeedOptions {
  readonly path: string;
  /** Called with every diagnostic of a failed load (the last good cluster stays). */
  readonly onError?: (errors: readonly Diagnostic[]) => void;
  /** Called after a good load. */
  readonly onLoaded?: (cluster: ClusterState) => void;
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
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private onCluster: ((cluster: ClusterState) => void) | undefined;
  private cluster: ClusterState | undefined;
  private lastKey = '';
  private valid = false;
  private loadedAt: number | undefined;
  private lastError: { at: number; diagnostics: string[] } | undefined;
  private reloadErrors = 0;
  private chain: Promise<void> = Promise.resolve();
  private stopped = false;
  private readonly now: () => number;

  constructor(private readonly options: StaticInventoryFeedOptions) {
    this.now = options.now ?? Date.now;
  }

  async start(onCluster: (cluster: ClusterState) => void): Promise<void> {
    this.onCluster = onCluster;
    await this.reload();
    const dir = path.dirname(this.options.path);
    const base = path.basename(this.options.path);
    try {
      this.watcher = watch(dir, { persistent: false }, (_event, name) => {
        if (name === null || name === base) this.schedule();
      });
      this.watcher.on('error', () => undefined);
    } catch {
      // The directory may not exist yet: the poll covers it.
    }
    this.timer = setInterval(() => this.schedule(), this.options.pollMs ?? 5_000);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.watcher?.close();
    clearInterval(this.timer);
    clearTimeout(this.debounce);
    await this.chain;
  }

  /** Re-reads now; serialised with the watcher's reloads. */
  reload(): Promise<void> {
    this.chain = this.chain.then(() => this.reloadOnce());
    return this.chain;
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

  private schedule(): void {
    if (this.stopped) return;
    clearTimeout(this.debounce);
    this.debounce = setTimeout(() => void this.reload(), this.options.debounceMs ?? 100);
  }

  private async reloadOnce(): Promise<void> {
    if (this.stopped) return;
    const file = this.options.path;
    let text: string | undefined;
    let readError: string | undefined;
    try {
      text = await readFile(file, 'utf8');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      readError = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (e as Error).message;
    }
    const key = createHash('sha256').update(text ?? `\0error\0${readError}`).digest('hex');
    if (key === this.lastKey) return;
    this.lastKey = key;
    const result =
      text === undefined
        ? { ok: false as const, errors: [{ file, line: 1, col: 1, message: `cannot read inventory file: ${readError}`, severity: 'error' as const }] }
        : parseStaticInventory(file, text);
    if (!result.ok) {
      this.valid = false;
      this.reloadErrors++;
      this.lastError = { at: this.now(), diagnostics: result.errors.map(formatDiagnostic) };
      this.options.onError?.(result.errors);
      return;
    }
    this.valid = true;
    this.lastError = undefined;
    this.cluster = result.cluster;
    this.loadedAt = this.now();
    this.options.onLoaded?.(result.cluster);
    this.onCluster?.(result.cluster);
  }
}
