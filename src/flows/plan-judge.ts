/**
 * A recorded flow re-judged by the reference evaluator (src/evaluate, the one `explain` uses)
 * against a policy and a cluster: what `plan` compares under two policies and what `suggest`
 * asks of the policy in force ("is this still not allowed, and why").
 *
 * Contract: the half the kernel recorded is the half judged. An ingress record (the destination
 * host's agent) is the destination side: its source address against every owner of the claim
 * (destination host, protocol, host port), allowed only when every owner allows (a port conflict
 * intersects). An egress record (the source host's agent) is the egress side: the source app's
 * task on the reporting host towards that claim. The claim is looked up in the cluster; a task
 * that has moved since (Marathon gives a new host port on restart) is judged as it was recorded:
 * its app and port (by the task id, else by the port name) at the recorded host port, so a
 * verdict never silently becomes "unmanaged" because the task is gone. A flow that cannot be
 * judged (its app is not in the cluster, its port cannot be found, its address does not parse)
 * says why instead.
 */
import type { App, ClusterState, Task } from '../inventory/cluster-state.js';
import type { Policy } from '../policy/policy-model.js';
import type { SourceLocation } from '../diagnostic.js';
import { evaluateConnection } from '../evaluate/reference-evaluator.js';
import { claimOwners, egressVerdict } from '../evaluate/egress-evaluator.js';
import { findApp, ipFamily, parseIp } from '../evaluate/policy-walk.js';
import type { ObservedFlow } from './observed-flow.js';
import type { FlowVerdict } from './flow-types.js';

export interface Judgement {
  readonly verdict: FlowVerdict;
  /** The evaluator's tier (failsafe, policy, labels, default; egress: also unmanaged, off, no-address, unmapped). */
  readonly tier: string;
  /** The rule that decided, or that passed the flow to the labels tier. */
  readonly rule?: string;
  readonly at?: string;
  readonly reason: string;
}

export type JudgeResult = { readonly ok: true; readonly judgement: Judgement } | { readonly ok: false; readonly why: string };

interface Decided {
  readonly decision: 'allow' | 'deny';
  readonly enforced: boolean;
  readonly tier: string;
  readonly rule?: string;
  readonly at?: SourceLocation;
  readonly reason: string;
}

function judgementOf(v: Decided): Judgement {
  const verdict: FlowVerdict = v.decision === 'allow' ? 'allowed' : v.enforced ? 'denied' : 'audit';
  return { verdict, tier: v.tier, ...(v.rule !== undefined ? { rule: v.rule } : {}), ...(v.at ? { at: `${v.at.file}:${v.at.line}:${v.at.col}` } : {}), reason: v.reason };
}

/** The owner's task and port index as recorded: its task if still there, else a stand-in at the recorded port. */
function ownerTask(cluster: ClusterState, flow: ObservedFlow, app: App, taskIds: readonly string[]): { task: Task; index: number } | string {
  const { hostId, port, protocol, portName } = flow.destination;
  const usable = (i: number) => app.ports[i]?.protocols.includes(protocol) === true;
  for (const task of cluster.tasks) {
    if (task.appId !== app.id || task.hostId !== hostId || !taskIds.includes(task.id)) continue;
    const index = task.hostPorts.findIndex((p, i) => p === port && usable(i));
    if (index >= 0) return { task, index };
  }
  let index = portName !== undefined ? app.ports.findIndex((p, i) => p.name === portName && usable(i)) : -1;
  if (index < 0 && portName === undefined) {
    const candidates = app.ports.map((_, i) => i).filter(usable);
    if (candidates.length === 1) index = candidates[0]!;
  }
  if (index < 0) return `app ${app.id} has no ${protocol} port ${portName ?? `at host port ${port}`} now`;
  const hostPorts = app.ports.map((_, i) => (i === index ? port : 0));
  return { task: { id: taskIds[0] ?? `${app.id}@${hostId}:${port}`, appId: app.id, hostId, hostPorts }, index };
}

/** The claim's owners as recorded, each with its task: the apps must still be in the cluster. */
export function recordedOwners(cluster: ClusterState, flow: ObservedFlow): { app: App; task: Task; index: number }[] | string {
  const out: { app: App; task: Task; index: number }[] = [];
  for (const owner of flow.destination.apps) {
    if (owner.appId === '') continue;
    const app = findApp(cluster, owner.appId);
    if (!app) return `app ${owner.appId} is not in the cluster now`;
    const found = ownerTask(cluster, flow, app, owner.taskIds);
    if (typeof found === 'string') return found;
    out.push({ app, ...found });
  }
  if (out.length === 0) return 'no task claimed the port (not a managed port)';
  return out;
}

function judgeIngress(policy: Policy, cluster: ClusterState, flow: ObservedFlow): JudgeResult {
  if (!parseIp(flow.source.address)) return { ok: false, why: `source address '${flow.source.address}' is not an address` };
  const found = recordedOwners(cluster, flow);
  if (typeof found === 'string') return { ok: false, why: found };
  const verdicts = found.map((o) => evaluateConnection(policy, cluster, { source: flow.source.address, task: o.task, portIndex: o.index, protocol: flow.destination.protocol }));
  return { ok: true, judgement: judgementOf(verdicts.find((v) => v.decision === 'deny') ?? verdicts[0]!) };
}

function judgeEgress(policy: Policy, cluster: ClusterState, flow: ObservedFlow): JudgeResult {
  const appId = flow.source.apps[0];
  if (appId === undefined || !findApp(cluster, appId)) return { ok: false, why: `source app ${appId ?? '(none)'} is not in the cluster now` };
  const { hostId, protocol, port } = flow.destination;
  for (const h of [flow.reportedBy, hostId]) if (!cluster.hosts.some((x) => x.id === h)) return { ok: false, why: `host ${h} is not in the cluster now` };
  const ip = parseIp(flow.destination.address) ?? parseIp(flow.source.address);
  if (!ip) return { ok: false, why: `destination address '${flow.destination.address}' is not an address` };
  const found = recordedOwners(cluster, flow);
  if (typeof found === 'string') return { ok: false, why: found };
  // The claim as recorded: its stand-in tasks join the cluster when the recorded ones are gone.
  const current = new Set(claimOwners(cluster, hostId, protocol, port).map((o) => o.task));
  const missing = found.filter((o) => !current.has(o.task)).map((o) => o.task);
  const judged = missing.length === 0 ? cluster : { ...cluster, tasks: [...cluster.tasks, ...missing] };
  const v = egressVerdict(policy, judged, { appId, sourceHostId: flow.reportedBy, destHostId: hostId, protocol, hostPort: port, family: ipFamily(ip) });
  return { ok: true, judgement: judgementOf(v) };
}

/** The verdict `policy` gives `flow` in `cluster` (the recorded half), or why it cannot be judged. */
export function judgeFlow(policy: Policy, cluster: ClusterState, flow: ObservedFlow): JudgeResult {
  return flow.direction === 'egress' ? judgeEgress(policy, cluster, flow) : judgeIngress(policy, cluster, flow);
}
