/**
 * mTLS of the Sync stream with certificates made by `portcullis certs` / makeTestPki (real
 * openssl, real TLS on loopback): only clients with a certificate of our CA get in, and a host
 * certificate only ever obtains that host's state.
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
import { EXIT_INPUT_ERROR, EXIT_OK, UsageError, type CliIO } from '../src/cli/command.js';
import { SyncService } from '../src/grpc/sync-service.js';
import { loadClientCredentials, loadServerCredentials, readTlsFiles } from '../src/tls/credentials.js';
import { makeTestPki, verifyCert, type TestPki } from '../src/tls/pki.js';
import { openRawStream, startServer, stopServer, waitFor, type RawStream, type RunningServer } from './support/grpc-harness.js';
import { MemoryStateSource, nthState } from './support/memory-state-source.js';

const run = promisify(execFile);
/** Connect to 127.0.0.1 but check (and send SNI for) the certificate's DNS name. */
const TLS_NAME = { 'grpc.ssl_target_name_override': 'localhost' };
let tmp: string;
let pki: TestPki;
let foreign: TestPki;
let running: RunningServer;
let service: SyncService;
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
  service = new SyncService(source);
  running = await startServer((server) => service.addToServer(server), await loadServerCredentials(pki.files('controller')));
});

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

afterAll(async () => {
  service?.close();
  stopServer(running);
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

function raw(credentials: grpc.ChannelCredentials): RawStream {
  const stream = openRawStream(running.target, credentials, TLS_NAME);
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
      target: running.target,
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
  });

  it('refuses a client certificate signed by another CA', async () => {
    const stream = raw(await clientCredentialsWith(foreign, 'host-a'));
    stream.send({ hello: { hostId: 'host-a', addresses: [], agentVersion: 'x', appliedVersion: '' } });
    await waitFor('call failed', () => stream.status !== undefined);
    expect(stream.status?.code).toBe(grpc.status.UNAVAILABLE);
    expect(stream.messages).toEqual([]);
  });

  it('refuses a client without a certificate', async () => {
    const ca = (await readTlsFiles(pki.files('controller'))).ca;
    const stream = raw(grpc.credentials.createSsl(ca));
    stream.send({ hello: { hostId: 'host-a', addresses: [], agentVersion: 'x', appliedVersion: '' } });
    await waitFor('call failed', () => stream.status !== undefined);
    expect(stream.status?.code).toBe(grpc.status.UNAVAILABLE);
    expect(stream.messages).toEqual([]);
  });

  it("rejects host A's certificate saying Hello as host B, and never sends B's state", async () => {
    const stream = raw(await clientCredentialsWith(pki, 'host-a'));
    stream.send({ hello: { hostId: 'host-b', addresses: [], agentVersion: 'x', appliedVersion: '' } });
    await waitFor('call ended', () => stream.status !== undefined);
    expect(stream.status?.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(stream.messages.map((m) => m.msg)).toEqual(['rejected']);
    expect(stream.messages[0]?.rejected?.reason).toMatch(/host-a.*host-b/);
    expect(service.agent('host-b')).toBeUndefined();
  });

  it('a controller certificate cannot act as an agent (serverAuth only)', async () => {
    const stream = raw(await clientCredentialsWith(pki, 'controller'));
    stream.send({ hello: { hostId: 'controller', addresses: [], agentVersion: 'x', appliedVersion: '' } });
    await waitFor('call failed', () => stream.status !== undefined);
    expect(stream.status?.code).toBe(grpc.status.UNAVAILABLE);
    expect(stream.messages).toEqual([]);
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
