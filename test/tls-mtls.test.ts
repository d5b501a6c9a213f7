/**
 * mTLS of the Sync stream with certificates made by `portcullis certs` / makeTestPki (real
 * openssl, real TLS on loopback, the controller's listener src/tls/mtls-listener.ts): only
 * clients with a certificate of our CA get in, and a host certificate only ever obtains that
 * host's state. Every refusal is logged at warn with its peer and reason, counted by reason
 * (src/tls/tls-refusals.ts) and answered with UNAUTHENTICATED and the reason.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SyncClient } from '../agent/sync-client.js';
import type { DesiredState } from '../src/compile/desired-state.js';
import { certsCommand } from '../src/cli/commands/certs.js';
import { EXIT_INPUT_ERROR, EXIT_OK, type CliIO } from '../src/cli/command.js';
import { UsageError } from '../src/usage-error.js';
import { SyncService } from '../src/grpc/sync-service.js';
import { loadClientCredentials, readTlsFiles } from '../src/tls/credentials.js';
import { listenMtls, type MtlsListener } from '../src/tls/mtls-listener.js';
import { makeTestPki, verifyCert, type TestPki } from '../src/tls/pki.js';
import { TlsRefusals, type RefusalReason } from '../src/tls/tls-refusals.js';
import { openRawStream, waitFor, type RawStream } from './support/grpc-harness.js';
import { logCapture } from './support/log-capture.js';
import { MemoryStateSource, nthState } from './support/memory-state-source.js';

const run = promisify(execFile);
/** Connect to 127.0.0.1 but check (and send SNI for) the certificate's DNS name. */
const TLS_NAME = { 'grpc.ssl_target_name_override': 'localhost' };
let tmp: string;
let pki: TestPki;
let foreign: TestPki;
let server: grpc.Server;
let listener: MtlsListener;
let target: string;
let service: SyncService;
let refusals: TlsRefusals;
const log = logCapture();
const source = new MemoryStateSource();
const cleanups: (() => unknown)[] = [];

beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'pcut-tls-'));
  [pki, foreign] = await Promise.all([
    makeTestPki(path.join(tmp, 'pki'), { hosts: ['host-a', 'host-b'], controllerNames: ['controller'] }),
    makeTestPki(path.join(tmp, 'foreign'), { hosts: ['host-a'], controllerNames: [] }),
  ]);
  source.set(nthState('host-a', 1));
  source.set(nthState('host-b', 2));
  refusals = new TlsRefusals({ logger: log.logger.child({ module: 'tls' }) });
  service = new SyncService(source, {
    logger: log.logger.child({ module: 'sync' }),
    onCertificateRefused: (peer, reason, detail) => refusals.record({ peer, reason, detail }, {}, false),
  });
  server = new grpc.Server();
  service.addToServer(server);
  listener = await listenMtls(server, '127.0.0.1', 0, { material: await readTlsFiles(pki.files('controller')), refusals, logger: log.logger });
  target = `127.0.0.1:${listener.port}`;
});

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

afterAll(async () => {
  service?.close();
  server?.forceShutdown();
  await listener?.close();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

function raw(credentials: grpc.ChannelCredentials): RawStream {
  const stream = openRawStream(target, credentials, TLS_NAME);
  cleanups.push(() => stream.close());
  return stream;
}

async function clientCredentialsWith(certFrom: TestPki, name: string): Promise<grpc.ChannelCredentials> {
  // Trust our CA for the server, but present a certificate from `certFrom`.
  const ours = await readTlsFiles(pki.files('controller'));
  const theirs = await readTlsFiles(certFrom.files(name));
  return grpc.credentials.createSsl(ours.ca, theirs.key, theirs.cert);
}

describe('mTLS on the Sync stream', () => {
  it('a proper host certificate gets its own state', async () => {
    const applied: DesiredState[] = [];
    const client = new SyncClient({
      target,
      credentials: await loadClientCredentials(pki.files('host-a')),
      channelOptions: TLS_NAME,
      hostId: 'host-a',
      agentVersion: 'test',
      apply: async (s) => void applied.push(s),
    });
    cleanups.push(() => client.close());
    client.start();
    await waitFor('host-a in sync', () => service.agent('host-a')?.inSync === true);
    expect(applied).toEqual([nthState('host-a', 1)]);
    // The listener counts what the verified session carried: at least the state it was sent.
    const traffic = listener.traffic();
    expect(traffic.sessions).toBe(1);
    expect(traffic.bytesWritten).toBeGreaterThan(JSON.stringify(nthState('host-a', 1).sets).length / 2);
    expect(traffic.bytesRead).toBeGreaterThan(0);
  });

  /** The refusal of `stream`: answered UNAUTHENTICATED with `why`, one warn line, counted once. */
  async function expectRefused(stream: RawStream, reason: RefusalReason, why: RegExp): Promise<void> {
    const before = refusals.status().byReason[reason];
    const warnsBefore = refusedLines().length;
    stream.send({ hello: { hostId: 'host-a', addresses: [], agentVersion: 'x', appliedVersion: '' } });
    await waitFor('call failed', () => stream.status !== undefined);
    expect(stream.status?.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(stream.status?.details).toMatch(/the controller refused this agent's TLS certificate/);
    expect(stream.status?.details).toMatch(why);
    expect(stream.messages).toEqual([]);
    await waitFor('counted', () => refusals.status().byReason[reason] === before + 1);
    const line = refusedLines().slice(warnsBefore)[0];
    expect(line).toMatchObject({ level: 40, module: 'tls', reason, msg: 'tls: agent refused' });
    expect(String(line?.['peer'])).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(String(line?.['error'])).toMatch(why);
    expect(refusals.status().lastRefusal).toMatchObject({ reason, peer: line?.['peer'] });
    expect(refusals.metrics()).toContain(`portcullis_tls_refusals_total{reason="${reason}"} ${before + 1}`);
  }
  const refusedLines = () => log.lines.filter((l) => l['msg'] === 'tls: agent refused');

  it('refuses a client certificate signed by another CA, and says so on both sides', async () => {
    await waitFor('earlier agent sessions closed', () => listener.traffic().sessions === 0);
    await expectRefused(raw(await clientCredentialsWith(foreign, 'host-a')), 'unknown_ca', /unknown authority/);
    expect(listener.traffic().sessions).toBe(0); // a refused socket is never an agent session
    expect(refusedLines().at(-1)).toMatchObject({ subject: 'host-a', issuer: 'Portcullis test CA' });
  });

  it('refuses a client without a certificate', async () => {
    const ca = (await readTlsFiles(pki.files('controller'))).ca;
    await expectRefused(raw(grpc.credentials.createSsl(ca)), 'no_client_certificate', /no client certificate/);
  });

  it("rejects host A's certificate saying Hello as host B, never sends B's state, and counts it", async () => {
    const before = refusals.status().byReason.host_mismatch;
    const stream = raw(await clientCredentialsWith(pki, 'host-a'));
    stream.send({ hello: { hostId: 'host-b', addresses: [], agentVersion: 'x', appliedVersion: '' } });
    await waitFor('call ended', () => stream.status !== undefined);
    expect(stream.status?.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(stream.messages.map((m) => m.msg)).toEqual(['rejected']);
    expect(stream.messages[0]?.rejected?.reason).toMatch(/host-a.*host-b/);
    expect(service.agent('host-b')).toBeUndefined();
    expect(refusals.status().byReason.host_mismatch).toBe(before + 1);
    expect(refusals.status().lastRefusal).toMatchObject({ reason: 'host_mismatch', detail: "certificate is for [host-a], not host 'host-b'" });
    const line = log.lines.filter((l) => l['msg'] === 'sync: stream rejected').at(-1);
    expect(line).toMatchObject({ level: 40, module: 'sync', refusal: 'host_mismatch' });
    expect(String(line?.['peer'])).toMatch(/127\.0\.0\.1:\d+/);
  });

  it('a controller certificate cannot act as an agent (serverAuth only)', async () => {
    await expectRefused(raw(await clientCredentialsWith(pki, 'controller')), 'wrong_purpose', /not usable for client authentication/);
  });

  it('a plaintext client is a failed handshake, logged and counted', async () => {
    const before = refusals.status().byReason.handshake_failed;
    const stream = raw(grpc.credentials.createInsecure());
    stream.send({ hello: { hostId: 'host-a', addresses: [], agentVersion: 'x', appliedVersion: '' } });
    await waitFor('counted', () => refusals.status().byReason.handshake_failed > before);
    expect(refusedLines().at(-1)).toMatchObject({ level: 40, reason: 'handshake_failed' });
    expect(String(refusedLines().at(-1)?.['error'])).toMatch(/TLS handshake failed/);
  });

  it('an agent with a refused certificate warns once with the reason, not once per retry', async () => {
    const agentLog = logCapture();
    const ours = await readTlsFiles(pki.files('controller'));
    const theirs = await readTlsFiles(foreign.files('host-a'));
    const before = refusals.status().byReason.unknown_ca;
    const client = new SyncClient({
      target,
      credentials: grpc.credentials.createSsl(ours.ca, theirs.key, theirs.cert),
      channelOptions: TLS_NAME,
      hostId: 'host-a',
      agentVersion: 'test',
      apply: async () => undefined,
      backoff: { initialMs: 10, maxMs: 30 },
      logger: agentLog.logger,
    });
    cleanups.push(() => client.close());
    client.start();
    await waitFor('five refused attempts', () => refusals.status().byReason.unknown_ca >= before + 5);
    const warns = agentLog.lines.filter((l) => l['level'] === 40);
    expect(warns).toHaveLength(1);
    expect(warns[0]).toMatchObject({ msg: 'sync: cannot connect to the controller', controller: target, attempts: 1 });
    expect(String(warns[0]?.['reason'])).toMatch(/refused this agent's TLS certificate: certificate signed by an unknown authority/);
    const retries = agentLog.lines.filter((l) => l['msg'] === 'sync: still cannot connect to the controller');
    expect(retries.length).toBeGreaterThanOrEqual(3);
    expect(retries.every((l) => l['level'] === 20 && l['reason'] === warns[0]?.['reason'])).toBe(true);
    // The controller warned once for that peer address and reason too; the repeats are debug.
    expect(refusedLines().filter((l) => l['reason'] === 'unknown_ca').length).toBeLessThanOrEqual(2);
  });
});

describe('portcullis certs', () => {
  const io = () => {
    const out: string[] = [];
    const err: string[] = [];
    const cli: CliIO = { stdout: (t) => void out.push(t), stderr: (t) => void err.push(t), cwd: tmp };
    return { cli, out, err };
  };

  it('init and issue make files openssl verifies, with 0600 keys', async () => {
    const { cli, out } = io();
    expect(await certsCommand.run(['init', '--dir', 'cli-pki'], cli)).toBe(EXIT_OK);
    expect(await certsCommand.run(['issue', '--dir', 'cli-pki', '--name', 'mesos-agent-1.example'], cli)).toBe(EXIT_OK);
    expect(
      await certsCommand.run(['issue', '--dir', 'cli-pki', '--name', 'ctl', '--server', '--san', 'DNS:ctl.example', '--san', '10.1.2.3'], cli),
    ).toBe(EXIT_OK);
    expect(out.join('')).toMatch(/CA written/);
    const dir = path.join(tmp, 'cli-pki');
    for (const key of ['ca.key', 'mesos-agent-1.example.key', 'ctl.key']) {
      expect((await stat(path.join(dir, key))).mode & 0o777).toBe(0o600);
    }
    expect(await verifyCert(dir, path.join(dir, 'mesos-agent-1.example.crt'), 'client')).toMatch(/OK/);
    expect(await verifyCert(dir, path.join(dir, 'ctl.crt'), 'server')).toMatch(/OK/);
    await expect(verifyCert(dir, path.join(dir, 'mesos-agent-1.example.crt'), 'server')).rejects.toThrow();
    const { stdout } = await run('openssl', ['x509', '-in', path.join(dir, 'ctl.crt'), '-noout', '-text']);
    expect(stdout).toMatch(/DNS:ctl, DNS:ctl\.example, IP Address:10\.1\.2\.3/);
    expect(stdout).toMatch(/TLS Web Server Authentication/);
  });

  it('refuses to overwrite a key, bad names and bad SANs (exit 1), and usage errors', async () => {
    const { cli, err } = io();
    expect(await certsCommand.run(['init', '--dir', 'cli-pki2'], cli)).toBe(EXIT_OK);
    expect(await certsCommand.run(['init', '--dir', 'cli-pki2'], cli)).toBe(EXIT_INPUT_ERROR);
    expect(await certsCommand.run(['issue', '--dir', 'cli-pki2', '--name', '../evil'], cli)).toBe(EXIT_INPUT_ERROR);
    expect(await certsCommand.run(['issue', '--dir', 'cli-pki2', '--name', 'h1', '--san', 'DNS:a b\nCN=x'], cli)).toBe(EXIT_INPUT_ERROR);
    expect(err.join('')).toMatch(/exists already[\s\S]*not a usable certificate name[\s\S]*not a DNS name/);
    await expect(certsCommand.run(['issue', '--dir', 'cli-pki2'], cli)).rejects.toThrow(UsageError);
    await expect(certsCommand.run(['bogus'], cli)).rejects.toThrow(UsageError);
    // The failed issue left no key behind, so a retry with a good SAN works.
    expect(await certsCommand.run(['issue', '--dir', 'cli-pki2', '--name', 'h1'], cli)).toBe(EXIT_OK);
  });
});
