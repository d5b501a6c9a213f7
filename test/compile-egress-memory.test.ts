/**
 * Memory of the incremental compiler with per-app egress on (the product default): a task move
 * patches the cluster's one egress-managed list, and what an earlier list was must not stay
 * reachable from the current one. A chain of kept edits (each holding its base list) once kept
 * every list the controller ever made alive: ~0.5 MB a move at 55,000 managed destinations, a
 * long-running controller under Marathon churn growing without bound.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { IncrementalCompiler } from '../src/compile/incremental-compiler.js';
import type { ClusterState, Task } from '../src/inventory/cluster-state.js';
import { seededRandom } from './support/seeded-random.js';
import { syntheticCluster, syntheticPolicy } from './bench/synthetic-cluster.js';

setFlagsFromString('--expose_gc');
const gc = runInNewContext('gc') as () => void;

describe('incremental compiler with egress: earlier lists are not kept', () => {
  it('after task moves, the egress-managed lists of earlier moves are collected (only the current one lives)', async () => {
    const size = { hosts: 20, apps: 40, tasks: 200, groups: 10, rules: 40 };
    const cluster = syntheticCluster(size, 3);
    const synthetic = syntheticPolicy(size, 4);
    const inc = new IncrementalCompiler({ ...synthetic, defaults: { ...synthetic.defaults, egress: true } }, cluster);
    const managed = (): readonly string[] => [...inc.states()][0]![1].sets['egress-managed4'];
    expect(managed().length).toBeGreaterThan(0);
    const rand = seededRandom(5);
    let tasks: Task[] = [...cluster.tasks];
    let port = 40_000;
    const earlier: WeakRef<readonly string[]>[] = [];
    const MOVES = 30;
    for (let i = 0; i < MOVES; i++) {
      earlier.push(new WeakRef(managed()));
      const k = Math.floor(rand() * tasks.length);
      const task = tasks[k]!;
      const others = cluster.hosts.filter((h) => h.id !== task.hostId);
      const moved: Task = { ...task, hostId: others[Math.floor(rand() * others.length)]!.id, hostPorts: task.hostPorts.map(() => port++) };
      tasks = tasks.slice();
      tasks[k] = moved;
      const next: ClusterState = { hosts: cluster.hosts, apps: cluster.apps, tasks };
      inc.applyClusterChange(next);
    }
    const current = managed();
    // Every move changed the list (a task with host ports moved: new managed destinations).
    expect(new Set(earlier.map((r) => r.deref())).size).toBe(MOVES);
    // Let the WeakRefs be cleared: they survive the turn they were read in.
    await new Promise((resolve) => setImmediate(resolve));
    gc();
    gc();
    const alive = earlier.filter((r) => r.deref() !== undefined && r.deref() !== current).length;
    // A few recent lists may still be held (the last move's edits keep their base; a collection
    // may not have reached a WeakRef yet); before the fix every one of the MOVES was kept.
    expect(alive).toBeLessThanOrEqual(3);
  });
});
