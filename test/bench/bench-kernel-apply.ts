/**
 * Scenario "kernel": KernelDataplane.apply against the real kernel (ipset + iptables-restore,
 * nf_tables backend) inside a throwaway network namespace (test/support/netns.ts: three host
 * namespaces on a bridge in a namespace of its own; nothing routes out). Root only.
 *
 * 1. Full apply: a state with `members` allow members (90 % allow-ip4, 5 % allow-net4, 5 %
 *    allow-ip6 over 100 managed tcp ports) re-applied through KernelDataplane.apply (re-applying
 *    the state already applied takes the full path: validate, render, `ipset restore` +
 *    `iptables-save` + `iptables-restore --noflush` per family, keep the rendered inputs in its
 *    state dir, as the agent does; each report is checked to say `full`). Baseline, same run, same namespace,
 *    interleaved round by round: the bare tools fed the very text that apply rendered (read back
 *    from the state dir): `ipset restore` + `iptables-restore --noflush --wait`, v4 then v6,
 *    through the same `ip netns exec` runner. Medians; the figure's note gives the ratio.
 * 2. One-member change: apply of the state with one allow-ip4 member added (then removed again),
 *    through the real KernelDataplane.apply of the same instance with the wire Delta, as the
 *    agent passes it (computed before the clock starts: the controller made it), which takes its
 *    delta path (the Delta as sent is the difference, validate the new member, one `ipset
 *    restore` of one add/del line for IPv4, nothing for IPv6, append the line to
 *    last-apply.deltas4); each report is checked to say `delta`.
 * 3. No gap during rebuilds: a TCP prober from an allowed source (h1) and one from a denied
 *    source (h3) open new connections to a managed port of h2 in a loop while the large state is
 *    rebuilt several times (a KernelDataplane with the delta path off, `maxDeltaMembers: 0`, so
 *    every apply of the alternating states is a full rebuild with temp sets and swaps). Every
 *    attempt is one SYN (timeout under the 1 s SYN retransmit): an allowed attempt that does not
 *    connect, or a denied one that does, is a wrong verdict.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { ExecCommandRunner } from '../../agent/dataplane/command-runner.js';
import { writeFileAtomic } from '../../agent/dataplane/atomic-write.js';
import { KernelDataplane, invalidMembers } from '../../agent/dataplane/kernel-dataplane.js';
import type { DesiredState } from '../../src/compile/desired-state.js';
import { diffStates } from '../../src/compile/state-delta.js';
import type { Family } from '../../src/net/family.js';
import { renderIpsetRestore } from '../../src/render/render-ipsets.js';
import { renderIptablesRestore } from '../../src/render/render-iptables.js';
import { createTestNetwork, type TestNetwork } from '../support/netns.js';
import { log, report } from './figures.js';
import { kernelBenchReady } from './kernel-bench.js';
import { memberCount, syntheticHostState, withAllowIp4 } from './kernel-synthetic-state.js';
import type { BenchOptions } from './options.js';
import { startProber, startServer, type ProbeRecord, type Prober, type TcpServer } from './packet-procs.js';
import { median } from './stats.js';

const S = 'kernel';
const PORTS = 100;
const BASE_PORT = 31000;
/** The managed port the probers connect to. */
const PROBE_PORT = BASE_PORT;
const ROUNDS = 7;
const ONE_MEMBER_ROUNDS = 6;
const REBUILDS = 6;
const PROBE_TIMEOUT_MS = 800;

const RESTORE: Readonly<Record<Family, string>> = { 4: 'iptables-restore', 6: 'ip6tables-restore' };

export async function benchKernelApply(o: BenchOptions): Promise<void> {
  if (!(await kernelBenchReady())) return;
  let net: TestNetwork | undefined;
  let stateDir: string | undefined;
  try {
    net = await createTestNetwork({ hosts: 3, ipv6: true });
    stateDir = await mkdtemp(path.join(tmpdir(), 'pcu-bench-kernel-'));
    await run(o, net, stateDir);
  } finally {
    try {
      await net?.destroy();
    } finally {
      if (stateDir !== undefined) await rm(stateDir, { recursive: true, force: true });
    }
  }
}

async function run(o: BenchOptions, net: TestNetwork, stateDir: string): Promise<void> {
  const [h1, h2, h3] = net.hosts as [(typeof net.hosts)[0], (typeof net.hosts)[0], (typeof net.hosts)[0]];
  const runner = new ExecCommandRunner({ prefix: ['ip', 'netns', 'exec', h2.ns], timeoutMs: 120_000 });
  const dp = new KernelDataplane({ runner, stateDir, logger: pino({ level: 'silent' }) });

  let t = performance.now();
  const big = syntheticHostState({ members: o.members, ports: PORTS, basePort: BASE_PORT, netShare: 0.05, v6Share: 0.05, include: [`${h1.v4},tcp:${PROBE_PORT}`] });
  const changed = withAllowIp4(big, `10.200.0.1,tcp:${BASE_PORT + 1}`);
  const n = memberCount(big);
  log(`state: ${n} allow members (${big.sets['allow-ip4'].length} allow-ip4, ${big.sets['allow-net4'].length} allow-net4, ${big.sets['allow-ip6'].length} allow-ip6) over ${PORTS} managed tcp ports, built in ${(performance.now() - t).toFixed(0)} ms`);

  t = performance.now();
  await dp.apply(big);
  log(`first apply (creates sets, inserts the jump) ${(performance.now() - t).toFixed(0)} ms; families ${(await dp.families()).join(', ')}`);
  await expectEntries(runner, 'pcu4-allow-ip', big.sets['allow-ip4'].length);

  // 1. Full apply vs the bare tools on the same text, interleaved.
  const applyMs: number[] = [];
  const bareMs: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    t = performance.now();
    const rep = await dp.apply(big);
    applyMs.push(performance.now() - t);
    if (rep.path !== 'full') throw new Error(`re-apply took the ${rep.path} path, expected full`);
    const texts = await renderedInputs(stateDir, await dp.families());
    bareMs.push(await bareRestore(runner, texts));
  }
  const apply = median(applyMs);
  const bare = median(bareMs);
  log(`full apply: ${applyMs.map((x) => x.toFixed(0)).join(', ')} ms; bare ipset restore + iptables-restore of the same text: ${bareMs.map((x) => x.toFixed(0)).join(', ')} ms`);
  const parts = await applyBreakdown(big, stateDir, await dp.families());
  log(`where apply's extra time goes (the same steps timed alone, median of 3): validate members ${parts.validate.toFixed(0)} ms, render ipset + iptables text ${parts.render.toFixed(0)} ms, keep rendered inputs (fsync'd, ${(parts.bytes / 2 ** 20).toFixed(1)} MiB) ${parts.keep.toFixed(0)} ms`);
  report({ scenario: S, name: `apply ${n} members (median)`, value: apply, unit: 'ms', target: { op: '<=', value: 1000 }, note: `${ROUNDS} re-applies via KernelDataplane.apply, v4+v6` });
  report({ scenario: S, name: 'apply / bare restore ratio', value: apply / bare, unit: 'x', target: { op: '<=', value: 1.3 }, note: `bare ipset restore + iptables-restore of the same text ${bare.toFixed(0)} ms (median of ${ROUNDS}, same namespace, same run)` });

  // 2. One-member change through the real apply path, with the wire Delta as the agent passes it
  // (the controller computed it; the dataplane writes it as sent).
  const oneMs: number[] = [];
  for (let r = 0; r < ONE_MEMBER_ROUNDS; r++) {
    const [prev, next] = r % 2 === 0 ? [big, changed] : [changed, big];
    const delta = diffStates(prev, next);
    t = performance.now();
    const rep = await dp.apply(next, { delta });
    oneMs.push(performance.now() - t);
    if (rep.path !== 'delta') throw new Error(`one-member change took the ${rep.path} path, expected delta`);
  }
  await expectEntries(runner, 'pcu4-allow-ip', big.sets['allow-ip4'].length);
  const one = median(oneMs);
  log(`one-member change (delta path): ${oneMs.map((x) => x.toFixed(1)).join(', ')} ms; one \`ip netns exec … ipset restore\` alone: ${(await spawnFloor(runner)).toFixed(1)} ms (median of 5)`);
  report({ scenario: S, name: 'one-member change (median)', value: one, unit: 'ms', target: { op: '<=', value: 5 }, note: `KernelDataplane.apply delta path (wire Delta), ${ONE_MEMBER_ROUNDS} changes (add, remove) on ${n} members` });

  // 3. New connections during full rebuilds: no wrong verdict. A dataplane without the delta path,
  // so each apply of the alternating states rebuilds every set.
  const full = new KernelDataplane({ runner, stateDir, logger: pino({ level: 'silent' }), maxDeltaMembers: 0 });
  await noGapDuringRebuilds(net, full, big, changed, h1.ns, h3.ns, h2.v4);
}

/** The in-process steps of KernelDataplane.apply, timed alone on the same state (context for the ratio). */
async function applyBreakdown(state: DesiredState, stateDir: string, families: readonly Family[]): Promise<{ validate: number; render: number; keep: number; bytes: number }> {
  const validate: number[] = [];
  const render: number[] = [];
  const keep: number[] = [];
  let bytes = 0;
  for (let r = 0; r < 3; r++) {
    let t = performance.now();
    if (invalidMembers(state).length > 0) throw new Error('synthetic state has invalid members');
    validate.push(performance.now() - t);
    t = performance.now();
    const texts = families.flatMap((f) => [renderIpsetRestore(state, f, { membersValidated: true }), renderIptablesRestore(state, f, { insertJump: false })]);
    render.push(performance.now() - t);
    bytes = texts.reduce((a, x) => a + Buffer.byteLength(x), 0);
    t = performance.now();
    for (const [i, text] of texts.entries()) await writeFileAtomic(path.join(stateDir, `breakdown.${i}`), text);
    keep.push(performance.now() - t);
  }
  return { validate: median(validate), render: median(render), keep: median(keep), bytes };
}

/** What one `ipset restore` through the namespace runner costs with a no-op input (process spawn floor). */
async function spawnFloor(runner: ExecCommandRunner): Promise<number> {
  const ms: number[] = [];
  for (let r = 0; r < 5; r++) {
    const t = performance.now();
    const res = await runner.run(['ipset', 'restore'], 'add pcu4-failsafe-tcp 22 -exist\n');
    ms.push(performance.now() - t);
    if (res.code !== 0) throw new Error(`ipset restore exited ${res.code}: ${res.stderr.trim()}`);
  }
  return median(ms);
}

async function expectEntries(runner: ExecCommandRunner, set: string, want: number): Promise<void> {
  const r = await runner.run(['ipset', 'list', '-terse', set]);
  const m = /Number of entries: (\d+)/.exec(r.stdout);
  if (r.code !== 0 || !m || Number(m[1]) !== want) throw new Error(`${set} should hold ${want} entries: ${r.stderr.trim() || (m?.[0] ?? r.stdout.slice(0, 200))}`);
}

interface RenderedInput {
  readonly argv: readonly string[];
  readonly text: string;
}

/** What the last apply fed to the tools (kept by KernelDataplane in its state dir), in its order. */
async function renderedInputs(stateDir: string, families: readonly Family[]): Promise<RenderedInput[]> {
  const out: RenderedInput[] = [];
  for (const family of families) {
    out.push({ argv: ['ipset', 'restore'], text: await readFile(path.join(stateDir, `last-apply.ipset${family}`), 'utf8') });
    out.push({ argv: [RESTORE[family], '--noflush', '--wait'], text: await readFile(path.join(stateDir, `last-apply.iptables${family}`), 'utf8') });
  }
  return out;
}

async function bareRestore(runner: ExecCommandRunner, inputs: readonly RenderedInput[]): Promise<number> {
  const t = performance.now();
  for (const input of inputs) {
    const r = await runner.run(input.argv, input.text);
    if (r.code !== 0) throw new Error(`${input.argv.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
  }
  return performance.now() - t;
}

async function noGapDuringRebuilds(net: TestNetwork, dp: KernelDataplane, big: DesiredState, changed: DesiredState, allowedNs: string, deniedNs: string, target: string): Promise<void> {
  let server: TcpServer | undefined;
  const probers: Prober[] = [];
  try {
    server = await startServer(net, net.hosts[1]!.ns, PROBE_PORT);
    const common = { address: target, port: PROBE_PORT, timeoutMs: PROBE_TIMEOUT_MS, maxSeconds: 90 };
    const allowed = startProber(net, allowedNs, { ...common, concurrency: 4, pauseMs: 2 });
    probers.push(allowed);
    const denied = startProber(net, deniedNs, { ...common, concurrency: 32, pauseMs: 0 });
    probers.push(denied);
    // Probe before, during and after the rebuilds (bounded: REBUILDS applies of at most 120 s each).
    await sleep(PROBE_TIMEOUT_MS + 200);
    const windows: [number, number][] = [];
    const applyMs: number[] = [];
    for (let r = 0; r < REBUILDS; r++) {
      const state = r % 2 === 0 ? changed : big;
      const t0 = epochMs();
      await dp.apply(state);
      const t1 = epochMs();
      windows.push([t0, t1]);
      applyMs.push(t1 - t0);
      await sleep(100);
    }
    await sleep(PROBE_TIMEOUT_MS + 200);
    const allowedRecords = await allowed.stop();
    const deniedRecords = await denied.stop();
    probers.length = 0;

    const during = (p: ProbeRecord) => windows.some(([a, b]) => p.start <= b && p.end >= a);
    const tally = (records: readonly ProbeRecord[], right: string) => {
      const wrong = records.filter((p) => p.verdict !== right);
      return { total: records.length, during: records.filter(during).length, wrong: wrong.length, wrongDuring: wrong.filter(during).length, kinds: kinds(wrong) };
    };
    const a = tally(allowedRecords, 'open');
    const d = tally(deniedRecords, 'timeout');
    log(`rebuilds under probing: ${REBUILDS} applies of ${memberCount(big)} members, ${applyMs.map((x) => x.toFixed(0)).join(', ')} ms`);
    log(`allowed source: ${a.total} new connections (${a.during} overlapping an apply), wrong ${a.wrong} (${a.wrongDuring} during)${a.kinds}`);
    log(`denied source: ${d.total} attempts (${d.during} overlapping an apply), wrong ${d.wrong} (${d.wrongDuring} during)${d.kinds}`);
    if (a.during === 0 || d.during === 0) throw new Error('no probe overlapped an apply: the gap check measured nothing');
    report({
      scenario: S,
      name: 'wrong verdicts during full rebuilds',
      value: a.wrong + d.wrong,
      unit: 'conns',
      target: { op: '<=', value: 0 },
      note: `${REBUILDS} rebuilds; ${a.during} allowed + ${d.during} denied new connections during applies (${a.total + d.total} in all)`,
    });
  } finally {
    for (const p of probers) await p.stop().catch(() => undefined);
    await server?.stop();
  }
}

function kinds(wrong: readonly ProbeRecord[]): string {
  if (wrong.length === 0) return '';
  const counts = new Map<string, number>();
  for (const p of wrong) counts.set(p.verdict, (counts.get(p.verdict) ?? 0) + 1);
  return ` (${[...counts].map(([k, v]) => `${k} ${v}`).join(', ')})`;
}

function epochMs(): number {
  return performance.timeOrigin + performance.now();
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
