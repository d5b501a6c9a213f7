/**
 * One interval's FlowReport on the agent's Sync stream (issue 11; the rules are in the header of
 * sync-client.ts): taken from the FlowSource only when the stream may carry it (the controller
 * said accepts_flow_reports, nothing rejected it, the transport took the last write), sent split
 * by flow-wire.ts, and after a full buffer nothing more until 'drain', so memory stays bounded by
 * one read.
 */
import type { FlowSource } from '../src/flows/flow-types.js';
import { FLOW_REPORT_MAX_RECORDS, flowReportMessages } from '../src/grpc/flow-wire.js';
import type { AgentMessage } from '../src/grpc/proto.js';
import type { SyncLogger } from '../src/grpc/sync-logger.js';

/** What of a Sync stream the sender reads and marks. */
export interface FlowReportStream {
  readonly call: { write(message: AgentMessage): boolean; once(event: 'drain', listener: () => void): unknown };
  readonly rejectedReason: string | undefined;
  readonly acceptsFlows: boolean;
  flowBlocked: boolean;
}

export function sendFlowReport(stream: FlowReportStream, source: FlowSource, logger: SyncLogger, hostId: string): void {
  if (!stream.acceptsFlows || stream.flowBlocked || stream.rejectedReason !== undefined) return;
  let taken: ReturnType<FlowSource['take']>;
  try {
    taken = source.take(FLOW_REPORT_MAX_RECORDS);
  } catch (err) {
    logger.warn({ hostId, error: err instanceof Error ? err.message : String(err) }, 'sync: cannot read the recorded flows');
    return;
  }
  let full = false;
  for (const flowReport of flowReportMessages(taken.entries, taken.overflow)) full = !stream.call.write({ flowReport }) || full;
  if (!full) return;
  stream.flowBlocked = true;
  stream.call.once('drain', () => {
    stream.flowBlocked = false;
  });
}
