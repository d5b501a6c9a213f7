/**
 * When to re-read an input file (or directory): the one watcher the policy and the inventory
 * share. Loads run one at a time, in call order (`reload()`, also SIGHUP's path); a filesystem
 * event (fs.watch, debounced) and a slow poll timer (editors that replace files by rename,
 * network filesystems where inotify is blind) each schedule one. What a load does, and deciding
 * that unchanged content is no news, is the caller's `load`.
 *
 * The policy watches its path itself (a directory sees its files change); the inventory watches
 * the file's directory filtered by its name (`watchDirOf`), so a file replaced by rename is seen.
 * A path that does not exist yet is left to the poll.
 */
import { watch, type FSWatcher } from 'node:fs';
import path from 'node:path';

export interface FileReloadOptions {
  readonly path: string;
  /** Watch the directory holding `path` for events on its name (not `path` itself). */
  readonly watchDirOf?: boolean;
  /** One load; a rejection is the caller's to report (the next load still runs). */
  readonly load: () => Promise<void>;
  readonly debounceMs?: number;
  readonly pollMs?: number;
}

export class FileReload {
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private chain: Promise<void> = Promise.resolve();
  private stoppedFlag = false;

  constructor(private readonly options: FileReloadOptions) {}

  get stopped(): boolean {
    return this.stoppedFlag;
  }

  /** Starts watching and polling (the caller did its first load already). */
  watch(): void {
    const { path: target, watchDirOf } = this.options;
    try {
      if (watchDirOf) {
        const base = path.basename(target);
        this.watcher = watch(path.dirname(target), { persistent: false }, (_event, name) => {
          if (name === null || name === base) this.schedule();
        });
      } else {
        this.watcher = watch(target, { persistent: false }, () => this.schedule());
      }
      this.watcher.on('error', () => undefined);
    } catch {
      // The path may be missing now and appear later: the poll timer covers it.
    }
    this.timer = setInterval(() => this.schedule(), this.options.pollMs ?? 5_000);
    this.timer.unref();
  }

  /** Stops watching; resolves once a load under way has ended. */
  stop(): Promise<void> {
    this.stoppedFlag = true;
    this.watcher?.close();
    clearInterval(this.timer);
    clearTimeout(this.debounce);
    return this.chain;
  }

  /** Loads now, after any load under way (overlapping calls never interleave). */
  reload(): Promise<void> {
    const next = this.chain.then(() => this.options.load());
    this.chain = next.catch(() => undefined);
    return next;
  }

  private schedule(): void {
    if (this.stoppedFlag) return;
    clearTimeout(this.debounce);
    // A rejection here can only come from the caller's error callback; the next load still runs.
    this.debounce = setTimeout(() => void this.reload().catch(() => undefined), this.options.debounceMs ?? 100);
  }
}
