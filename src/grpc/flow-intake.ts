/**
 * The controller's intake of FlowReports (issue 11): every record validated (flow-wire.ts), the
 * good ones handed to the FlowSink (src/flows/flow-store.ts), the bad ones counted
 * (`portcullis_flow_records_rejected_total`) and logged at warn through the stream's logger, at
 * most once per host per LOG_EVERY_MS (the next line says how many were skipped meanwhile), so a
 * broken or hostile agent cannot flood the log. Nothing here ends a stream: a bad record, or a
 * sink that throws, costs that record or that report only.
 */
import type { FlowSink } from '../flows/flow-types.js';
import { decodeFlowReport } from './flow-wire.js';
import type { FlowReport__Output } from './generated/portcullis/v1/FlowReport.js';
import type { SyncLogger } from './sync-logger.js';

export const LOG_EVERY_MS = 60_000;

interface LogWindow {
  at: number;
  /** Records rejected since the last line (not logged one by one). */
  unlogged: number;
}

export class FlowIntake {
  private rejectedTotal = 0;
  private readonly logged = new Map<string, LogWindow>();

  constructor(
    private readonly sink: FlowSink,
    private readonly logger: SyncLogger,
    private readonly now: () => number,
  ) {}

  /** Records rejected since the controller started. */
  get rejected(): number {
    return this.rejectedTotal;
  }

  receive(hostId: string, report: FlowReport__Output): void {
    const now = this.now();
    const decoded = decodeFlowReport(report, now);
    if (decoded.rejected.length > 0) {
      this.rejectedTotal += decoded.rejected.length;
      this.logRejected(hostId, decoded.rejected, now);
    }
    if (decoded.entries.length === 0 && decoded.lost.length === 0) return;
    try {
      this.sink.ingest(hostId, decoded.entries, decoded.lost, now);
    } catch (err) {
      this.logger.warn({ hostId, records: decoded.entries.length, error: err instanceof Error ? err.message : String(err) }, 'sync: flow records could not be kept');
    }
  }

  private logRejected(hostId: string, rejected: readonly { index: number; reason: string }[], now: number): void {
    const window = this.logged.get(hostId);
    if (window && now - window.at < LOG_EVERY_MS) {
      window.unlogged += rejected.length;
      return;
    }
    const first = rejected[0];
    this.logger.warn(
      { hostId, rejected: rejected.length, reason: first?.reason, record: first?.index, unloggedSinceLast: window?.unlogged ?? 0 },
      'sync: flow records rejected',
    );
    this.logged.set(hostId, { at: now, unlogged: 0 });
  }
}
