/**
 * The controller on Consul (startController with `consul`, real HTTP and gRPC on port 0, the
 * Consul API double): it serves the policy pushed to KV (a push that breaks it changes nothing in
 * force), registers itself as a service with a check on its own /readyz, and deregisters on a
 * clean stop; the flags say clearly what goes with what.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConsulClient } from '../src/consul/consul-client.js';
import { policyPointerKey, pushKvPolicy } from '../src/consul/policy-kv.js';
import { startController, type RunningController } from '../src/controller/controller-main.js';
import { StaticInventoryFeed } from '../src/controller/static-inventory-feed.js';
import { createLogger } from '../src/logging.js';
import { defaultInventoryPath, defaultPolicyPath } from '../src/package-root.js';
import { ConsulDouble } from './support/consul-double.js';
import { waitFor } from './support/cluster-harness.js';
import { runCli } from './support/run-cli.js';

const PREFIX = 'portcullis/policy';
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const shop = (name: string): string => readFileSync(join(defaultPolicyPath(), name), 'utf8');

async function setup(): Promise<{ consul: ConsulDouble; client: ConsulClient; dir: string }> {
  const consul = new ConsulDouble();
  const client = new ConsulClient({ url: await consul.start(), timeoutMs: 2_000 });
  cleanups.push(() => consul.close(), () => client.close());
  const dir = mkdtempSync(join(tmpdir(), 'pcut-consulctl-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  cpSync(defaultInventoryPath(), join(dir, 'inventory.yaml'));
  return { consul, client, dir };
}

async function push(client: ConsulClient, files: { name: string; text: string }[]): Promise<void> {
  const index = (await client.kvGet(policyPointerKey(PREFIX))).value?.modifyIndex ?? 0;
  await pushKvPolicy(client, PREFIX, files, { expectIndex: index, pushedBy: 'test' });
}

const shopFiles = (): { name: string; text: string }[] => ['00-defaults.yaml', '10-groups.yaml', '20-rules.yaml'].map((name) => ({ name, text: shop(name) }));

describe('controller --consul', () => {
  it('serves the policy pushed to KV, keeps it over a broken push, registers with a /readyz check and deregisters on stop', async () => {
    const { consul, client, dir } = await setup();
    await push(client, shopFiles());
    // Which KV prefixes the controller follows: a static inventory names every address, so the
    // agents' shared Hello addresses (<prefix>/hosts/) are not followed.
    const listed = new Set<string>();
    const kvList = client.kvList.bind(client);
    client.kvList = (prefix, b) => (listed.add(prefix), kvList(prefix, b));
    const c: RunningController = await startController({
      policyPath: join(dir, 'unused-policy'),
      feed: () => new StaticInventoryFeed({ path: join(dir, 'inventory.yaml'), pollMs: 60_000 }),
      listen: { host: '127.0.0.1', port: 0 },
      statusListen: { host: '127.0.0.1', port: 0 },
      credentials: undefined,
      stateDir: join(dir, 'state'),
      consul: { client, policyPrefix: PREFIX, service: { name: 'portcullis', address: '127.0.0.1' } },
      logger: createLogger({ component: 'controller', level: 'silent' }),
    });
    let stopped = false;
    cleanups.push(() => (stopped ? undefined : c.stop()));
    await waitFor(async () => (await fetch(`http://${c.statusAddress}/readyz`)).ok, 10_000, 'ready on the KV policy');
    const versions = JSON.stringify((await (await fetch(`http://${c.statusAddress}/hosts`)).json()));

    await waitFor(() => consul.localServices().length === 1, 10_000, 'registered');
    expect([...listed].filter((p) => p.startsWith(`${PREFIX}/hosts`))).toEqual([]);
    const [registered] = consul.localServices();
    expect(registered).toMatchObject({ name: 'portcullis', port: Number(c.grpcAddress.split(':').pop()), address: '127.0.0.1' });
    expect(JSON.stringify(registered)).toContain(`http://${c.statusAddress}/readyz`);

    await push(client, [...shopFiles().slice(0, 2), { name: '20-rules.yaml', text: 'version: 1\nrules: [ { name: x, from: [nosuch], to: [web] } ]\n' }]);
    const status = await waitFor(async () => {
      const s = (await (await fetch(`http://${c.statusAddress}/status`)).json()) as { policy: { valid: boolean; lastError: { diagnostics: string[] } | null } };
      return s.policy.valid === false ? s : undefined;
    }, 10_000, 'the broken push reported');
    expect(status.policy.lastError?.diagnostics.join('\n')).toMatch(/consul:portcullis\/policy\/20-rules\.yaml/);
    expect(JSON.stringify((await (await fetch(`http://${c.statusAddress}/hosts`)).json()))).toBe(versions); // nothing changed in force

    await c.stop();
    stopped = true;
    expect(consul.localServices()).toEqual([]);
  });

  it('flags: what needs --consul, what excludes what', async () => {
    const cases: [string[], RegExp][] = [
      [['--policy-consul', '--insecure'], /--policy-consul needs --consul URL/],
      [['--consul', 'http://127.0.0.1:8500', '--insecure'], /--consul needs --policy-consul, --consul-service NAME or both/],
      [['--consul', 'http://127.0.0.1:8500', '--policy-consul', '--policy', 'x', '--insecure'], /--policy and --policy-consul exclude each other/],
      [['--consul', 'ftp://x', '--consul-service', 'p', '--insecure'], /--consul must be an http:\/\/ or https:\/\/ URL/],
      [['--consul', 'http://127.0.0.1:8500', '--consul-service', 'bad name', '--insecure'], /--consul-service must be a service name/],
      [['--consul', 'http://127.0.0.1:8500', '--consul-prefix', 'p', '--consul-service', 'p', '--insecure'], /--consul-prefix needs --policy-consul/],
    ];
    for (const [args, message] of cases) {
      const r = await runCli(['controller', ...args]);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.err).toMatch(message);
    }
  });
});
