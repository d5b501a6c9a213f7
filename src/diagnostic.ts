/**
 * A message about one place in one input file, for a person to read: `file:line:col: message`.
 * Line and column are 1-based. Messages say what was found, what was expected and what to do.
 */

export type Severity = 'error' | 'warning';

/** Where something in an input file is (a policy definition, an inventory entry); line and col are 1-based. */
export interface SourceLocation {
  readonly file: string;
  readonly line: number;
  readonly col: number;
}

export interface Diagnostic {
  readonly file: string;
  readonly line: number;
  readonly col: number;
  readonly message: string;
  /** Absent = error. */
  readonly severity?: Severity;
}

/**
 * One line, whatever the input held: control characters, line separators and bidirectional
 * overrides (quoted from a file into a message) are written as escapes, so a name holding a
 * newline cannot forge a second diagnostic line and a terminal shows what the file contains.
 */
export function formatDiagnostic(d: Diagnostic): string {
  const prefix = d.severity === 'warning' ? 'warning: ' : '';
  return escapeUnprintable(`${d.file}:${d.line}:${d.col}: ${prefix}${d.message}`);
}

/**
 * `text` with control characters, line separators and bidirectional overrides written as
 * escapes, for a terminal or a log line: `\n`, `\r`, `\t` by name unless `named` is false
 * (then every one is `\uXXXX`, as `portcullis status` shows text from the controller).
 */
export function escapeUnprintable(text: string, named = true): string {
  return text.replace(UNPRINTABLE, named ? escapeChar : escapeCode);
}

/** `text` with each of those characters replaced by a space (untrusted text that is shown, not quoted). */
export function blankUnprintable(text: string): string {
  return text.replace(UNPRINTABLE, ' ');
}

const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
const NAMED: Readonly<Record<string, string>> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

function escapeChar(c: string): string {
  return NAMED[c] ?? escapeCode(c);
}

function escapeCode(c: string): string {
  return `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
}

/** Sorted by file, line, column, then message: the order a person reads a file in. */
export function sortDiagnostics(list: readonly Diagnostic[]): Diagnostic[] {
  return [...list].sort(
    (a, b) =>
      (a.file < b.file ? -1 : a.file > b.file ? 1 : 0) ||
      a.line - b.line ||
      a.col - b.col ||
      (a.message < b.message ? -1 : a.message > b.message ? 1 : 0),
  );
}
