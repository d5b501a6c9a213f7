/**
 * Per-app egress with the real agent process (`portcullis agent`, built), in a host namespace
 * entered with `nsenter --net` so it sees the machine's cgroup2 mount (`ip netns exec` remounts
 * /sys), next to the Mesos agent API double as a process of its own in the same namespace
 * (mesos-agent-double-main.ts, tasks from a file). The agent boots from its state directory (the
 * fail-static path: no controller is needed to put a state into the kernel), so each start is an
 * apply of the state saved there. Root only; wrap in flock /tmp/portcullis-kernel.lock.
 *
 * - Two apps of one host address: the allowed one connects, the other is dropped; /status and
 *   /metrics say egress is enforced, with the mapped tasks.
 * - The window of a new container (the task is in the state, the Mesos agent lists it, the agent
 *   polls every 50 ms): measured until its rule is in the kernel and its connection passes.
 * - Killed mid-apply (SIGKILL at spread-out moments of a large apply): every time, our rules are
 *   exactly the old state's or the new one's, and every egress set holds exactly the old members or
 *   the new ones; a restart then converges.
 * - `--uninstall` removes every egress object and the OUTPUT jump.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { saveState } from '../../agent/state-store.js';
import type { DesiredState } from '../../src/compile/desired-state.js';
import { EGRESS_OUTPUT_CHAIN } from '../../src/render/owned-names.js';
import { BIN, ROOT, ensureBuilt, run } from '../support/built-cli.js';
import { cgroup2Mount, createTestCgroup, sweepStaleCgroups, type TestCgroup } from '../support/cgroup.js';
import { waitFor } from '../support/cluster-harness.js';
import { ruleLines } from '../support/egress-kernel.js';
import { makeState } from '../support/memory-state-source.js';
import type { ScriptedTask } from '../support/mesos-agent-double.js';
import { createTestNetwork, sweepStaleNamespaces, type TestNetwork } from '../support/netns.js';
import { probe, startListener } from '../support/probe.js';
import { logged, type LoggedProcess } from '../support/process-log.js';
import { normalizeMember } from '../../src/net/member.js';
import { parseIpsetSave } from '../../agent/dataplane/kernel-read.js';

const isRoot = process.getuid?.() === 0;
const ready = isRoot && cgroup2Mount() !== undefined;
if (!ready) console.warn('egress-agent.test.ts skipped: needs root, network namespaces and a cgroup2 mount');

const DB = 15433;
const DOUBLE_MAIN = path.join(ROOT, 'dist', 'test', 'support', 'mesos-agent-double-main.js');

function stateA(db: string): DesiredState {
  const dst = `${db},tcp:${DB}`;
  return makeState('h1', {
    'egress-task': ['/shop/web|web.1', '/shop/web|web.2', '/shop/batch|batch.1'],
    'egress-managed4': [dst],
    'egress-ip4': [`/shop/web|${dst}`],
  });
}

/** B: web loses the db, batch gains it, one more local app, and 20,000 more managed destinations (a long apply). */
function stateB(db: string): DesiredState {
  const dst = `${db},tcp:${DB}`;
  const filler = Array.from({ length: 20_000 }, (_, i) => `10.1.${i >> 8}.${i & 255},tcp:80`);
  return makeState('h1', {
    'egress-task': ['/shop/web|web.1', '/shop/web|web.2', '/shop/batch|batch.1', '/shop/other|other.1'],
    'egress-managed4': [dst, ...filler],
    'egress-ip4': [`/shop/batch|${dst}`, ...filler.slice(0, 5000).map((m) => `/shop/other|${m}`)],
  });
}

interface KernelView {
  readonly rules: string;
  readonly sets: ReadonlyMap<string, string>;
}

describe.skipIf(!ready)('per-app egress with the real agent process', () => {
  let net: TestNetwork;
  let dir = '';
  let stateDir = '';
  let tasksFile = '';
  let double: ChildProcess | undefined;
  let mesosUrl = '';
  const agents: LoggedProcess[] = [];
  const cgroups: TestCgroup[] = [];
  let web: TestCgroup;
  let batch: TestCgroup;
  let tasks: ScriptedTask[] = [];
  const h1 = () => net.hosts[0]!;
  const db = () => ({ protocol: 'tcp' as const, address: net.hosts[1]!.v4, port: DB });

  function cgroup(label: string): TestCgroup {
    const c = createTestCgroup(label);
    cgroups.push(c);
    return c;
  }

  function writeTasks(list: ScriptedTask[]): void {
    tasks = list;
    writeFileSync(`${tasksFile}.tmp`, JSON.stringify(list));
    renameSync(`${tasksFile}.tmp`, tasksFile);
  }

  const inNet = (argv: readonly string[]): ChildProcess => spawn('nsenter', [`--net=/run/netns/${h1().ns}`, ...argv], { stdio: ['pipe', 'pipe', 'pipe'] });

  function startAgent(label: string): LoggedProcess {
    const proc = logged(
      inNet([
        process.execPath, BIN, 'agent', '--controller', '127.0.0.1:9', '--insecure', '--host-id', 'h1', '--address', h1().v4, '--family', '4',
        '--state-dir', stateDir, '--refresh-interval', '3600', '--mesos-agent', mesosUrl, '--mesos-poll-interval', '0.05', '--status-listen', '127.0.0.1:0',
      ]),
      label,
    );
    agents.push(proc);
    return proc;
  }

  async function bootWith(state: DesiredState, label: string): Promise<{ agent: LoggedProcess; ms: number }> {
    await saveState(stateDir, state);
    const started = performance.now();
    const agent = startAgent(label);
    await agent.waitFor((l) => l.msg === 'applied' && l.version === state.version, 30_000, `the disk state ${state.version} applied`);
    return { agent, ms: performance.now() - started };
  }

  async function kernel(): Promise<KernelView> {
    const save = await net.exec(h1().ns, ['iptables-save', '-t', 'mangle']);
    const rules = save.stdout.split('\n').filter((l) => l.includes('"pcu:') || l.includes('PCU-')).filter((l) => !l.startsWith('#')).join('\n');
    const list = await net.exec(h1().ns, ['ipset', 'save']);
    const sets = new Map<string, string>();
    for (const [name, members] of parseIpsetSave(list.stdout)) {
      if (name.startsWith('pcu4-eg-') && !name.endsWith('-tmp')) sets.set(name, members.map(normalizeMember).sort().join('\n'));
    }
    return { rules, sets };
  }

  beforeAll(async () => {
    await ensureBuilt();
    const source = path.join(ROOT, 'test', 'support', 'mesos-agent-double-main.ts');
    if (!existsSync(DOUBLE_MAIN) || statSync(DOUBLE_MAIN).mtimeMs < statSync(source).mtimeMs) await run('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: ROOT }).catch(() => undefined);
    await sweepStaleNamespaces();
    sweepStaleCgroups();
    dir = mkdtempSync(path.join(tmpdir(), 'pcut-egress-'));
    stateDir = path.join(dir, 'state');
    tasksFile = path.join(dir, 'tasks.json');
    net = await createTestNetwork({ hosts: 2, ipv6: false });
    await startListener(net, net.hosts[1]!.ns, { protocol: 'tcp', port: DB, family: 4 });
    const root = cgroup('mesos');
    web = cgroup('mesos/cweb');
    batch = cgroup('mesos/cbatch');
    writeTasks([
      { taskId: 'web.1', containerId: 'cweb', executorPid: null },
      { taskId: 'batch.1', containerId: 'cbatch', executorPid: null },
    ]);
    double = inNet([process.execPath, DOUBLE_MAIN, tasksFile, root.path]);
    mesosUrl = await new Promise<string>((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error('the Mesos agent double did not start')), 10_000);
      double!.stdout!.setEncoding('utf8').on('data', (d: string) => {
        out += d;
        const m = /"url":"([^"]+)"/.exec(out);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]!);
        }
      });
    });
  }, 120_000);

  afterAll(async () => {
    for (const a of agents) await a.stop('SIGKILL');
    double?.kill('SIGKILL');
    await net?.destroy();
    for (const c of [...cgroups].reverse()) c.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('two apps of one host address: the allowed one connects, the other is dropped; /status and /metrics say so', async () => {
    const { agent } = await bootWith(stateA(net.hosts[1]!.v4), 'agent-a');
    expect(await probe(net, h1().ns, { ...db(), cgroup: web })).toBe('open');
    expect(await probe(net, h1().ns, { ...db(), cgroup: batch })).toBe('timeout');
    expect(await probe(net, h1().ns, db())).toBe('open');
    const listening = await agent.waitFor((l) => l.msg === 'status listening', 10_000, 'the status port');
    const status = await net.exec(h1().ns, ['curl', '-sS', `http://${String(listening.status)}/status`]);
    expect(JSON.parse(status.stdout).egress).toEqual({ supported: true, enforcing: true, reason: '', mappedTasks: 2, unmappedTasks: 1 });
    const metrics = await net.exec(h1().ns, ['curl', '-sS', `http://${String(listening.status)}/metrics`]);
    expect(metrics.stdout).toMatch(/^portcullis_agent_egress_enforcing 1$/m);
    expect(metrics.stdout).toMatch(/^portcullis_agent_egress_unmapped_tasks 1$/m);
  }, 60_000);

  it('a new container: its rule is in the kernel within the poll interval plus one chain rewrite', async () => {
    const fresh = cgroup('mesos/cweb2');
    expect(await probe(net, h1().ns, { ...db(), cgroup: fresh })).toBe('open'); // --egress-unmapped host: host-level until mapped
    const started = performance.now();
    writeTasks([...tasks, { taskId: 'web.2', containerId: 'cweb2', executorPid: null }]);
    let windowMs = 0;
    await waitFor(async () => {
      const lines = await ruleLines(net, h1().ns, 4, EGRESS_OUTPUT_CHAIN);
      windowMs = performance.now() - started;
      return lines.some((l) => l.includes(fresh.path));
    }, 10_000, 'the new container\'s rule', 10);
    console.log(`egress: new container -> its rule in the kernel in ${windowMs.toFixed(0)} ms (poll 50 ms)`);
    expect(windowMs).toBeLessThan(3000);
    expect(await probe(net, h1().ns, { ...db(), cgroup: fresh })).toBe('open');
    await agents.at(-1)!.stop('SIGTERM');
  }, 60_000);

  it('killed mid-apply: the old egress state or the new one, never half; a restart converges', async () => {
    const A = stateA(net.hosts[1]!.v4);
    const B = stateB(net.hosts[1]!.v4);
    const a = await bootWith(A, 'agent-capture-a');
    const viewA = await kernel();
    await a.agent.stop('SIGTERM');
    const b = await bootWith(B, 'agent-capture-b');
    const viewB = await kernel();
    await b.agent.stop('SIGTERM');
    expect(viewA.rules).not.toBe(viewB.rules);
    const outcomes: string[] = [];
    for (let i = 0; i < 10; i++) {
      const next = i % 2 === 0 ? A : B;
      await saveState(stateDir, next);
      const agent = startAgent(`agent-kill-${i}`);
      // The kill moment (not a synchronisation): spread over the second half of the boot-and-apply
      // measured above, where the agent writes the kernel, and a little past its end.
      const at = b.ms * (0.4 + (0.7 * i) / 9);
      await new Promise((resolve) => setTimeout(resolve, at));
      await agent.stop('SIGKILL');
      const view = await kernel();
      const rules = view.rules === viewA.rules ? 'A' : view.rules === viewB.rules ? 'B' : 'mixed';
      expect(rules, `rules after a kill at ${at.toFixed(0)} ms`).not.toBe('mixed');
      // Every set a rule in force names (a set the interrupted write created but no rule names yet
      // may be empty: it is destroyed by the next full write).
      for (const [name, members] of view.sets) {
        if (!view.rules.includes(`--match-set ${name} `)) continue;
        const whole = members === viewA.sets.get(name) || members === viewB.sets.get(name);
        expect(whole, `set ${name} after a kill at ${at.toFixed(0)} ms is neither A's nor B's`).toBe(true);
      }
      outcomes.push(`${at.toFixed(0)}ms:${rules}`);
    }
    console.log(`egress: kill outcomes ${outcomes.join(' ')}`);
    const final = await bootWith(B, 'agent-final');
    const converged = await kernel();
    expect(converged.rules).toBe(viewB.rules);
    expect(converged.sets).toEqual(viewB.sets); // the stale ones destroyed
    expect(await probe(net, h1().ns, { ...db(), cgroup: batch })).toBe('open');
    expect(await probe(net, h1().ns, { ...db(), cgroup: web })).toBe('timeout');
    await final.agent.stop('SIGTERM');
  }, 180_000);

  it('--uninstall removes every egress object and the OUTPUT jump', async () => {
    const un = logged(inNet([process.execPath, BIN, 'agent', '--uninstall', '--state-dir', stateDir, '--family', '4']), 'uninstall');
    agents.push(un);
    await un.waitFor((l) => typeof l.msg === 'string' && l.msg.startsWith('uninstalled'), 30_000, 'uninstalled');
    const view = await kernel();
    expect(view.rules).toBe('');
    expect(view.sets.size).toBe(0);
    expect(await probe(net, h1().ns, { ...db(), cgroup: batch })).toBe('open');
  }, 60_000);
});
