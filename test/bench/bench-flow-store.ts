/**
 * Scenario "flow-store" (issue 11, Benchmarks: "controller memory per 1M flow records"): the
 * controller's FlowStore ingesting 1,000,000 distinct flow records, in reports of 65,536 records
 * (the most one agent sends per interval), resolved against a synthetic cluster of 100 hosts ×
 * 10 task ports and a policy of 20 groups and 40 rules by the reference evaluator (FlowResolver).
 * A quarter of the records come from cluster hosts (host sources: the source host's apps are
 * listed), three quarters from distinct outside addresses (each its own resolution and reason).
 *
 * Figures: heap per aggregate after ingest (V8 heap used, after GC, minus the heap before: the
 * aggregates, their resolutions and the resolver memo), ingest rate, a /flows query over all of
 * it (default limit 1000, and one filtered by destination app), and the persistence
 * (flow-persistence.ts: a resolutions file and one file per window): the first save of all of it
 * (one window here: every record is received in the same minute), its read-back, and a save after
 * 1,000 new records in the next window (what a save costs in a steady state: the new window's
 * file and the new resolutions appended; an older window's file is not written again).
 */
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import type { ClusterState, Task } from '../../src/inventory/cluster-state.js';
import type { Policy } from '../../src/policy/policy-model.js';
import type { FlowEntry } from '../../src/flows/flow-types.js';
import { FlowStore } from '../../src/flows/flow-store.js';
import { FlowResolver } from '../../src/flows/resolve-flow.js';
import { parseFlowQuery } from '../../src/flows/flow-query.js';
import { FlowPersistence } from '../../src/controller/flow-persistence.js';
import { exposeGc } from './bench-fanout.js';
import { log, report } from './figures.js';
import type { BenchOptions } from './options.js';

const S = 'flow-store';
/** Records per report (an agent's most per interval), hosts, task ports per host, groups. */
const { BATCH, HOSTS, PORTS_PER_HOST, GROUPS } = { BATCH: 65_536, HOSTS: 100, PORTS_PER_HOST: 10, GROUPS: 20 };
const AT = { file: 'bench-flows', line: 1, col: 1 };

function world(): { cluster: ClusterState; policy: Policy } {
  const hosts = Array.from({ length: HOSTS }, (_, i) => ({ id: `host-${i}`, addresses: [`10.9.${i >> 8}.${i & 255}`] }));
  const apps = Array.from({ length: HOSTS * 2 }, (_, k) => ({ id: `/bench/app-${k}`, labels: {}, networkMode: 'host' as const, ports: Array.from({ length: PORTS_PER_HOST / 2 }, (_, p) => ({ name: `p${p}`, protocols: ['tcp' as const], labels: {} })) }));
  const tasks: Task[] = [];
  for (let h = 0; h < HOSTS; h++) {
    for (let j = 0; j < 2; j++) {
      const app = apps[(h * 2 + j + h) % apps.length]!;
      tasks.push({ id: `${app.id.slice(1).replaceAll('/', '_')}.${h}`, appId: app.id, hostId: `host-${h}`, hostPorts: app.ports.map((_, p) => 31000 + j * 100 + p) });
    }
  }
  const policy: Policy = {
    defaults: { mode: 'enforce', action: 'deny', failsafe: [], egress: true },
    networks: [{ name: 'outside-a', cidrs: ['100.64.0.0/11'], except: [], at: AT }],
    groups: Array.from({ length: GROUPS }, (_, g) => ({ name: `g-${g}`, apps: [`/bench/app-${g}*`], labels: {}, at: AT })),
    rules: Array.from({ length: GROUPS * 2 }, (_, r) => ({
      name: `r-${r}`,
      action: r % 3 === 0 ? ('deny' as const) : ('allow' as const),
      from: r % 2 === 0 ? [{ kind: 'group' as const, name: `g-${(r + 1) % GROUPS}` }] : [{ kind: 'network' as const, name: 'outside-a' }],
      to: [`g-${r % GROUPS}`],
      ports: [],
      protocols: null,
      at: AT,
    })),
    guardrails: { sources: null, targets: null, deny: [] },
  };
  return { cluster: { hosts, apps, tasks }, policy };
}

/** Record i: distinct for every i (cluster sources: (source host, port, verdict) per reporter; others: the address). */
function record(i: number, now: number): { reporter: string; entry: FlowEntry } {
  const reporter = i % HOSTS;
  const j = Math.floor(i / HOSTS);
  const fromCluster = j % 4 === 0;
  const m = j >> 2;
  const port = fromCluster ? 31000 + (Math.floor(m / HOSTS) % 2) * 100 + (Math.floor(m / (2 * HOSTS)) % (PORTS_PER_HOST / 2)) : 31000 + (j % (PORTS_PER_HOST / 2));
  const source = fromCluster ? `10.9.0.${m % HOSTS}` : `100.${64 + ((i >> 16) & 63)}.${(i >> 8) & 255}.${i & 255}`;
  const verdict = fromCluster ? (['allowed', 'denied', 'audit'] as const)[Math.floor(m / (HOSTS * PORTS_PER_HOST)) % 3]! : i % 5 === 0 ? 'allowed' : 'denied';
  return { reporter: `host-${reporter}`, entry: { direction: 'ingress', verdict, source, destination: '', protocol: 'tcp', port, packets: 1 + (i % 7), bytes: 60 * (1 + (i % 7)), firstSeenMs: now - 30_000, lastSeenMs: now } };
}

export async function benchFlowStore(options: BenchOptions): Promise<void> {
  const RECORDS = options.flowRecords;
  const gc = exposeGc();
  const { cluster, policy } = world();
  const resolver = new FlowResolver(policy, cluster);
  const now = Date.now();
  gc();
  gc();
  const heapBefore = process.memoryUsage().heapUsed;
  const store = new FlowStore(() => resolver, { maxRecords: 2_000_000 });
  let ingestMs = 0;
  for (let start = 0; start < RECORDS; start += BATCH) {
    const byReporter = new Map<string, FlowEntry[]>();
    for (let i = start; i < Math.min(RECORDS, start + BATCH); i++) {
      const { reporter, entry } = record(i, now);
      const list = byReporter.get(reporter) ?? [];
      list.push(entry);
      byReporter.set(reporter, list);
    }
    const t = performance.now();
    for (const [reporter, entries] of byReporter) store.ingest(reporter, entries, [], now);
    ingestMs += performance.now() - t;
    store.takeChanges();
  }
  const aggregates = store.summary(now).records;
  gc();
  gc();
  const heapAfter = process.memoryUsage().heapUsed;
  const perRecord = (heapAfter - heapBefore) / aggregates;
  log(`${aggregates} aggregates from ${RECORDS} records; heap ${(heapBefore / 2 ** 20).toFixed(0)} → ${(heapAfter / 2 ** 20).toFixed(0)} MB`);
  report({ scenario: S, name: 'controller heap per flow aggregate', value: perRecord, unit: 'B', note: `${aggregates} distinct aggregates (${RECORDS} records): ${((heapAfter - heapBefore) / 2 ** 20).toFixed(0)} MB heap for all; 3/4 from distinct outside addresses` });
  report({ scenario: S, name: 'ingest rate (resolve + aggregate)', value: RECORDS / (ingestMs / 1000), unit: 'rec/s', note: `${(ingestMs / 1000).toFixed(2)} s for ${RECORDS} records in reports of ${BATCH}` });

  const q = (text: string) => {
    const p = parseFlowQuery(new URLSearchParams(text), now);
    if (!p.ok) throw new Error(p.error);
    return p.query;
  };
  let t = performance.now();
  const all = store.query(q(''), now);
  const queryMs = performance.now() - t;
  t = performance.now();
  const one = store.query(q('to=/bench/app-1*&verdict=denied'), now);
  const filteredMs = performance.now() - t;
  report({ scenario: S, name: '/flows over all aggregates', value: queryMs, unit: 'ms', note: `limit 1000 of ${aggregates}; with to=/bench/app-1*&verdict=denied ${filteredMs.toFixed(0)} ms (${one.flows.length} flows)` });
  if (all.flows.length !== 1000) throw new Error(`expected 1000 flows, got ${all.flows.length}`);

  const dir = mkdtempSync(path.join(tmpdir(), 'pcu-bench-flows-'));
  try {
    const logger = pino({ level: 'silent' });
    const saver = new FlowPersistence({ stateDir: dir, store, logger, now: () => now });
    const size = () => readdirSync(saver.dir).reduce((n, f) => n + statSync(path.join(saver.dir, f)).size, 0);
    t = performance.now();
    await saver.save();
    const saveMs = performance.now() - t;
    const bytes = size();
    const back = new FlowStore(() => undefined, { maxRecords: 2_000_000 });
    t = performance.now();
    await new FlowPersistence({ stateDir: dir, store: back, logger }).load();
    const loadMs = performance.now() - t;
    if (back.summary(now).records !== aggregates) throw new Error(`read back ${back.summary(now).records} of ${aggregates} aggregates`);
    report({ scenario: S, name: 'flows save, first (all aggregates)', value: saveMs, unit: 'ms', note: `${(bytes / 2 ** 20).toFixed(0)} MB (resolutions + ${readdirSync(saver.dir).length - 1} window file); read back in ${(loadMs / 1000).toFixed(1)} s` });
    const later = now + store.windowMs;
    const fresh = new Map<string, FlowEntry[]>();
    for (let i = RECORDS; i < RECORDS + 1000; i++) {
      const { reporter, entry } = record(i, later);
      fresh.set(reporter, [...(fresh.get(reporter) ?? []), entry]);
    }
    for (const [reporter, entries] of fresh) store.ingest(reporter, entries, [], later);
    t = performance.now();
    await saver.save();
    const nextMs = performance.now() - t;
    report({ scenario: S, name: 'flows save, 1,000 new records in a new window', value: nextMs, unit: 'ms', note: `${((size() - bytes) / 2 ** 10).toFixed(0)} KB more on disk; the ${aggregates}-aggregate window's file not written again` });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
