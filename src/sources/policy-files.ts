/**
 * Reading policy files from disk: one file, or a directory's *.yaml / *.yml files (not recursive,
 * sorted by name). The only I/O of the policy pipeline; parsing is parsePolicy's (pure).
 *
 * Contract: never throws, never blocks on a special file. Unreadable paths, a path or a policy
 * file that is not a regular file (FIFO, socket, device: refused before reading), and a directory
 * without policy files are errors at line 1, col 1. Hidden entries (`.git`, editor swap files) and
 * files of other extensions are skipped silently; a subdirectory is skipped with a warning naming
 * it (it is not read, which someone who put policy files there would not expect).
 */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Diagnostic } from '../diagnostic.js';
import type { ParseResult, PolicyFileText } from '../policy/parse-policy.js';
import { bytesOverLimit, DEFAULT_POLICY_LIMITS, parsePolicyWithin, type PolicyLimits } from '../policy/policy-limits.js';
import { fileKind, readErrorReason, readRegularFile } from './read-regular-file.js';

export interface PolicyFilesRead {
  readonly files: PolicyFileText[];
  readonly errors: Diagnostic[];
  readonly warnings: Diagnostic[];
}

const POLICY_FILE = /\.ya?ml$/;

/** `maxBytes`: the policy files' total size is checked (stat) before any is read (PolicyLimits.maxBytes). */
export async function readPolicyFiles(fileOrDir: string, maxBytes = Infinity): Promise<PolicyFilesRead> {
  const at = (file: string, message: string): Diagnostic => ({ file, line: 1, col: 1, message, severity: 'error' });
  const error = (file: string, message: string): PolicyFilesRead => ({ files: [], errors: [at(file, message)], warnings: [] });
  const overLimit = (file: string, size: number): PolicyFilesRead | undefined => {
    const d = size > maxBytes ? bytesOverLimit(file, size, { maxBytes }) : undefined;
    return d ? { files: [], errors: [d], warnings: [] } : undefined;
  };
  let isDir: boolean;
  let size: number;
  try {
    const st = await stat(fileOrDir);
    isDir = st.isDirectory();
    size = st.size;
  } catch (e) {
    return error(fileOrDir, `cannot read policy: ${readErrorReason(e)}; give a policy file or a directory of *.yaml files`);
  }
  if (!isDir) {
    const refused = overLimit(fileOrDir, size);
    if (refused) return refused;
    try {
      return { files: [{ path: fileOrDir, text: await readRegularFile(fileOrDir) }], errors: [], warnings: [] };
    } catch (e) {
      return error(fileOrDir, `cannot read policy file: ${readErrorReason(e)}; give a policy file or a directory of *.yaml files`);
    }
  }
  let names: string[];
  try {
    names = (await readdir(fileOrDir)).filter((name) => !name.startsWith('.')).sort();
  } catch (e) {
    return error(fileOrDir, `cannot list policy directory: ${readErrorReason(e)}`);
  }
  const files: PolicyFileText[] = [];
  const errors: Diagnostic[] = [];
  const warnings: Diagnostic[] = [];
  // First every entry's kind and size (nothing read yet), then the policy files' text.
  const toRead: string[] = [];
  let total = 0;
  for (const name of names) {
    const path = join(fileOrDir, name);
    let st: Awaited<ReturnType<typeof stat>>;
    try {
      st = await stat(path); // follows symlinks: a link to a file is a file
    } catch (e) {
      if (POLICY_FILE.test(name)) errors.push(at(path, `cannot read policy file: ${readErrorReason(e)}`));
      continue;
    }
    if (fileKind(st) === 'directory') {
      warnings.push({
        ...at(path, `subdirectory '${name}' is skipped: a policy directory is not read recursively; move its files up into ${fileOrDir}, or give this subdirectory as the policy`),
        severity: 'warning',
      });
      continue;
    }
    if (!POLICY_FILE.test(name)) continue;
    toRead.push(path);
    total += Number(st.size);
  }
  const refused = overLimit(fileOrDir, total);
  if (refused) return refused;
  for (const path of toRead) {
    try {
      files.push({ path, text: await readRegularFile(path) });
    } catch (e) {
      errors.push(at(path, `cannot read policy file: ${readErrorReason(e)}`));
    }
  }
  if (toRead.length === 0 && errors.length === 0) return { files: [], errors: [at(fileOrDir, 'no policy files in this directory: expected *.yaml or *.yml files')], warnings };
  return { files, errors, warnings };
}

/** Reads and parses a policy file or directory, within `limits`; warnings of the read come first. */
export async function loadPolicy(fileOrDir: string, limits: PolicyLimits = DEFAULT_POLICY_LIMITS): Promise<ParseResult> {
  const read = await readPolicyFiles(fileOrDir, limits.maxBytes);
  if (read.errors.length > 0) return { ok: false, errors: read.errors };
  const result = parsePolicyWithin(fileOrDir, read.files, limits);
  return result.ok ? { ...result, warnings: [...read.warnings, ...result.warnings] } : result;
}
