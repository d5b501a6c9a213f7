/**
 * Reading policy files from disk: one file, or a directory's *.yaml / *.yml files (not recursive,
 * sorted by name). The only I/O of the policy pipeline; parsing is parsePolicy's (pure).
 * Unreadable paths and a directory without policy files become Diagnostics at line 1, col 1.
 */
import { readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Diagnostic } from '../diagnostic.js';
import type { ParseResult, PolicyFileText } from '../policy/parse-policy.js';
import { bytesOverLimit, DEFAULT_POLICY_LIMITS, parsePolicyWithin, type PolicyLimits } from '../policy/policy-limits.js';

export interface PolicyFilesRead {
  readonly files: PolicyFileText[];
  readonly errors: Diagnostic[];
}

const POLICY_FILE = /\.ya?ml$/;

/** `maxBytes`: the files' total size is checked (stat) before any is read (PolicyLimits.maxBytes). */
export async function readPolicyFiles(fileOrDir: string, maxBytes = Infinity): Promise<PolicyFilesRead> {
  const error = (file: string, message: string): PolicyFilesRead => ({
    files: [],
    errors: [{ file, line: 1, col: 1, message, severity: 'error' }],
  });
  let isDir: boolean;
  let size: number;
  try {
    const st = await stat(fileOrDir);
    isDir = st.isDirectory();
    size = st.size;
  } catch (e) {
    return error(fileOrDir, `cannot read policy: ${reason(e)}; give a policy file or a directory of *.yaml files`);
  }
  if (!isDir) {
    if (size > maxBytes) return { files: [], errors: [bytesOverLimit(fileOrDir, size, { maxBytes })!] };
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
  if (maxBytes !== Infinity) {
    let total = 0;
    for (const name of names) total += await stat(join(fileOrDir, name)).then((st) => st.size, () => 0);
    if (total > maxBytes) return { files: [], errors: [bytesOverLimit(fileOrDir, total, { maxBytes })!] };
  }
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

/** Reads and parses a policy file or directory, within `limits`. */
export async function loadPolicy(fileOrDir: string, limits: PolicyLimits = DEFAULT_POLICY_LIMITS): Promise<ParseResult> {
  const read = await readPolicyFiles(fileOrDir, limits.maxBytes);
  if (read.errors.length > 0) return { ok: false, errors: read.errors };
  return parsePolicyWithin(fileOrDir, read.files, limits);
}

function reason(e: unknown): string {
  const code = (e as { code?: string }).code;
  if (code === 'ENOENT') return 'no such file or directory';
  if (code === 'EACCES') return 'permission denied';
  return e instanceof Error ? e.message : String(e);
}
