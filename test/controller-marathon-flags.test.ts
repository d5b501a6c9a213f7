/**
 * The controller's Marathon flags: credentials from a file (secrets off the command line), token
 * file, CA file, and precise errors for bad combinations.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveMarathonFlags } from '../src/cli/marathon-options.js';

describe('Marathon flags', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pcut-flags-'));
    await writeFile(join(dir, 'cred'), 'svc-portcullis:s3cr:et\n');
    await writeFile(join(dir, 'token'), 'eyJhbGciOi\n');
    await writeFile(join(dir, 'empty'), '\n');
    await writeFile(join(dir, 'ca.pem'), '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads user:password from the credentials file (the password may hold colons)', async () => {
    const r = await resolveMarathonFlags({ urls: ['https://m1:8443', 'https://m2:8443'], credentialsFile: join(dir, 'cred'), caFile: join(dir, 'ca.pem'), relistIntervalSeconds: 30 });
    expect(r.auth).toEqual({ basic: { user: 'svc-portcullis', password: 's3cr:et' } });
    expect(r.tls?.ca).toContain('BEGIN CERTIFICATE');
    expect(r.urls).toEqual(['https://m1:8443', 'https://m2:8443']);
    expect(r.relistIntervalMs).toBe(30_000);
    expect(r.dns).toBe(false);
  });

  it('reads a DC/OS token file and defaults the relist interval to 60 s', async () => {
    const r = await resolveMarathonFlags({ urls: ['http://m:8080'], tokenFile: join(dir, 'token'), dns: true, insecureSkipVerify: true });
    expect(r.auth).toEqual({ token: 'eyJhbGciOi' });
    expect(r.tls).toEqual({ insecureSkipVerify: true });
    expect(r.relistIntervalMs).toBe(60_000);
    expect(r.dns).toBe(true);
  });

  it.each([
    [{ urls: [] }, /--marathon needs a URL/],
    [{ urls: ['marathon:8080'] }, /only http and https/],
    [{ urls: ['not a url'] }, /is not a URL/],
    [{ urls: ['http://u:p@m:8080'] }, /not in the URL/],
    [{ urls: ['http://m'], user: 'u' }, /go together/],
    [{ urls: ['http://m'], user: 'u', password: 'p', tokenFile: '/x' }, /use one of/],
    [{ urls: ['http://m'], credentialsFile: '/nonexistent/cred' }, /cannot read the --marathon-credentials file/],
    [{ urls: ['http://m'], relistIntervalSeconds: 0 }, /--relist-interval must be/],
  ])('rejects %j', async (flags, message) => {
    await expect(resolveMarathonFlags(flags)).rejects.toThrow(message);
  });

  it('rejects an empty credentials file, one without a colon, and a CA file without a certificate', async () => {
    await expect(resolveMarathonFlags({ urls: ['http://m'], credentialsFile: join(dir, 'empty') })).rejects.toThrow(/is empty/);
    await expect(resolveMarathonFlags({ urls: ['http://m'], credentialsFile: join(dir, 'token') })).rejects.toThrow(/must hold user:password/);
    await expect(resolveMarathonFlags({ urls: ['https://m'], caFile: join(dir, 'cred') })).rejects.toThrow(/holds no PEM certificate/);
  });
});
