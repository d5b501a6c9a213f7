/**
 * Flow recording against the real kernel (issue 11 item 1; src/render/render-flows.ts): real
 * network namespaces, real TCP, the agent's own KernelDataplane and FlowReader running their
 * commands inside the destination (ingress) or source (egress) host's namespace.
 *
 * - allowed, denied and audit connections each land in their set with exact counts (N
 *   connections, N packets: a dropped probe gives up before its first SYN retransmission);
 * - the reader reports each connection once across several reads;
 * - an apply (a mode change: a full write; a member change: a delta) keeps what was recorded;
 * - per-group staging (audit ports of a state that enforces), recorded and not, moved by a delta;
 * - a full set (small maxelem) leaves every verdict as it was and its overflow rule counts
 *   exactly the connections it could not record;
 * - recording turned off: the flow sets go, the chains are the unrecorded ones;
 * - egress: a HOST task's connections, told apart by its cgroup, are recorded under its app.
 * Root only; wrap in flock /tmp/portcullis-kernel.lock.
 */
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExecCommandRunner } from '../agent/dataplane/command-runner.js';
import { KernelDataplane } from '../agent/dataplane/kernel-dataplane.js';
import { FlowReader } from '../agent/flow-reader.js';
import type { DesiredState } from '../src/compile/desired-state.js';
import type { FlowEntry } from '../src/flows/flow-types.js';
import { parseFlowEntries } from '../src/render/flow-read.js';
import { egressFlowSetName, flowSetName } from '../src/render/owned-names.js';
import type { EgressMapping } from '../src/render/render-egress.js';
import type { FlowRecording } from '../src/render/render-flows.js';
import { cgroup2Mount, createTestCgroup, sweepStaleCgroups, type TestCgroup } from './support/cgroup.js';
import { makeState } from './support/memory-state-source.js';
import { createTestNetwork, sweepStaleNamespaces, type TestNetwork } from './support/netns.js';
import { probe, startListener, type Listener } from './support/probe.js';
import { nflogPackets } from './support/egress-kernel.js';

const isRoot = process.getuid?.() === 0;
if (!isRoot) console.warn('flow-kernel.test.ts skipped: needs root for network namespaces');
const logger = pino({ level: 'silent' });
const PORTS = [31000, 31001, 31002, 31003];
const REC: FlowRecording = { maxEntries: 64, timeoutSeconds: 600 };

describe.skipIf(!isRoot)('flow recording on the real kernel', () => {
  let net: TestNetwork;
  const listeners: Listener[] = [];
  const cgroups: TestCgroup[] = [];
  const src = () => net.hosts[0]!;
  const dst = () => net.hosts[1]!;
  const runnerIn = (ns: string) => new ExecCommandRunner({ prefix: ['ip', 'netns', 'exec', ns] });

  /** h2's state: tcp 31000 and 31002 allowed from h1, 31001 and 31003 managed but not allowed. */
  function ingressState(mode: 'enforce' | 'audit', extra: string[] = []): DesiredState {
    return makeState('h2', { 'managed-tcp': PORTS.map(String), 'allow-ip4': [`${src().v4},tcp:31000`, `${src().v4},tcp:31002`, ...extra].sort() }, mode);
  }

  function dataplaneIn(ns: string, flows?: FlowRecording): KernelDataplane {
    return new KernelDataplane({ runner: runnerIn(ns), families: [4], logger, ...(flows ? { flows } : {}) });
  }

  function readerOf(dataplane: KernelDataplane, ns: string, recording: FlowRecording): FlowReader {
    return new FlowReader({ runner: runnerIn(ns), layout: () => dataplane.flowLayout, intervalSeconds: 3600, recording, logger });
  }

  async function entries(ns: string, set: string): Promise<Map<string, number>> {
    const r = await net.exec(ns, ['ipset', 'list', '-o', 'save', set]);
    if (r.code !== 0) throw new Error(`ipset list ${set}: ${r.stderr}`);
    return new Map((parseFlowEntries(r.stdout).sets.get(set) ?? []).map((e) => [`${e.address},${e.protocol}:${e.port}`, e.packets]));
  }

  async function probes(port: number, count: number): Promise<string[]> {
    const verdicts: string[] = [];
    for (let i = 0; i < count; i++) verdicts.push(await probe(net, src().ns, { protocol: 'tcp', address: dst().v4, port }));
    return verdicts;
  }

  const summary = (list: readonly FlowEntry[]) => list.map((e) => `${e.direction} ${e.verdict} ${e.source}>${e.destination}:${e.protocol}/${e.port} x${e.packets}`).sort();

  beforeAll(async () => {
    await sweepStaleNamespaces();
    sweepStaleCgroups();
    net = await createTestNetwork({ hosts: 2, ipv6: true });
    for (const port of PORTS) listeners.push(await startListener(net, dst().ns, { protocol: 'tcp', port, family: 4 }));
    for (const port of [31000, 31001]) listeners.push(await startListener(net, dst().ns, { protocol: 'tcp', port, family: 6 }));
  });

  afterAll(async () => {
    for (const l of listeners) await l.stop().catch(() => undefined);
    await net?.destroy();
    for (const c of [...cgroups].reverse()) c.destroy();
  });

  it('allowed, denied and audit connections land in their sets with exact counts; each is reported once; applies keep them', async () => {
    const dataplane = dataplaneIn(dst().ns, REC);
    const reader = readerOf(dataplane, dst().ns, REC);
    await dataplane.apply(ingressState('enforce'));
    expect(await probes(31000, 3)).toEqual(['open', 'open', 'open']);
    expect(await probes(31001, 2)).toEqual(['timeout', 'timeout']);
    expect(await entries(dst().ns, flowSetName('allowed', 4))).toEqual(new Map([[`${src().v4},tcp:31000`, 3]]));
    expect(await entries(dst().ns, flowSetName('denied', 4))).toEqual(new Map([[`${src().v4},tcp:31001`, 2]]));
    await reader.read();
    const first = reader.take(1000);
    expect(summary(first.entries)).toEqual([`ingress allowed ${src().v4}>:tcp/31000 x3`, `ingress denied ${src().v4}>:tcp/31001 x2`]);
    expect(first.overflow).toEqual([]);
    await reader.read();
    expect(reader.take(1000).entries).toEqual([]); // nothing new: nothing reported twice

    // A delta apply (a member added) and a full write (mode change) keep the recorded entries.
    await dataplane.apply(ingressState('enforce', [`${src().v4},tcp:31003`]));
    expect(dataplane.counters.deltaApplies).toBe(1);
    await dataplane.apply(ingressState('audit'));
    expect(await entries(dst().ns, flowSetName('allowed', 4))).toEqual(new Map([[`${src().v4},tcp:31000`, 3]]));
    expect(await entries(dst().ns, flowSetName('denied', 4))).toEqual(new Map([[`${src().v4},tcp:31001`, 2]]));
    expect(await dataplane.checkDrift()).toEqual([]); // recorded members are never drift

    // Audit: the would-be-denied connection passes and is recorded as audit.
    expect(await probes(31001, 2)).toEqual(['open', 'open']);
    expect(await probes(31000, 1)).toEqual(['open']);
    expect(await entries(dst().ns, flowSetName('audit', 4))).toEqual(new Map([[`${src().v4},tcp:31001`, 2]]));
    await reader.read();
    expect(summary(reader.take(1000).entries)).toEqual([`ingress allowed ${src().v4}>:tcp/31000 x1`, `ingress audit ${src().v4}>:tcp/31001 x2`]);
    await dataplane.uninstall();
  });

  it('IPv6: allowed and denied connections land in the pcu6- sets, addresses canonical', async () => {
    const dataplane = new KernelDataplane({ runner: runnerIn(dst().ns), families: [4, 6], logger, flows: REC });
    const reader = readerOf(dataplane, dst().ns, REC);
    await dataplane.apply(makeState('h2', { 'managed-tcp': ['31000', '31001'], 'allow-ip6': [`${src().v6},tcp:31000`] }));
    const to = (port: number) => probe(net, src().ns, { protocol: 'tcp', address: dst().v6, port });
    expect([await to(31000), await to(31000), await to(31001)]).toEqual(['open', 'open', 'timeout']);
    await reader.read();
    expect(summary(reader.take(1000).entries)).toEqual([`ingress allowed ${src().v6}>:tcp/31000 x2`, `ingress denied ${src().v6}>:tcp/31001 x1`]);
    await dataplane.uninstall();
  });

  it('per-group staging: one group enforced, one in audit at once (audit ports), recorded and unrecorded', async () => {
    const staged = (audit: string[]) => makeState('h2', { ...ingressState('enforce').sets, 'audit-tcp': audit });
    for (const flows of [REC, undefined]) {
      const dataplane = dataplaneIn(dst().ns, flows);
      await dataplane.apply(staged(['31001']));
      expect(await probes(31001, 2)).toEqual(['open', 'open']); // the audited group's port: would-be denied, passes
      expect(await probes(31003, 1)).toEqual(['timeout']); // the enforced group's port: dropped
      expect(await probes(31000, 1)).toEqual(['open']);
      if (flows) {
        expect(await entries(dst().ns, flowSetName('audit', 4))).toEqual(new Map([[`${src().v4},tcp:31001`, 2]]));
        expect(await entries(dst().ns, flowSetName('denied', 4))).toEqual(new Map([[`${src().v4},tcp:31003`, 1]]));
      } else {
        expect(await nflogPackets(net, dst().ns, 4, 'PCU-AUDIT')).toBe(2);
      }
      // The group moves to enforce by a member change of audit-tcp: a delta, the port is enforced now.
      await dataplane.apply(staged(['31003']));
      expect(dataplane.counters.deltaApplies).toBe(1);
      expect(await probes(31001, 1)).toEqual(['timeout']);
      expect(await probes(31003, 1)).toEqual(['open']);
      // No audit port any more: a full write, PCU-MANAGED as without group modes, the audit set gone.
      await dataplane.apply(ingressState('enforce'));
      expect(dataplane.counters.deltaApplies).toBe(1);
      expect((await net.exec(dst().ns, ['ipset', 'list', '-n'])).stdout).not.toContain('audit-tcp');
      expect(await probes(31003, 1)).toEqual(['timeout']);
      expect(await dataplane.checkDrift()).toEqual([]);
      await dataplane.uninstall();
    }
  });

  it('a full set: verdicts unchanged, the overflow counted exactly; then recording turned off removes the sets', async () => {
    const small: FlowRecording = { maxEntries: 1, timeoutSeconds: 600 };
    const dataplane = dataplaneIn(dst().ns, small);
    const reader = readerOf(dataplane, dst().ns, small);
    await dataplane.apply(ingressState('enforce'));
    expect(await probes(31000, 1)).toEqual(['open']); // fills pcu4-fl-allow
    expect(await probes(31002, 3)).toEqual(['open', 'open', 'open']); // allowed, not recorded
    expect(await probes(31001, 1)).toEqual(['timeout']); // fills pcu4-fl-deny
    expect(await probes(31003, 2)).toEqual(['timeout', 'timeout']); // denied, not recorded
    expect(await entries(dst().ns, flowSetName('allowed', 4))).toEqual(new Map([[`${src().v4},tcp:31000`, 1]]));
    await reader.read();
    const taken = reader.take(1000);
    expect(summary(taken.entries)).toEqual([`ingress allowed ${src().v4}>:tcp/31000 x1`, `ingress denied ${src().v4}>:tcp/31001 x1`]);
    expect(taken.overflow.sort((a, b) => a.verdict.localeCompare(b.verdict))).toEqual([
      { direction: 'ingress', verdict: 'allowed', family: 4, packets: 3 },
      { direction: 'ingress', verdict: 'denied', family: 4, packets: 2 },
    ]);

    // Another --flow-max-entries: the set is recreated with it (its entries lost), still referenced by the rules.
    const bigger = dataplaneIn(dst().ns, REC);
    await bigger.apply(ingressState('enforce'));
    const header = (await net.exec(dst().ns, ['ipset', 'list', '-t', flowSetName('allowed', 4)])).stdout;
    expect(header).toMatch(/maxelem 64 timeout 600 counters/);
    expect(await probes(31002, 1)).toEqual(['open']);
    expect(await entries(dst().ns, flowSetName('allowed', 4))).toEqual(new Map([[`${src().v4},tcp:31002`, 1]]));

    // Recording off: the same state without flows; the flow sets and chains are gone, verdicts as before.
    const off = dataplaneIn(dst().ns);
    await off.apply(ingressState('enforce'));
    const sets = (await net.exec(dst().ns, ['ipset', 'list', '-n'])).stdout;
    expect(sets).not.toMatch(/fl-/);
    expect((await net.exec(dst().ns, ['iptables-save', '-t', 'mangle'])).stdout).not.toMatch(/PCU-FL-|SET --add-set/);
    expect(await probes(31000, 1)).toEqual(['open']);
    expect(await probes(31001, 1)).toEqual(['timeout']);
    await off.uninstall();
    expect((await net.exec(dst().ns, ['ipset', 'list', '-n'])).stdout.trim()).toBe('');
  });

  it.skipIf(cgroup2Mount() === undefined)('egress: a HOST task told apart by its cgroup is recorded under its app (allowed / denied)', async () => {
    cgroups.push(createTestCgroup('mesos'));
    const web = createTestCgroup('mesos/fweb');
    cgroups.push(web);
    const batch = createTestCgroup('mesos/fbatch');
    cgroups.push(batch);
    const db = `${dst().v4},tcp:31000`;
    const state = makeState('h1', {
      'egress-task': ['/shop/batch|batch.1', '/shop/web|web.1'],
      'egress-managed4': [db],
      'egress-ip4': [`/shop/web|${db}`],
    });
    const mapping: EgressMapping = {
      tasks: new Map([
        ['web.1', { kind: 'host', cgroupPath: web.path }],
        ['batch.1', { kind: 'host', cgroupPath: batch.path }],
      ]),
      unmapped: 'host',
      cgroupsRoot: undefined,
    };
    let reader: FlowReader | undefined;
    const dataplane = new KernelDataplane({ runner: runnerIn(src().ns), families: [4], logger, flows: REC, beforeFlowSetsDestroyed: (names) => reader!.read(names) });
    reader = readerOf(dataplane, src().ns, REC);
    await dataplane.setEgress(mapping, 'k1');
    await dataplane.apply(state);
    try {
      const target = { protocol: 'tcp' as const, address: dst().v4, port: 31000 };
      for (let i = 0; i < 2; i++) expect(await probe(net, src().ns, { ...target, cgroup: web })).toBe('open');
      expect(await probe(net, src().ns, { ...target, cgroup: batch })).toBe('timeout');
      expect(await entries(src().ns, egressFlowSetName('/shop/web', 'allowed', 4))).toEqual(new Map([[db, 2]]));
      expect(await entries(src().ns, egressFlowSetName('/shop/batch', 'denied', 4))).toEqual(new Map([[db, 1]]));
      await reader.read();
      expect(summary(reader!.take(1000).entries)).toEqual([`egress allowed /shop/web>${dst().v4}:tcp/31000 x2`, `egress denied /shop/batch>${dst().v4}:tcp/31000 x1`].sort());
      expect(await dataplane.checkDrift()).toEqual([]);

      // The app leaves the host: its flow sets are read once more, then destroyed.
      const left = makeState('h1', { 'egress-task': ['/shop/web|web.1'], 'egress-managed4': [db], 'egress-ip4': [`/shop/web|${db}`] });
      expect(await probe(net, src().ns, { ...target, cgroup: web })).toBe('open');
      expect(await probe(net, src().ns, { ...target, cgroup: batch })).toBe('timeout');
      await dataplane.apply(left);
      expect((await net.exec(src().ns, ['ipset', 'list', '-n'])).stdout).not.toContain(egressFlowSetName('/shop/batch', 'denied', 4));
      await reader.read();
      expect(summary(reader.take(1000).entries)).toEqual([`egress allowed /shop/web>${dst().v4}:tcp/31000 x1`, `egress denied /shop/batch>${dst().v4}:tcp/31000 x1`].sort());
    } finally {
      await dataplane.uninstall();
    }
  });
});
