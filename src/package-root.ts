/**
 * The directory Portcullis is installed in (the one holding its package.json), so the shipped
 * examples can be the defaults whatever the working directory, from src/ under Vitest or from
 * dist/ when installed.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

let cached: string | undefined;

export function packageRoot(): string {
  if (cached) return cached;
  let dir = import.meta.dirname;
  for (let i = 0; i < 8; i++) {
    const manifest = path.join(dir, 'package.json');
    if (existsSync(manifest) && JSON.parse(readFileSync(manifest, 'utf8')).name === 'portcullis') {
      cached = dir;
      return dir;
    }
    dir = path.dirname(dir);
  }
  throw new Error(`cannot find the portcullis package root above ${import.meta.dirname}`);
}

export const defaultPolicyPath = (): string => path.join(packageRoot(), 'policies', 'shop');
export const defaultInventoryPath = (): string => path.join(packageRoot(), 'policies', 'inventory.yaml');
