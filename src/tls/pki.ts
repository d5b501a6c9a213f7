/**
 * A small private CA for the Sync stream's mTLS, made with the `openssl` binary.
 *
 * Contract: child processes only via execFile with argument arrays (never a shell); every name
 * that reaches an openssl config file is validated first (no separators, no newlines). Private
 * keys never touch the disk with loose permissions: openssl prints them to a pipe and they are
 * written here with mode 0600 (`wx`, so an existing key is never silently replaced).
 * Layout of a PKI directory: ca.key, ca.crt, and <name>.key / <name>.crt per issued certificate.
 * Host (agent) certificates: CN = SAN = host id, extendedKeyUsage clientAuth. `server`
 * (controller) certificates: extendedKeyUsage serverAuth and clientAuth (a replica presents it
 * as a client to its peers' Peers.QueryFlows, proto/portcullis/v1/sync.proto), SANs as given;
 * `clientAuth: false` makes the serverAuth-only certificate of releases before peer queries.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, unlink, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TlsFiles } from './credentials.js';

export class PkiError extends Error {}

export interface IssuedFiles {
  readonly certFile: string;
  readonly keyFile: string;
}

export interface InitCaOptions {
  readonly commonName?: string;
  readonly days?: number;
  /** Replace an existing CA (every certificate it signed stops being trusted). */
  readonly force?: boolean;
}

export interface IssueOptions {
  /** Host id (agent certificate) or controller name; also the file name stem. */
  readonly name: string;
  /** A controller (TLS server) certificate rather than an agent (client) one. */
  readonly server?: boolean;
  /**
   * A server certificate also usable as a TLS client (to query peer replicas). Default true;
   * false: serverAuth only (as controller certificates were before peer queries).
   */
  readonly clientAuth?: boolean;
  /** Extra subjectAltNames: `DNS:name`, `IP:addr`, or a bare name/address. */
  readonly sans?: readonly string[];
  readonly days?: number;
  /** Replace an existing certificate and key of that name. */
  readonly force?: boolean;
}

export const caFiles = (dir: string): IssuedFiles => ({
  certFile: path.join(dir, 'ca.crt'),
  keyFile: path.join(dir, 'ca.key'),
});

export const issuedFiles = (dir: string, name: string): IssuedFiles => ({
  certFile: path.join(dir, `${name}.crt`),
  keyFile: path.join(dir, `${name}.key`),
});

const NAME = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,252}$/;
const DNS_NAME = /^(\*\.)?[A-Za-z0-9_]([A-Za-z0-9_.-]{0,252})$/;
const CA_NAME = /^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$/;

/** Undefined when `name` can be a certificate name and a file name; else why not. */
export function certNameProblem(name: string): string | undefined {
  if (!NAME.test(name) || name === 'ca') {
    return `'${name}' is not a usable certificate name (letters, digits, '.', '_', ':', '-'; not 'ca')`;
  }
  return undefined;
}

/** `DNS:x` / `IP:x` / bare (an address becomes IP, anything else DNS), validated. */
export function parseSan(entry: string): string {
  const match = /^(DNS|IP):(.*)$/i.exec(entry);
  const type = match ? (match[1] ?? '').toUpperCase() : isIP(entry) ? 'IP' : 'DNS';
  const value = match ? (match[2] ?? '') : entry;
  if (type === 'IP' && isIP(value) === 0) throw new PkiError(`subjectAltName '${entry}': '${value}' is not an IP address`);
  if (type === 'DNS' && !DNS_NAME.test(value)) throw new PkiError(`subjectAltName '${entry}': '${value}' is not a DNS name`);
  return `${type}:${value}`;
}

/** Creates `dir` (0700) if needed, then ca.key (0600) and a self-signed ca.crt. */
export async function initCa(dir: string, options: InitCaOptions = {}): Promise<IssuedFiles> {
  const commonName = options.commonName ?? 'Portcullis CA';
  if (!CA_NAME.test(commonName)) throw new PkiError(`'${commonName}' is not a usable CA name`);
  const files = caFiles(dir);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeKey(files.keyFile, options.force ?? false);
  await removeKeyOnFailure(files.keyFile, () => withTempDir(async (tmp) => {
    const config = path.join(tmp, 'ca.cnf');
    await writeFile(config, [
      '[req]', 'distinguished_name = dn', 'prompt = no', 'x509_extensions = v3_ca',
      '[dn]', `CN = ${commonName}`,
      '[v3_ca]', 'basicConstraints = critical, CA:TRUE, pathlen:0', 'keyUsage = critical, keyCertSign, cRLSign',
      'subjectKeyIdentifier = hash', '',
    ].join('\n'));
    await openssl(['req', '-x509', '-new', '-config', config, '-key', files.keyFile, '-sha256',
      '-days', String(options.days ?? 3650), '-set_serial', serial(), '-out', files.certFile]);
  }));
  return files;
}

export async function issueCert(dir: string, options: IssueOptions): Promise<IssuedFiles> {
  const problem = certNameProblem(options.name);
  if (problem) throw new PkiError(problem);
  const sans = [...new Set([parseSan(options.name), ...(options.sans ?? []).map(parseSan)])];
  const ca = caFiles(dir);
  const files = issuedFiles(dir, options.name);
  await writeKey(files.keyFile, options.force ?? false);
  await removeKeyOnFailure(files.keyFile, () => withTempDir(async (tmp) => {
    const reqConfig = path.join(tmp, 'req.cnf');
    const extConfig = path.join(tmp, 'ext.cnf');
    const csr = path.join(tmp, 'cert.csr');
    await writeFile(reqConfig, ['[req]', 'distinguished_name = dn', 'prompt = no', '[dn]', `CN = ${options.name}`, ''].join('\n'));
    await writeFile(extConfig, [
      '[leaf]', 'basicConstraints = critical, CA:FALSE', 'keyUsage = critical, digitalSignature, keyEncipherment',
      `extendedKeyUsage = ${extendedKeyUsage(options)}`,
      `subjectAltName = ${sans.join(', ')}`, 'subjectKeyIdentifier = hash', 'authorityKeyIdentifier = keyid', '',
    ].join('\n'));
    await openssl(['req', '-new', '-config', reqConfig, '-key', files.keyFile, '-sha256', '-out', csr]);
    await openssl(['x509', '-req', '-in', csr, '-CA', ca.certFile, '-CAkey', ca.keyFile, '-set_serial', serial(),
      '-sha256', '-days', String(options.days ?? 825), '-extfile', extConfig, '-extensions', 'leaf', '-out', files.certFile]);
  }));
  return files;
}

function extendedKeyUsage(options: IssueOptions): string {
  if (!options.server) return 'clientAuth';
  return options.clientAuth === false ? 'serverAuth' : 'serverAuth, clientAuth';
}

/** `openssl verify` of a certificate against the directory's CA, for a TLS role. */
export async function verifyCert(dir: string, certFile: string, role: 'client' | 'server'): Promise<string> {
  return openssl(['verify', '-CAfile', caFiles(dir).certFile, '-purpose', role === 'client' ? 'sslclient' : 'sslserver', certFile]);
}

export interface TestPki {
  readonly dir: string;
  readonly caFile: string;
  /** The CA plus `name`'s certificate and key, ready for src/tls/credentials. */
  files(name: string): TlsFiles;
}

/**
 * A CA, a client certificate per host and a server certificate per controller name (valid for
 * that name, localhost, 127.0.0.1 and ::1), for tests. `controllerNames` get serverAuth only
 * (a controller certificate made before peer queries: it cannot act as a client at all);
 * `peerControllerNames` get serverAuth and clientAuth, as `portcullis certs issue --server` issues.
 */
export async function makeTestPki(
  dir: string,
  spec: { readonly hosts: readonly string[]; readonly controllerNames: readonly string[]; readonly peerControllerNames?: readonly string[] },
): Promise<TestPki> {
  await initCa(dir, { commonName: 'Portcullis test CA', days: 2 });
  const controller = (name: string, clientAuth: boolean) => issueCert(dir, { name, server: true, clientAuth, sans: ['localhost', '127.0.0.1', '::1'], days: 2 });
  await Promise.all([
    ...spec.hosts.map((name) => issueCert(dir, { name, days: 2 })),
    ...spec.controllerNames.map((name) => controller(name, false)),
    ...(spec.peerControllerNames ?? []).map((name) => controller(name, true)),
  ]);
  const caFile = caFiles(dir).certFile;
  return {
    dir,
    caFile,
    files: (name) => {
      const { certFile, keyFile } = issuedFiles(dir, name);
      return { caFile, certFile, keyFile };
    },
  };
}

function serial(): string {
  // Positive 127-bit serial: random, so no serial file and no collisions between issuers.
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] ?? 0) & 0x7f;
  return `0x${bytes.toString('hex')}`;
}

async function writeKey(keyFile: string, force: boolean): Promise<void> {
  const pem = await openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256']);
  if (force) await unlink(keyFile).catch(() => undefined);
  try {
    await writeFile(keyFile, pem, { mode: 0o600, flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new PkiError(`${keyFile} exists already (use --force to replace it)`);
    }
    throw err;
  }
}

/** A key whose certificate could not be made is removed, so a retry does not hit EEXIST. */
async function removeKeyOnFailure(keyFile: string, body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (err) {
    await unlink(keyFile).catch(() => undefined);
    throw err;
  }
}

async function withTempDir<T>(body: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(path.join(tmpdir(), 'portcullis-pki-'));
  try {
    return await body(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function openssl(args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('openssl', args, { encoding: 'utf8', maxBuffer: 1 << 20, timeout: 30_000 }, (err, stdout, stderr) => {
      if (err) {
        const code = (err as NodeJS.ErrnoException).code;
        const detail = code === 'ENOENT' ? 'the openssl binary is not installed' : (stderr.trim() || err.message);
        reject(new PkiError(`openssl ${args[0] ?? ''} failed: ${detail}`));
        return;
      }
      resolve(stdout);
    });
  });
}
