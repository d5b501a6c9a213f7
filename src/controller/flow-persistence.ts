/**
 * The controller's flows on disk: `<state dir>/flows.json` (the line format of
 * src/flows/flow-file.ts), so recorded flows survive a restart.
 *
 * Contract
 * - `load()` at start: a missing file is an empty store; a file that does not read (corrupt,
 *   truncated, another format) is renamed `flows.json.corrupt` (replacing an older one) and
 *   logged at error level, never fatal; an unreadable directory is logged and flows are kept in
 *   memory only.
 * - `save()` writes only when the store changed since the last save: a temp file in the same
 *   directory (mode 0600), written in chunks of about 1 MiB (a million aggregates never become
 *   one string), fsync, rename over flows.json, fsync of the directory. A reader sees the old
 *   file or the new one. The directory is created (0700) at the first save that has something to
 *   write, so a controller that never records a flow leaves nothing behind.
 * - `start()` saves every `intervalMs` (default 30 s); `stop()` ends the timer and saves once
 *   more (a clean stop). A failed save is logged and retried at the next tick.
 */
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { Logger } from 'pino';
import { FlowFileError, FlowFileReader, flowFileLines } from '../flows/flow-file.js';
import type { FlowStore } from '../flows/flow-store.js';

export const DEFAULT_CONTROLLER_STATE_DIR = '/var/lib/portcullis/controller';
export const FLOWS_FILE = 'flows.json';
const CHUNK_BYTES = 1 << 20;

export interface FlowPersistenceOptions {
  readonly stateDir: string;
  readonly store: FlowStore;
  readonly logger: Logger;
  readonly intervalMs?: number;
  readonly now?: () => number;
}

export class FlowPersistence {
  private timer: NodeJS.Timeout | undefined;
  private savedRevision = 0;
  private saving: Promise<void> | undefined;
  readonly file: string;

  constructor(private readonly options: FlowPersistenceOptions) {
    this.file = path.join(options.stateDir, FLOWS_FILE);
  }

  private now(): number {
    return (this.options.now ?? Date.now)();
  }

  /** Reads flows.json into the store (see the header for what happens when it does not read). */
  async load(): Promise<void> {
    const { store, logger } = this.options;
    const reader = new FlowFileReader();
    try {
      const lines = createInterface({ input: createReadStream(this.file, { encoding: 'utf8' }), crlfDelay: Infinity });
      for await (const line of lines) reader.line(line);
      const windows = reader.finish();
      store.restore(windows, this.now());
      this.savedRevision = store.revision;
      logger.info({ file: this.file, records: store.summary(this.now()).records, windows: store.summary(this.now()).windows }, 'recorded flows read back');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return;
      if (!(e instanceof FlowFileError)) {
        logger.warn({ file: this.file, err: (e as Error).message }, 'cannot read the saved flows: starting with none');
        return;
      }
      const aside = `${this.file}.corrupt`;
      await rename(this.file, aside).catch((err: unknown) => logger.warn({ file: this.file, err: String(err) }, 'cannot set the corrupt flows file aside'));
      logger.error({ file: this.file, setAside: aside, err: e.message }, 'saved flows are corrupt: set aside, starting with none');
    }
  }

  start(): void {
    this.timer ??= setInterval(() => void this.save(), this.options.intervalMs ?? 30_000);
    this.timer.unref();
  }

  /** Writes the store if it changed since the last save; never throws (a failure is logged). */
  async save(): Promise<void> {
    while (this.saving) await this.saving;
    const { store } = this.options;
    if (store.revision === this.savedRevision) return;
    const revision = store.revision;
    this.saving = this.write()
      .then(() => {
        this.savedRevision = revision;
      })
      .catch((e: unknown) => this.options.logger.warn({ file: this.file, err: (e as Error).message }, 'cannot save the recorded flows: kept in memory, retried later'))
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
    const dir = path.dirname(this.file);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const tmp = path.join(dir, `.${FLOWS_FILE}.${randomBytes(6).toString('hex')}.tmp`);
    const handle = await open(tmp, 'wx', 0o600);
    try {
      let chunk: string[] = [];
      let size = 0;
      for (const line of flowFileLines([...store.allWindows()], this.now(), store.windowMs)) {
        chunk.push(line);
        size += line.length + 1;
        if (size >= CHUNK_BYTES) {
          await handle.write(`${chunk.join('\n')}\n`);
          chunk = [];
          size = 0;
        }
      }
      if (chunk.length > 0) await handle.write(`${chunk.join('\n')}\n`);
      await handle.sync();
      await handle.close();
      await rename(tmp, this.file);
    } catch (e) {
      await handle.close().catch(() => undefined);
      await rm(tmp, { force: true });
      throw e;
    }
    const dirHandle = await open(dir, 'r').catch(() => undefined);
    await dirHandle?.sync().catch(() => undefined);
    await dirHandle?.close();
  }
}
