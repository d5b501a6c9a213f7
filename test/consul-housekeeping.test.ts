/**
 * What happens once (issue 12 item 5): the collection of old policy bundles in Consul KV, against
 * the Consul API double. The fenced rule (src/consul/bundle-gc.ts): never the bundle P/current
 * names, never one written after the pointer's last switch (a push about to land), the newest K
 * old ones kept, a cas on every delete. Two replicas' housekeeping (src/controller/
 * policy-housekeeping.ts): exactly one holds P/lock/housekeeping and collects; the holder stops
 * (releases) → the other takes over at once; the holder dies (its session invalidated) → the
 * other takes over after the lock delay; the policy in force stays readable throughout.
 * Conditions with deadlines only; everything started is stopped in afterEach.
 */
import { describe, expect, it } from 'vitest';
import { collectBundles } from '../src/consul/bundle-gc.js';
import { policyPointerKey, pushKvPolicy, readKvPolicy } from '../src/consul/policy-kv.js';
import { parseControllerArgs } from '../src/cli/commands/controller.js';
import { HOUSEKEEPING_LOCK, PolicyHousekeeping } from '../src/controller/policy-housekeeping.js';
import { consulFixture } from './support/consul-fixture.js';
import { waitFor } from './support/grpc-harness.js';
import { logCapture } from './support/log-capture.js';

const PREFIX = 'portcullis/policy';
const fx = consulFixture();
const stops = fx.stops;

async function push(text: string): Promise<string> {
  const index = (await fx.client.kvGet(policyPointerKey(PREFIX))).value?.modifyIndex ?? 0;
  return (await pushKvPolicy(fx.client, PREFIX, [{ name: 'p.yaml', text }], { expectIndex: index, pushedBy: 'test' })).bundle;
}

/** Keys of a bundle written by hand (a push that crashed before switching the pointer). */
async function strayBundle(id: string): Promise<void> {
  await fx.client.kvPut(`${PREFIX}/bundles/${id}/p.yaml/0000`, `version: 1 # ${id}\n`);
}

/** The pointer written again (same value): a switch whose own prune did not run. */
async function bumpPointer(): Promise<void> {
  const current = (await fx.client.kvGet(policyPointerKey(PREFIX))).value!;
  await fx.client.kvPut(policyPointerKey(PREFIX), current.value);
}

async function bundles(): Promise<string[]> {
  const listed = (await fx.client.kvList(`${PREFIX}/bundles/`)).value;
  return [...new Set(listed.map((e) => e.key.split('/')[3]!))].sort();
}

const G1 = '1111111111111111';
const G2 = '2222222222222222';
const G3 = '3333333333333333';

describe('the fenced collection rule', () => {
  it('keeps the current bundle, the young ones (written after the pointer switched) and the newest K old ones', async () => {
    await push('version: 1 # one\n');
    const current = await push('version: 1 # two\n');
    await strayBundle(G1);
    await strayBundle(G2);
    // G1 and G2 were written after the pointer's switch: maybe a push about to land. Untouched.
    const first = await collectBundles(fx.client, PREFIX, { keepNewest: 0 });
    expect(first.deleted.length).toBe(1); // the previous bundle (the push kept it; keepNewest 0 does not)
    expect(await bundles()).toEqual([current, G1, G2].sort());

    await bumpPointer(); // now G1 and G2 are older than the pointer's switch
    const second = await collectBundles(fx.client, PREFIX, { keepNewest: 1 });
    expect(second.deleted).toEqual([G1]); // G2 is the newest old one
    expect(await bundles()).toEqual([current, G2].sort());
    expect((await readKvPolicy(fx.client, PREFIX))?.files[0]?.text).toBe('version: 1 # two\n');
  });

  it('a bundle written again while the round runs keeps what was written (cas on every delete); a round ends when no longer allowed', async () => {
    await push('version: 1 # one\n');
    await strayBundle(G1);
    await strayBundle(G2);
    await bumpPointer();
    let asked = 0;
    const r = await collectBundles(fx.client, PREFIX, {
      keepNewest: 0,
      stillAllowed: async () => {
        // After the judgement, before G2's deletes (newest first: G2 comes first), a push of the
        // same content rewrites G2: the cas delete must leave what it wrote.
        if (++asked === 1) await strayBundle(G2);
        return true;
      },
    });
    expect(r.deleted).toEqual([G2, G1]);
    expect((await fx.client.kvGet(`${PREFIX}/bundles/${G2}/p.yaml/0000`)).value?.value.toString()).toBe(`version: 1 # ${G2}\n`);
    expect(fx.consul.state.kv.get(`${PREFIX}/bundles/${G1}/p.yaml/0000`)).toBeUndefined();

    await strayBundle(G3);
    await bumpPointer();
    const stopped = await collectBundles(fx.client, PREFIX, { keepNewest: 0, stillAllowed: () => false });
    expect(stopped).toMatchObject({ deleted: [], stopped: 'no longer allowed (the lock was lost)' });
    expect(await bundles()).toContain(G3);
  });

  it('the bundle the readers take as current is the one protected, however the pointer was edited by hand', async () => {
    const older = await push('version: 1 # older\n');
    const current = await push('version: 1 # current\n');
    const pointer = JSON.parse((await fx.client.kvGet(policyPointerKey(PREFIX))).value!.value.toString('utf8')) as Record<string, unknown>;
    // Valid JSON naming `current` (a JSON reader takes the last of two equal keys), with `older` written first.
    const edited = `{"note":{"bundle":"${older}"},${JSON.stringify(pointer).slice(1)}`;
    await fx.client.kvPut(policyPointerKey(PREFIX), edited);
    expect((await readKvPolicy(fx.client, PREFIX))?.pointer.bundle).toBe(current);
    await collectBundles(fx.client, PREFIX, { keepNewest: 0 });
    expect((await readKvPolicy(fx.client, PREFIX))?.files[0]?.text).toBe('version: 1 # current\n');
    expect(await bundles()).toEqual([current]);
    // A pointer the readers refuse (another format) protects nothing by name: no round at all.
    await fx.client.kvPut(policyPointerKey(PREFIX), JSON.stringify({ ...pointer, format: 2 }));
    await strayBundle(G1);
    await bumpPointer();
    expect(await collectBundles(fx.client, PREFIX, { keepNewest: 0 })).toMatchObject({ deleted: [] });
    expect(await bundles()).toEqual([current, G1].sort());
  });

  it('nothing pushed yet: nothing judged, nothing deleted', async () => {
    await strayBundle(G1);
    expect(await collectBundles(fx.client, PREFIX, { keepNewest: 0 })).toMatchObject({ deleted: [] });
    expect(await bundles()).toEqual([G1]);
  });
});

describe('two replicas’ housekeeping', () => {
  function housekeeper(): { h: PolicyHousekeeping; logs: ReturnType<typeof logCapture> } {
    const logs = logCapture();
    const h = new PolicyHousekeeping({ client: fx.client, prefix: PREFIX, keep: 0, intervalMs: 50, ttl: '10s', lockDelay: '1s', logger: logs.logger });
    stops.push(() => h.stop());
    h.start();
    return { h, logs };
  }
  const lockSession = (): string | undefined => fx.consul.state.kv.get(`${PREFIX}/${HOUSEKEEPING_LOCK}`)?.session;

  it('exactly one holds the lock and collects; stopped → the other at once; dead → the other after the lock delay; the current bundle survives', { timeout: 30_000 }, async () => {
    const current = await push('version: 1 # in force\n');
    const a = housekeeper();
    const b = housekeeper();
    await waitFor('one holder', () => a.h.holder !== b.h.holder);
    await strayBundle(G1);
    await bumpPointer();
    await waitFor('G1 collected', () => fx.consul.state.kv.get(`${PREFIX}/bundles/${G1}/p.yaml/0000`) === undefined && a.h.stats.bundlesDeleted + b.h.stats.bundlesDeleted === 1, 5_000);
    const [holder, other] = a.h.holder ? [a, b] : [b, a];
    expect(other.h.holder).toBe(false);
    expect(other.h.stats.rounds).toBe(0);
    expect(holder.h.stats.bundlesDeleted).toBe(1);
    expect(holder.logs.lines.some((l) => l.msg === 'old policy bundles deleted')).toBe(true);

    // The holder stops (a clean controller stop): it releases the lock, the other takes it at once.
    const session = lockSession()!;
    const stoppedAt = Date.now();
    await holder.h.stop();
    await waitFor('the other holds it', () => other.h.holder && lockSession() !== session, 10_000);
    expect(Date.now() - stoppedAt).toBeLessThan(5_000); // no lock delay after a release

    // The new holder collects the next garbage; the policy in force is untouched throughout.
    await strayBundle(G2);
    await bumpPointer();
    await waitFor('G2 collected by the new holder', () => fx.consul.state.kv.get(`${PREFIX}/bundles/${G2}/p.yaml/0000`) === undefined && other.h.stats.bundlesDeleted === 1, 5_000);
    expect(other.h.stats.bundlesDeleted).toBe(1);
    expect(await bundles()).toEqual([current]);
    expect((await readKvPolicy(fx.client, PREFIX))?.pointer.bundle).toBe(current);

    // The holder's session dies (its process killed: the TTL runs out; the double invalidates it
    // at once): nobody may take the lock before the lock delay has passed.
    const third = housekeeper();
    await waitFor('third is refused while the lock is held', () => !third.h.holder && fx.consul.state.sessions.size >= 2, 5_000);
    const died = Date.now();
    expect(fx.consul.expireSession(lockSession()!)).toBe(true);
    await waitFor('the dead holder’s replica learns it lost the lock', () => !other.h.holder, 10_000);
    await waitFor('someone holds it again', () => third.h.holder || other.h.holder, 15_000);
    expect(Date.now() - died).toBeGreaterThanOrEqual(900); // the 1 s lock delay (the double's clock)
    expect(third.h.holder && other.h.holder).toBe(false);
  });
});

describe('--policy-bundles-keep', () => {
  const io = { cwd: '/', stdout: () => undefined, stderr: () => undefined, env: {} } as unknown as Parameters<typeof parseControllerArgs>[1];
  const parse = (...args: string[]) => parseControllerArgs(['--insecure', '--consul', 'http://127.0.0.1:8500', ...args], io);
  it('default 1 with --policy-consul; off; a number; refused without --policy-consul or when not a number', () => {
    expect(parse('--policy-consul').consul?.bundlesKeep).toBe(1);
    expect(parse('--policy-consul', '--policy-bundles-keep', 'off').consul?.bundlesKeep).toBeUndefined();
    expect(parse('--policy-consul', '--policy-bundles-keep', '10').consul?.bundlesKeep).toBe(10);
    expect(() => parse('--consul-service', 'p', '--policy-bundles-keep', '3')).toThrow(/needs --policy-consul/);
    expect(() => parse('--policy-consul', '--policy-bundles-keep', 'x')).toThrow(/whole number 0\.\.9999 or off/);
  });
});
