/**
 * Fast issuance of many agent (client) certificates for the fanout benchmark, in process with
 * node:crypto: a P-256 key per agent and an X.509 v3 certificate signed (ECDSA-SHA256) by the
 * benchmark's CA, which src/tls/pki.ts made with openssl. Node has no X.509 issuance API, so the
 * certificate is DER-encoded here; one certificate takes well under a millisecond, where
 * pki.ts's three openssl processes per certificate would take minutes for 5,000 agents.
 *
 * The profile is pki.ts's host-certificate profile: subject CN = host id, subjectAltName
 * DNS:<host id>, basicConstraints CA:FALSE (critical), keyUsage digitalSignature+keyEncipherment
 * (critical), extendedKeyUsage clientAuth, subjectKeyIdentifier (SHA-1 of the public key, as
 * openssl's `hash`) and authorityKeyIdentifier = the CA's subjectKeyIdentifier; random positive
 * 127-bit serial. bench-fanout.ts checks one with `openssl verify -purpose sslclient`, and the
 * controller's TLS stack verifies every one of them on connect.
 */
import { createHash, createPrivateKey, generateKeyPairSync, randomBytes, sign, X509Certificate, type KeyObject } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { caFiles, makeTestPki, verifyCert, type TestPki } from '../../src/tls/pki.js';
import { log } from './figures.js';

// ---- minimal DER ----

function length(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

function tlv(tag: number, content: Buffer): Buffer {
  return Buffer.concat([Buffer.from([tag]), length(content.length), content]);
}

const seq = (...items: Buffer[]): Buffer => tlv(0x30, Buffer.concat(items));
const set = (...items: Buffer[]): Buffer => tlv(0x31, Buffer.concat(items));
const octets = (b: Buffer): Buffer => tlv(0x04, b);
const bits = (b: Buffer, unused = 0): Buffer => tlv(0x03, Buffer.concat([Buffer.from([unused]), b]));
const utf8 = (s: string): Buffer => tlv(0x0c, Buffer.from(s, 'utf8'));
const explicit = (n: number, content: Buffer): Buffer => tlv(0xa0 | n, content);
const TRUE = Buffer.from([0x01, 0x01, 0xff]);

function integer(b: Buffer): Buffer {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0 && (b[i + 1]! & 0x80) === 0) i++;
  const v = b.subarray(i);
  return tlv(0x02, (v[0]! & 0x80) !== 0 ? Buffer.concat([Buffer.from([0]), v]) : v);
}

function oid(dotted: string): Buffer {
  const parts = dotted.split('.').map(Number);
  const out: number[] = [40 * parts[0]! + parts[1]!];
  for (const p of parts.slice(2)) {
    const chunk: number[] = [p & 0x7f];
    for (let v = Math.floor(p / 128); v > 0; v = Math.floor(v / 128)) chunk.unshift(0x80 | (v & 0x7f));
    out.push(...chunk);
  }
  return tlv(0x06, Buffer.from(out));
}

function utcTime(d: Date): Buffer {
  const p = (n: number) => String(n).padStart(2, '0');
  const text = `${p(d.getUTCFullYear() % 100)}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}Z`;
  return tlv(0x17, Buffer.from(text, 'ascii'));
}

interface Tlv {
  readonly tag: number;
  /** The whole element (tag, length, content). */
  readonly raw: Buffer;
  readonly content: Buffer;
}

/** The elements of a constructed DER value's content, in order. */
function children(content: Buffer): Tlv[] {
  const out: Tlv[] = [];
  let i = 0;
  while (i < content.length) {
    const tag = content[i]!;
    let len = content[i + 1]!;
    let header = 2;
    if (len & 0x80) {
      const n = len & 0x7f;
      len = 0;
      for (let k = 0; k < n; k++) len = len * 256 + content[i + 2 + k]!;
      header += n;
    }
    out.push({ tag, raw: content.subarray(i, i + header + len), content: content.subarray(i + header, i + header + len) });
    i += header + len;
  }
  return out;
}

/** SHA-1 of the subjectPublicKey BIT STRING value (RFC 5280 4.2.1.2 method 1, openssl's `hash`). */
function keyIdentifier(publicKey: KeyObject): Buffer {
  const spki = children(publicKey.export({ type: 'spki', format: 'der' }))[0]!;
  const bitString = children(spki.content)[1]!;
  return createHash('sha1').update(bitString.content.subarray(1)).digest();
}

// ---- issuer ----

const OID = {
  ecdsaSha256: '1.2.840.10045.4.3.2',
  commonName: '2.5.4.3',
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  authorityKeyIdentifier: '2.5.29.35',
  extKeyUsage: '2.5.29.37',
  clientAuth: '1.3.6.1.5.5.7.3.2',
};

const extension = (id: string, critical: boolean, value: Buffer): Buffer =>
  seq(oid(id), ...(critical ? [TRUE] : []), octets(value));

export interface IssuedAgentCert {
  readonly certPem: string;
  readonly keyPem: string;
}

export class AgentCertIssuer {
  private readonly caKey: KeyObject;
  private readonly issuerName: Buffer;
  private readonly caKeyId: Buffer;

  constructor(caCertPem: string | Buffer, caKeyPem: string | Buffer) {
    const ca = new X509Certificate(caCertPem);
    this.caKey = createPrivateKey(caKeyPem);
    // Certificate → tbsCertificate → [version, serial, signature, issuer, validity, subject, ...]
    const tbs = children(children(ca.raw)[0]!.content)[0]!;
    const fields = children(tbs.content);
    const offset = fields[0]!.tag === 0xa0 ? 1 : 0;
    this.issuerName = fields[offset + 4]!.raw;
    this.caKeyId = keyIdentifier(ca.publicKey);
  }

  /** A fresh P-256 key and a client certificate for `hostId` (CN and DNS SAN), valid `days`. */
  issue(hostId: string, days = 2): IssuedAgentCert {
    const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const serial = randomBytes(16);
    serial[0] = (serial[0]! & 0x7f) | 0x01;
    const now = Date.now();
    const algorithm = seq(oid(OID.ecdsaSha256));
    const subject = seq(set(seq(oid(OID.commonName), utf8(hostId))));
    const tbs = seq(
      explicit(0, integer(Buffer.from([2]))),
      integer(serial),
      algorithm,
      this.issuerName,
      seq(utcTime(new Date(now - 60_000)), utcTime(new Date(now + days * 86_400_000))),
      subject,
      publicKey.export({ type: 'spki', format: 'der' }),
      explicit(3, seq(
        extension(OID.basicConstraints, true, seq()),
        extension(OID.keyUsage, true, bits(Buffer.from([0xa0]), 5)),
        extension(OID.extKeyUsage, false, seq(oid(OID.clientAuth))),
        extension(OID.subjectAltName, false, seq(tlv(0x82, Buffer.from(hostId, 'ascii')))),
        extension(OID.subjectKeyIdentifier, false, octets(keyIdentifier(publicKey))),
        extension(OID.authorityKeyIdentifier, false, seq(tlv(0x80, this.caKeyId))),
      )),
    );
    const signature = sign('sha256', tbs, this.caKey);
    const der = seq(tbs, algorithm, bits(signature));
    const b64 = der.toString('base64').replace(/.{1,64}/g, '$&\n');
    return {
      certPem: `-----BEGIN CERTIFICATE-----\n${b64}-----END CERTIFICATE-----\n`,
      keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    };
  }
}

/**
 * The benchmark's PKI under `dir`: CA and controller certificate (names `localhost`, made by
 * pki.ts with openssl), and one agent certificate of this file checked by `openssl verify
 * -purpose sslclient`, as pki.ts's own host certificates are.
 */
export async function benchPki(dir: string): Promise<{ pki: TestPki; caKeyFile: string }> {
  const t = performance.now();
  const pki = await makeTestPki(path.join(dir, 'pki'), { hosts: [], controllerNames: ['controller'] });
  log(`CA and controller certificate (openssl): ${(performance.now() - t).toFixed(0)} ms`);
  const caKeyFile = caFiles(pki.dir).keyFile;
  const sample = new AgentCertIssuer(await readFile(pki.caFile), await readFile(caKeyFile)).issue('sample-host');
  const sampleFile = path.join(dir, 'sample-host.crt');
  await writeFile(sampleFile, sample.certPem);
  await verifyCert(pki.dir, sampleFile, 'client');
  return { pki, caKeyFile };
}
