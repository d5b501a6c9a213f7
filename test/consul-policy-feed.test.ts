/**
 * The controller's policy from Consul KV (src/controller/consul-policy-feed.ts) against the
 * Consul API double: nothing pushed is an error; each pushed policy that parses is offered once;
 * a pushed policy that does not parse is reported and never offered (the last good one stays);
 * Consul going away is logged and counted but is no policy error, and the feed resumes after it.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Diagnostic } from '../src/diagnostic.js';
import { ConsulClient, type BlockingOptions } from '../src/consul/consul-client.js';
import { policyPointerKey, pushKvPolicy } from '../src/consul/policy-kv.js';
import { ConsulPolicyFeed } from '../src/controller/consul-policy-feed.js';
import type { Policy } from '../src/policy/policy-model.js';
import { ConsulDouble } from './support/consul-double.js';
import { waitFor } from './support/grpc-harness.js';
import { logCapture } from './support/log-capture.js';

const PREFIX = 'portcullis/policy';
let consul: ConsulDouble;
let client: ConsulClient;
let feed: ConsulPolicyFeed | undefined;

beforeEach(async () => {
  consul = new ConsulDouble();
  client = new ConsulClient({ url: await consul.start(), timeoutMs: 1_000 });
});

afterEach(async () => {
  await feed?.stop();
  feed = undefined;
  client.close();
  await consul.close();
});

const POLICY = (deny: boolean) => `version: 1\ndefaults: { action: ${deny ? 'deny' : 'allow'} }\ngroups:\n  web: { apps: ["/shop/web"] }\nrules: []\n`;

async function push(text: string): Promise<void> {
  const index = (await client.kvGet(policyPointerKey(PREFIX))).value?.modifyIndex ?? 0;
  await pushKvPolicy(client, PREFIX, [{ name: 'policy.yaml', text }], { expectIndex: index, pushedBy: 'test' });
}

/** A Consul (or a proxy in front of it) that drops X-Consul-Index once `strip` is set. */
class StrippedIndex extends ConsulClient {
  strip = false;

  override async kvGet(key: string, b: BlockingOptions = {}): ReturnType<ConsulClient['kvGet']> {
    const r = await super.kvGet(key, b);
    return this.strip ? { ...r, index: undefined } : r;
  }
}

function start(): { policies: Policy[]; errors: Diagnostic[][]; restored: number[]; lines: Record<string, unknown>[]; started: Promise<boolean> } {
  const policies: Policy[] = [];
  const restored: number[] = [];
  const errors: Diagnostic[][] = [];
  const { logger, lines } = logCapture();
  feed = new ConsulPolicyFeed({
    client,
    prefix: PREFIX,
    logger,
    waitMs: 5_000,
    backoff: { initialMs: 20, maxMs: 100 },
    onPolicy: (p) => {
      policies.push(p);
      return true;
    },
    onError: (e) => errors.push([...e]),
    onRestored: () => restored.push(feed?.loadingIndex ?? -1),
  });
  return { policies, errors, restored, lines, started: feed.start() };
}

describe('ConsulPolicyFeed', () => {
  it('reports that nothing was pushed, then offers the first policy pushed', async () => {
    const f = start();
    expect(await f.started).toBe(false);
    expect(f.errors[0]?.[0]).toMatchObject({ file: `consul:${PREFIX}/current`, message: expect.stringMatching(/no policy under portcullis\/policy/) });
    await push(POLICY(true));
    await waitFor('the pushed policy', () => f.policies.length === 1);
    expect(f.policies[0]?.defaults.action).toBe('deny');
  });

  it('a pushed policy that does not parse is reported and never offered; the next good one is', async () => {
    await push(POLICY(true));
    const f = start();
    expect(await f.started).toBe(true);
    await push('version: 1\nrules: [ { name: x, from: [nosuch], to: [web] } ]\n');
    await waitFor('the broken policy reported', () => f.errors.length === 1);
    expect(f.errors[0]?.[0]?.file).toMatch(/^consul:portcullis\/policy\/policy\.yaml$/);
    expect(f.policies).toHaveLength(1);
    await push(POLICY(false));
    await waitFor('the good policy', () => f.policies.length === 2);
    expect(f.policies[1]?.defaults.action).toBe('allow');
  });

  it('the policy in force pushed again (same bundle, a new ModifyIndex): no recompile, but its stamp moves to the new index', async () => {
    await push(POLICY(true));
    const first = (await client.kvGet(policyPointerKey(PREFIX))).value!.modifyIndex;
    const f = start();
    expect(await f.started).toBe(true);
    expect(feed!.loadingIndex).toBe(first);
    await push(POLICY(true));
    const again = (await client.kvGet(policyPointerKey(PREFIX))).value!.modifyIndex;
    expect(again).toBeGreaterThan(first);
    // A replica started now stamps this policy `again`; one running since before must too, or it
    // would hold (never update) every agent that applied a state of a replica started after the push.
    await waitFor('the stamp of the policy named again', () => f.restored.length === 1, 5_000);
    expect(f.restored).toEqual([again]);
    expect(feed!.loadingIndex).toBe(again);
    expect(f.policies).toHaveLength(1);
    expect(f.errors).toEqual([]);
  });

  it('Consul restored from an older snapshot (indexes go backwards): the same policy is stamped with the index of the new history', async () => {
    await push(POLICY(true));
    const snap = consul.snapshot();
    const restoredIndex = (await client.kvGet(policyPointerKey(PREFIX))).value!.modifyIndex;
    await push(POLICY(false));
    await push(POLICY(true)); // the same content as in the snapshot, at a higher index
    const f = start();
    expect(await f.started).toBe(true);
    const before = feed!.loadingIndex;
    expect(before).toBeGreaterThan(restoredIndex);
    await waitFor('the feed blocks on the pointer', () => consul.blockedQueries() === 1);
    consul.restore(snap);
    await waitFor('the policy stamped again after the reset', () => f.restored.length === 1, 5_000);
    expect(f.restored).toEqual([restoredIndex]);
    expect(f.policies).toHaveLength(1);
  });

  it('answers without a usable X-Consul-Index are a Consul problem (logged, counted, retried), not a policy error', async () => {
    client.close();
    const stripped = new StrippedIndex({ url: consul.url, timeoutMs: 1_000 });
    client = stripped;
    await push(POLICY(true));
    const f = start();
    expect(await f.started).toBe(true);
    stripped.strip = true;
    await push(POLICY(false)); // wakes the blocked read, which now answers without an index
    await waitFor('a failed read', () => (feed?.stats.consulErrors ?? 0) > 0, 10_000);
    expect(f.lines.some((l) => l.event === 'policy.consul_unreachable' && String(l.err).includes('X-Consul-Index'))).toBe(true);
    expect(f.errors).toEqual([]);
  });

  it('Consul going away is logged and counted, not reported as a policy error, and the feed resumes', async () => {
    await push(POLICY(true));
    const f = start();
    expect(await f.started).toBe(true);
    consul.setOutage('refuse');
    consul.touch(); // wake the blocked read into the outage
    await waitFor('a failed read', () => (feed?.stats.consulErrors ?? 0) > 0, 10_000);
    expect(f.lines.some((l) => l.event === 'policy.consul_unreachable')).toBe(true);
    expect(f.errors).toEqual([]);
    consul.setOutage(null);
    await push(POLICY(false));
    await waitFor('the policy after the outage', () => f.policies.length === 2, 10_000);
  });

  it('stop() waits for the load in flight, and what it parsed is never offered', async () => {
    await push(POLICY(true));
    let release!: () => void;
    const parsing = new Promise<void>((resolve) => (release = resolve));
    let parses = 0;
    const offered: Policy[] = [];
    const { logger } = logCapture();
    const { parsePolicy } = await import('../src/policy/parse-policy.js');
    feed = new ConsulPolicyFeed({
      client,
      prefix: PREFIX,
      logger,
      waitMs: 5_000,
      parse: async (files) => {
        parses++;
        await parsing;
        return parsePolicy(files);
      },
      onPolicy: (p) => {
        offered.push(p);
        return true;
      },
      onError: () => undefined,
      onRestored: () => undefined,
    });
    const started = feed.start();
    await waitFor('the parse of the pushed policy', () => parses === 1);
    let stopped = false;
    const stopping = feed.stop().then(() => (stopped = true));
    await started;
    await new Promise((r) => setImmediate(r));
    expect(stopped).toBe(false);
    release();
    await stopping;
    expect(offered).toEqual([]);
    feed = undefined;
  });
});
