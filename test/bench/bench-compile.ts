/**
 * Scenario "compile": full compile time and memory of the synthetic cluster (synthetic-cluster.ts),
 * then random task moves applied one at a time through the incremental compiler.
 *
 * Per move, timed: IncrementalCompiler.applyClusterChange (dirty hosts recomputed) + the delta of
 * every changed host (the compiler's deltaFrom, as the Sync service takes it, else diffStates) + encoding each delta as the wire Delta message (JSON text of
 * deltaMessage; the bytes figure compares it with the JSON of a full Snapshot of the same hosts,
 * measured on every SNAPSHOT_EVERY-th move only: a snapshot reads every member list, and the
 * compiler builds a patched host's lists only when they are read (src/compile/pending-list.ts),
 * as the controller does only for a snapshot, a render or /hosts, not on every move).
 * Building the next ClusterState (one task replaced in a copied array) is outside the timing.
 * The p99 figure's note also gives the CPU time of the timed part (process.cpuUsage, user +
 * system; process-wide, so GC helper threads count too), which a loaded machine inflates less
 * than the wall clock.
 */
import { compile } from '../../src/compile/compile.js';
import { emptySets, SET_KINDS, type DesiredState } from '../../src/compile/desired-state.js';
import { IncrementalCompiler } from '../../src/compile/incremental-compiler.js';
import { diffStates } from '../../src/compile/state-delta.js';
import { deltaMessage, snapshotMessage } from '../../src/grpc/wire-state.js';
import type { ClusterState, Task } from '../../src/inventory/cluster-state.js';
import { benchOverAdmission } from './bench-over-admission.js';
import { log, report } from './figures.js';
import type { BenchOptions } from './options.js';
import { mb, median, percentile } from './stats.js';
import { seededRandom } from '../support/seeded-random.js';
import { allowMemberCount, syntheticCluster, syntheticPolicy, type SyntheticSize } from './synthetic-cluster.js';

const S = 'compile';

export async function benchCompile(o: BenchOptions): Promise<void> {
  const size: SyntheticSize = { hosts: o.hosts, apps: o.apps, tasks: o.tasks, groups: o.groups, rules: o.rules };
  const cluster = syntheticCluster(size, o.seed);
  const synthetic = syntheticPolicy(size, o.seed + 1);
  const policy = { ...synthetic, defaults: { ...synthetic.defaults, egress: o.egress !== 0 } };
  benchOverAdmission(o);
  const rssBefore = process.memoryUsage().rss;
  log(`inputs: ${size.hosts} hosts, ${size.tasks} tasks, ${size.apps} apps, ${size.groups} groups, ${size.rules} rules (rss ${mb(rssBefore).toFixed(0)} MB)`);

  const times: number[] = [];
  let t = performance.now();
  let result = compile(policy, cluster);
  times.push(performance.now() - t);
  const rss = process.memoryUsage().rss;
  const members = allowMemberCount(result.states.values());
  const maxPerHost = Math.max(...[...result.states.values()].map((s) => allowMemberCount([s])));
  log(`first compile ${times[0]!.toFixed(0)} ms: ${result.states.size} host states, ${members} allow members in total (max ${maxPerHost} on one host), ${result.reports.length} reports`);
  log(`egress ${policy.defaults.egress ? 'on' : 'off'}: ${egressFigures(result.states.values())}`);
  for (let i = 1; i < o.runs; i++) {
    t = performance.now();
    result = compile(policy, cluster);
    times.push(performance.now() - t);
  }
  log(`compile runs: ${times.map((x) => x.toFixed(0)).join(', ')} ms`);
  report({ scenario: S, name: 'full compile (median)', value: median(times), unit: 'ms', target: { op: '<=', value: 1000 }, note: `${o.runs} runs, ${members} allow members, egress ${policy.defaults.egress ? 'on' : 'off'}` });
  report({ scenario: S, name: 'RSS after first compile', value: mb(rss), unit: 'MB', target: { op: '<=', value: 300 }, note: `fresh process; inputs alone ${mb(rssBefore).toFixed(0)} MB` });

  if (o.moves === 0) return;
  await benchMoves(o, cluster, policy);
}

/** Moves whose changed hosts' full snapshots are sized (see the header). */
const SNAPSHOT_EVERY = 10;

const listBytes = new WeakMap<readonly string[], number>();

/**
 * The JSON bytes of a state's full Snapshot message, with each member list's part counted once
 * per list object (with egress every host changes on a move and shares its long egress-managed
 * lists: stringifying 1,000 snapshots per move would take seconds outside the timing).
 */
function snapshotSize(state: DesiredState): number {
  let n = Buffer.byteLength(JSON.stringify(snapshotMessage({ ...state, sets: emptySets() }, 1)));
  for (const kind of SET_KINDS) {
    const list = state.sets[kind];
    let bytes = listBytes.get(list);
    if (bytes === undefined) listBytes.set(list, (bytes = Buffer.byteLength(JSON.stringify(list)) - 2));
    n += bytes;
  }
  return n;
}

/** Egress members: the shared managed lists once, the per-host task and per-app lists summed. */
function egressFigures(states: Iterable<DesiredState>): string {
  let first: DesiredState | undefined;
  let perHost = 0;
  let max = 0;
  let hosts = 0;
  for (const s of states) {
    first ??= s;
    const n = s.sets['egress-ip4'].length + s.sets['egress-ip6'].length;
    perHost += n + s.sets['egress-task'].length;
    max = Math.max(max, n);
    hosts++;
  }
  const managed = first ? first.sets['egress-managed4'].length + first.sets['egress-managed6'].length : 0;
  return `${managed} managed destinations (one list shared by every host), ${perHost} egress-task + egress-ip members over ${hosts} hosts (max ${max} egress-ip on one host)`;
}

async function benchMoves(o: BenchOptions, cluster: ClusterState, policy: Parameters<typeof compile>[0]): Promise<void> {
  let t = performance.now();
  const inc = new IncrementalCompiler(policy, cluster);
  log(`incremental compiler built in ${(performance.now() - t).toFixed(0)} ms`);
  const states = new Map<string, DesiredState>(inc.states());
  const rand = seededRandom(o.seed + 7);
  const pick = (n: number) => Math.floor(rand() * n);
  const nextPort = new Map<string, number>();
  for (const task of cluster.tasks) {
    for (const p of task.hostPorts) nextPort.set(task.hostId, Math.max(nextPort.get(task.hostId) ?? 31000, p + 1));
  }
  let tasks: Task[] = [...cluster.tasks];
  const latencies: number[] = [];
  const cpuMs: number[] = [];
  let deltaBytes = 0;
  let snapshotBytes = 0;
  let sampledDeltaBytes = 0;
  let changedHosts = 0;
  let recomputed = 0;
  const budgetMs = 240_000;
  const started = Date.now();
  let done = 0;
  for (; done < o.moves; done++) {
    if (Date.now() - started > budgetMs) break;
    const k = pick(tasks.length);
    const task = tasks[k]!;
    let host = cluster.hosts[pick(cluster.hosts.length)]!.id;
    if (host === task.hostId) host = cluster.hosts[(cluster.hosts.findIndex((h) => h.id === host) + 1) % cluster.hosts.length]!.id;
    const base = nextPort.get(host) ?? 31000;
    nextPort.set(host, base + task.hostPorts.length);
    const moved: Task = { ...task, hostId: host, hostPorts: task.hostPorts.map((_, i) => base + i) };
    tasks = tasks.slice();
    tasks[k] = moved;
    const next: ClusterState = { hosts: cluster.hosts, apps: cluster.apps, tasks };

    const cpu = process.cpuUsage();
    t = performance.now();
    const res = inc.applyClusterChange(next);
    const payloads: string[] = [];
    for (const [hostId, state] of res.changed) {
      const base = states.get(hostId);
      const delta = (base && inc.deltaFrom(hostId, base.version)) ?? diffStates(base, state);
      payloads.push(JSON.stringify(deltaMessage(delta, 1)));
    }
    latencies.push(performance.now() - t);
    const used = process.cpuUsage(cpu);
    cpuMs.push((used.user + used.system) / 1000);

    const sized = done % SNAPSHOT_EVERY === 0;
    for (const p of payloads) {
      deltaBytes += Buffer.byteLength(p);
      if (sized) sampledDeltaBytes += Buffer.byteLength(p);
    }
    for (const [hostId, state] of res.changed) {
      if (sized) snapshotBytes += snapshotSize(state);
      states.set(hostId, state);
    }
    changedHosts += res.changed.size;
    recomputed += res.recomputed;
  }
  const note = done < o.moves ? `stopped after ${done} moves (time budget ${budgetMs / 1000} s)` : `${done} moves`;
  log(`moves: ${note}; ${(changedHosts / done).toFixed(2)} changed hosts and ${(recomputed / done).toFixed(2)} recomputed hosts per move`);
  report({ scenario: S, name: 'task move → updates ready p50', value: percentile(latencies, 50), unit: 'ms', note });
  report({ scenario: S, name: 'task move → updates ready p99', value: percentile(latencies, 99), unit: 'ms', target: { op: '<=', value: 2 }, note: `max ${Math.max(...latencies).toFixed(2)} ms; CPU per move p50 ${percentile(cpuMs, 50).toFixed(2)} ms, p99 ${percentile(cpuMs, 99).toFixed(2)} ms` });
  report({ scenario: S, name: 'delta bytes per move', value: deltaBytes / done, unit: 'B', note: `full snapshots of the same hosts (every ${SNAPSHOT_EVERY}th move): ${(snapshotBytes / Math.ceil(done / SNAPSHOT_EVERY)).toFixed(0)} B per move, ${(snapshotBytes / Math.max(1, sampledDeltaBytes)).toFixed(0)}x its deltas` });
}
