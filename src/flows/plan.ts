/**
 * `portcullis plan OLD NEW`, the pure core: which recorded flows change verdict under a policy
 * edit. Each flow is re-judged (plan-judge.ts: the reference evaluator, the half its agent
 * recorded) under OLD and under NEW against the same cluster; a change is any move between
 * allowed, denied and audit (a would-be drop that is only logged), so both "this edit breaks
 * traffic that flows today" (allowed → denied), "this edit opens what was refused" and the
 * audit ↔ enforce moves of a mode change (audit → denied: a group switched to enforce) show.
 * A flow that cannot be judged under one of the two (its app left the cluster) is counted by
 * reason, never guessed. Changes are ordered by connections (packets) descending, then key.
 */
import type { ClusterState } from '../inventory/cluster-state.js';
import type { Policy } from '../policy/policy-model.js';
import type { FlowVerdict } from './flow-types.js';
import type { ObservedFlow } from './observed-flow.js';
import { judgeFlow, type Judgement } from './plan-judge.js';

export interface PlanChange {
  readonly flow: ObservedFlow;
  readonly before: Judgement;
  readonly after: Judgement;
}

export interface PlanSummary {
  /** Flows judged under both policies. */
  readonly judged: number;
  readonly unchanged: number;
  /** "before → after" → flows with that change. */
  readonly moves: Readonly<Record<string, number>>;
}

export interface Plan {
  readonly changes: readonly PlanChange[];
  readonly summary: PlanSummary;
  readonly notJudged: readonly { readonly reason: string; readonly flows: number; readonly connections: number }[];
}

export const moveText = (before: FlowVerdict, after: FlowVerdict): string => `${before} → ${after}`;

export function planFlows(before: Policy, after: Policy, cluster: ClusterState, flows: readonly ObservedFlow[]): Plan {
  const changes: PlanChange[] = [];
  const moves: Record<string, number> = {};
  const notJudged = new Map<string, { flows: number; connections: number }>();
  let judged = 0;
  for (const flow of flows) {
    const a = judgeFlow(before, cluster, flow);
    const b = judgeFlow(after, cluster, flow);
    if (!a.ok || !b.ok) {
      const reason = !a.ok ? a.why : (b as { why: string }).why;
      const n = notJudged.get(reason) ?? { flows: 0, connections: 0 };
      n.flows++;
      n.connections += flow.packets;
      notJudged.set(reason, n);
      continue;
    }
    judged++;
    if (a.judgement.verdict === b.judgement.verdict) continue;
    changes.push({ flow, before: a.judgement, after: b.judgement });
    const move = moveText(a.judgement.verdict, b.judgement.verdict);
    moves[move] = (moves[move] ?? 0) + 1;
  }
  changes.sort((x, y) => y.flow.packets - x.flow.packets || (x.flow.key < y.flow.key ? -1 : x.flow.key > y.flow.key ? 1 : 0));
  return {
    changes,
    summary: { judged, unchanged: judged - changes.length, moves },
    notJudged: [...notJudged].map(([reason, n]) => ({ reason, ...n })).sort((x, y) => y.connections - x.connections || (x.reason < y.reason ? -1 : 1)),
  };
}
