/**
 * What an agent says about per-app egress (proto EgressStatus, in Hello, Ack and Pong), as the
 * controller keeps and shows it. Everything in it is untrusted agent input: the reason is
 * stripped of control characters, line separators and bidirectional overrides and cut to
 * REASON_MAX characters, and the task counts must be non-negative safe integers (else 0), before
 * anything logs, serves or prints them.
 *
 * An agent whose Hello has no EgressStatus is of a release before egress: it is recorded as not
 * supported (so not enforcing) with UNSUPPORTED_REASON, and its states are sent without the
 * egress kinds (agent-view.ts). A later Ack or Pong without one keeps what the agent said last.
 */
import { blankUnprintable } from '../diagnostic.js';
import type { EgressStatus__Output } from './generated/portcullis/v1/EgressStatus.js';
import type { SyncLogger } from './sync-logger.js';

export interface EgressReport {
  /** The agent understands the egress set kinds (it is sent them). */
  readonly supported: boolean;
  /** It enforces them now; false means host-level only on that host. */
  readonly enforcing: boolean;
  /** Why not ('' when enforcing), cleaned (see the header). */
  readonly reason: string;
  readonly mappedTasks: number;
  readonly unmappedTasks: number;
}

export const REASON_MAX = 200;
export const UNSUPPORTED_REASON = "the agent's release does not support egress: it is sent its states without the egress sets";
const NO_REASON = 'the agent gave no reason';

/** `text` without control characters (each becomes a space), trimmed and at most `max` characters. */
export function cleanAgentText(text: string, max = REASON_MAX): string {
  const clean = blankUnprintable(text).trim();
  return clean.length <= max ? clean : `${clean.slice(0, max - 1).replace(/[\ud800-\udbff]$/, '')}…`;
}

/** A count an agent sent: a non-negative safe integer, else 0. */
export const agentCount = (v: unknown): number => (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : 0);

/** The report of an EgressStatus message; `null`/absent = an agent without egress support. */
export function egressReport(message: EgressStatus__Output | null | undefined): EgressReport {
  if (!message) return { supported: false, enforcing: false, reason: UNSUPPORTED_REASON, mappedTasks: 0, unmappedTasks: 0 };
  const supported = message.supported === true;
  const enforcing = supported && message.enforcing === true;
  const given = typeof message.reason === 'string' ? cleanAgentText(message.reason) : '';
  const reason = enforcing ? '' : given !== '' ? given : supported ? NO_REASON : UNSUPPORTED_REASON;
  return { supported, enforcing, reason, mappedTasks: agentCount(message.mappedTasks), unmappedTasks: agentCount(message.unmappedTasks) };
}

/** Where a host's egress report is kept across its streams (HostRecord). */
export interface EgressHolder {
  readonly hostId: string;
  egress: EgressReport | undefined;
  /** The reason last logged at warn; undefined while enforcing (or before any report). */
  egressWarned: string | undefined;
}

/**
 * Records `report` for `host` and logs a change that matters: a warn line when the agent cannot
 * enforce, once per change of reason per host (a reconnect with the same reason logs nothing),
 * and an info line when it enforces again.
 */
export function recordEgress(host: EgressHolder, report: EgressReport, logger: SyncLogger): void {
  host.egress = report;
  if (!report.enforcing) {
    if (host.egressWarned === report.reason) return;
    host.egressWarned = report.reason;
    logger.warn(
      { hostId: host.hostId, egressSupported: report.supported, reason: report.reason, mappedTasks: report.mappedTasks, unmappedTasks: report.unmappedTasks },
      'sync: agent cannot enforce egress: host-level only on this host',
    );
    return;
  }
  if (host.egressWarned === undefined) return;
  host.egressWarned = undefined;
  logger.info({ hostId: host.hostId, mappedTasks: report.mappedTasks, unmappedTasks: report.unmappedTasks }, 'sync: agent enforces egress');
}
