/**
 * Input stamps (issue 12, "a replica that is behind never pushes an agent backwards").
 *
 * A state's version is a content hash: equal states of two replicas have one version, but two
 * versions cannot be ordered. The input stamp orders what a state was COMPILED FROM, per input:
 *
 *  - `policy`: with the policy in Consul KV (`--policy-consul`), the ModifyIndex of the pointer
 *    key P/current that named the policy in force. Within one Consul cluster it only grows, so a
 *    replica that has not yet read the newest push has a lower one. A policy directory on disk
 *    has nothing comparable across replicas: 0.
 *  - `cluster`: milliseconds since the epoch as of which the replica's Marathon view is known
 *    complete (src/marathon/marathon-source.ts `freshAsOf`). Clocks of controller hosts are
 *    NTP-synced, so two replicas' values compare up to CLUSTER_SKEW_MS. A static inventory file: 0.
 *
 * 0 on a component means "not comparable" (also every stamp of an agent or controller of an
 * earlier release, which sends none): only components where BOTH sides are non-zero are checked.
 * A stamp is behind another when it is behind on one such component: the policy index lower, or
 * the cluster time earlier by more than the skew.
 *
 * What it protects: an agent that applied replica A's state compiled from a newer push (or a
 * newer Marathon view) moves to replica B that has not caught up; B would send its older state,
 * undoing the change on the host until B catches up. With stamps B holds the agent instead
 * (agent-session.ts), and the agent refuses such a state from a misbehaving server
 * (agent/sync-client.ts).
 *
 * The ways out of a hold that would otherwise never end are explicit (agent-session.ts): a
 * policy index from a Consul history that no longer exists (a snapshot restore, a rebuilt
 * Consul: its index went backwards), and a cluster time further ahead of the replica's clock
 * than CLUSTER_FUTURE_MS (a wrong clock where the state was compiled).
 */

export interface InputStamp {
  /** Consul ModifyIndex of P/current of the policy in force; 0 = not comparable. */
  readonly policy: number;
  /** Epoch ms as of which the Marathon view is known complete; 0 = not comparable. */
  readonly cluster: number;
}

export const NO_STAMP: InputStamp = { policy: 0, cluster: 0 };

/** Clock skew allowed between two controller hosts when comparing cluster times. */
export const CLUSTER_SKEW_MS = 2_000;

/** A cluster time this far ahead of the replica's own clock is not believed (a wrong clock). */
export const CLUSTER_FUTURE_MS = 10 * 60_000;

/** Why `candidate` is behind `applied`, or undefined when it is not (see the header). */
export function behindReason(candidate: InputStamp, applied: InputStamp, skewMs = CLUSTER_SKEW_MS): string | undefined {
  const reasons: string[] = [];
  if (candidate.policy > 0 && applied.policy > 0 && candidate.policy < applied.policy) {
    reasons.push(`policy index ${candidate.policy} < ${applied.policy}`);
  }
  if (candidate.cluster > 0 && applied.cluster > 0 && candidate.cluster + skewMs < applied.cluster) {
    reasons.push(`Marathon view as of ${iso(candidate.cluster)} < ${iso(applied.cluster)}`);
  }
  return reasons.length === 0 ? undefined : reasons.join(', ');
}

/** A wire stamp (absent fields are 0), cleaned: a negative or non-finite value is 0. */
export function stampFromWire(policy: number | undefined, clusterMs: number | undefined): InputStamp {
  return { policy: clean(policy), cluster: clean(clusterMs) };
}

/** The stamp as Snapshot/Delta fields. */
export function stampFields(stamp: InputStamp): { policyStamp: number; clusterStampMs: number } {
  return { policyStamp: stamp.policy, clusterStampMs: stamp.cluster };
}

/** For /status: null when not comparable on both components. */
export function stampInfo(stamp: InputStamp): { policyIndex: number | null; clusterAsOf: string | null } | null {
  if (stamp.policy === 0 && stamp.cluster === 0) return null;
  return { policyIndex: stamp.policy === 0 ? null : stamp.policy, clusterAsOf: stamp.cluster === 0 ? null : iso(stamp.cluster) };
}

function clean(n: number | undefined): number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n > 0 ? n : 0;
}

function iso(ms: number): string {
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) ? String(ms) : d.toISOString();
}

/**
 * The agent's check (defence in depth; agent/sync-client.ts): why a received state of `version`
 * stamped `incoming` must not replace the state held (`heldVersion`, stamped `applied`), or
 * undefined. The version held itself is never refused (nothing would change).
 */
export function refusalOf(incoming: InputStamp, version: string, applied: InputStamp, heldVersion: string | undefined): string | undefined {
  if (version === heldVersion) return undefined;
  const behind = behindReason(incoming, applied);
  return behind === undefined ? undefined : `refused: the state's input stamp is behind the state applied (${behind}); the controller replica has not caught up`;
}

/** The stamp of a received Snapshot/Delta (`message`) of `version`; throws the refusal (refusalOf). */
export function checkedStamp(message: { readonly policyStamp: number; readonly clusterStampMs: number }, version: string, applied: InputStamp, heldVersion: string | undefined): InputStamp {
  const stamp = stampFromWire(message.policyStamp, message.clusterStampMs);
  const refusal = refusalOf(stamp, version, applied, heldVersion);
  if (refusal !== undefined) throw new Error(refusal);
  return stamp;
}

/** Hello's applied-stamp fields for the stamp of the state held (undefined: none, 0). */
export function helloStampFields(stamp: InputStamp | undefined): { appliedPolicyStamp: number; appliedClusterStampMs: number } {
  return { appliedPolicyStamp: stamp?.policy ?? 0, appliedClusterStampMs: stamp?.cluster ?? 0 };
}
