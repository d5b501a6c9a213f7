/**
 * KernelDataplane against a fake CommandRunner (no root): command order, jump handling, failure
 * reporting, refusal of invalid members, uninstall scope, drift detection on parsed tool output.
 */
import { mkdtempSync, readFileSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SET_KINDS, type DesiredState, type SetKind } from '../src/compile/desired-state.js';
import { stateVersion } from '../src/compile/state-version.js';
import { ENTRY_CHAIN, ipsetName, setKindsOf } from '../src/render/owned-names.js';
import type { Family } from '../src/net/family.js';
import { renderChains } from '../src/render/render-chains.js';
import { setMembers } from '../src/render/render-ipsets.js';
import { appendLine, argsText } from '../src/render/restore-text.js';
import { ruleArgs } from '../src/render/rule-model.js';
import { EXIT_NOT_FOUND, EXIT_OUTPUT_TOO_LARGE, EXIT_TIMEOUT, ExecCommandRunner } from '../agent/dataplane/command-runner.js';
import { KernelDataplane } from '../agent/dataplane/kernel-dataplane.js';
import { RecordingRunner } from './support/recording-runner.js';
import { parseIptablesSave, tokenizeRule } from '../agent/dataplane/kernel-read.js';
import { normalizeMember } from '../src/net/member.js';
import { logCapture } from './support/log-capture.js';

function makeState(partial: Partial<Record<SetKind, readonly string[]>>, mode: 'enforce' | 'audit' = 'enforce'): DesiredState {
  const sets = Object.fromEntries(SET_KINDS.map((k) => [k, partial[k] ?? []])) as Record<SetKind, string[]>;
  return { hostId: 'host-a', mode, sets, version: stateVersion(mode, sets) };
}

const STATE = makeState({
  'managed-tcp': ['31000'],
  'failsafe-tcp': ['22'],
  'allow-ip4': ['10.0.1.5,tcp:31000'],
  'allow-net4': ['0.0.0.0/0,udp:53'],
  'allow-ip6': ['2001:db8::5,tcp:31000'],
});

/** iptables-save text of a mangle table holding `prerouting` rules and the rendered chains. */
function saveText(family: Family, state: DesiredState | undefined, prerouting: string[]): string {
  const lines = ['*mangle', ':PREROUTING ACCEPT [0:0]', ':INPUT ACCEPT [0:0]'];
  const chains = state ? renderChains(state, family).chains : [];
  for (const c of chains) lines.push(`:${c.name} - [0:0]`);
  for (const r of prerouting) lines.push(`-A PREROUTING ${r}`);
  for (const c of chains) for (const r of c.rules) lines.push(appendLine(c.name, r));
  lines.push('COMMIT');
  return lines.join('\n') + '\n';
}

const JUMP = argsText(ruleArgs(renderChains(STATE, 4).jump));
const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(path.join(tmpdir(), 'pcut-dp-unit-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('KernelDataplane.apply (fake runner)', () => {
  it('writes sets before rules, per family, and records the inputs', async () => {
    const runner = new RecordingRunner();
    const stateDir = tempDir();
    const dp = new KernelDataplane({ runner, stateDir, logger: logCapture().logger });
    const report = await dp.apply(STATE);
    const writes = runner.calls.filter((c) => c.input !== undefined && c.input !== '').map((c) => c.argv.join(' '));
    expect(writes).toEqual([
      'ipset restore',
      'iptables-restore --noflush --wait',
      'ipset restore',
      'ip6tables-restore --noflush --wait',
    ]);
    const argvs = runner.calls.map((c) => c.argv.join(' '));
    expect(argvs.indexOf('iptables-save -t mangle')).toBeGreaterThan(argvs.indexOf('ipset restore'));
    expect(report.families.map((f) => f.family)).toEqual([4, 6]);
    expect(readFileSync(path.join(stateDir, 'last-apply.ipset4'), 'utf8')).toContain('add pcu4-allow-ip-tmp 10.0.1.5,tcp:31000');
    expect(readFileSync(path.join(stateDir, 'last-apply.ipset6'), 'utf8')).toContain('add pcu6-allow-ip-tmp 2001:db8::5,tcp:31000');
    expect(readFileSync(path.join(stateDir, 'last-apply.iptables6'), 'utf8')).toContain('pcu6-managed-tcp');
    expect(dp.counters.applies).toBe(1);
    expect(dp.counters.applyFailures).toBe(0);
  });

  it('inserts the jump only when it is missing and deletes duplicates', async () => {
    const runner = new RecordingRunner();
    const dp = new KernelDataplane({ runner, families: [4], logger: logCapture().logger });
    await dp.apply(STATE);
    expect(runner.callsTo(['iptables-restore', '--noflush'])[0]?.input).toContain(`-I PREROUTING 1 ${JUMP}`);

    runner.when(['iptables-save'], { stdout: saveText(4, STATE, ['-m mark --mark 0x1 -j ACCEPT', JUMP]) });
    const second = await dp.apply(STATE);
    const input2 = runner.callsTo(['iptables-restore', '--noflush'])[1]?.input ?? '';
    expect(input2).not.toContain('-I PREROUTING');
    expect(input2).not.toContain('-D PREROUTING');
    expect(second.families[0]).toMatchObject({ jumpInserted: false, jumpsDeleted: 0 });

    const runner3 = new RecordingRunner().when(['iptables-save'], { stdout: saveText(4, STATE, [JUMP, '-j PCU-OLD', JUMP]) });
    const dp3 = new KernelDataplane({ runner: runner3, families: [4], logger: logCapture().logger });
    const third = await dp3.apply(STATE);
    const input3 = runner3.callsTo(['iptables-restore', '--noflush'])[0]?.input ?? '';
    expect(input3.match(/^-D PREROUTING /gm)).toHaveLength(2);
    expect(input3).toContain('-D PREROUTING -j PCU-OLD');
    expect(input3).not.toContain('-I PREROUTING');
    expect(third.families[0]).toMatchObject({ jumpInserted: false, jumpsDeleted: 2 });
  });

  it('surfaces an iptables-restore failure with its stderr and keeps the failed input', async () => {
    const runner = new RecordingRunner().fail(['iptables-restore', '--noflush'], 'iptables-restore: line 7 failed');
    const stateDir = tempDir();
    const dp = new KernelDataplane({ runner, stateDir, logger: logCapture().logger });
    await expect(dp.apply(STATE)).rejects.toThrow(/line 7 failed/);
    const failed = readFileSync(path.join(stateDir, 'failed-apply.iptables4'), 'utf8');
    expect(failed).toBe(runner.callsTo(['iptables-restore', '--noflush'])[0]?.input);
    expect(readFileSync(path.join(stateDir, 'failed-apply.error'), 'utf8')).toContain('line 7 failed');
    expect(existsSync(path.join(stateDir, 'last-apply.iptables4'))).toBe(false);
    expect(runner.callsTo(['ip6tables-restore', '--noflush'])).toHaveLength(0);
    expect(dp.counters).toMatchObject({ applies: 0, applyFailures: 1 });
  });

  it('surfaces an ipset restore failure before touching iptables', async () => {
    const runner = new RecordingRunner().fail(['ipset', 'restore'], 'ipset v7.17: Error in line 3: boom');
    const dp = new KernelDataplane({ runner, logger: logCapture().logger });
    await expect(dp.apply(STATE)).rejects.toThrow(/Error in line 3: boom/);
    expect(runner.callsTo(['iptables-restore', '--noflush'])).toHaveLength(0);
  });

  it('refuses a state with an invalid member before running any command', async () => {
    const runner = new RecordingRunner();
    const dp = new KernelDataplane({ runner, logger: logCapture().logger });
    const bad = makeState({ 'allow-ip4': ['10.0.0.1,tcp:80', '10.0.0.1,tcp:80\nflush'], 'managed-tcp': ['70000'] });
    await expect(dp.apply(bad)).rejects.toThrow(/2 invalid member/);
    expect(runner.calls).toHaveLength(0);
    expect(dp.counters.applyFailures).toBe(1);
  });

  it('skips a family whose tools are missing, with one warning', async () => {
    const runner = new RecordingRunner().when(['ip6tables-restore', '--version'], { code: 127, stderr: 'ENOENT' });
    const { logger, lines } = logCapture();
    const dp = new KernelDataplane({ runner, logger });
    const r1 = await dp.apply(STATE);
    const r2 = await dp.apply(STATE);
    expect(r1.families.map((f) => f.family)).toEqual([4]);
    expect(r2.families.map((f) => f.family)).toEqual([4]);
    expect(lines.filter((l) => l['event'] === 'dataplane.family_skipped')).toHaveLength(1);
    expect(runner.calls.some((c) => c.argv[0] === 'ip6tables-restore' && c.argv[1] === '--noflush')).toBe(false);
  });

  it('fails when no family can be managed', async () => {
    const runner = new RecordingRunner().when(['ipset', '--version'], { code: 127 });
    const dp = new KernelDataplane({ runner, logger: logCapture().logger });
    await expect(dp.apply(STATE)).rejects.toThrow(/no address family/);
  });
});

describe('KernelDataplane.uninstall (fake runner)', () => {
  it('removes only our jump, chains and sets', async () => {
    const foreign = '-p tcp -m comment --comment "docker thing" -j DOCKER-X';
    const runner = new RecordingRunner()
      .when(['iptables-save'], { stdout: saveText(4, STATE, [foreign, JUMP]).replace(':INPUT', ':DOCKER-X - [0:0]\n:INPUT') })
      .when(['ip6tables-save'], { stdout: saveText(6, undefined, []) })
      .when(['ipset', 'list', '-n'], { stdout: 'docker-set\npcu4-allow-ip\npcu6-managed-tcp-tmp\npcu\nKUBE-pcu4-x\n' });
    const dp = new KernelDataplane({ runner, logger: logCapture().logger });
    await dp.uninstall();
    const restores = runner.callsTo(['iptables-restore', '--noflush']);
    expect(restores).toHaveLength(1);
    const text = restores[0]?.input ?? '';
    expect(text).toContain(`-D PREROUTING ${JUMP}`);
    expect(text).toContain('-X PCU-PREROUTING');
    expect(text).toContain('-X PCU-MANAGED');
    expect(text).not.toMatch(/DOCKER|INPUT|-F PREROUTING|^:PREROUTING/m);
    expect(runner.callsTo(['ip6tables-restore', '--noflush'])).toHaveLength(0); // nothing of ours in v6
    expect(runner.callsTo(['ipset', 'restore'])[0]?.input).toBe('destroy pcu4-allow-ip\ndestroy pcu6-managed-tcp-tmp\n');
  });
});

describe('KernelDataplane.checkDrift (fake runner)', () => {
  /** A fake kernel that prints exactly STATE, with edits. */
  function kernel(edit: { prerouting?: string[]; drop?: string; members?: Record<string, string[]> } = {}): RecordingRunner {
    const runner = new RecordingRunner();
    runner.when(['iptables-save'], { stdout: saveText(4, STATE, edit.prerouting ?? [JUMP]) });
    for (const kind of setKindsOf(4)) {
      const name = ipsetName(kind, 4) as string;
      if (name === edit.drop) continue;
      const members = edit.members?.[name] ?? setMembers(kind, 4, STATE.sets[kind]);
      runner.when(['ipset', 'save', name], { stdout: [`create ${name} x`, ...members.map((m) => `add ${name} ${m}`)].join('\n') });
    }
    return runner.when(['ipset', 'save'], { code: 1, stderr: 'The set with the given name does not exist' });
  }
  /** The drift a dataplane that applied STATE finds in the fake kernel. */
  const check = async (runner: RecordingRunner) => {
    const dp = new KernelDataplane({ runner, families: [4], logger: logCapture().logger });
    await dp.apply(STATE);
    return dp.checkDrift();
  };

  it('finds no drift in a kernel equal to the state (a /0 net is two /1 halves there)', async () => {
    expect(await check(kernel())).toEqual([]);
  });

  it('reports a missing jump, a duplicate jump, a missing set and changed members', async () => {
    expect(await check(kernel({ prerouting: [] }))).toEqual([{ kind: 'missing-jump', family: 4, object: 'PREROUTING' }]);
    expect((await check(kernel({ prerouting: [JUMP, JUMP] }))).map((d) => d.kind)).toEqual(['duplicate-jump']);
    expect(await check(kernel({ drop: 'pcu4-managed-tcp' }))).toEqual([{ kind: 'missing-set', family: 4, object: 'pcu4-managed-tcp' }]);
    const members = await check(kernel({ members: { 'pcu4-allow-ip': ['10.9.9.9,tcp:1'] } }));
    expect(members).toEqual([
      { kind: 'missing-member', family: 4, object: 'pcu4-allow-ip', item: '10.0.1.5,tcp:31000' },
      { kind: 'extra-member', family: 4, object: 'pcu4-allow-ip', item: '10.9.9.9,tcp:1' },
    ]);
  });

  it('reports missing, extra and changed rules by comment', async () => {
    const runner = new RecordingRunner();
    const text = saveText(4, STATE, [JUMP]);
    const [first, second] = renderChains(STATE, 4).chains[0]!.rules;
    const edited = text
      .replace(`${appendLine(ENTRY_CHAIN, first!)}\n`, '')
      .replace(appendLine(ENTRY_CHAIN, second!), appendLine(ENTRY_CHAIN, second!).replace('-j RETURN', '-j ACCEPT'))
      .replace('COMMIT', `-A ${ENTRY_CHAIN} -s 10.0.0.1/32 -j ACCEPT\nCOMMIT`);
    runner.when(['iptables-save'], { stdout: edited }).when(['ipset', 'save'], { code: 1 });
    const drift = (await check(runner)).filter((d) => d.object === ENTRY_CHAIN);
    expect(drift).toEqual([
      { kind: 'changed-rule', family: 4, object: ENTRY_CHAIN, item: second!.comment },
      { kind: 'extra-rule', family: 4, object: ENTRY_CHAIN, item: '-s 10.0.0.1/32 -j ACCEPT' },
      { kind: 'missing-rule', family: 4, object: ENTRY_CHAIN, item: first!.comment },
    ]);
  });

  it('counts repairs per drift kind', async () => {
    const runner = kernel({ prerouting: [] });
    const dp = new KernelDataplane({ runner, families: [4], logger: logCapture().logger });
    expect(await dp.checkAndRepair()).toBeUndefined(); // nothing held: nothing to check
    await dp.apply(STATE);
    runner.calls.length = 0;
    const checked = await dp.checkAndRepair();
    expect(checked?.version).toBe(STATE.version);
    expect(checked?.drift.map((d) => d.kind)).toEqual(['missing-jump']);
    // One repair, written as one more (full) apply of the state held.
    expect(dp.counters).toMatchObject({ repairs: 1, applies: 2, repairsByKind: { 'missing-jump': 1 } });
    expect(runner.callsTo(['iptables-restore', '--noflush'])).toHaveLength(1);
    expect(runner.callsTo(['iptables-restore', '--noflush'])[0]?.input).toContain('-I PREROUTING 1');
  });
});

describe('kernel-read parsers', () => {
  it('tokenizes quoted comments and parses one table', () => {
    expect(tokenizeRule('-A X -m comment --comment "a b \\"c\\"" -j RETURN')).toEqual(['-A', 'X', '-m', 'comment', '--comment', 'a b "c"', '-j', 'RETURN']);
    const saved = parseIptablesSave('*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j DROP\nCOMMIT\n*mangle\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j PCU-PREROUTING\nCOMMIT\n', 'mangle');
    expect(saved.chains).toEqual(['PREROUTING']);
    expect(saved.rules.get('PREROUTING')).toEqual([['-j', 'PCU-PREROUTING']]);
  });

  it('normalizes members as ipset prints them', () => {
    expect(normalizeMember('2001:0DB8:0::01,TCP:80')).toBe('2001:db8::1,tcp:80');
    expect(normalizeMember('10.1.2.3/24,tcp:5')).toBe('10.1.2.0/24,tcp:5');
    expect(normalizeMember('10.1.2.3/32,tcp:5')).toBe('10.1.2.3,tcp:5');
    expect(normalizeMember('2001:db8::1/32,udp:1')).toBe('2001:db8::/32,udp:1');
    expect(normalizeMember('::ffff:10.0.0.1,udp:53')).toBe(normalizeMember('::ffff:a00:1,udp:53'));
    expect(normalizeMember('31000')).toBe('31000');
  });
});

describe('ExecCommandRunner', () => {
  it('passes stdin, returns exit codes, never uses a shell', async () => {
    const runner = new ExecCommandRunner();
    expect(await runner.run(['cat'], 'a; echo $HOME\n')).toEqual({ code: 0, stdout: 'a; echo $HOME\n', stderr: '' });
    expect((await runner.run(['sh', '-c', 'echo oops >&2; exit 3'])).code).toBe(3);
    expect((await runner.run(['echo', '$(id)'])).stdout).toBe('$(id)\n');
  });

  it('reports a missing binary, a timeout and oversized output as results', async () => {
    const runner = new ExecCommandRunner({ timeoutMs: 200, maxOutputBytes: 1000 });
    expect((await runner.run(['pcut-no-such-tool-xyz'])).code).toBe(EXIT_NOT_FOUND);
    const slow = await runner.run(['sleep', '10']);
    expect(slow.code).toBe(EXIT_TIMEOUT);
    expect(slow.stderr).toContain('timed out');
    expect((await runner.run(['head', '-c', '100000', '/dev/zero'])).code).toBe(EXIT_OUTPUT_TOO_LARGE);
  });

  it('prepends its prefix', async () => {
    const runner = new ExecCommandRunner({ prefix: ['echo', 'pre'] });
    expect((await runner.run(['x', 'y'])).stdout).toBe('pre x y\n');
  });
});
