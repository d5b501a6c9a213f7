/** Reading the static inventory file from disk; parsing is parseStaticInventory's (pure). */
import { readFile } from 'node:fs/promises';
import { parseStaticInventory } from '../inventory/static-inventory.js';
import type { InventoryResult } from '../inventory/static-inventory.js';

export async function loadInventory(path: string): Promise<InventoryResult> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    const code = (e as { code?: string }).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : e instanceof Error ? e.message : String(e);
    return { ok: false, errors: [{ file: path, line: 1, col: 1, message: `cannot read inventory file: ${why}`, severity: 'error' }] };
  }
  return parseStaticInventory(path, text);
}
