/**
 * Which controller replica an agent dials (agent/controller-targets.ts): every agent has its own
 * order, so many agents spread over the replicas; a failure moves to the next, and a full round
 * is reported; a new candidate list keeps the replica in use and the order of the others; names
 * resolve to every address they have; an instance Consul lists that cannot be dialled is logged.
 */
import { describe, expect, it } from 'vitest';
import { ControllerTargets, resolveAll, splitTarget } from '../agent/controller-targets.js';
import { targetSource } from '../agent/target-source.js';
import { silentLogger } from '../src/grpc/sync-logger.js';
import { ConsulDouble } from './support/consul-double.js';
import { waitFor } from './support/grpc-harness.js';
import { seededRandom } from './support/seeded-random.js';

const REPLICAS = ['10.0.0.1:7443', '10.0.0.2:7443', '10.0.0.3:7443'];

describe('ControllerTargets', () => {
  it('3,000 agents with their own orders start spread over 3 replicas (each within 10% of a third)', () => {
    const random = seededRandom(7);
    const first = new Map<string, number>();
    for (let i = 0; i < 3000; i++) {
      const t = new ControllerTargets(REPLICAS, { random }).current()!;
      first.set(t, (first.get(t) ?? 0) + 1);
    }
    expect([...first.keys()].sort()).toEqual(REPLICAS);
    for (const n of first.values()) expect(Math.abs(n - 1000)).toBeLessThan(100);
  });

  it('a failure moves to the next replica; a round is done after trying each once', () => {
    const t = new ControllerTargets(REPLICAS, { random: seededRandom(1) });
    const seen = [t.current()];
    const rounds: boolean[] = [];
    for (let i = 0; i < 3; i++) {
      const { target, roundDone } = t.advance();
      seen.push(target);
      rounds.push(roundDone);
    }
    expect(new Set(seen.slice(0, 3)).size).toBe(3);
    expect(seen[3]).toBe(seen[0]);
    expect(rounds).toEqual([false, false, true]);
    t.advance();
    t.connected(); // a replica answered: a new round starts
    expect(t.advance().roundDone).toBe(false);
  });

  it('a new list keeps the replica in use and the order of the rest; a vanished one is left', () => {
    const t = new ControllerTargets(REPLICAS, { random: seededRandom(3) });
    const inUse = t.current()!;
    const others = t.candidates.filter((c) => c !== inUse);
    t.setCandidates([...REPLICAS, '10.0.0.4:7443']);
    expect(t.current()).toBe(inUse);
    expect(t.candidates.filter((c) => others.includes(c))).toEqual(others);
    expect(t.candidates).toHaveLength(4);
    t.setCandidates(REPLICAS.filter((r) => r !== inUse));
    expect(t.current()).not.toBe(inUse);
    expect(t.candidates).not.toContain(inUse);
    t.setCandidates([]);
    expect(t.current()).toBeUndefined();
    expect(t.advance()).toEqual({ target: undefined, roundDone: true });
  });
});

describe('targets from names', () => {
  it('splits host:port, IPv6 in brackets, and refuses the rest', () => {
    expect(splitTarget('ctl.example:7443')).toEqual({ host: 'ctl.example', port: 7443 });
    expect(splitTarget('[fd00::1]:7443')).toEqual({ host: 'fd00::1', port: 7443 });
    for (const bad of ['ctl', 'ctl:0', 'ctl:70000', 'fd00::1:7443', '[x]:1', 'a b:1']) expect(splitTarget(bad)).toBeUndefined();
  });

  it('a name resolves to every address it has, sorted; an address is itself', async () => {
    const lookup = async (host: string) => (host === 'ctl.example' ? [{ address: '10.0.0.2', family: 4 }, { address: 'fd00::2', family: 6 }, { address: '10.0.0.1', family: 4 }, { address: '10.0.0.1', family: 4 }] : []);
    expect(await resolveAll('ctl.example:7443', lookup)).toEqual(['10.0.0.1:7443', '10.0.0.2:7443', '[fd00::2]:7443']);
    expect(await resolveAll('10.0.0.9:7443', lookup)).toEqual(['10.0.0.9:7443']);
    await expect(resolveAll('nothing.example:7443', lookup)).rejects.toThrow(/resolves to no address/);
  });
});

describe('controllers from Consul (agent/target-source.ts)', () => {
  it('an instance Consul lists that cannot be dialled is skipped and said so (which one, and why), not silently dropped', async () => {
    const consul = new ConsulDouble();
    const url = await consul.start();
    const warnings: { fields: Record<string, unknown>; message: string }[] = [];
    const logger = { ...silentLogger, warn: (fields: object, message: string) => warnings.push({ fields: fields as Record<string, unknown>, message }) };
    const source = targetSource({ kind: 'consul', url, service: 'portcullis' }, { logger, consulWaitMs: 2_000, consulTimeoutMs: 2_000 });
    try {
      consul.addRemoteInstance({ node: 'node-a', nodeAddress: '10.0.0.1', id: 'portcullis-a', name: 'portcullis', port: 7443 });
      consul.addRemoteInstance({ node: 'node-b', nodeAddress: '10.0.0.2', id: 'portcullis-b', name: 'portcullis', address: 'bad address', port: 7443 });
      const lists: string[][] = [];
      source.start((list) => lists.push([...list]));
      await waitFor('the first list', () => lists.length === 1);
      expect(lists[0]).toEqual(['10.0.0.1:7443']);
      const skipped = warnings.find((w) => w.fields.event === 'sync.consul_instances_skipped');
      expect(skipped?.fields).toMatchObject({ service: 'portcullis', skipped: 1 });
      expect(String((skipped?.fields.entries as string[])[0])).toMatch(/no usable address.*portcullis-b/);
    } finally {
      await source.stop();
      await consul.close();
    }
  });
});
