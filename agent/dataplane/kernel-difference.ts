/**
 * The one desired-vs-kernel difference (see kernel-dataplane.ts): what separates the state the
 * kernel holds from the next one. The dataplane renders it one of two ways, and this module is
 * where that choice is made, by the rules of docs/architecture.md:
 *
 * - `full` (with the reason, logged): nothing written yet, or the kernel's content is not known
 *   exactly (a write failed, drift was found), a repair, a mode change (the chains change), a
 *   change of the group modes' shape of the rules (audit ports of a protocol appear or go,
 *   egress-audit changes: render-flows.ts `groupModeLayout`), the very state already held again
 *   (someone wants it rewritten), more than `limit` members added plus removed, or a held list
 *   that is not strictly ascending (it cannot be merged).
 *   The full write renders the whole next state.
 *   Also full when the per-app egress layout changed (`layout`: the local apps of egress-task,
 *   the local task map with its cgroup inodes, whether egress is rendered at all) with the state.
 * - `chains`: the same state with another local task map (a container started, restarted, gone),
 *   egress rendered before and after: only our chains change (the egress sets follow the state).
 * - `delta`: the members added and removed per kind, at most `limit` in all. When the next state
 *   came as a wire Delta whose base is the state the kernel holds, its adds and removes ARE the
 *   difference (taken as sent, not diffed again); otherwise (a Snapshot, a state from disk) the
 *   two states' sorted lists are merged (member-delta.ts `memberChanges`).
 *
 * A wire Delta can name a member both in adds and in removes; `applyDelta` (state-delta.ts)
 * removes first and then adds, so such a member is in the next state and is only added here.
 * An added member already in the kernel is harmless (`add … -exist`), as is a removed one the
 * kernel lacks (`del … -exist`). Pure.
 */
import { SET_KINDS, type DesiredState, type SetKind } from '../../src/compile/desired-state.js';
import type { StateDelta } from '../../src/compile/state-delta.js';
import { memberChanges, type KindChange } from './member-delta.js';
import { groupModeLayout } from '../../src/render/render-flows.js';

/** What the kernel holds, as far as the dataplane knows. */
export interface KernelView {
  /** The last state the kernel accepted. */
  readonly state: DesiredState;
  /** The kernel holds exactly `state` (false after a failed write or found drift). */
  readonly exact: boolean;
  /** Every list of `state` is strictly ascending (needed to merge it with the next state). */
  readonly sorted: boolean;
}

export type Difference =
  | { readonly path: 'full'; readonly reason: string }
  | { readonly path: 'delta'; readonly kinds: ReadonlyMap<SetKind, KindChange>; readonly total: number; readonly from: 'wire' | 'merge' }
  | { readonly path: 'chains'; readonly reason: string };

export interface DifferenceInput {
  /** What the kernel holds; undefined when nothing was written (or after uninstall). */
  readonly held: KernelView | undefined;
  readonly next: DesiredState;
  /** The wire Delta `next` was built from, if it came as one. */
  readonly delta?: StateDelta;
  /** Largest delta (members added plus removed); 0: every write is full. */
  readonly limit: number;
  /** A drift repair: always full. */
  readonly repair: boolean;
  /** The egress layout of the held write and of the next one (kernel-dataplane.ts); different: full. */
  readonly layout?: { readonly held: string; readonly next: string };
}

const full = (reason: string): Difference => ({ path: 'full', reason });

export function kernelDifference(input: DifferenceInput): Difference {
  const { held, next, delta, limit } = input;
  if (input.repair) return full('repair');
  if (held === undefined) return full('no base');
  if (!held.exact) return full('kernel state unknown');
  const layout = input.layout;
  if (layout !== undefined && layout.held !== layout.next) {
    const mapOnly = held.state.version === next.version && layout.held !== '' && layout.next !== '';
    return mapOnly ? { path: 'chains', reason: 'local task map changed' } : full('egress layout changed');
  }
  if (limit === 0) return full('delta path off');
  if (held.state.mode !== next.mode) return full('mode changed');
  if (groupModeLayout(held.state) !== groupModeLayout(next)) return full('group modes changed');
  if (held.state.version === next.version) return full('same state again');
  const tooMany = full(`more than ${limit} members changed`);
  if (delta !== undefined && delta.baseVersion === held.state.version && delta.version === next.version) {
    const kinds = changesOfDelta(delta, limit);
    return kinds === undefined ? tooMany : { path: 'delta', ...kinds, from: 'wire' };
  }
  if (!held.sorted) return full('a member list is not sorted');
  const changes = memberChanges(held.state, next, limit);
  if (!changes.ok) return changes.reason === 'too-many' ? tooMany : full('a member list is not sorted');
  return { path: 'delta', kinds: changes.kinds, total: changes.total, from: 'merge' };
}

/** A wire Delta's adds and removes per kind (see the header), or undefined beyond `limit`. */
function changesOfDelta(delta: StateDelta, limit: number): { kinds: Map<SetKind, KindChange>; total: number } | undefined {
  const kinds = new Map<SetKind, KindChange>();
  let total = 0;
  for (const kind of SET_KINDS) {
    const adds = delta.adds[kind] ?? [];
    let removes = delta.removes[kind] ?? [];
    if (adds.length === 0 && removes.length === 0) continue;
    if (adds.length > 0 && removes.length > 0) {
      const added = new Set(adds);
      removes = removes.filter((m) => !added.has(m));
    }
    total += adds.length + removes.length;
    if (total > limit) return undefined;
    if (adds.length > 0 || removes.length > 0) kinds.set(kind, { adds, removes });
  }
  return { kinds, total };
}
