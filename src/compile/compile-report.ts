/**
 * What the compiler tells a person about its input: problems it worked around (never guessed
 * around). Reports are data, sorted by (kind, hostId, appId, taskId, message), so two replicas
 * print the same list.
 */
export type CompileReportKind =
  | 'label-rejected'
  | 'label-unknown-name'
  | 'host-without-address'
  | 'task-unknown-host'
  | 'task-unknown-app'
  | 'port-conflict'
  /** A task whose app or task id cannot stand in an egress member (left out of egress-task). */
  | 'egress-unsafe-id';

export interface CompileReport {
  readonly kind: CompileReportKind;
  /** One sentence for a person. */
  readonly message: string;
  readonly appId?: string;
  readonly hostId?: string;
  readonly taskId?: string;
}

function cmp(a: string | undefined, b: string | undefined): number {
  const x = a ?? '';
  const y = b ?? '';
  return x < y ? -1 : x > y ? 1 : 0;
}

export function compareReports(a: CompileReport, b: CompileReport): number {
  return (
    cmp(a.kind, b.kind) ||
    cmp(a.hostId, b.hostId) ||
    cmp(a.appId, b.appId) ||
    cmp(a.taskId, b.taskId) ||
    cmp(a.message, b.message)
  );
}

/** Reports sorted (compareReports), each distinct report once. */
export function sortedUniqueReports(reports: CompileReport[]): CompileReport[] {
  reports.sort(compareReports);
  return reports.filter((r, i) => i === 0 || compareReports(r, reports[i - 1]!) !== 0);
}
