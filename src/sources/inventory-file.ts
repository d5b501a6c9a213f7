/** Reading the static inventory file from disk; parsing is parseStaticInventory's (pure). */
import type { Diagnostic } from '../diagnostic.js';
import { parseStaticInventory } from '../inventory/static-inventory.js';
import type { InventoryResult } from '../inventory/static-inventory.js';
import { readErrorReason, readRegularFile } from './read-regular-file.js';

/** The text of the inventory file, or the error (at 1:1) saying why it cannot be read. */
export async function readInventoryFile(path: string): Promise<{ ok: true; text: string } | { ok: false; error: Diagnostic }> {
  try {
    return { ok: true, text: await readRegularFile(path) };
  } catch (e) {
    return { ok: false, error: { file: path, line: 1, col: 1, message: `cannot read inventory file: ${readErrorReason(e)}`, severity: 'error' } };
  }
}

export async function loadInventory(path: string): Promise<InventoryResult> {
  const read = await readInventoryFile(path);
  return read.ok ? parseStaticInventory(path, read.text) : { ok: false, errors: [read.error] };
}
