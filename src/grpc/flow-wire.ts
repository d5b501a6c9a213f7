/**
 * Flow records on the wire (proto FlowReport, FlowRecord, FlowLost, FlowStatus; issue 11): the
 * agent's encoding and splitting, the controller's decoding and validation.
 *
 * Splitting: one report read (at most FLOW_REPORT_MAX_RECORDS records, what `FlowSource.take`
 * is asked for) becomes as few messages as fit FLOW_REPORT_MAX_RECORDS records and
 * FLOW_REPORT_MAX_BYTES each (an upper bound of the encoded size, under grpc-js's default 4 MiB
 * receive limit with room for framing), every message but the last with `more` set. The lost
 * counts go in the first message.
 *
 * Validation: everything in a report is untrusted agent input. A record is used only when its
 * direction, verdict and protocol are of their closed vocabularies, its port is 1-65535, its
 * addresses parse (src/net; kept in canonical form), an egress source is an app id that may
 * stand in a member (src/net/member-syntax isMemberAppId), its counts are integers from 0 to
 * 2^53 and its times are within a day of the controller's clock. A bad one is skipped with a
 * reason that echoes at most a bounded, cleaned slice of what was sent; the rest of the report
 * is used.
 */
import { FLOW_VERDICTS, type FlowDirection, type FlowEntry, type FlowOverflow, type FlowStatusInfo } from '../flows/flow-types.js';
import { parseAddress } from '../net/address.js';
import { isMemberAppId } from '../net/member-syntax.js';
import { agentCount, cleanAgentText } from './egress-status.js';
import type { FlowLost, FlowLost__Output } from './generated/portcullis/v1/FlowLost.js';
import type { FlowRecord, FlowRecord__Output } from './generated/portcullis/v1/FlowRecord.js';
import type { FlowReport, FlowReport__Output } from './generated/portcullis/v1/FlowReport.js';
import type { FlowStatus, FlowStatus__Output } from './generated/portcullis/v1/FlowStatus.js';

export const FLOW_REPORT_MAX_RECORDS = 65_536;
/** Bytes of records per message (bound): 4 MiB, grpc-js's default receive limit, less 64 KiB of room. */
export const FLOW_REPORT_MAX_BYTES = 4 * 1024 * 1024 - 64 * 1024;
/** Longest text a record field may have (an app id is at most 512 characters, an address far less). */
const FIELD_MAX = 600;
const COUNT_MAX = 2 ** 53;
const DAY_MS = 86_400_000;
const DIRECTIONS: readonly FlowDirection[] = ['ingress', 'egress'];
const PROTOCOLS: readonly FlowEntry['protocol'][] = ['tcp', 'udp'];

export interface SplitLimits {
  readonly maxRecords: number;
  readonly maxBytes: number;
}

const DEFAULT_LIMITS: SplitLimits = { maxRecords: FLOW_REPORT_MAX_RECORDS, maxBytes: FLOW_REPORT_MAX_BYTES };

/** An upper bound of a record's encoded size inside a FlowReport (tags, lengths, varints of 10 bytes). */
export function recordSizeBound(entry: FlowEntry): number {
  return 96 + Buffer.byteLength(entry.source, 'utf8') + Buffer.byteLength(entry.destination, 'utf8');
}

export function flowRecordMessage(entry: FlowEntry): FlowRecord {
  return {
    direction: entry.direction,
    verdict: entry.verdict,
    source: entry.source,
    destination: entry.destination,
    protocol: entry.protocol,
    port: entry.port,
    packets: entry.packets,
    bytes: entry.bytes,
    firstSeenMs: entry.firstSeenMs,
    lastSeenMs: entry.lastSeenMs,
  };
}

/** The messages of one read: none when there is nothing to say, else split as the header says. */
export function flowReportMessages(entries: readonly FlowEntry[], lost: readonly FlowOverflow[], limits: SplitLimits = DEFAULT_LIMITS): FlowReport[] {
  const lostMessages: FlowLost[] = lost.filter((l) => l.packets > 0).map((l) => ({ direction: l.direction, verdict: l.verdict, family: l.family, packets: l.packets }));
  if (entries.length === 0 && lostMessages.length === 0) return [];
  const out: FlowReport[] = [];
  let records: FlowRecord[] = [];
  let bytes = 0;
  for (const entry of entries) {
    const size = recordSizeBound(entry);
    if (records.length > 0 && (records.length >= limits.maxRecords || bytes + size > limits.maxBytes)) {
      out.push({ records, lost: [], more: true });
      records = [];
      bytes = 0;
    }
    records.push(flowRecordMessage(entry));
    bytes += size;
  }
  out.push({ records, lost: [], more: false });
  out[0] = { ...out[0], lost: lostMessages };
  return out;
}

export function flowStatusMessage(info: FlowStatusInfo): FlowStatus {
  return { recording: info.recording, reason: info.reason, intervalSeconds: info.intervalSeconds, maxEntries: info.maxEntries };
}

/** An agent's FlowStatus, cleaned; null when absent (an agent of a release before flows). */
export function flowStatusInfo(message: FlowStatus__Output | null | undefined): FlowStatusInfo | null {
  if (!message) return null;
  const recording = message.recording === true;
  const given = typeof message.reason === 'string' ? cleanAgentText(message.reason) : '';
  return {
    recording,
    reason: recording ? '' : given !== '' ? given : 'the agent gave no reason',
    intervalSeconds: agentCount(message.intervalSeconds),
    maxEntries: agentCount(message.maxEntries),
  };
}

export interface RejectedRecord {
  /** Index in the message's records (lost entries: -1 - index). */
  readonly index: number;
  readonly reason: string;
}

export interface DecodedFlowReport {
  readonly entries: FlowEntry[];
  readonly lost: FlowOverflow[];
  readonly rejected: RejectedRecord[];
  readonly more: boolean;
}

/** The usable records of `report` and why the others are not (see the header). */
export function decodeFlowReport(report: FlowReport__Output, nowMs: number): DecodedFlowReport {
  const entries: FlowEntry[] = [];
  const lost: FlowOverflow[] = [];
  const rejected: RejectedRecord[] = [];
  (report.records ?? []).forEach((record, index) => {
    const result = decodeRecord(record, nowMs);
    if (typeof result === 'string') rejected.push({ index, reason: result });
    else entries.push(result);
  });
  (report.lost ?? []).forEach((item, index) => {
    const result = decodeLost(item);
    if (typeof result === 'string') rejected.push({ index: -1 - index, reason: `lost: ${result}` });
    else lost.push(result);
  });
  return { entries, lost, rejected, more: report.more === true };
}

/** The record as a FlowEntry, or why it cannot be used. */
export function decodeRecord(record: FlowRecord__Output, nowMs: number): FlowEntry | string {
  const direction = oneOf(DIRECTIONS, record.direction);
  if (direction === undefined) return `direction ${quoted(record.direction)} is not ingress or egress`;
  const verdict = oneOf(FLOW_VERDICTS, record.verdict);
  if (verdict === undefined) return `verdict ${quoted(record.verdict)} is not allowed, denied or audit`;
  const protocol = oneOf(PROTOCOLS, record.protocol);
  if (protocol === undefined) return `protocol ${quoted(record.protocol)} is not tcp or udp`;
  if (!Number.isInteger(record.port) || record.port < 1 || record.port > 65_535) return `port ${String(record.port)} is not 1-65535`;
  const ends = direction === 'ingress' ? ingressEnds(record) : egressEnds(record);
  if (typeof ends === 'string') return ends;
  for (const [field, value] of [['packets', record.packets], ['bytes', record.bytes]] as const) {
    if (!isCount(value)) return `${field} ${String(value)} is not a count from 0 to 2^53`;
  }
  for (const [field, value] of [['first_seen_ms', record.firstSeenMs], ['last_seen_ms', record.lastSeenMs]] as const) {
    if (!Number.isSafeInteger(value) || Math.abs(value - nowMs) > DAY_MS) return `${field} ${String(value)} is not within a day of now`;
  }
  return {
    direction,
    verdict,
    source: ends.source,
    destination: ends.destination,
    protocol,
    port: record.port,
    packets: record.packets,
    bytes: record.bytes,
    firstSeenMs: record.firstSeenMs,
    lastSeenMs: record.lastSeenMs,
  };
}

function decodeLost(item: FlowLost__Output): FlowOverflow | string {
  const direction = oneOf(DIRECTIONS, item.direction);
  if (direction === undefined) return `direction ${quoted(item.direction)} is not ingress or egress`;
  const verdict = oneOf(FLOW_VERDICTS, item.verdict);
  if (verdict === undefined) return `verdict ${quoted(item.verdict)} is not allowed, denied or audit`;
  if (item.family !== 4 && item.family !== 6) return `family ${String(item.family)} is not 4 or 6`;
  if (!isCount(item.packets)) return `packets ${String(item.packets)} is not a count from 0 to 2^53`;
  return { direction, verdict, family: item.family, packets: item.packets };
}

/** ingress: an address → '' (this host). */
function ingressEnds(record: FlowRecord__Output): { source: string; destination: string } | string {
  const source = canonical(record.source);
  if (source === undefined) return `source ${quoted(record.source)} is not an IP address`;
  if (record.destination !== '') return `destination ${quoted(record.destination)} must be empty for ingress (the reporting host)`;
  return { source, destination: '' };
}

/** egress: a local app id → an address. */
function egressEnds(record: FlowRecord__Output): { source: string; destination: string } | string {
  if (typeof record.source !== 'string' || !isMemberAppId(record.source)) return `source ${quoted(record.source)} is not an app id`;
  const destination = canonical(record.destination);
  if (destination === undefined) return `destination ${quoted(record.destination)} is not an IP address`;
  return { source: record.source, destination };
}

/** The canonical form of an address (src/net; what the kernel saw, so IPv4-mapped too), or undefined for anything else. */
function canonical(text: unknown): string | undefined {
  if (typeof text !== 'string' || text.length > FIELD_MAX) return undefined;
  const parsed = parseAddress(text, { mapped: 'accept' });
  return parsed.ok ? parsed.canonical : undefined;
}

function oneOf<T extends string>(values: readonly T[], text: unknown): T | undefined {
  return values.find((v) => v === text);
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= COUNT_MAX;
}

/** `text` in quotes, cleaned and cut so that a reason never echoes more than 100 characters. */
function quoted(text: unknown): string {
  return `'${cleanAgentText(typeof text === 'string' ? text : String(text), 100)}'`;
}
