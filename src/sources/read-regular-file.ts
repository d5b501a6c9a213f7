/**
 * Reading an input file (policy, inventory) that must be a regular file. The file is opened with
 * O_NONBLOCK and checked on the open descriptor (no race with a rename in between), so a FIFO, a
 * socket or a device given by mistake is refused at once instead of blocking the reader forever
 * (a FIFO without writer) or filling the heap (/dev/zero). O_NONBLOCK changes nothing for regular
 * files. Errors are thrown as `ReadError` with a short reason a person can act on.
 */
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import type { Stats } from 'node:fs';

export class ReadError extends Error {}

/** Reads `path` as UTF-8 text; throws ReadError('no such file', 'is a FIFO, not a regular file', ...). */
export async function readRegularFile(path: string): Promise<string> {
  let handle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    throw new ReadError(readErrorReason(e));
  }
  try {
    const kind = fileKind(await handle.stat());
    if (kind !== 'regular file') throw new ReadError(`it is a ${kind}, not a regular file`);
    return await handle.readFile('utf8');
  } catch (e) {
    throw e instanceof ReadError ? e : new ReadError(readErrorReason(e));
  } finally {
    await handle.close().catch(() => undefined);
  }
}

/** What kind of filesystem object `stats` describe, in words. */
export function fileKind(stats: Stats): string {
  if (stats.isFile()) return 'regular file';
  if (stats.isDirectory()) return 'directory';
  if (stats.isFIFO()) return 'FIFO (named pipe)';
  if (stats.isSocket()) return 'socket';
  if (stats.isCharacterDevice() || stats.isBlockDevice()) return 'device';
  return 'special file';
}

/** A short reason for a failed filesystem call. */
export function readErrorReason(e: unknown): string {
  const code = (e as { code?: string }).code;
  if (code === 'ENOENT') return 'no such file or directory';
  if (code === 'EACCES') return 'permission denied';
  if (code === 'EISDIR') return 'it is a directory';
  return e instanceof Error ? e.message : String(e);
}
