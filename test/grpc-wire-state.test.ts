import { describe, expect, it } from 'vitest';
import { applyDelta, diffStates } from '../src/compile/state-delta.js';
import { WireError, deltaFromMessage, deltaMessage, snapshotMessage, stateFromSnapshot } from '../src/grpc/wire-state.js';
import { nthState } from './support/memory-state-source.js';

describe('wire conversions', () => {
  it('snapshot and delta round-trip', () => {
    const [a, b] = [nthState('h', 3), nthState('h', 4)];
    expect(stateFromSnapshot('h', { ...snapshotMessage(a, 1), seq: 1 } as never)).toEqual(a);
    const wire = deltaMessage(diffStates(a, b), 2);
    expect(wire.adds?.every((s) => (s.members ?? []).length > 0)).toBe(true);
    const decoded = deltaFromMessage('h', { seq: 2, baseVersion: wire.baseVersion!, version: wire.version!, mode: wire.mode!, adds: wire.adds as never, removes: wire.removes as never });
    expect(applyDelta(a, decoded)).toEqual(b);
  });

  it.each([
    ['unknown mode', { mode: 'drop', version: 'v', sets: [] }, /unknown mode/],
    ['unknown kind', { mode: 'audit', version: 'v', sets: [{ kind: 'pcu4-evil', members: [] }] }, /unknown set kind/],
    ['kind twice', { mode: 'audit', version: 'v', sets: [{ kind: 'managed-tcp', members: [] }, { kind: 'managed-tcp', members: [] }] }, /twice/],
    ['no version', { mode: 'audit', version: '', sets: [] }, /version is empty/],
  ])('rejects a snapshot with %s', (_label, message, pattern) => {
    expect(() => stateFromSnapshot('h', { seq: 1, ...message })).toThrow(WireError);
    expect(() => stateFromSnapshot('h', { seq: 1, ...message })).toThrow(pattern);
  });

  it('rejects a snapshot whose version is not the hash of its content (checked where the state enters)', () => {
    const [a, b] = [nthState('h', 3), nthState('h', 4)];
    const forged = { ...snapshotMessage({ ...a, version: b.version }, 1), seq: 1 } as never;
    expect(() => stateFromSnapshot('h', forged)).toThrow(WireError);
    expect(() => stateFromSnapshot('h', forged)).toThrow(/snapshot: version [0-9a-f]+ does not match its content/);
  });
});
