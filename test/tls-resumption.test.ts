/**
 * Cheaper agent handshakes (src/tls/agent-channel-credentials.ts, src/tls/mtls-listener.ts), real
 * TLS and grpc-js on 127.0.0.1 port 0 with certificates from makeTestPki:
 * - an agent whose streams dropped reconnects to a listener made again on the same port in the
 *   same process with a RESUMED session (the process's ticket key), and that replica still checks
 *   the Hello against the client certificate of the resumed session (a host id the certificate
 *   does not name is refused);
 * - the connector's socket answers `getPeerCertificate(true)` with Node's detailed chain again
 *   once the handshake is done (the leaf alone is given only to Node's own name check).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type tls from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SyncClient } from '../agent/sync-client.js';
import { SyncService } from '../src/grpc/sync-service.js';
import { AgentChannelCredentials } from '../src/tls/agent-channel-credentials.js';
import { loadClientCredentials, readTlsFiles, type TlsMaterial } from '../src/tls/credentials.js';
import { listenMtls, type MtlsListener } from '../src/tls/mtls-listener.js';
import { makeTestPki, type TestPki } from '../src/tls/pki.js';
import { TlsRefusals } from '../src/tls/tls-refusals.js';
import { openRawStream, waitFor } from './support/grpc-harness.js';
import { MemoryStateSource, nthState } from './support/memory-state-source.js';

let tmp = '';
let pki: TestPki;
let material: TlsMaterial;
const cleanups: (() => unknown)[] = [];

beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'pcut-resume-'));
  pki = await makeTestPki(path.join(tmp, 'pki'), { hosts: ['node-1'], controllerNames: ['controller'] });
  material = await readTlsFiles(pki.files('controller'));
});

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

afterAll(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

interface Replica {
  readonly service: SyncService;
  readonly listener: MtlsListener;
  stop(): Promise<void>;
}

/** A SyncService behind the controller's mTLS listener on `port` (0: any). */
async function replica(port: number): Promise<Replica> {
  const source = new MemoryStateSource();
  source.set(nthState('node-1', 1));
  const service = new SyncService(source, { pingIntervalMs: 10_000 });
  const server = new grpc.Server();
  service.addToServer(server);
  const listener = await listenMtls(server, '127.0.0.1', port, { material, refusals: new TlsRefusals() });
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    service.close();
    server.forceShutdown();
    await listener.close();
  };
  cleanups.push(stop);
  return { service, listener, stop };
}

describe('agent TLS handshakes', () => {
  it('an agent reconnecting to a listener made again in the same process resumes its session, and its Hello is still checked', async () => {
    const first = await replica(0);
    const port = first.listener.port;
    const credentials = await loadClientCredentials(pki.files('node-1'));
    expect(credentials).toBeInstanceOf(AgentChannelCredentials);
    const agent = credentials as AgentChannelCredentials;
    const client = new SyncClient({
      target: `127.0.0.1:${port}`,
      credentials,
      channelOptions: { 'grpc.ssl_target_name_override': 'localhost' },
      hostId: 'node-1',
      agentVersion: 'test',
      apply: async () => undefined,
      backoff: { initialMs: 20, maxMs: 100 },
    });
    cleanups.push(() => client.close());
    client.start();
    await waitFor('node-1 in sync with the first listener', () => first.service.agent('node-1')?.inSync === true, 10_000);
    expect(agent.handshakes()).toEqual({ full: 1, resumed: 0 });

    await first.stop();
    const second = await replica(port);
    await waitFor('node-1 in sync with the listener made again', () => second.service.agent('node-1')?.inSync === true, 10_000);
    expect(agent.handshakes()).toEqual({ full: 1, resumed: 1 });

    // The same credentials (a resumed session of node-1's certificate) saying another host: refused.
    const stream = openRawStream(`127.0.0.1:${port}`, credentials, { 'grpc.ssl_target_name_override': 'localhost' });
    cleanups.push(() => stream.close());
    stream.send({ hello: { hostId: 'node-2', addresses: [], agentVersion: 'raw', appliedVersion: '' } });
    await waitFor('the forged Hello refused', () => stream.status !== undefined, 10_000);
    expect(stream.status?.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(agent.handshakes().resumed).toBeGreaterThanOrEqual(2);
    expect(agent.handshakes().full).toBe(1);
  }, 30_000);

  it("after the handshake the socket's getPeerCertificate(true) is Node's own detailed chain", async () => {
    const r = await replica(0);
    const credentials = (await loadClientCredentials(pki.files('node-1'))) as AgentChannelCredentials;
    const connector = credentials._createSecureConnector({ path: `127.0.0.1:${r.listener.port}` }, { 'grpc.ssl_target_name_override': 'localhost' });
    const tcp = net.connect(r.listener.port, '127.0.0.1');
    cleanups.push(() => tcp.destroy());
    await new Promise<void>((resolve, reject) => tcp.once('connect', resolve).once('error', reject));
    const { socket } = await connector.connect(tcp);
    const secured = socket as tls.TLSSocket;
    cleanups.push(() => secured.destroy());
    expect(Object.hasOwn(secured, 'getPeerCertificate')).toBe(false);
    const detailed = secured.getPeerCertificate(true);
    expect(detailed.subject.CN).toBe('controller');
    expect(detailed.issuerCertificate?.subject.CN).toBeDefined();
    expect(detailed.issuerCertificate?.subject.CN).not.toBe('controller');
  });
});
