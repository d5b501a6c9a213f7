/**
 * The long-running commands' command lines: `controller` and `agent` refuse bad flags with exit 2
 * and a message naming the flag (before touching the network or the kernel), start-up problems
 * exit 1 with one clear line; `status` reads a real controller's /status (in-process, ports 0).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultInventoryPath, defaultPolicyPath } from '../src/package-root.js';
import { startController, type RunningController } from '../src/controller/controller-main.js';
import { StaticInventoryFeed } from '../src/controller/static-inventory-feed.js';
import { createLogger } from '../src/logging.js';
import { openRawStream, waitFor } from './support/grpc-harness.js';
import { runCli as cli } from './support/run-cli.js';

describe('portcullis controller: flags', () => {
  it.each([
    [['controller'], /mTLS needs --ca, --cert and --key .*--insecure/],
    [['controller', '--insecure', '--ca', 'ca.crt'], /--insecure and --ca exclude each other/],
    [['controller', '--insecure', '--inventory', 'x.yaml', '--marathon', 'http://m:8080'], /--inventory and --marathon exclude each other/],
    [['controller', '--insecure', '--dns'], /--dns needs --marathon URL/],
    [['controller', '--insecure', '--listen', 'nope'], /--listen expects HOST:PORT/],
    [['controller', '--insecure', '--status-listen', '1.2.3.4:70000'], /--status-listen: port must be 0..65535/],
    [['controller', '--insecure', '--ping-interval', 'soon'], /--ping-interval must be a number of seconds/],
    [['controller', '--insecure', '--coalesce-ms=-1'], /--coalesce-ms must be 0..10000/],
    [['controller', '--insecure', '--bogus'], /Unknown option '--bogus'/],
    [['controller', '--insecure', '--max-agents=-1'], /--max-agents must be a whole number 0\.\.1000000/],
    [['controller', '--insecure', '--max-agents', '2.5'], /--max-agents must be a whole number 0\.\.1000000/],
  ])('%j exits 2 with a precise message', async (argv, message) => {
    const r = await cli(argv);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(message);
    expect(r.err).toContain('Usage: portcullis controller');
  });

  it('unreadable TLS files exit 1 naming the file, without a listener left behind', async () => {
    const r = await cli(['controller', '--ca', '/nonexistent/ca.crt', '--cert', '/nonexistent/c.crt', '--key', '/nonexistent/c.key', '--listen', '127.0.0.1:0', '--status-listen', '127.0.0.1:0', '--log-level', 'silent']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/cannot read the TLS CA file \/nonexistent\/ca\.crt/);
  });

  it('a bad Marathon flag exits 1 with the reason', async () => {
    const r = await cli(['controller', '--insecure', '--marathon', 'ftp://m', '--listen', '127.0.0.1:0', '--status-listen', '127.0.0.1:0', '--log-level', 'silent']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/only http and https URLs are supported/);
  });

  it('--help documents the defaults and signals', async () => {
    const r = await cli(['controller', '--help']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/--listen HOST:PORT .*default 0\.0\.0\.0:7443/);
    expect(r.out).toMatch(/SIGHUP re-reads/);
  });
});

describe('portcullis agent: flags', () => {
  it.each([
    [['agent', '--insecure'], /--controller HOST:PORT is required/],
    [['agent', '--insecure', '--controller', 'c:7443', '--address', 'not-an-ip'], /--address: 'not-an-ip' is not an IPv4 or IPv6 address/],
    [['agent', '--insecure', '--controller', 'c:7443', '--address', '::ffff:10.0.0.9'], /--address: '::ffff:10.0.0.9' is an IPv4-mapped IPv6 address .* write 10\.0\.0\.9 instead/],
    [['agent', '--insecure', '--controller', 'c:7443', '--family', '5'], /--family must be 4 or 6/],
    [['agent', '--insecure', '--controller', 'c:7443', '--host-id', 'a b;rm -rf /'], /--host-id 'a b;rm -rf \/' must be letters/],
    [['agent', '--insecure', '--controller', 'c:7443', '--refresh-interval', '0'], /--refresh-interval must be a number of seconds in 0.2..86400/],
    [['agent', '--controller', 'c:7443'], /mTLS needs --ca, --cert and --key/],
    [['agent', '--insecure', '--controller', 'c'], /--controller expects HOST:PORT/],
    [['agent', '--insecure', '--controller', 'c:7443', '--server-name', 'x'], /--server-name needs TLS/],
    [['agent', '--insecure', '--controller', 'c:7443', '--controller', 'd'], /--controller expects HOST:PORT/],
    [['agent', '--insecure', '--controller', 'c:7443', '--consul', 'http://127.0.0.1:8500', '--consul-service', 'p'], /--controller and --consul exclude each other/],
    [['agent', '--insecure', '--consul', 'http://127.0.0.1:8500'], /--consul needs --consul-service NAME/],
    [['agent', '--insecure', '--consul-service', 'portcullis'], /--consul-service needs --consul URL/],
    [['agent', '--insecure', '--consul', 'ftp://c', '--consul-service', 'portcullis'], /--consul must be an http:\/\/ or https:\/\/ URL/],
    [['agent', '--insecure', '--consul', 'http://127.0.0.1:8500', '--consul-service', 'a b;x'], /--consul-service 'a b;x' must be letters/],
  ])('%j exits 2 with a precise message', async (argv, message) => {
    const r = await cli(argv);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(message);
    expect(r.err).toContain('Usage: portcullis agent');
  });

  it('--help says what it owns and where it keeps state', async () => {
    const r = await cli(['agent', '--help']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/--uninstall .*PCU-\*/s);
    expect(r.out).toMatch(/--state-dir DIR .*\/var\/lib\/portcullis/);
  });
});

describe('portcullis status', () => {
  let controller: RunningController | undefined;
  let dir = '';

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pcut-status-'));
    controller = await startController({
      policyPath: defaultPolicyPath(),
      feed: () => new StaticInventoryFeed({ path: defaultInventoryPath() }),
      listen: { host: '127.0.0.1', port: 0 },
      statusListen: { host: '127.0.0.1', port: 0 },
      credentials: undefined,
      logger: createLogger({ component: 'controller', level: 'silent' }),
    });
  });

  afterAll(async () => {
    await controller?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const url = (): string => `http://${controller?.statusAddress}`;

  it('prints readiness, the policy, the inventory and one row per host', async () => {
    const r = await cli(['status', '--controller-status', url()]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^controller http:\/\/127\.0\.0\.1:\d+: ready$/m);
    expect(r.out).toMatch(/^policy .*policies\/shop: valid/m);
    expect(r.out).toMatch(/^inventory: file .*inventory\.yaml, loaded$/m);
    // Four hosts have a state, but no agent ever connected: that is not "4 agents".
    expect(r.out).toMatch(/^hosts with a state: 4; compile reports: 0$/m);
    expect(r.out).toMatch(/^agents: none has connected yet$/m);
    expect(r.out).not.toMatch(/^agents: 4/m);
    expect(r.out).toMatch(/^node-3 +never +- +[0-9a-f]{16} +NO$/m);
  });

  it('--check fails while agents are missing; --format json is the /status document', async () => {
    expect((await cli(['status', '--controller-status', url(), '--check'])).code).toBe(1);
    const r = await cli(['status', '--controller-status', url(), '--format', 'json']);
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.out);
    expect(doc.ready).toBe(true);
    expect(doc.agents.map((a: { hostId: string }) => a.hostId)).toEqual(['node-1', 'node-2', 'node-3', 'node-4']);
    expect(doc.agentCounts).toEqual({ known: 0, connected: 0, inSync: 0 });
  });

  it('counts agents that connected, not hosts with a state: one agent acks, then goes away', async () => {
    const stream = openRawStream(controller!.grpcAddress);
    try {
      stream.send({ hello: { hostId: 'node-2', addresses: ['10.0.1.12'], agentVersion: 'played', appliedVersion: '' } });
      await waitFor('the snapshot', () => stream.of('snapshot').length === 1);
      const snapshot = stream.of('snapshot')[0]!.snapshot!;
      const desired = controller!.status.agentReports().find((a) => a.hostId === 'node-2')!.desiredVersion!;
      stream.send({ ack: { version: desired, seq: snapshot.seq } });
      await waitFor('the ack', () => controller!.status.agentReports().some((a) => a.hostId === 'node-2' && a.inSync));
      const r = await cli(['status', '--controller-status', url()]);
      expect(r.out).toMatch(/^agents: 1 known, 1 connected, 1 in sync$/m);
      expect(r.out).toMatch(/^node-2 +yes +[0-9a-f]{16} +[0-9a-f]{16} +yes$/m);
      expect(r.out).toMatch(/^node-1 +never /m);
    } finally {
      stream.close();
    }
    await waitFor('the stream closed', () => !controller!.status.agentReports().some((a) => a.connected));
    const r = await cli(['status', '--controller-status', url()]);
    expect(r.out).toMatch(/^agents: 1 known, 0 connected, 0 in sync$/m);
    expect(r.out).toMatch(/^node-2 +no +/m);
  });

  it('an unreachable controller exits 1 and says what to check', async () => {
    const r = await cli(['status', '--controller-status', 'http://127.0.0.1:1', '--timeout', '2']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/cannot read http:\/\/127\.0\.0\.1:1\/status/);
    expect(r.err).toMatch(/--status-listen/);
  });

  it('a bad URL is a usage error', async () => {
    const r = await cli(['status', '--controller-status', 'not a url']);
    expect(r.code).toBe(2);
    expect((await cli(['status', '--controller', url(), '--controller-status', url()])).code).toBe(2);
  });

  it('--controller URL is the same option, as on compile/explain/diff/check', async () => {
    const r = await cli(['status', '--controller', url()]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^controller http:\/\/127\.0\.0\.1:\d+: ready$/m);
  });
});
