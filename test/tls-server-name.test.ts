/**
 * The TLS server name the agent sends and checks (src/tls/agent-channel-credentials.ts): dialing
 * the controller by IP sends no server name (so Node prints no DEP0123 warning) and still checks
 * the IP against the certificate's IP subjectAltNames; a DNS name (the dialed one, or
 * --server-name) is sent as SNI and checked against the DNS subjectAltNames. Real TLS on
 * loopback with certificates from src/tls/pki.ts.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SyncClient } from '../agent/sync-client.js';
import { SyncService } from '../src/grpc/sync-service.js';
import { serverIdentity } from '../src/tls/agent-channel-credentials.js';
import { loadClientCredentials, readTlsFiles, serverCredentialsFrom } from '../src/tls/credentials.js';
import { issueCert, makeTestPki, type TestPki } from '../src/tls/pki.js';
import { openRawStream, startServer, stopServer, waitFor, type RunningServer } from './support/grpc-harness.js';
import { MemoryStateSource, nthState } from './support/memory-state-source.js';

let tmp: string;
let pki: TestPki;
const warnings: Error[] = [];
const onWarning = (w: Error): void => void warnings.push(w);
const cleanups: (() => unknown)[] = [];

beforeAll(async () => {
  process.on('warning', onWarning);
  tmp = await mkdtemp(path.join(tmpdir(), 'pcut-sni-'));
  pki = await makeTestPki(path.join(tmp, 'pki'), { hosts: ['host-a'], controllerNames: ['controller'] });
  // A controller certificate naming only DNS names (no IP subjectAltName).
  await issueCert(pki.dir, { name: 'dns-only', server: true, sans: ['dns-only.example'], days: 2 });
});

afterAll(async () => {
  process.off('warning', onWarning);
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

/** A bare TLS server (no gRPC) recording the server name of every handshake, then closing it. */
async function sniRecorder(certName: string): Promise<{ port: number; names: (string | false)[] }> {
  const m = await readTlsFiles(pki.files(certName));
  const names: (string | false)[] = [];
  const server = tls.createServer({ ca: m.ca, cert: m.cert, key: m.key, requestCert: true, ALPNProtocols: ['h2'] }, (socket) => {
    names.push(socket.servername ?? false);
    socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => new Promise((resolve) => server.close(resolve)));
  return { port: (server.address() as { port: number }).port, names };
}

async function grpcServer(certName: string): Promise<{ running: RunningServer; service: SyncService }> {
  const source = new MemoryStateSource();
  source.set(nthState('host-a', 1));
  const service = new SyncService(source);
  const running = await startServer((server) => service.addToServer(server), serverCredentialsFrom(await readTlsFiles(pki.files(certName))));
  cleanups.push(() => {
    service.close();
    stopServer(running);
  });
  return { running, service };
}

async function client(target: string, channelOptions: grpc.ChannelOptions = {}): Promise<SyncClient> {
  const c = new SyncClient({
    target,
    credentials: await loadClientCredentials(pki.files('host-a')),
    channelOptions,
    hostId: 'host-a',
    agentVersion: 'test',
    apply: async () => undefined,
    backoff: { initialMs: 20, maxMs: 100 },
  });
  cleanups.push(() => c.close());
  c.start();
  return c;
}

describe('TLS server name of the agent', () => {
  it('dialing 127.0.0.1 sends no server name, verifies the IP SAN, and Node warns nothing (no DEP0123)', async () => {
    const { running, service } = await grpcServer('controller');
    await client(`127.0.0.1:${running.port}`);
    await waitFor('host-a in sync over TLS by IP', () => service.agent('host-a')?.inSync === true);
    const recorder = await sniRecorder('controller');
    await client(`127.0.0.1:${recorder.port}`);
    await waitFor('a handshake', () => recorder.names.length > 0);
    expect(recorder.names[0]).toBe(false);
    expect(warnings.map((w) => `${(w as { code?: string }).code}: ${w.message}`)).toEqual([]);
  });

  it('a DNS name (dialed, or --server-name over an IP) goes out as SNI', async () => {
    const dialed = await sniRecorder('controller');
    await client(`localhost:${dialed.port}`);
    const overridden = await sniRecorder('dns-only');
    await client(`127.0.0.1:${overridden.port}`, { 'grpc.ssl_target_name_override': 'dns-only.example' });
    await waitFor('both handshakes', () => dialed.names.length > 0 && overridden.names.length > 0);
    expect(new Set(dialed.names)).toEqual(new Set(['localhost']));
    expect(new Set(overridden.names)).toEqual(new Set(['dns-only.example']));
  });

  it('a certificate without the dialed IP is refused; --server-name naming it is accepted', async () => {
    const { running, service } = await grpcServer('dns-only');
    const stream = openRawStream(`127.0.0.1:${running.port}`, await loadClientCredentials(pki.files('host-a')));
    cleanups.push(() => stream.close());
    stream.send({ hello: { hostId: 'host-a', addresses: [], agentVersion: 'x', appliedVersion: '' } });
    await waitFor('call failed', () => stream.status !== undefined);
    expect(stream.status?.code).toBe(grpc.status.UNAVAILABLE);
    expect(stream.status?.details).toMatch(/IP: 127\.0\.0\.1 is not in the cert's list/);
    await client(`127.0.0.1:${running.port}`, { 'grpc.ssl_target_name_override': 'dns-only.example' });
    await waitFor('host-a in sync with --server-name', () => service.agent('host-a')?.inSync === true);
    expect(warnings).toEqual([]);
  });

  it.each([
    ['10.0.0.5:7443', undefined, '10.0.0.5', undefined],
    ['[fd00::5]:7443', undefined, 'fd00::5', undefined],
    ['controller.example:7443', undefined, 'controller.example', 'controller.example'],
    ['10.0.0.5:7443,10.0.0.6:7443', undefined, '10.0.0.5', undefined],
    ['10.0.0.5:7443', 'controller.example', 'controller.example', 'controller.example'],
    ['controller.example:7443', '10.0.0.5', '10.0.0.5', undefined],
  ])('target %s with --server-name %s: checks %s, SNI %s', (target, override, name, sni) => {
    expect(serverIdentity(target, override)).toEqual({ name, sni });
  });
});
