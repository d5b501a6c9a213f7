/**
 * Consul with ACLs on (the double's `aclTokens`, built from api-docs/index.mdx "Authentication"):
 * `--consul-token-file` gives every command that talks to Consul (`policy push|show`, the
 * controller's client, the agent's replica list) the token, sent as X-Consul-Token; without it a
 * refusal says that the ACLs refused and which flag gives the token. Service URLs never carry
 * credentials: `--consul` and `--mesos-agent` refuse them without echoing them.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { targetSource } from '../agent/target-source.js';
import { controllerSourceFrom } from '../src/cli/commands/agent.js';
import { consulClientOf, consulTargetFrom } from '../src/cli/consul-options.js';
import { ConsulClient } from '../src/consul/consul-client.js';
import { silentLogger } from '../src/grpc/sync-logger.js';
import { packageRoot } from '../src/package-root.js';
import { UsageError } from '../src/usage-error.js';
import { ConsulDouble } from './support/consul-double.js';
import { BIN, ROOT, ensureBuilt } from './support/built-cli.js';
import { waitFor } from './support/grpc-harness.js';
import { logged } from './support/process-log.js';
import { runCli } from './support/run-cli.js';

const TOKEN = '6b0b1f5e-8d36-4a5c-9b8e-2f1d3c4b5a69';
const io = { stdout: () => undefined, stderr: () => undefined, cwd: '/' };

let consul: ConsulDouble;
let url: string;
let dir: string;
let tokenFile: string;

beforeEach(async () => {
  consul = new ConsulDouble({ aclTokens: [TOKEN] });
  url = await consul.start();
  dir = mkdtempSync(path.join(tmpdir(), 'pcut-consul-acl-'));
  tokenFile = path.join(dir, 'token');
  writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
});

afterEach(async () => {
  await consul.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('the double with ACLs on', () => {
  it('refuses a request without a token or with an unknown one (403), and serves the known token in either header', async () => {
    const none = await fetch(`${url}/v1/kv/x`);
    expect([none.status, await none.text()]).toEqual([403, 'Permission denied']);
    const unknown = await fetch(`${url}/v1/kv/x`, { headers: { 'X-Consul-Token': 'nope' } });
    expect([unknown.status, await unknown.text()]).toEqual([403, 'ACL not found']);
    expect((await fetch(`${url}/v1/kv/x`, { headers: { 'X-Consul-Token': TOKEN } })).status).toBe(404);
    expect((await fetch(`${url}/v1/kv/x`, { headers: { Authorization: `Bearer ${TOKEN}` } })).status).toBe(404);
    expect(consul.refusedTokens).toBe(2);
  });
});

describe('--consul-token-file', () => {
  it('policy push and show send the token; without it the push fails saying the ACLs refused, and nothing is written', async () => {
    const policy = path.join(packageRoot(), 'policies', 'shop');
    const inventory = path.join(packageRoot(), 'policies', 'inventory.yaml');
    const refused = await runCli(['policy', 'push', '--policy', policy, '--inventory', inventory, '--consul', url]);
    expect(refused.code).toBe(1);
    expect(refused.err).toMatch(/HTTP 403 \("kv.get: Permission denied"\): refused by its ACLs \(the token of --consul-token-file/);
    const pushed = await runCli(['policy', 'push', '--policy', policy, '--inventory', inventory, '--consul', url, '--consul-token-file', tokenFile]);
    expect(pushed.err).toBe('');
    expect(pushed.code).toBe(0);
    const shown = await runCli(['policy', 'show', '--consul', url, '--consul-token-file', tokenFile]);
    expect(shown.code).toBe(0);
    expect(shown.out).toMatch(/20-rules\.yaml/);
    const other = path.join(dir, 'other');
    writeFileSync(other, 'stale-token\n');
    const wrong = await runCli(['policy', 'show', '--consul', url, '--consul-token-file', other]);
    expect(wrong.code).toBe(1);
    expect(wrong.err).toMatch(/HTTP 403 \(".*ACL not found"\)/);
    expect(wrong.err).not.toContain('stale-token');
  });

  it('an empty or missing token file is a usage error naming the flag and the file', async () => {
    const empty = path.join(dir, 'empty');
    writeFileSync(empty, '\n');
    const r = await runCli(['policy', 'show', '--consul', url, '--consul-token-file', empty]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/the --consul-token-file file .*empty is empty/);
    const missing = await runCli(['policy', 'show', '--consul', url, '--consul-token-file', path.join(dir, 'nope')]);
    expect(missing.code).toBe(2);
    expect(missing.err).toMatch(/cannot read the --consul-token-file file .*nope/);
    expect(() => consulTargetFrom({ 'consul-token-file': tokenFile }, io)).toThrow(/--consul-token-file needs --consul URL/);
  });

  it("the controller's client carries the token (a KV write and read as a replica does them)", async () => {
    const target = consulTargetFrom({ consul: url, 'consul-token-file': path.relative('/', tokenFile) }, io)!;
    expect(target.tokenFile).toBe(tokenFile);
    const client = await consulClientOf(target);
    const anonymous = new ConsulClient({ url });
    try {
      await client.kvPut('portcullis/probe', 'x');
      expect(String((await client.kvGet('portcullis/probe')).value?.value)).toBe('x');
      await expect(anonymous.kvGet('portcullis/probe')).rejects.toThrow(/403/);
    } finally {
      client.close();
      anonymous.close();
    }
  });

  it("the agent follows the controllers' service with the token", async () => {
    const { source, consul: target } = controllerSourceFrom({ consul: url, 'consul-service': 'portcullis', 'consul-token-file': tokenFile }, io);
    expect(target?.tokenFile).toBe(tokenFile);
    expect(source.kind).toBe('consul');
    consul.addRemoteInstance({ node: 'node-a', nodeAddress: '10.0.0.1', id: 'portcullis-a', name: 'portcullis', port: 7443 });
    const token = readFileSync(tokenFile, 'utf8').trim();
    const follow = targetSource({ ...source, kind: 'consul', url, service: 'portcullis', token }, { logger: silentLogger, consulWaitMs: 2_000, consulTimeoutMs: 2_000 });
    const lists: string[][] = [];
    try {
      follow.start((list) => lists.push([...list]));
      await waitFor('the replica list', () => lists.length === 1);
      expect(lists[0]).toEqual(['10.0.0.1:7443']);
      expect(consul.refusedTokens).toBe(0);
    } finally {
      await follow.stop();
    }
  });
});

describe('a controller process with --consul-token-file', () => {
  it('registers its service with the token and deregisters it on SIGTERM; Consul refused nothing', async () => {
    await ensureBuilt();
    const args = ['controller', '--insecure', '--policy', path.join(ROOT, 'policies/shop'), '--inventory', path.join(ROOT, 'policies/inventory.yaml')];
    args.push('--consul', url, '--consul-token-file', tokenFile, '--consul-service', 'portcullis', '--consul-address', '127.0.0.1');
    args.push('--listen', '127.0.0.1:0', '--status-listen', '127.0.0.1:0', '--state-dir', path.join(dir, 'state'), '--log-level', 'info');
    const controller = logged(spawn(process.execPath, [BIN, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] }), 'controller');
    try {
      await waitFor('the replica registered', () => consul.localServices().length === 1, 20_000);
      expect(consul.localServices()[0]).toMatchObject({ name: 'portcullis' });
    } finally {
      await controller.stop('SIGTERM', 5000);
    }
    expect(consul.localServices()).toEqual([]);
    expect(consul.refusedTokens).toBe(0);
  }, 40_000);
});

describe('no credentials in service URLs', () => {
  it('--consul and --mesos-agent refuse user:password in the URL without repeating it', async () => {
    let err: unknown;
    try {
      consulTargetFrom({ consul: 'http://ops:hunter2@127.0.0.1:8500' }, io);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UsageError);
    expect((err as Error).message).toMatch(/--consul 127\.0\.0\.1:8500: no credentials in the URL.*--consul-token-file/);
    expect((err as Error).message).not.toContain('hunter2');
    const agent = await runCli(['agent', '--insecure', '--controller', '127.0.0.1:1', '--mesos-agent', 'http://ops:hunter2@127.0.0.1:5051']);
    expect(agent.code).toBe(2);
    expect(agent.err).toMatch(/--mesos-agent 127\.0\.0\.1:5051: no credentials in the URL/);
    expect(agent.err).not.toContain('hunter2');
  });
});
