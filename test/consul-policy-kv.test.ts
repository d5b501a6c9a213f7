/**
 * The policy in Consul KV (src/consul/policy-kv.ts, `portcullis policy push|show`) against the
 * Consul API double (its KV with `cas` and `recurse` and blocking queries follow Consul's
 * api-docs, test/fixtures/consul-payloads/SOURCES.md): a pushed policy reads back byte for byte
 * (a file over one chunk, a character across a chunk boundary); of two pushes on one version one
 * lands and the other is refused with nothing of it in force; a policy that does not check is
 * never pushed; a replica following the prefix gets each new policy once, and a bundle altered
 * in KV is never delivered (the last good one stays).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Follower } from '../src/consul/blocking-follow.js';
import { ConsulClient, type KvPutOptions } from '../src/consul/consul-client.js';
import { CHUNK_BYTES, PolicyPushConflict, bundleId, chunks, followKvPolicy, policyPointerKey, pushKvPolicy, readKvPolicy, type KvPolicy } from '../src/consul/policy-kv.js';
import { packageRoot } from '../src/package-root.js';
import { ConsulDouble } from './support/consul-double.js';
import { waitFor } from './support/grpc-harness.js';
import { runCli } from './support/run-cli.js';

/** A client whose write of `pointer` waits (after the bundle's writes) until `open()`. */
class GatedPointer extends ConsulClient {
  private release: () => void = () => undefined;
  private readonly opened = new Promise<void>((resolve) => (this.release = resolve));
  private arrive: () => void = () => undefined;
  readonly reached = new Promise<void>((resolve) => (this.arrive = resolve));

  constructor(
    url: string,
    private readonly pointer: string,
  ) {
    super({ url, timeoutMs: 2_000 });
  }

  open(): void {
    this.release();
  }

  override async kvPut(key: string, value: string | Buffer, o: KvPutOptions = {}): Promise<boolean> {
    if (key === this.pointer) {
      this.arrive();
      await this.opened;
    }
    return super.kvPut(key, value, o);
  }
}

const PREFIX = 'portcullis/policy';
let consul: ConsulDouble;
let client: ConsulClient;
let url = '';
const followers: Follower[] = [];
const dirs: string[] = [];

beforeEach(async () => {
  consul = new ConsulDouble();
  url = await consul.start();
  client = new ConsulClient({ url, timeoutMs: 2_000 });
});

afterEach(async () => {
  await Promise.all(followers.splice(0).map((f) => f.stop()));
  client.close();
  await consul.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const shopDir = path.join(packageRoot(), 'policies', 'shop');
const inventory = path.join(packageRoot(), 'policies', 'inventory.yaml');

/** A copy of the shop policy, with `edit` applied to its rules file. */
function policyCopy(edit: (rules: string) => string = (r) => r): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'pcut-kvpolicy-'));
  dirs.push(dir);
  for (const f of ['00-defaults.yaml', '10-groups.yaml', '20-rules.yaml']) {
    const text = readFileSync(path.join(shopDir, f), 'utf8');
    writeFileSync(path.join(dir, f), f === '20-rules.yaml' ? edit(text) : text);
  }
  return dir;
}

describe('bundles', () => {
  it('a text splits into chunks of at most CHUNK_BYTES bytes that join back, never inside a character', () => {
    const text = `${'a'.repeat(CHUNK_BYTES - 1)}€${'b'.repeat(CHUNK_BYTES)}`;
    const parts = chunks(text);
    expect(parts.join('')).toBe(text);
    expect(parts.length).toBe(3);
    for (const p of parts) expect(Buffer.byteLength(p)).toBeLessThanOrEqual(CHUNK_BYTES);
    expect(chunks('')).toEqual(['']);
  });

  it('the bundle id is the content: names and texts, whatever the order given', () => {
    const a = [{ name: 'a.yaml', text: 'x' }, { name: 'b.yaml', text: 'y' }];
    expect(bundleId(a)).toBe(bundleId([...a].reverse()));
    expect(bundleId(a)).not.toBe(bundleId([{ name: 'a.yaml', text: 'xy' }, { name: 'b.yaml', text: '' }]));
  });
});

describe('push and read', () => {
  it('a pushed policy reads back byte for byte, a large file and a multi-byte character across chunks included', async () => {
    const big = `# ${'é'.repeat(CHUNK_BYTES)}\nversion: 1\n`;
    const files = [{ name: '10-big.yaml', text: big }, { name: '00-a.yml', text: 'version: 1\n' }];
    const pointer = await pushKvPolicy(client, PREFIX, files, { expectIndex: 0, pushedBy: 'test' });
    const read = await readKvPolicy(client, PREFIX);
    expect(read?.pointer.bundle).toBe(pointer.bundle);
    expect(read?.files).toEqual([
      { path: `consul:${PREFIX}/00-a.yml`, text: 'version: 1\n' },
      { path: `consul:${PREFIX}/10-big.yaml`, text: big },
    ]);
  });

  it('of two pushes on one version one lands; the other is refused and nothing of it is in force', async () => {
    const first = await pushKvPolicy(client, PREFIX, [{ name: 'p.yaml', text: 'version: 1\n' }], { expectIndex: 0, pushedBy: 'a' });
    const index = (await client.kvGet(policyPointerKey(PREFIX))).value!.modifyIndex;
    const winner = await pushKvPolicy(client, PREFIX, [{ name: 'p.yaml', text: 'version: 1 # winner\n' }], { expectIndex: index, pushedBy: 'b' });
    const loser = pushKvPolicy(client, PREFIX, [{ name: 'p.yaml', text: 'version: 1 # loser\n' }], { expectIndex: index, pushedBy: 'c' });
    await expect(loser).rejects.toBeInstanceOf(PolicyPushConflict);
    await expect(loser).rejects.toThrow(/changed since it was read.*not in force/);
    const inForce = await readKvPolicy(client, PREFIX);
    expect(inForce?.pointer).toMatchObject({ bundle: winner.bundle, pushedBy: 'b' });
    expect(inForce?.files[0]?.text).toBe('version: 1 # winner\n');
    // The loser's bundle was written after the winner's switch: fenced like any young bundle (a push of
    // the same content may be about to land on it), so it stays until the next push prunes it.
    const bundles = async (): Promise<string[]> => [...new Set((await client.kvList(`${PREFIX}/bundles/`)).value.map((e) => e.key.split('/')[3]!))].sort();
    const loserBundle = bundleId([{ name: 'p.yaml', text: 'version: 1 # loser\n' }]);
    expect(await bundles()).toEqual([first.bundle, winner.bundle, loserBundle].sort());
    const third = await pushKvPolicy(client, PREFIX, [{ name: 'p.yaml', text: 'version: 1 # third\n' }], { expectIndex: (await readKvPolicy(client, PREFIX))!.modifyIndex, pushedBy: 'd' });
    expect(await bundles()).toEqual([winner.bundle, third.bundle].sort());
  });

  it('a push that loses its race never deletes the bundle of a push of the same content that is about to land', async () => {
    await pushKvPolicy(client, PREFIX, [{ name: 'p.yaml', text: 'version: 1 # base\n' }], { expectIndex: 0, pushedBy: 'base' });
    const stale = (await client.kvGet(policyPointerKey(PREFIX))).value!.modifyIndex; // A reads this, then C lands
    await pushKvPolicy(client, PREFIX, [{ name: 'p.yaml', text: 'version: 1 # other\n' }], { expectIndex: stale, pushedBy: 'c' });
    const fresh = (await client.kvGet(policyPointerKey(PREFIX))).value!.modifyIndex; // B reads this
    const same = [{ name: 'p.yaml', text: 'version: 1 # same\n' }];
    // B has written its bundle and is about to switch the pointer when A (same content, stale index) runs.
    const gate = new GatedPointer(url, policyPointerKey(PREFIX));
    const b = pushKvPolicy(gate, PREFIX, same, { expectIndex: fresh, pushedBy: 'b' });
    await gate.reached;
    await expect(pushKvPolicy(client, PREFIX, same, { expectIndex: stale, pushedBy: 'a' })).rejects.toBeInstanceOf(PolicyPushConflict);
    gate.open();
    expect((await b).bundle).toBe(bundleId(same));
    gate.close();
    const inForce = await readKvPolicy(client, PREFIX); // throws when the bundle it names was deleted
    expect(inForce?.pointer).toMatchObject({ bundle: bundleId(same), pushedBy: 'b' });
    expect(inForce?.files[0]?.text).toBe('version: 1 # same\n');
  });

  it('refuses file names that are not policy files, before writing anything', async () => {
    await expect(pushKvPolicy(client, PREFIX, [{ name: '../x.yaml', text: '' }], { expectIndex: 0, pushedBy: 't' })).rejects.toThrow(/not a visible name/);
    expect((await client.kvList(`${PREFIX}/`)).value).toEqual([]);
  });
});

describe('portcullis policy push / show', () => {
  it('pushes a policy that checks and shows it', async () => {
    const dir = policyCopy();
    const pushed = await runCli(['policy', 'push', '--policy', dir, '--inventory', inventory, '--consul', url]);
    expect(pushed.err).toBe('');
    expect(pushed.code).toBe(0);
    expect(pushed.out).toMatch(/policy ok: .*\npushed policy [0-9a-f]{16} \(3 files\)/);
    const shown = await runCli(['policy', 'show', '--consul', url]);
    expect(shown.code).toBe(0);
    expect(shown.out).toContain(`consul:${PREFIX}/20-rules.yaml`);
  });

  it('a policy that does not check is not pushed, and the one in force stays', async () => {
    const good = policyCopy();
    expect((await runCli(['policy', 'push', '--policy', good, '--inventory', inventory, '--consul', url])).code).toBe(0);
    const before = await readKvPolicy(client, PREFIX);
    const bad = policyCopy((rules) => `${rules}\n  - { name: broken, from: [nosuchgroup], to: [alsonot] }\n`);
    const run = await runCli(['policy', 'push', '--policy', bad, '--inventory', inventory, '--consul', url]);
    expect(run.code).toBe(1);
    expect(run.err).toMatch(/does not check.*nothing pushed/);
    expect((await readKvPolicy(client, PREFIX))?.pointer.bundle).toBe(before?.pointer.bundle);
  });

  it('needs --consul and refuses a bad prefix', async () => {
    expect((await runCli(['policy', 'push'])).code).toBe(2);
    const r = await runCli(['policy', 'show', '--consul', url, '--consul-prefix', '/abs/']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--consul-prefix/);
  });
});

describe('a replica following the policy', () => {
  it('gets each new policy once; an altered bundle is never delivered and the last good one stays', async () => {
    const seen: (KvPolicy | undefined)[] = [];
    const errors: Error[] = [];
    const f = followKvPolicy(client, PREFIX, {
      waitMs: 5_000,
      minIntervalMs: 0,
      backoff: { initialMs: 20, maxMs: 100, random: () => 0.999 },
      onPolicy: (p) => seen.push(p),
      onError: (e) => errors.push(e),
    });
    followers.push(f);
    await waitFor('nothing pushed yet', () => seen.length === 1);
    expect(seen[0]).toBeUndefined();
    const one = await pushKvPolicy(client, PREFIX, [{ name: 'p.yaml', text: 'version: 1\n' }], { expectIndex: 0, pushedBy: 't' });
    await waitFor('the first policy', () => seen.length === 2);
    expect(seen[1]?.pointer.bundle).toBe(one.bundle);

    // Someone edits a chunk of the bundle in force by hand: the content no longer matches its id.
    await client.kvPut(`${PREFIX}/bundles/${one.bundle}/p.yaml/0000`, 'version: 1\nrules: [evil]\n');
    const index = (await client.kvGet(policyPointerKey(PREFIX))).value!.modifyIndex;
    await client.kvPut(policyPointerKey(PREFIX), (await client.kvGet(policyPointerKey(PREFIX))).value!.value, { cas: index }); // wake the follower
    await waitFor('the altered bundle refused', () => errors.some((e) => /does not match its content/.test(e.message)));
    expect(seen).toHaveLength(2);

    const two = await pushKvPolicy(client, PREFIX, [{ name: 'p.yaml', text: 'version: 1 # two\n' }], { expectIndex: (await client.kvGet(policyPointerKey(PREFIX))).value!.modifyIndex, pushedBy: 't' });
    await waitFor('the second policy', () => seen.length === 3);
    expect(seen[2]?.pointer.bundle).toBe(two.bundle);
    expect(seen[2]?.files[0]?.text).toBe('version: 1 # two\n');
  });
});

