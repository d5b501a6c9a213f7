/**
 * The `/flows` answers of several controller replicas merged into one (issue 12: flow records
 * from every replica visible from any replica). Pure.
 *
 * An agent reports to the one replica it is connected to; when it moves, one aggregate (same
 * key: direction, verdict, reporter, source, destination, protocol, port) has parts on several
 * replicas. Merged per key: packets and bytes summed, firstSeen the earliest, lastSeen the
 * latest; the other fields (the resolution) are those of the first part given (the asking
 * replica's own, then the peers' in the order given). Lost counts are summed per reporter,
 * direction, verdict and family. The result is ordered as /flows orders (packets descending,
 * then key) and cut at `limit`.
 *
 * Exactness: every part is already cut at `limit` by its replica, so a key in the tail of one
 * replica would miss that part; the asking side (src/controller/flow-peers.ts) asks such a
 * replica once more for exactly the keys shown and merges that too, so every key shown has its
 * merged count. What stays approximate is the choice near the cut: a key in the tail of every
 * replica whose merged total would place it in the first `limit` is not shown (a narrower
 * filter or a higher limit shows it).
 */
import type { FlowLostRow } from './flows-answer.js';
import { byLostPackets, byPackets, lostKey } from './flow-store.js';
import type { ObservedFlow } from './observed-flow.js';

/** What one replica answered (the records and lost counts of a /flows document). */
export interface FlowsPart {
  readonly flows: readonly ObservedFlow[];
  readonly lost: readonly FlowLostRow[];
}

export interface MergedFlows {
  readonly flows: ObservedFlow[];
  readonly lost: FlowLostRow[];
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

function earlier(a: string, b: string): string {
  return Date.parse(b) < Date.parse(a) ? b : a;
}

function later(a: string, b: string): string {
  return Date.parse(b) > Date.parse(a) ? b : a;
}

export function mergeFlowsParts(parts: readonly FlowsPart[], limit: number): MergedFlows {
  const flows = new Map<string, Mutable<ObservedFlow>>();
  const lost = new Map<string, Mutable<FlowLostRow>>();
  for (const part of parts) {
    for (const f of part.flows) {
      const m = flows.get(f.key);
      if (m === undefined) {
        flows.set(f.key, { ...f });
        continue;
      }
      m.packets += f.packets;
      m.bytes += f.bytes;
      m.firstSeen = earlier(m.firstSeen, f.firstSeen);
      m.lastSeen = later(m.lastSeen, f.lastSeen);
    }
    for (const l of part.lost) {
      const k = lostKey(l.reportedBy, l);
      const m = lost.get(k);
      if (m) m.packets += l.packets;
      else lost.set(k, { ...l });
    }
  }
  return { flows: [...flows.values()].sort(byPackets).slice(0, Math.max(0, limit)), lost: [...lost.values()].sort(byLostPackets) };
}
