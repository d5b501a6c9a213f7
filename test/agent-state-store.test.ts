import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SET_KINDS, type DesiredState, type SetKind } from '../src/compile/desired-state.js';
import { stateVersion } from '../src/compile/state-version.js';
import { loadState, saveState, statePath } from '../agent/state-store.js';
import { logCapture } from './support/log-capture.js';

function makeState(partial: Partial<Record<SetKind, readonly string[]>>, mode: 'enforce' | 'audit' = 'enforce'): DesiredState {
  const sets = Object.fromEntries(SET_KINDS.map((k) => [k, partial[k] ?? []])) as Record<SetKind, string[]>;
  return { hostId: 'host-a', mode, sets, version: stateVersion(mode, sets) };
}

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(path.join(tmpdir(), 'pcut-state-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const A = makeState({ 'managed-tcp': ['31000'], 'allow-ip4': ['10.0.0.1,tcp:31000'] });
const B = makeState({ 'managed-udp': ['53'], 'allow-net6': ['2001:db8::/64,udp:53'] }, 'audit');

describe('state store', () => {
  it('round-trips a state with mode 0600', async () => {
    const dir = tempDir();
    await saveState(dir, A);
    expect(loadState(dir)).toEqual(A);
    expect(statSync(statePath(dir)).mode & 0o777).toBe(0o600);
  });

  it('returns undefined without logging when nothing was saved', () => {
    const { logger, lines } = logCapture();
    expect(loadState(path.join(tempDir(), 'absent'), logger)).toBeUndefined();
    expect(lines).toHaveLength(0);
  });

  it.each([
    ['not JSON', '{"format":1,"state":'],
    ['wrong shape', JSON.stringify({ format: 1, state: { hostId: 'h', mode: 'enforce', sets: {}, version: A.version } })],
    ['unknown format', JSON.stringify({ format: 9, state: A })],
    ['bad mode', JSON.stringify({ format: 1, state: { ...A, mode: 'open' } })],
    ['version that does not match the content', JSON.stringify({ format: 1, state: { ...A, sets: B.sets } })],
    ['non-string member', JSON.stringify({ format: 1, state: { ...A, sets: { ...A.sets, 'managed-tcp': [31000] } } })],
  ])('ignores and logs a corrupt file: %s', (_why, text) => {
    const dir = tempDir();
    writeFileSync(statePath(dir), text);
    const { logger, lines } = logCapture();
    expect(loadState(dir, logger)).toBeUndefined();
    expect(lines.map((l) => l['event'])).toEqual(['state_store.corrupt']);
  });

  it('trusts a state an earlier release saved (v1 version) and re-versions it, so fail-static survives an upgrade', () => {
    // 3929e1bf60fcd604: A's version as the release before the v2 definition computed it (its
    // src/compile/state-version.ts at d3dccd9, run on A's content).
    const dir = tempDir();
    writeFileSync(statePath(dir), JSON.stringify({ format: 1, state: { ...A, version: '3929e1bf60fcd604' } }));
    const { logger, lines } = logCapture();
    expect(loadState(dir, logger)).toEqual(A);
    expect(lines).toMatchObject([{ event: 'state_store.upgraded', savedVersion: '3929e1bf60fcd604', version: A.version }]);
  });

  it('replaces the file atomically and leaves no temp file', async () => {
    const dir = tempDir();
    await saveState(dir, A);
    const before = readFileSync(statePath(dir), 'utf8');
    // Saves racing each other and reads in between: every read sees one whole state.
    const seen: (DesiredState | undefined)[] = [];
    const saves = [B, A, B, A].map((s) => saveState(dir, s));
    for (let i = 0; i < 20; i++) seen.push(loadState(dir));
    await Promise.all(saves);
    for (const s of seen) expect([A.version, B.version]).toContain(s?.version);
    await saveState(dir, B);
    expect(loadState(dir)).toEqual(B);
    expect(readFileSync(statePath(dir), 'utf8')).not.toBe(before);
    expect(readdirSync(dir)).toEqual(['desired-state.json']);
  });
});

describe('a state saved by an earlier release', () => {
  it('without the kinds added since (egress, per-group mode) loads with them empty and its version kept', () => {
    const dir = tempDir();
    const { logger, lines } = logCapture();
    // What the release before egress wrote: only the destination-side kinds.
    const sets = { 'managed-tcp': ['31000'], 'managed-udp': [], 'failsafe-tcp': ['22'], 'failsafe-udp': [], 'allow-ip4': ['10.0.0.1,tcp:31000'], 'allow-net4': [], 'allow-ip6': [], 'allow-net6': [] };
    const full = makeState({ 'managed-tcp': ['31000'], 'failsafe-tcp': ['22'], 'allow-ip4': ['10.0.0.1,tcp:31000'] });
    writeFileSync(statePath(dir), JSON.stringify({ format: 1, state: { hostId: 'host-a', mode: 'enforce', sets, version: full.version } }));
    expect(loadState(dir, logger)).toEqual(full);
    expect(lines.filter((l) => l.event === 'state_store.corrupt')).toEqual([]);
  });

  it('a kind of the destination side that is absent is still refused', () => {
    const dir = tempDir();
    const { logger, lines } = logCapture();
    const { 'allow-ip4': _dropped, ...sets } = A.sets;
    writeFileSync(statePath(dir), JSON.stringify({ format: 1, state: { ...A, sets } }));
    expect(loadState(dir, logger)).toBeUndefined();
    expect(lines.find((l) => l.event === 'state_store.corrupt')?.err).toMatch(/sets\.allow-ip4 is not a list/);
  });
});
