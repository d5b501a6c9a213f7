/**
 * KernelDataplane's delta path against a fake CommandRunner: when a small change is written as
 * add/del lines only, when the full path is taken instead, refusal of an invalid new member,
 * fallback to the full path when a delta fails, members that are one kernel entry; the one owner
 * of what the kernel holds (a wire Delta written as sent, `held`, last-apply.* after deltas); and
 * the member diff (member-delta.ts) against a plain set difference.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { SET_KINDS, type DesiredState, type SetKind } from '../src/compile/desired-state.js';
import { applyDelta, diffStates, type StateDelta } from '../src/compile/state-delta.js';
import { stateVersion } from '../src/compile/state-version.js';
import { ipsetName, setKindsOf } from '../src/render/owned-names.js';
import { setMembers } from '../src/render/render-ipsets.js';
import { FOLD_MIN_BYTES } from '../agent/dataplane/kept-inputs.js';
import { KernelDataplane } from '../agent/dataplane/kernel-dataplane.js';
import { isStrictlyAscending, memberChanges, renderDeltaRestore } from '../agent/dataplane/member-delta.js';
import { RecordingRunner } from './support/recording-runner.js';
import { logCapture } from './support/log-capture.js';

function makeState(partial: Partial<Record<SetKind, readonly string[]>>, mode: 'enforce' | 'audit' = 'enforce'): DesiredState {
  const sets = Object.fromEntries(SET_KINDS.map((k) => [k, [...(partial[k] ?? [])].sort()])) as Record<SetKind, string[]>;
  return { hostId: 'host-a', mode, sets, version: stateVersion(mode, sets) };
}

function edit(state: DesiredState, changes: Partial<Record<SetKind, { add?: string[]; remove?: string[] }>>, mode = state.mode): DesiredState {
  const sets: Partial<Record<SetKind, string[]>> = {};
  for (const kind of SET_KINDS) {
    const c = changes[kind];
    sets[kind] = [...state.sets[kind].filter((m) => !(c?.remove ?? []).includes(m)), ...(c?.add ?? [])];
  }
  return makeState(sets, mode);
}

const A = makeState({
  'managed-tcp': ['31000', '31001'],
  'failsafe-tcp': ['22'],
  'allow-ip4': ['10.0.1.5,tcp:31000', '10.0.1.6,tcp:31001'],
  'allow-net4': ['10.0.100.0/24,udp:53'],
  'allow-ip6': ['2001:db8::5,tcp:31000'],
});

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(path.join(tmpdir(), 'pcut-dp-delta-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A dataplane that has applied `base` (full path); `runner.calls` is emptied afterwards. */
async function applied(base: DesiredState, options: { maxDeltaMembers?: number; stateDir?: string; families?: (4 | 6)[] } = {}) {
  const runner = new RecordingRunner();
  const { logger, lines } = logCapture();
  const dp = new KernelDataplane({ runner, logger, ...options });
  const report = await dp.apply(base);
  expect(report.path).toBe('full');
  runner.calls.length = 0;
  lines.length = 0;
  return { runner, dp, lines };
}

const writes = (runner: RecordingRunner) => runner.calls.filter((c) => c.input !== undefined).map((c) => c.argv.join(' '));
const isFull = (runner: RecordingRunner) => runner.callsTo(['iptables-restore', '--noflush']).length === 1 && runner.callsTo(['ipset', 'restore']).some((c) => c.input?.includes('swap '));

describe('KernelDataplane delta path (fake runner)', () => {
  it('writes a small change as one ipset restore per family of add/del lines, loosening first, and nothing else', async () => {
    const { runner, dp, lines } = await applied(A);
    const B = edit(A, {
      'managed-tcp': { add: ['31002'], remove: ['31001'] },
      'allow-ip4': { add: ['10.0.1.7,tcp:31002'], remove: ['10.0.1.6,tcp:31001'] },
      'allow-ip6': { add: ['2001:db8::7,tcp:31002'] },
    });
    const report = await dp.apply(B);
    expect(report.path).toBe('delta');
    expect(report.families).toEqual([
      { family: 4, jumpInserted: false, jumpsDeleted: 0 },
      { family: 6, jumpInserted: false, jumpsDeleted: 0 },
    ]);
    // No iptables-save, no iptables-restore, no temp set: exactly the two ipset restores.
    expect(runner.calls.map((c) => c.argv.join(' '))).toEqual(['ipset restore', 'ipset restore']);
    expect(runner.calls[0]?.input).toBe(
      [
        'del pcu4-managed-tcp 31001 -exist',
        'add pcu4-allow-ip 10.0.1.7,tcp:31002 -exist',
        'add pcu4-managed-tcp 31002 -exist',
        'del pcu4-allow-ip 10.0.1.6,tcp:31001 -exist',
        '',
      ].join('\n'),
    );
    expect(runner.calls[1]?.input).toBe(
      ['del pcu6-managed-tcp 31001 -exist', 'add pcu6-allow-ip 2001:db8::7,tcp:31002 -exist', 'add pcu6-managed-tcp 31002 -exist', ''].join('\n'),
    );
    expect(dp.counters).toMatchObject({ applies: 2, deltaApplies: 1, deltaFallbacks: 0, applyFailures: 0 });
    expect(lines.find((l) => l['event'] === 'dataplane.applied')).toMatchObject({ path: 'delta', version: B.version, members: 5 });

    // And back: the delta path again, the inverse lines.
    runner.calls.length = 0;
    expect((await dp.apply(A)).path).toBe('delta');
    expect(runner.calls[0]?.input).toContain('add pcu4-allow-ip 10.0.1.6,tcp:31001 -exist');
    expect(runner.calls[0]?.input).toContain('del pcu4-allow-ip 10.0.1.7,tcp:31002 -exist');
  });

  it('runs no command for a family whose sets did not change', async () => {
    const { runner, dp } = await applied(A);
    await dp.apply(edit(A, { 'allow-ip4': { add: ['10.0.1.9,tcp:31000'] } }));
    expect(writes(runner)).toEqual(['ipset restore']);
    expect(runner.calls[0]?.input).toBe('add pcu4-allow-ip 10.0.1.9,tcp:31000 -exist\n');
  });

  it('takes the full path on a mode change and beyond 1,000 changed members', async () => {
    const mode = await applied(A);
    expect((await mode.dp.apply(edit(A, { 'allow-ip4': { add: ['10.0.1.9,tcp:31000'] } }, 'audit'))).path).toBe('full');
    expect(isFull(mode.runner)).toBe(true);

    const many = Array.from({ length: 1001 }, (_, i) => `10.9.${i >> 8}.${i & 255},tcp:31000`);
    const big = await applied(A);
    expect((await big.dp.apply(edit(A, { 'allow-ip4': { add: many } }))).path).toBe('full');
    expect(isFull(big.runner)).toBe(true);
    big.runner.calls.length = 0;
    expect((await big.dp.apply(edit(A, { 'allow-ip4': { add: many.slice(0, 1000) } }))).path).toBe('delta'); // 1001 → 1000: one removal
    expect(big.runner.callsTo(['ipset', 'restore'])[0]?.input).toBe('del pcu4-allow-ip 10.9.3.232,tcp:31000 -exist\n');
    big.runner.calls.length = 0;
    expect((await big.dp.apply(A)).path).toBe('delta'); // 1,000 removals: the limit itself is allowed
    expect(big.runner.callsTo(['ipset', 'restore'])[0]?.input?.split('\n').filter((l) => l.startsWith('del '))).toHaveLength(1000);
  });

  it('honours maxDeltaMembers, 0 turning the delta path off', async () => {
    const two = edit(A, { 'allow-ip4': { add: ['10.0.1.8,tcp:31000', '10.0.1.9,tcp:31000'] } });
    const limited = await applied(A, { maxDeltaMembers: 1 });
    expect((await limited.dp.apply(two)).path).toBe('full');
    const off = await applied(A, { maxDeltaMembers: 0 });
    expect((await off.dp.apply(edit(A, { 'allow-ip4': { add: ['10.0.1.9,tcp:31000'] } }))).path).toBe('full');
    expect(isFull(off.runner)).toBe(true);
  });

  it('re-applying the very state already applied is a full apply', async () => {
    const { runner, dp } = await applied(A);
    expect((await dp.apply(A)).path).toBe('full');
    expect(isFull(runner)).toBe(true);
  });

  it('repair always takes the full path', async () => {
    const { runner, dp, lines } = await applied(A, { families: [4] });
    // A kernel whose sets are gone: drift, repaired by writing A again.
    let gone = true;
    runner.on((argv) => (gone && argv[0] === 'ipset' && argv[1] === 'save' ? { code: 1, stderr: 'The set with the given name does not exist' } : undefined));
    expect((await dp.checkAndRepair())?.drift.length).toBeGreaterThan(0);
    expect(isFull(runner)).toBe(true);
    expect(lines.find((l) => l['event'] === 'dataplane.applied')).toMatchObject({ path: 'full', reason: 'repair' });
    gone = false;
    runner.calls.length = 0;
    const B = edit(A, { 'allow-ip4': { add: ['10.0.1.9,tcp:31000'] } });
    expect((await dp.apply(B)).path).toBe('delta'); // the repaired state is the new base
  });

  it('after a failed apply the next apply is full, then deltas resume', async () => {
    const { runner, dp } = await applied(A);
    const B = edit(A, { 'allow-ip4': { add: ['10.0.1.9,tcp:31000'] } });
    const C = edit(A, { 'allow-ip4': { add: ['10.0.1.10,tcp:31000'] } });
    let broken = true;
    runner.on((argv) => (broken && argv[0] === 'iptables-restore' ? { code: 1, stderr: 'iptables-restore: boom' } : undefined));
    await expect(dp.apply(edit(A, {}, 'audit'))).rejects.toThrow(/boom/);
    broken = false;
    runner.calls.length = 0;
    expect((await dp.apply(B)).path).toBe('full');
    expect(isFull(runner)).toBe(true);
    expect((await dp.apply(C)).path).toBe('delta');
  });

  it('refuses an invalid new member before any command, and the next apply is full', async () => {
    const stateDir = tempDir();
    const { runner, dp } = await applied(A, { stateDir });
    const bad = edit(A, { 'allow-ip4': { add: ['10.0.1.9,tcp:31000', '10.0.1.8,tcp:1 -exist\nflush pcu4-allow-ip'] }, 'managed-tcp': { add: ['070'] } });
    await expect(dp.apply(bad)).rejects.toThrow(/refused: 2 invalid member\(s\)/);
    expect(runner.calls).toEqual([]);
    expect(dp.counters).toMatchObject({ applyFailures: 1, deltaApplies: 0 });
    expect(readFileSync(path.join(stateDir, 'failed-apply.error'), 'utf8')).toContain('invalid member');
    expect((await dp.apply(edit(A, { 'allow-ip4': { add: ['10.0.1.9,tcp:31000'] } }))).path).toBe('full');
  });

  it('falls back to the full path once when the delta fails, keeping the delta input', async () => {
    const stateDir = tempDir();
    const { runner, dp, lines } = await applied(A, { stateDir });
    runner.on((argv, input) => (argv[0] === 'ipset' && input?.includes('-exist\n') && !input.includes('swap') ? { code: 1, stderr: 'ipset v7: Error in line 1: Kernel error' } : undefined));
    const B = edit(A, { 'allow-ip4': { add: ['10.0.1.9,tcp:31000'] } });
    const report = await dp.apply(B);
    expect(report.path).toBe('full');
    expect(writes(runner)).toEqual(['ipset restore', 'ipset restore', 'iptables-restore --noflush --wait', 'ipset restore', 'ip6tables-restore --noflush --wait']);
    expect(dp.counters).toMatchObject({ applies: 2, deltaApplies: 0, deltaFallbacks: 1, applyFailures: 0 });
    expect(lines.find((l) => l['event'] === 'dataplane.delta_failed')?.['err']).toMatch(/Kernel error/);
    expect(lines.find((l) => l['event'] === 'dataplane.applied')).toMatchObject({ path: 'full', reason: 'delta failed' });
    expect(readFileSync(path.join(stateDir, 'failed-delta.ipset4'), 'utf8')).toBe('add pcu4-allow-ip 10.0.1.9,tcp:31000 -exist\n');
    expect(readFileSync(path.join(stateDir, 'failed-delta.error'), 'utf8')).toContain('Kernel error');
    expect(existsSync(path.join(stateDir, 'failed-delta.ipset6'))).toBe(false);
    expect(readFileSync(path.join(stateDir, 'last-apply.ipset4'), 'utf8')).toContain('add pcu4-allow-ip-tmp 10.0.1.9,tcp:31000');
  });

  it('when the fallback fails too, the apply fails with the full path inputs kept', async () => {
    const stateDir = tempDir();
    const { runner, dp } = await applied(A, { stateDir });
    runner.fail(['ipset', 'restore'], 'ipset: no memory');
    await expect(dp.apply(edit(A, { 'allow-ip4': { add: ['10.0.1.9,tcp:31000'] } }))).rejects.toThrow(/no memory/);
    expect(runner.callsTo(['ipset', 'restore'])).toHaveLength(2); // the delta, then the full path's v4
    expect(dp.counters).toMatchObject({ deltaFallbacks: 1, applyFailures: 1 });
    expect(existsSync(path.join(stateDir, 'failed-delta.ipset4'))).toBe(true);
    expect(readFileSync(path.join(stateDir, 'failed-apply.ipset4'), 'utf8')).toContain('swap pcu4-allow-ip-tmp pcu4-allow-ip');
  });

  it('takes the full path after drift was found, and after uninstall', async () => {
    const { runner, dp } = await applied(A, { families: [4] });
    runner.when(['ipset', 'save'], { code: 1, stderr: 'The set with the given name does not exist' });
    expect((await dp.checkDrift()).length).toBeGreaterThan(0);
    const B = edit(A, { 'allow-ip4': { add: ['10.0.1.9,tcp:31000'] } });
    expect((await dp.apply(B)).path).toBe('full');

    const u = await applied(A, { families: [4] });
    await u.dp.uninstall();
    expect((await u.dp.apply(B)).path).toBe('full');
  });

  it('takes the full path when a list of the new state is not sorted', async () => {
    const { dp } = await applied(A);
    const sets = { ...A.sets, 'allow-ip4': ['10.0.1.9,tcp:31000', '10.0.1.5,tcp:31000', '10.0.1.6,tcp:31001'] };
    const unsorted: DesiredState = { ...A, sets, version: stateVersion('enforce', sets) };
    expect((await dp.apply(unsorted)).path).toBe('full');
  });

  it('never deletes an entry that another spelling in the new state still needs', async () => {
    const base = makeState({
      'managed-tcp': ['80'],
      'allow-net4': ['10.0.0.0/24,tcp:80', '10.0.0.1/24,tcp:80', '0.0.0.0/1,tcp:1', '172.16.0.0/12,tcp:80'],
      'allow-ip6': ['2001:DB8::5,tcp:80', '2001:db8::5,tcp:80', '::ffff:10.0.0.1,udp:53', '2001:db8::9,tcp:80'],
      'allow-net6': ['2001:db8::/32,tcp:80'],
    });
    const { runner, dp } = await applied(base);
    const next = edit(base, {
      'allow-net4': { remove: ['10.0.0.1/24,tcp:80', '172.16.0.0/12,tcp:80'], add: ['0.0.0.0/0,tcp:1'] },
      'allow-ip6': { remove: ['2001:DB8::5,tcp:80', '::ffff:10.0.0.1,udp:53', '2001:db8::9,tcp:80'], add: ['::ffff:a00:1,udp:53'] },
      'allow-net6': { remove: ['2001:db8::/32,tcp:80'], add: ['2001:db8:0::/32,tcp:80'] },
    });
    expect((await dp.apply(next)).path).toBe('delta');
    const [v4, v6] = runner.callsTo(['ipset', 'restore']).map((c) => c.input);
    expect(v4).toBe(['add pcu4-allow-net 0.0.0.0/1,tcp:1 -exist', 'add pcu4-allow-net 128.0.0.0/1,tcp:1 -exist', 'del pcu4-allow-net 172.16.0.0/12,tcp:80 -exist', ''].join('\n'));
    expect(v6).toBe(['add pcu6-allow-ip ::ffff:a00:1,udp:53 -exist', 'add pcu6-allow-net 2001:db8:0::/32,tcp:80 -exist', 'del pcu6-allow-ip 2001:db8::9,tcp:80 -exist', ''].join('\n'));

    // Removing the /0 keeps the explicit /1 half it covers.
    runner.calls.length = 0;
    await dp.apply(edit(next, { 'allow-net4': { remove: ['0.0.0.0/0,tcp:1'] } }));
    expect(runner.callsTo(['ipset', 'restore'])[0]?.input).toBe('del pcu4-allow-net 128.0.0.0/1,tcp:1 -exist\n');
  });
});

/** The sets `ipset restore` would hold after these inputs, in order (create/flush/add/del/swap/destroy). */
function replay(...texts: string[]): Map<string, Set<string>> {
  const sets = new Map<string, Set<string>>();
  const set = (name: string) => sets.get(name) ?? sets.set(name, new Set()).get(name)!;
  for (const line of texts.join('').split('\n').filter((l) => l !== '')) {
    const [op, name, arg] = line.split(' ') as [string, string, string];
    if (op === 'create') set(name);
    else if (op === 'flush') set(name).clear();
    else if (op === 'add') set(name).add(arg);
    else if (op === 'del') set(name).delete(arg);
    else if (op === 'destroy') sets.delete(name);
    else if (op === 'swap') {
      const [a, b] = [set(name), set(arg)];
      sets.set(name, b).set(arg, a);
    } else throw new Error(`unexpected ipset restore line: ${line}`);
  }
  return sets;
}

/** The IPv4 sets a state puts in the kernel. */
function kernelSets(state: DesiredState): Map<string, Set<string>> {
  return new Map(setKindsOf(4).map((kind) => [ipsetName(kind, 4) as string, new Set(setMembers(kind, 4, state.sets[kind]))]));
}

describe('KernelDataplane: the one owner of what the kernel holds (fake runner)', () => {
  it('writes a wire Delta on the held version as sent, not diffed again', async () => {
    const { runner, dp, lines } = await applied(A, { families: [4] });
    const B = edit(A, { 'allow-ip4': { add: ['10.0.1.9,tcp:31000'] } });
    // As sent: a removal of a member A never had (harmless: -exist) shows the delta was not recomputed.
    const sent: StateDelta = { ...diffStates(A, B), removes: { ...diffStates(A, B).removes, 'allow-ip4': ['10.9.9.9,tcp:1'] } };
    const state = applyDelta(A, sent);
    expect(state).toEqual(B);
    expect((await dp.apply(state, { delta: sent })).path).toBe('delta');
    expect(runner.calls.map((c) => c.argv.join(' '))).toEqual(['ipset restore']);
    expect(runner.calls[0]?.input).toBe('add pcu4-allow-ip 10.0.1.9,tcp:31000 -exist\ndel pcu4-allow-ip 10.9.9.9,tcp:1 -exist\n');
    expect(lines.find((l) => l['event'] === 'dataplane.applied')).toMatchObject({ path: 'delta', difference: 'wire', members: 2 });
    expect(dp.held?.state).toBe(state);
  });

  it('adds, and never deletes, a member a wire Delta both removes and adds', async () => {
    const { runner, dp } = await applied(A, { families: [4] });
    const B = edit(A, { 'allow-ip4': { add: ['10.0.1.9,tcp:31000'] } });
    const both: StateDelta = { ...diffStates(A, B), removes: { ...diffStates(A, B).removes, 'allow-ip4': ['10.0.1.9,tcp:31000'] } };
    expect(applyDelta(A, both)).toEqual(B);
    expect((await dp.apply(B, { delta: both })).path).toBe('delta');
    expect(runner.calls[0]?.input).toBe('add pcu4-allow-ip 10.0.1.9,tcp:31000 -exist\n');
  });

  it('diffs against the held state when the Delta has another base, and writes a large Delta in full', async () => {
    const { dp, lines } = await applied(A, { families: [4] });
    const other = edit(A, { 'managed-tcp': { add: ['40000'] } });
    const B = edit(A, { 'allow-ip4': { add: ['10.0.1.9,tcp:31000'] } });
    expect((await dp.apply(B, { delta: diffStates(other, B) })).path).toBe('delta');
    expect(lines.find((l) => l['event'] === 'dataplane.applied')).toMatchObject({ path: 'delta', difference: 'merge', members: 1 });
    const many = Array.from({ length: 1001 }, (_, i) => `10.9.${i >> 8}.${i & 255},tcp:31000`);
    const C = edit(B, { 'allow-ip4': { add: many } });
    expect((await dp.apply(C, { delta: diffStates(B, C) })).path).toBe('full');
  });

  it('holds the last state the kernel accepted, with its source and time; unknown after a failure; nothing after uninstall', async () => {
    const runner = new RecordingRunner();
    const dp = new KernelDataplane({ runner, families: [4], logger: logCapture().logger });
    expect(dp.held).toBeUndefined();
    const before = Date.now();
    await dp.apply(A, { source: 'disk' });
    expect(dp.held).toMatchObject({ state: A, source: 'disk', exact: true });
    expect(Date.parse(dp.held!.at)).toBeGreaterThanOrEqual(before - 1000);
    runner.fail(['ipset', 'restore'], 'ipset: boom');
    const B = edit(A, { 'allow-ip4': { add: ['10.0.1.9,tcp:31000'] } });
    await expect(dp.apply(B, { source: 'controller' })).rejects.toThrow(/boom/);
    expect(dp.held).toMatchObject({ state: A, source: 'disk', exact: false });
    await dp.uninstall();
    expect(dp.held).toBeUndefined();
  });

  it('keeps last-apply.* describing the kernel after deltas: the full input plus the delta journal, folded once large', async () => {
    const stateDir = tempDir();
    const { dp } = await applied(A, { stateDir, families: [4] });
    const file = (suffix: string) => path.join(stateDir, `last-apply.${suffix}`);
    const kernelNow = () => {
      const sets = replay(readFileSync(file('ipset4'), 'utf8'), existsSync(file('deltas4')) ? readFileSync(file('deltas4'), 'utf8') : '');
      return new Map([...sets].filter(([name]) => !name.endsWith('-tmp')));
    };
    const B = edit(A, { 'allow-ip4': { add: ['10.0.1.9,tcp:31000'], remove: ['10.0.1.5,tcp:31000'] } });
    expect((await dp.apply(B)).path).toBe('delta');
    expect(readFileSync(file('deltas4'), 'utf8')).toBe('add pcu4-allow-ip 10.0.1.9,tcp:31000 -exist\ndel pcu4-allow-ip 10.0.1.5,tcp:31000 -exist\n');
    expect(kernelNow()).toEqual(kernelSets(B));
    // Deltas of ~900 members each: the journal outgrows FOLD_MIN_BYTES within a few applies.
    let state = B;
    for (let round = 0; round < 4; round++) {
      const adds = Array.from({ length: 900 }, (_, i) => `10.${20 + round}.${i >> 8}.${i & 255},tcp:31000`);
      state = edit(state, { 'allow-ip4': { add: adds } });
      expect((await dp.apply(state)).path).toBe('delta');
      expect(kernelNow()).toEqual(kernelSets(state));
    }
    expect(readFileSync(file('ipset4'), 'utf8').length).toBeGreaterThan(FOLD_MIN_BYTES); // folded at least once
    // A full write starts over: its inputs, no journal.
    expect((await dp.apply(edit(state, {}, 'audit'))).path).toBe('full');
    expect(existsSync(file('deltas4'))).toBe(false);
    expect(kernelNow()).toEqual(kernelSets(state));
  });
});

describe('memberChanges', () => {
  const member = fc.constantFrom('a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'aa', 'ab', 'ba');
  const sortedList = fc.uniqueArray(member, { maxLength: 8 }).map((l) => l.sort());
  const stateOf = (lists: readonly (readonly string[])[]): DesiredState => {
    const sets = Object.fromEntries(SET_KINDS.map((k, i) => [k, lists[i % lists.length] ?? []])) as unknown as DesiredState['sets'];
    return { hostId: 'h', mode: 'enforce', sets, version: 'x' };
  };

  it('equals the set difference for sorted lists, and detects every unsorted new list', () => {
    fc.assert(
      fc.property(fc.array(sortedList, { minLength: 2, maxLength: 2 }), fc.array(fc.oneof(sortedList, fc.array(member, { maxLength: 8 })), { minLength: 2, maxLength: 2 }), (from, to) => {
        const result = memberChanges(stateOf(from), stateOf(to), 1000);
        const sorted = to.every((l) => isStrictlyAscending(l));
        if (!sorted) {
          expect(result).toEqual({ ok: false, reason: 'unsorted' });
          return;
        }
        expect(result.ok).toBe(true);
        if (!result.ok) return;
        let total = 0;
        SET_KINDS.forEach((kind, i) => {
          const before = new Set(from[i % 2]);
          const after = new Set(to[i % 2]);
          const adds = [...after].filter((m) => !before.has(m)).sort();
          const removes = [...before].filter((m) => !after.has(m)).sort();
          total += adds.length + removes.length;
          expect(result.kinds.get(kind) ?? { adds: [], removes: [] }).toEqual({ adds, removes });
        });
        expect(result.total).toBe(total);
      }),
      { numRuns: 5000 },
    );
  });

  it('stops beyond the limit', () => {
    const from = stateOf([['a', 'b', 'c'], []]);
    const kinds = SET_KINDS.filter((_, i) => i % 2 === 0).length; // the kinds stateOf gives the first list
    expect(memberChanges(from, stateOf([['a'], []]), 2 * kinds).ok).toBe(true); // 2 per kind
    expect(memberChanges(from, stateOf([['a'], []]), 2 * kinds - 1)).toEqual({ ok: false, reason: 'too-many' });
    expect(memberChanges(from, stateOf([[], []]), 11)).toEqual({ ok: false, reason: 'too-many' });
  });

  it('renders nothing for a family whose sets did not change', () => {
    const change = memberChanges(A, edit(A, { 'allow-ip4': { add: ['10.0.1.9,tcp:31000'] } }), 10);
    expect(change.ok && renderDeltaRestore(6, change.kinds, A)).toBe('');
  });
});
