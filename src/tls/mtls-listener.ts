/**
 * The controller's mTLS listener for the Sync service: our own TLS server in front of grpc-js,
 * so a refused agent is seen, logged and counted (grpc-js does the handshake inside an http2
 * server it never exposes, and drops failed handshakes silently).
 *
 * Contract
 * - TLS 1.2+, ALPN h2, the controller's certificate; every client must present a certificate.
 *   The client certificate is verified by OpenSSL against the CA (`requestCert`), but a failed
 *   verification does not abort the handshake (`rejectUnauthorized: false`) so that this
 *   module learns why: only a socket with `authorized === true` is handed to grpc-js
 *   (`Server.createConnectionInjector`), whose auth context then carries the verified
 *   certificate for the Hello check (src/grpc/agent-session.ts). Nothing of grpc-js, and no
 *   state, is ever reachable over an unverified socket.
 * - A refused client gets a tiny HTTP/2 answer instead of a reset: every stream it opens ends
 *   at once with gRPC status UNAUTHENTICATED and the reason ("certificate not signed by the
 *   cluster CA", ...), so the agent's log says why; the session is closed after the first
 *   answer and the socket destroyed after `refusedLingerMs` whatever the peer does.
 * - Every refusal is recorded in `TlsRefusals` with a bounded reason label; handshakes that
 *   fail before TLS completes (a plaintext client, no common protocol, no ClientHello within
 *   `handshakeTimeoutMs`) are `handshake_failed`; a peer that connects and closes without a word
 *   (a TCP health check) is not a refusal.
 * - Admission (handshake-queue.ts, `--max-handshakes`): TCP connections are accepted by a plain
 *   net server and handed to the TLS server (`'connection'`) when the admission gives them a
 *   handshake slot; a slot is freed by the socket's `secureConnection` or `tlsClientError`,
 *   whichever comes first (one of them always does, the handshake timeout included).
 * - `traffic()` sums what the open agent sessions (verified sockets only) have carried, as their
 *   sockets count it: the replicas benchmark sizes its platform floor by it.
 * - `close()` destroys every connection it accepted, the ones still waiting or in a handshake
 *   included, so a restart on the same port does not wait for agents' half-made connections.
 * - Session resumption (RFC 8446 tickets, Node's default `sessionTimeout`, 300 s): every listener
 *   of this process encrypts its tickets with the same random key, made once per process and
 *   never written anywhere, so an agent reconnecting after its streams dropped (a network blip,
 *   a listener restarted on the same port) resumes without a certificate exchange; after a
 *   process restart every ticket is refused and agents handshake in full. The client identity
 *   of a resumed session is the certificate verified on its full handshake.
 */
import { randomBytes } from 'node:crypto';
import http2 from 'node:http2';
import net, { type AddressInfo } from 'node:net';
import tls from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import type { SyncLogger } from '../grpc/sync-logger.js';
import type { TlsMaterial } from './credentials.js';
import { HandshakeAdmission } from './handshake-queue.js';
import type { RefusalReason, TlsRefusals } from './tls-refusals.js';

export interface MtlsListenerOptions {
  readonly material: TlsMaterial;
  readonly refusals: TlsRefusals;
  readonly logger?: SyncLogger;
  /** How long a refused client's socket may stay open for its answer. Default 5 s. */
  readonly refusedLingerMs?: number;
  /** How many handshakes run at once and how many wait (`--max-handshakes`). Default: no limit. */
  readonly admission?: HandshakeAdmission;
  /** A TLS handshake not done within this long fails (`handshake_failed`) and frees its slot. Default 10 s. */
  readonly handshakeTimeoutMs?: number;
}

/** What the open agent sessions have carried so far, as their sockets count it (plaintext, both ways). */
export interface ListenerTraffic {
  /** Open sockets handed to grpc-js (verified agents). */
  readonly sessions: number;
  readonly bytesWritten: number;
  readonly bytesRead: number;
}

export interface MtlsListener {
  readonly port: number;
  traffic(): ListenerTraffic;
  /** Stops accepting; open agent sessions are grpc-js's (Server.tryShutdown / forceShutdown). */
  close(): Promise<void>;
}

const UNKNOWN_CA = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
]);

/** Why a completed handshake's client certificate is not acceptable (`socket.authorized` false). */
export function classifyUnverified(socket: tls.TLSSocket): { reason: RefusalReason; detail: string } {
  const code = String(socket.authorizationError ?? 'unknown');
  const cert = socket.getPeerCertificate();
  if (!cert || Object.keys(cert).length === 0) return { reason: 'no_client_certificate', detail: 'no client certificate presented' };
  if (UNKNOWN_CA.has(code)) return { reason: 'unknown_ca', detail: `certificate signed by an unknown authority, not the cluster CA (${code})` };
  if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID') return { reason: 'expired', detail: `certificate outside its validity period (${code})` };
  if (code === 'INVALID_PURPOSE') return { reason: 'wrong_purpose', detail: `certificate not usable for client authentication (extendedKeyUsage lacks clientAuth) (${code})` };
  return { reason: 'invalid_certificate', detail: `certificate rejected (${code})` };
}

/** Subject and issuer CN of a presented certificate, for the log line (bounded, untrusted text). */
function certificateFields(socket: tls.TLSSocket): Record<string, string> {
  const cert = socket.getPeerCertificate();
  const cn = (v: unknown): string | undefined => (typeof v === 'string' ? v.slice(0, 200) : Array.isArray(v) ? v.join(',').slice(0, 200) : undefined);
  const subject = cn(cert?.subject?.CN);
  const issuer = cn(cert?.issuer?.CN);
  return { ...(subject !== undefined ? { subject } : {}), ...(issuer !== undefined ? { issuer } : {}) };
}

function peerOf(socket: { remoteAddress?: string | undefined; remotePort?: number | undefined }): string {
  const address = socket.remoteAddress ?? 'unknown';
  return address.includes(':') ? `[${address}]:${socket.remotePort ?? 0}` : `${address}:${socket.remotePort ?? 0}`;
}

/** A client that went away before the handshake said anything: not a refusal. */
function isSilentClose(err: NodeJS.ErrnoException): boolean {
  return err.code === 'ECONNRESET' || err.code === 'EPIPE' || err.code === 'ECONNABORTED' || /socket hang up/i.test(err.message);
}

/** gRPC's percent-encoding of grpc-message: bytes outside printable ASCII, and '%'. */
function grpcMessage(text: string): string {
  let out = '';
  for (const byte of Buffer.from(text, 'utf8')) {
    out += byte < 0x20 || byte > 0x7e || byte === 0x25 ? `%${byte.toString(16).toUpperCase().padStart(2, '0')}` : String.fromCharCode(byte);
  }
  return out;
}

/** Answers every stream of a refused client with UNAUTHENTICATED and the reason, then closes. */
function refusalAnswerer(): http2.Http2Server {
  const server = http2.createServer({ settings: { maxConcurrentStreams: 4 }, maxSessionMemory: 1 });
  server.on('stream', (stream) => {
    const socket = stream.session?.socket as tls.TLSSocket | undefined;
    const detail = socket ? classifyUnverified(socket).detail : 'certificate refused';
    const message = `the controller refused this agent's TLS certificate: ${detail}`;
    stream.on('error', () => undefined);
    stream.respond(
      { ':status': 200, 'content-type': 'application/grpc', 'grpc-status': String(grpc.status.UNAUTHENTICATED), 'grpc-message': grpcMessage(message) },
      { endStream: true },
    );
    stream.session?.close();
  });
  server.on('sessionError', () => undefined);
  return server;
}

/** This process's ticket key (see the header): 48 bytes, as `tls.Server` wants. */
const TICKET_KEYS = randomBytes(48);

export async function listenMtls(server: grpc.Server, host: string, port: number, options: MtlsListenerOptions): Promise<MtlsListener> {
  const { material, refusals, logger } = options;
  const linger = options.refusedLingerMs ?? 5000;
  const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  const answerer = refusalAnswerer();
  const admission = options.admission ?? new HandshakeAdmission({ maxInFlight: 0, maxQueued: 0 });
  const tlsServer = tls.createServer({
    handshakeTimeout: options.handshakeTimeoutMs ?? 10_000,
    ca: material.ca,
    cert: material.cert,
    key: material.key,
    requestCert: true,
    rejectUnauthorized: false,
    minVersion: 'TLSv1.2',
    ALPNProtocols: ['h2'],
    ticketKeys: TICKET_KEYS,
  });
  const open = new Set<tls.TLSSocket>();
  const accepted = new Set<net.Socket>();
  /** Handshakes over (their slot freed): one of secureConnection / tlsClientError per socket. */
  const ended = new WeakSet<tls.TLSSocket>();
  const handshakeEnded = (socket: tls.TLSSocket): void => {
    if (ended.has(socket)) return;
    ended.add(socket);
    admission.handshakeEnded();
  };
  admission.attach((socket) => tlsServer.emit('connection', socket));
  const listener = net.createServer((socket) => {
    accepted.add(socket);
    socket.once('close', () => accepted.delete(socket));
    admission.offer(socket);
  });
  tlsServer.on('secureConnection', (socket: tls.TLSSocket) => {
    handshakeEnded(socket);
    open.add(socket);
    socket.once('close', () => open.delete(socket));
    if (socket.authorized) {
      injector.injectConnection(socket);
      return;
    }
    const { reason, detail } = classifyUnverified(socket);
    refusals.record({ peer: peerOf(socket), reason, detail }, certificateFields(socket));
    socket.on('error', () => undefined);
    const timer = setTimeout(() => socket.destroy(), linger);
    timer.unref();
    socket.once('close', () => clearTimeout(timer));
    answerer.emit('connection', socket);
  });
  tlsServer.on('tlsClientError', (err: NodeJS.ErrnoException, socket: tls.TLSSocket) => {
    handshakeEnded(socket);
    const peer = peerOf(socket);
    if (isSilentClose(err)) {
      logger?.debug({ peer, error: err.message }, 'tls: client closed before the handshake completed');
      return;
    }
    refusals.record({ peer, reason: 'handshake_failed', detail: `TLS handshake failed: ${err.message.trim().slice(0, 300)}` });
  });
  await new Promise<void>((resolve, reject) => {
    listener.once('error', reject);
    listener.listen(port, host, () => {
      listener.off('error', reject);
      resolve();
    });
  });
  listener.on('error', (err) => logger?.warn({ error: err.message }, 'tls: listener error'));
  return {
    port: (listener.address() as AddressInfo).port,
    traffic: () => {
      let sessions = 0;
      let bytesWritten = 0;
      let bytesRead = 0;
      for (const socket of open) {
        if (!socket.authorized) continue; // a refused socket lingering for its answer
        sessions++;
        bytesWritten += socket.bytesWritten;
        bytesRead += socket.bytesRead;
      }
      return { sessions, bytesWritten, bytesRead };
    },
    close: () =>
      new Promise<void>((resolve) => {
        injector.destroy();
        answerer.close();
        admission.close();
        listener.close(() => resolve());
        for (const socket of open) socket.destroy();
        for (const socket of accepted) socket.destroy();
      }),
  };
}
