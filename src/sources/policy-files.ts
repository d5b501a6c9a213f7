/**
 * Reading policy files from disk: one file, or a directory's *.yaml / *.yml files (not recursive,
 * sorted by name). The only I/O of the policy pipeline; parsing is parsePolicy's (pure).
 * Unreadable paths and a directory without policy files become Diagnostics at line 1, col 1.
 */
import { readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Diagnostic } from '../diagnostic.js';
import { parsePolicy } from '../policy/parse-policy.js';
import type { ParseResult, PolicyFileText } from '../policy/parse-policy.js';

export interface PolicyFilesRead {
  readonly files: PolicyFileText[];
  readonly errors: Diagnostic[];
}

const POLICY_FILE = /\.ya?ml$/;

export async function readPolicyFiles(fileOrDir: string): Promise<PolicyFilesRead> {
  const error = (file: string, message: string): PolicyFilesRead => ({
    files: [],
    errors: [{ file, line: 1, col: 1, message, severity: 'error' }],
  });
  let isDir: boolean;
  try {
    isDir = (await stat(fileOrDir)).isDirectory();
  } catch (e) {
    return error(fileOrDir, `cannot read policy: ${reason(e)}; give a policy file or a directory of *.yaml files`);
  }
  if (!isDir) {
    try {
      return { files: [{ path: fileOrDir, text: await readFile(fileOrDir, 'utf8') }], errors: [] };
    } catch (e) {
      return error(fileOrDir, `cannot read policy file: ${reason(e)}`);
    }
  }
  let names: string[];
  try {
    const entries = await readdir(fileOrDir, { withFileTypes: true });
    names = entries.filter((e) => !e.isDirectory() && POLICY_FILE.test(e.name) && !e.name.startsWith('.')).map((e) => e.name);
  } catch (e) {
    return error(fileOrDir, `cannot list policy directory: ${reason(e)}`);
  }
  names.sort();
  if (names.length === 0) return error(fileOrDir, 'no policy files in this directory: expected *.yaml or *.yml files');
  const files: PolicyFileText[] = [];
  const errors: Diagnostic[] = [];
  for (const name of names) {
    const path = join(fileOrDir, name);
    try {
      files.push({ path, text: await readFile(path, 'utf8') });
    } catch (e) {
      errors.push({ file: path, line: 1, col: 1, message: `cannot read policy file: ${reason(e)}`, severity: 'error' });
    }
  }
  return { files, errors };
}

/** Reads and parses a policy file or directory. */
export async function loadPolicy(fileOrDir: string): Promise<ParseResult> {
  const read = await readPolicyFiles(fileOrDir);
  if (read.errors.length > 0) return { ok: false, errors: read.errors };
  return parsePolicy(read.files);
}

function reason(e: unknown): string {
  const code = (e as { code?: string }).code;
  if (code === 'ENOENT') return 'no such file or directory';
  if (code === 'EACCES') return 'permission denied';
  return e instanceof Error ? e.message : String(e);
}
