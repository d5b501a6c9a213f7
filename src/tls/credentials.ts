/**
 * mTLS credentials for the Sync stream from PEM files: the controller requires a client
 * certificate signed by the CA (`checkClientCertificate`), the agent presents its host
 * certificate and trusts only that CA. Identity checks on top (host id = certificate name) are
 * the Sync service's (src/grpc/agent-session.ts).
 */
import { readFile } from 'node:fs/promises';
import { createSecureContext } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { AgentChannelCredentials } from './agent-channel-credentials.js';

export interface TlsFiles {
  /** CA certificate(s) that sign the peer's certificate. */
  readonly caFile: string;
  /** This side's certificate (chain), PEM. */
  readonly certFile: string;
  /** This side's private key, PEM. */
  readonly keyFile: string;
}

export interface TlsMaterial {
  readonly ca: Buffer;
  readonly cert: Buffer;
  readonly key: Buffer;
}

export class TlsConfigError extends Error {}

export async function readTlsFiles(files: TlsFiles): Promise<TlsMaterial> {
  const read = async (label: string, file: string): Promise<Buffer> => {
    try {
      return await readFile(file);
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      throw new TlsConfigError(`cannot read the TLS ${label} file ${file}: ${reason}`);
    }
  };
  // In order, so the first missing file named is always the same one.
  const ca = await read('CA', files.caFile);
  const cert = await read('certificate', files.certFile);
  const key = await read('key', files.keyFile);
  return { ca, cert, key };
}

export function serverCredentialsFrom(material: TlsMaterial): grpc.ServerCredentials {
  return grpc.ServerCredentials.createSsl(material.ca, [{ cert_chain: material.cert, private_key: material.key }], true);
}

/** See agent-channel-credentials.ts: never an IP address as TLS server name (DEP0123). */
export function clientCredentialsFrom(material: TlsMaterial): grpc.ChannelCredentials {
  return new AgentChannelCredentials(createSecureContext({ ca: material.ca, key: material.key, cert: material.cert }));
}

/** Agent side: presents the host certificate, trusts only the given CA. */
export async function loadClientCredentials(files: TlsFiles): Promise<grpc.ChannelCredentials> {
  return clientCredentialsFrom(await readTlsFiles(files));
}
