/** The types of `portcullis suggest` (suggest.ts): its options and its answer. Types only. */
import type { FlowVerdict } from './flow-types.js';

export interface SuggestOptions {
  /** The recorded verdicts taken as evidence (default denied and audit). */
  readonly verdicts?: readonly FlowVerdict[];
  /** Only flows last seen at or after this time (ms since the epoch). */
  readonly sinceMs?: number;
  /** At most this many rules, the first by connections (0: all); the answer then says what the others carry (Suggestion.leftOut). */
  readonly top?: number;
}

/** What the rules left out by a cap (SuggestOptions.top) carry: the sums of their evidence. */
export interface LeftOut {
  readonly rules: number;
  readonly connections: number;
  readonly bytes: number;
  /** Flow records (a record whose apps span several groups counts in each of its rules). */
  readonly flows: number;
}

export interface SuggestedGroup {
  readonly name: string;
  readonly apps: readonly string[];
}

export interface SuggestedNetwork {
  readonly name: string;
  readonly cidrs: readonly string[];
}

export interface Evidence {
  /** New connections seen (the flows' packets). */
  readonly connections: number;
  readonly bytes: number;
  readonly flows: number;
  readonly firstSeen: string;
  readonly lastSeen: string;
  /** The hosts involved (reporters, source and destination hosts), sorted. */
  readonly hosts: readonly string[];
  readonly verdicts: readonly FlowVerdict[];
}

export interface SuggestedRule {
  readonly name: string;
  readonly from: string;
  readonly to: string;
  /** A port name, or a host port number. */
  readonly port: string | number;
  readonly protocol?: 'tcp' | 'udp';
  readonly evidence: Evidence;
}

export interface SkippedFlows {
  readonly reason: string;
  readonly flows: number;
  readonly connections: number;
}

export interface Suggestion {
  readonly groups: readonly SuggestedGroup[];
  readonly networks: readonly SuggestedNetwork[];
  readonly rules: readonly SuggestedRule[];
  /** Evidence flows no rule is suggested for, by reason (most connections first). */
  readonly skipped: readonly SkippedFlows[];
  /** Flows of the asked verdicts that the policy allows now (nothing to suggest). */
  readonly allowedNow: number;
  /** Ingress flows left to the egress flow of the same connection. */
  readonly coveredByEgress: number;
  /** With SuggestOptions.top: the rules left out. */
  readonly leftOut?: LeftOut;
}
