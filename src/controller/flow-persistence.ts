/**
 * The controller's flows on disk, so recorded flows survive a restart: `<state dir>/flows/`, in
 * the v2 format of src/flows/flow-file.ts: `resolutions.jsonl` (every resolution a window names,
 * defined once, appended to) and one `window-<start>.jsonl` per time window of the store.
 *
 * Why files per window: the store only ever writes into its newest window (flow-store.ts), so an
 * older window's file, once written after it stopped changing, is never written again. A save
 * writes the windows whose `rev` moved since they were last written (usually the newest alone),
 * appends the resolutions they name that are new, and removes the files of windows the store
 * let go: O(what changed), where one file of everything (v1, `flows.json`) was rewritten whole
 * on every save (231 MB and 7.3 s at a million aggregates, BENCHMARKS.md).
 *
 * Contract
 * - `load()` at start: no `flows/` and no `flows.json`: an empty store. A window file that does
 *   not read is renamed `<file>.corrupt` and logged at error level, the other windows kept; a
 *   resolutions file that does not read (but for a last line cut short by a crash while it was
 *   appended to: ignored) makes every window unreadable: the directory is renamed
 *   `flows.corrupt` (replacing an older one), logged at error level, and the store starts empty.
 *   Never fatal; an unreadable directory is logged and flows are kept in memory only. A v1
 *   `flows.json` (an older release) is read the same way when there is no `flows/`, and removed
 *   after the first save has written its windows in v2 (a corrupt one is renamed
 *   `flows.json.corrupt`).
 * - `save()` writes only when the store changed since the last save: new resolutions appended
 *   and fsynced before any window file names them; each changed window through a temp file in
 *   the same directory (mode 0600), written in chunks of about 1 MiB, fsync, rename; the files of
 *   windows gone removed; an fsync of the directory. A reader sees each window old or new. The
 *   resolutions file is rewritten whole (temp file, rename) at the first save after a start and
 *   whenever it defines more than twice the resolutions the windows still name (windows went).
 *   The directory is created (0700) at the first save that has something to write.
 * - `start()` saves every `intervalMs` (default 30 s); `stop()` ends the timer and saves once
 *   more (a clean stop). A failed save is logged and retried at the next tick (every window is
 *   then written again: what is on disk is no longer known).
 */
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, rename, rm, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { Logger } from 'pino';
import { FlowDictWriter, FlowFileError, FlowFileReader, newFlowDict, windowFileLines, type FlowDict } from '../flows/flow-file.js';
import type { FlowStore, FlowWindow } from '../flows/flow-store.js';

export const DEFAULT_CONTROLLER_STATE_DIR = '/var/lib/portcullis/controller';
/** The directory of the saved flows under the state directory. */
export const FLOWS_DIR = 'flows';
/** What releases before v2 wrote (read once, then removed). */
export const LEGACY_FLOWS_FILE = 'flows.json';
export const RESOLUTIONS_FILE = 'resolutions.jsonl';
const CHUNK_BYTES = 1 << 20;
const WINDOW_FILE = /^window-(\d+)\.jsonl$/;

export const windowFileName = (start: number): string => `window-${start}.jsonl`;

export interface FlowPersistenceOptions {
  readonly stateDir: string;
  readonly store: FlowStore;
  readonly logger: Logger;
  readonly intervalMs?: number;
  readonly now?: () => number;
}

/** Writes `lines` to an open file in chunks of about CHUNK_BYTES, each line followed by '\n'. */
async function writeLines(handle: FileHandle, lines: Iterable<string>): Promise<number> {
  let chunk: string[] = [];
  let size = 0;
  let total = 0;
  for (const line of lines) {
    chunk.push(line);
    size += line.length + 1;
    if (size >= CHUNK_BYTES) {
      await handle.write(`${chunk.join('\n')}\n`);
      [chunk, total, size] = [[], total + size, 0];
    }
  }
  if (chunk.length > 0) await handle.write(`${chunk.join('\n')}\n`);
  return total + size;
}

/** Reads a file's lines into `reader`; a FlowFileError on a last line without its '\n' is undefined when `cutLastOk`. */
async function readInto(file: string, reader: FlowFileReader, cutLastOk = false): Promise<FlowFileError | undefined> {
  const lines = createInterface({ input: createReadStream(file, { encoding: 'utf8' }), crlfDelay: Infinity });
  let failed: FlowFileError | undefined;
  for await (const line of lines) {
    if (failed) throw failed; // a bad line that was not the last
    try {
      reader.line(line);
    } catch (e) {
      if (!(e instanceof FlowFileError) || !cutLastOk) throw e;
      failed = e;
    }
  }
  return failed;
}

export class FlowPersistence {
  private timer: NodeJS.Timeout | undefined;
  private savedRevision = 0;
  private saving: Promise<void> | undefined;
  /** The directory of the v2 files, and the v1 file of an older release. */
  readonly dir: string;
  readonly legacyFile: string;
  /** The resolutions defined in resolutions.jsonl as it is on disk, with their ids (undefined: none known). */
  private dict: FlowDictWriter | undefined;
  /** The next save rewrites resolutions.jsonl whole (the first after a start, or after a failed save). */
  private wholeNext = true;
  /** Per window on disk: the `rev` it was written at. */
  private written = new Map<number, number | undefined>();
  /** A v1 file was read: removed once its windows are written in v2. */
  private legacyRead = false;

  constructor(private readonly options: FlowPersistenceOptions) {
    this.dir = path.join(options.stateDir, FLOWS_DIR);
    this.legacyFile = path.join(options.stateDir, LEGACY_FLOWS_FILE);
  }

  private now(): number {
    return (this.options.now ?? Date.now)();
  }

  /** Reads the saved flows into the store (see the header for what happens when they do not read). */
  async load(): Promise<void> {
    const { store, logger } = this.options;
    const read = await this.readDir().catch(async (e: unknown) => (e instanceof FlowFileError || (e as NodeJS.ErrnoException).code !== 'ENOENT' ? this.unreadableDir(e) : this.readLegacy()));
    if (read === undefined) return;
    store.restore(read.windows, this.now());
    // A v1 file is written in v2 (and removed) at the next save even if nothing is recorded meanwhile.
    this.savedRevision = read.dict ? store.revision : -1;
    // v2 windows are on disk as they are now; a v1 file's are written at the next save.
    this.written = read.dict ? new Map(read.windows.map((w) => [w.start, w.rev])) : new Map();
    this.dict = read.dict;
    const summary = store.summary(this.now());
    logger.info({ dir: read.from, records: summary.records, windows: summary.windows }, 'recorded flows read back');
  }

  /** The v2 directory's windows; throws ENOENT when there is none, a FlowFileError when its resolutions do not read. */
  private async readDir(): Promise<Loaded> {
    const names = await readdir(this.dir);
    const dict: FlowDict = newFlowDict();
    const cut = await readInto(path.join(this.dir, RESOLUTIONS_FILE), new FlowFileReader('resolutions', dict), true).catch((e: unknown) => {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e instanceof FlowFileError ? new FlowFileError(`${RESOLUTIONS_FILE}: ${e.message}`) : e;
      if (names.some((n) => WINDOW_FILE.test(n))) throw new FlowFileError(`${RESOLUTIONS_FILE} is missing`);
      return undefined;
    });
    if (cut) this.options.logger.warn({ file: path.join(this.dir, RESOLUTIONS_FILE), err: cut.message }, 'the last saved resolution was cut short (a stop while saving): ignored');
    const windows: FlowWindow[] = [];
    for (const name of names.filter((n) => WINDOW_FILE.test(n))) {
      const file = path.join(this.dir, name);
      const reader = new FlowFileReader('window', dict);
      try {
        await readInto(file, reader);
        windows.push(...reader.finish());
      } catch (e) {
        if (!(e instanceof FlowFileError)) throw e;
        await this.setAside(file, `${file}.corrupt`, `a saved flow window is corrupt: set aside, the other windows kept`, e);
      }
    }
    return { windows, from: this.dir, dict: FlowDictWriter.of(dict) };
  }

  private async unreadableDir(e: unknown): Promise<undefined> {
    if (!(e instanceof FlowFileError)) {
      this.options.logger.warn({ dir: this.dir, err: (e as Error).message }, 'cannot read the saved flows: starting with none');
      return undefined;
    }
    await rm(`${this.dir}.corrupt`, { recursive: true, force: true }).catch(() => undefined);
    await this.setAside(this.dir, `${this.dir}.corrupt`, 'saved flows are corrupt: set aside, starting with none', e);
    return undefined;
  }

  /** The v1 file of an older release, when there is one. */
  private async readLegacy(): Promise<Loaded | undefined> {
    const reader = new FlowFileReader('v1');
    try {
      await readInto(this.legacyFile, reader);
      const windows = reader.finish();
      this.legacyRead = true;
      return { windows, from: this.legacyFile };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      if (!(e instanceof FlowFileError)) {
        this.options.logger.warn({ file: this.legacyFile, err: (e as Error).message }, 'cannot read the saved flows: starting with none');
        return undefined;
      }
      await this.setAside(this.legacyFile, `${this.legacyFile}.corrupt`, 'saved flows are corrupt: set aside, starting with none', e);
      return undefined;
    }
  }

  private async setAside(from: string, to: string, msg: string, e: FlowFileError): Promise<void> {
    await rename(from, to).catch((err: unknown) => this.options.logger.warn({ file: from, err: String(err) }, 'cannot set the corrupt flows aside'));
    this.options.logger.error({ file: from, setAside: to, err: e.message }, msg);
  }

  start(): void {
    this.timer ??= setInterval(() => void this.save(), this.options.intervalMs ?? 30_000);
    this.timer.unref();
  }

  /** Writes what changed in the store since the last save; never throws (a failure is logged). */
  async save(): Promise<void> {
    while (this.saving) await this.saving;
    const { store } = this.options;
    if (store.revision === this.savedRevision) return;
    const revision = store.revision;
    this.saving = this.write()
      .then(() => {
        this.savedRevision = revision;
      })
      .catch((e: unknown) => {
        // What is on disk is not known any more: write everything again next time.
        [this.dict, this.written, this.wholeNext] = [undefined, new Map(), true];
        this.options.logger.warn({ dir: this.dir, err: (e as Error).message }, 'cannot save the recorded flows: kept in memory, retried later');
      })
      .finally(() => {
        this.saving = undefined;
      });
    await this.saving;
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.save();
  }

  private async write(): Promise<void> {
    const { store } = this.options;
    const windows = [...store.allWindows()];
    const starts = new Set(windows.map((w) => w.start));
    const gone = [...this.written.keys()].filter((s) => !starts.has(s));
    const changed = windows.filter((w) => !this.written.has(w.start) || this.written.get(w.start) !== w.rev);
    if (changed.length === 0 && gone.length === 0) return;
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const names = gone.length > 0 || this.wholeNext ? new Set(await readdir(this.dir)) : undefined;
    if (this.dict === undefined || this.wholeNext || (gone.length > 0 && this.dict.size > 2 * liveResolutions(windows) + 1000)) {
      // Whole: at the first save (a cut last line gone), and after windows went (their resolutions dropped).
      const { writer, lines } = (this.dict ?? new FlowDictWriter()).compacted(windows, store.windowMs);
      await this.atomicWrite(RESOLUTIONS_FILE, lines);
      [this.dict, this.wholeNext] = [writer, false];
    } else {
      const fresh = [...this.dict.linesFor(changed)];
      if (fresh.length > 0) {
        const handle = await open(path.join(this.dir, RESOLUTIONS_FILE), 'a', 0o600);
        try {
          await writeLines(handle, fresh);
          await handle.sync();
        } finally {
          await handle.close();
        }
      }
    }
    for (const w of changed) {
      await this.atomicWrite(windowFileName(w.start), windowFileLines(w, this.dict, this.now()));
      this.written.set(w.start, w.rev);
    }
    for (const start of gone) {
      await rm(path.join(this.dir, windowFileName(start)), { force: true });
      this.written.delete(start);
    }
    // Window files this process never wrote nor read (left by a failed save, say) go too, and
    // the temp files of a save a crash cut short.
    for (const name of names ?? []) {
      const m = WINDOW_FILE.exec(name);
      if ((m && !starts.has(Number(m[1]))) || /^\..*\.tmp$/.test(name)) await rm(path.join(this.dir, name), { force: true });
    }
    const dirHandle = await open(this.dir, 'r').catch(() => undefined);
    await dirHandle?.sync().catch(() => undefined);
    await dirHandle?.close();
    if (this.legacyRead) {
      await rm(this.legacyFile, { force: true });
      this.legacyRead = false;
    }
  }

  /** `lines` as the file `name` of the directory: a temp file (0600), fsync, rename. */
  private async atomicWrite(name: string, lines: Iterable<string>): Promise<void> {
    const file = path.join(this.dir, name);
    const tmp = path.join(this.dir, `.${name}.${randomBytes(6).toString('hex')}.tmp`);
    const handle = await open(tmp, 'wx', 0o600);
    try {
      await writeLines(handle, lines);
      await handle.sync();
      await handle.close();
      await rename(tmp, file);
    } catch (e) {
      await handle.close().catch(() => undefined);
      await rm(tmp, { force: true });
      throw e;
    }
  }
}

/** What a load read: the windows and, from v2 files, the resolutions with their ids. */
interface Loaded {
  readonly windows: FlowWindow[];
  readonly from: string;
  readonly dict?: FlowDictWriter;
}

/** The resolutions the windows name. */
function liveResolutions(windows: readonly FlowWindow[]): number {
  const live = new Set<unknown>();
  for (const w of windows) for (const a of w.aggs.values()) live.add(a.r);
  return live.size;
}

