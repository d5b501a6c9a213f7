/**
 * Figure "over-admission" (issue 10, Benchmarks): on a synthetic cluster of 75 apps × 3 tasks on
 * 10 hosts (random placement, seeded), a one-app rule `from: <group of app A> to: <group of app B>`
 * should let A's tasks reach B and nobody else. For sampled pairs (A, B), each compiled with that
 * one rule (default deny, egress on), the share of the OTHER apps (not A, not B) that have a task
 * able to open a connection to some task port of B, read from the compiled states by a tiny
 * simulated kernel lookup over their members:
 *  - host-level (destination sets only, as before issue 10): the source task's host address is in
 *    the allow set of B's host for that port (compiledVerdict);
 *  - with egress (both halves): that, AND on the source host the destination is in
 *    egress-managed* and "<app>|<destination>" in egress-ip* (what PCU-OUTPUT / PCU-EG-* check).
 * Target: ≈ 0.7 host-level (a third of the hosts run a task of A, so about 1 - 0.7³ of the
 * other apps share one), 0 with egress.
 */
import { compile } from '../../src/compile/compile.js';
import type { DesiredState } from '../../src/compile/desired-state.js';
import type { App, ClusterState, Host, Task } from '../../src/inventory/cluster-state.js';
import type { Policy } from '../../src/policy/policy-model.js';
import { compiledVerdict } from '../support/random-cluster.js';
import { seededRandom } from '../support/seeded-random.js';
import { log, report } from './figures.js';
import type { BenchOptions } from './options.js';

const S = 'compile';
const APPS = 75;
const TASKS_PER_APP = 3;
const HOSTS = 10;
const PAIRS = 300;
const AT = { file: 'over-admission', line: 1, col: 1 };

function cluster(seed: number): ClusterState {
  const rnd = seededRandom(seed);
  const hosts: Host[] = Array.from({ length: HOSTS }, (_, i) => ({ id: `host-${i}`, addresses: [`10.7.0.${i + 1}`] }));
  const apps: App[] = Array.from({ length: APPS }, (_, k) => ({ id: `/bench/app-${k}`, labels: {}, networkMode: 'host', ports: [{ name: 'svc', protocols: ['tcp'], labels: {} }] }));
  const nextPort = new Map<string, number>();
  const tasks: Task[] = [];
  for (const app of apps) {
    for (let t = 0; t < TASKS_PER_APP; t++) {
      const hostId = hosts[Math.floor(rnd() * HOSTS)]!.id;
      const port = nextPort.get(hostId) ?? 31000;
      nextPort.set(hostId, port + 1);
      tasks.push({ id: `${app.id.slice(1).replaceAll('/', '_')}.${t}`, appId: app.id, hostId, hostPorts: [port] });
    }
  }
  return { hosts, apps, tasks };
}

function onePairPolicy(a: number, b: number): Policy {
  return {
    defaults: { mode: 'enforce', action: 'deny', failsafe: [], egress: true },
    networks: [],
    groups: Array.from({ length: APPS }, (_, k) => ({ name: `g-${k}`, apps: [`/bench/app-${k}`], labels: {}, at: AT })),
    rules: [{ name: 'one-app', action: 'allow', from: [{ kind: 'group', name: `g-${a}` }], to: [`g-${b}`], ports: [], protocols: null, at: AT }],
    guardrails: { sources: null, targets: null, deny: [] },
  };
}

/** The source host's egress check for a new connection of `appId` to `dest,tcp:port` (IPv4). */
function egressAllows(source: DesiredState, appId: string, dest: string, port: number): boolean {
  const member = `${dest},tcp:${port}`;
  if (!source.sets['egress-managed4'].includes(member)) return true; // not managed: no egress check
  return source.sets['egress-ip4'].includes(`${appId}|${member}`);
}

export function benchOverAdmission(o: BenchOptions): void {
  const c = cluster(o.seed + 11);
  const rnd = seededRandom(o.seed + 12);
  const address = new Map(c.hosts.map((h) => [h.id, h.addresses[0]!]));
  const tasksOf = (k: number) => c.tasks.filter((t) => t.appId === `/bench/app-${k}`);
  let hostLevel = 0;
  let withEgress = 0;
  let allowedReach = 0;
  const t0 = performance.now();
  for (let i = 0; i < PAIRS; i++) {
    const a = Math.floor(rnd() * APPS);
    let b = Math.floor(rnd() * (APPS - 1));
    if (b >= a) b++;
    const { states } = compile(onePairPolicy(a, b), c);
    const targets = tasksOf(b);
    /** Whether some task of app k can reach some task port of B: [host-level, with egress]. */
    const reach = (k: number): [boolean, boolean] => {
      let host = false;
      let both = false;
      for (const src of tasksOf(k)) {
        for (const dst of targets) {
          const port = dst.hostPorts[0]!;
          if (compiledVerdict(states.get(dst.hostId)!, address.get(src.hostId)!, 'tcp', port) === 'deny') continue;
          host = true;
          if (egressAllows(states.get(src.hostId)!, src.appId, address.get(dst.hostId)!, port)) both = true;
        }
      }
      return [host, both];
    };
    let h = 0;
    let e = 0;
    for (let k = 0; k < APPS; k++) {
      if (k === a || k === b) continue;
      const [x, y] = reach(k);
      if (x) h++;
      if (y) e++;
    }
    hostLevel += h / (APPS - 2);
    withEgress += e / (APPS - 2);
    if (reach(a)[1]) allowedReach++;
  }
  const ms = performance.now() - t0;
  log(`over-admission: ${PAIRS} one-app rules on ${APPS} apps × ${TASKS_PER_APP} tasks, ${HOSTS} hosts (${ms.toFixed(0)} ms); the allowed app reaches its target in ${allowedReach}/${PAIRS}`);
  const note = `mean over ${PAIRS} sampled (A, B) rules of the share of the ${APPS - 2} other apps with a task that can reach B`;
  report({ scenario: S, name: 'over-admission: host-level (destination sets only)', value: hostLevel / PAIRS, unit: '', note });
  report({ scenario: S, name: 'over-admission: with egress (both halves)', value: withEgress / PAIRS, unit: '', target: { op: '<=', value: 0 }, note: `the allowed app itself reaches B in ${allowedReach}/${PAIRS} rules` });
}
