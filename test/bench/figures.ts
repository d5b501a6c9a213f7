/**
 * What a benchmark scenario reports: measured figures, each with its unit and (optionally) a
 * target, so the runner can print PASS/MISS. Figures travel from a scenario's child process to
 * the runner as one `@@FIGURE <json>` line each on stdout; everything else a child prints is
 * progress text, passed through as is.
 */

export interface Target {
  /** `<=`: the figure must not exceed `value`; `>=`: it must reach it. */
  readonly op: '<=' | '>=';
  readonly value: number;
}

export interface Figure {
  readonly scenario: string;
  readonly name: string;
  readonly value: number;
  readonly unit: string;
  readonly target?: Target;
  /** Baseline or context measured in the same run (e.g. "bare restore 612 ms, ratio 1.08x"). */
  readonly note?: string;
}

export const FIGURE_MARK = '@@FIGURE ';

export function verdict(f: Figure): 'PASS' | 'MISS' | '' {
  if (!f.target) return '';
  const ok = f.target.op === '<=' ? f.value <= f.target.value : f.value >= f.target.value;
  return ok ? 'PASS' : 'MISS';
}

/** Emits a figure from a scenario (child process) to the runner, and echoes it for humans. */
export function report(f: Figure): void {
  process.stdout.write(`${FIGURE_MARK}${JSON.stringify(f)}\n`);
}

export function parseFigureLine(line: string): Figure | undefined {
  if (!line.startsWith(FIGURE_MARK)) return undefined;
  try {
    return JSON.parse(line.slice(FIGURE_MARK.length)) as Figure;
  } catch {
    return undefined;
  }
}

function num(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (Math.abs(v) >= 100) return v.toFixed(0);
  if (Math.abs(v) >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

/** The results table: scenario, figure, value, target, verdict, note. */
export function formatTable(figures: readonly Figure[]): string {
  const rows = figures.map((f) => [
    f.scenario,
    f.name,
    `${num(f.value)} ${f.unit}`,
    f.target ? `${f.target.op} ${num(f.target.value)} ${f.unit}` : '',
    verdict(f),
    f.note ?? '',
  ]);
  const head = ['scenario', 'figure', 'value', 'target', 'result', 'note'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: readonly string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(head), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)].join('\n');
}

export function log(message: string): void {
  process.stdout.write(`  ${message}\n`);
}
