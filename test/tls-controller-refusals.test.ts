/**
 * A real controller (in-process, mTLS on loopback, ports 0) refusing agents: a certificate of
 * another CA at the handshake, and a certificate of the right CA naming another host at Hello.
 * Each is a warn line with the peer and the reason, a count in `/status` `tls` and in
 * `portcullis_tls_refusals_total{reason}` on /metrics; the proper agent is unaffected.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SyncClient } from '../agent/sync-client.js';
import { defaultInventoryPath, defaultPolicyPath } from '../src/package-root.js';
import { startController, type RunningController } from '../src/controller/controller-main.js';
import { StaticInventoryFeed } from '../src/controller/static-inventory-feed.js';
import { clientCredentialsFrom, loadClientCredentials, readTlsFiles } from '../src/tls/credentials.js';
import { makeTestPki, type TestPki } from '../src/tls/pki.js';
import type { TlsRefusalsStatus } from '../src/tls/tls-refusals.js';
import { waitFor } from './support/grpc-harness.js';
import { logCapture } from './support/log-capture.js';

let tmp = '';
let pki: TestPki;
let foreign: TestPki;
let controller: RunningController | undefined;
const log = logCapture();
const clients: SyncClient[] = [];

beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'pcut-tls-ctl-'));
  [pki, foreign] = await Promise.all([
    makeTestPki(path.join(tmp, 'pki'), { hosts: ['node-1'], controllerNames: ['controller'] }),
    makeTestPki(path.join(tmp, 'foreign'), { hosts: ['node-1'], controllerNames: [] }),
  ]);
  controller = await startController({
    policyPath: defaultPolicyPath(),
    feed: () => new StaticInventoryFeed({ path: defaultInventoryPath() }),
    listen: { host: '127.0.0.1', port: 0 },
    statusListen: { host: '127.0.0.1', port: 0 },
    credentials: await readTlsFiles(pki.files('controller')),
    pingIntervalMs: 200,
    logger: log.logger,
  });
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await controller?.stop();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

function agent(hostId: string, credentials: grpc.ChannelCredentials): SyncClient {
  const client = new SyncClient({
    target: controller!.grpcAddress,
    credentials,
    hostId,
    agentVersion: 'test',
    apply: async () => undefined,
    backoff: { initialMs: 20, maxMs: 100 },
  });
  clients.push(client);
  client.start();
  return client;
}

async function getStatus(): Promise<{ tls: TlsRefusalsStatus; agents: { hostId: string; connected: boolean }[] }> {
  const res = await fetch(`http://${controller!.statusAddress}/status`);
  return (await res.json()) as { tls: TlsRefusalsStatus; agents: { hostId: string; connected: boolean }[] };
}

async function metrics(): Promise<string> {
  return (await fetch(`http://${controller!.statusAddress}/metrics`)).text();
}

describe('controller: refused agents are logged and counted', () => {
  it('a proper agent connects; nothing is refused', async () => {
    agent('node-1', await loadClientCredentials(pki.files('node-1')));
    await waitFor('node-1 connected', () => controller!.status.agentReports().some((a) => a.hostId === 'node-1' && a.inSync));
    const status = await getStatus();
    expect(status.tls).toMatchObject({ refusals: 0, lastRefusal: null });
    expect(await metrics()).toContain('portcullis_tls_refusals_total{reason="unknown_ca"} 0');
  });

  it('a certificate of another CA: warn line with peer and reason, /status and /metrics count it', async () => {
    const ca = (await readTlsFiles(pki.files('node-1'))).ca;
    const other = await readTlsFiles(foreign.files('node-1'));
    agent('node-1', clientCredentialsFrom({ ca, key: other.key, cert: other.cert }));
    await waitFor('a refusal logged', () => log.lines.some((l) => l['msg'] === 'tls: agent refused'));
    const line = log.lines.find((l) => l['msg'] === 'tls: agent refused');
    expect(line).toMatchObject({ level: 40, module: 'tls', reason: 'unknown_ca', subject: 'node-1' });
    expect(String(line?.['peer'])).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(String(line?.['error'])).toMatch(/certificate signed by an unknown authority/);
    const status = await getStatus();
    expect(status.tls.byReason.unknown_ca).toBeGreaterThanOrEqual(1);
    expect(status.tls.lastRefusal).toMatchObject({ reason: 'unknown_ca', peer: expect.stringMatching(/^127\.0\.0\.1:\d+$/) });
    expect(Date.parse(String(status.tls.lastRefusal?.at))).toBeGreaterThan(Date.now() - 60_000);
    expect(await metrics()).toMatch(/^portcullis_tls_refusals_total\{reason="unknown_ca"\} [1-9]\d*$/m);
  });

  it('a certificate of the right CA naming another host: warn at Hello, counted as host_mismatch', async () => {
    agent('node-2', await loadClientCredentials(pki.files('node-1')));
    await waitFor('host_mismatch counted', () => (controller!.status.status() as { tls: TlsRefusalsStatus }).tls.byReason.host_mismatch >= 1);
    const line = log.lines.find((l) => l['msg'] === 'sync: stream rejected' && l['refusal'] === 'host_mismatch');
    expect(line).toMatchObject({ level: 40, module: 'sync', reason: "certificate is for [node-1], not host 'node-2'" });
    expect(String(line?.['peer'])).toMatch(/127\.0\.0\.1:\d+/);
    expect(await metrics()).toMatch(/^portcullis_tls_refusals_total\{reason="host_mismatch"\} [1-9]\d*$/m);
    const status = await getStatus();
    expect(status.agents.find((a) => a.hostId === 'node-2')?.connected).toBe(false);
    expect(status.agents.find((a) => a.hostId === 'node-1')?.connected).toBe(true);
  });
});
