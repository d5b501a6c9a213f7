/**
 * The agent's TLS client credentials for grpc-js, doing the handshake themselves.
 *
 * Why: grpc-js's own SSL credentials always set the TLS server name (SNI) to the host of the
 * target, an IP address too, which RFC 6066 forbids and Node answers with a `DEP0123` warning on
 * every agent start dialing `--controller 10.0.0.5:7443`. Here:
 * - the name checked is `grpc.ssl_target_name_override` (`--server-name`) when set, else the
 *   host the agent dials, a DNS name or an IP address;
 * - SNI carries that name only when it is a DNS name; an IP is never sent as a server name;
 * - the controller's certificate must chain to the CA and name it: a DNS name matches a DNS
 *   subjectAltName, an IP address an IP subjectAltName (Node's `tls.checkServerIdentity`);
 * - ALPN `h2`, and the client certificate is presented from the same secure context.
 * The connector is grpc-js's `SecureConnector` contract (grpc.experimental), the one its own
 * credentials implement.
 *
 * Abandoned handshakes: grpc-js does not stop a TLS handshake in progress when its channel is
 * closed (it finishes it, then drops the connection), so a replica would complete the handshake
 * of every agent that gave up on it. It does destroy the connector of a subchannel no channel
 * uses any more (at once when the sync client closes the channel it leaves), and that destroys
 * the connector's handshakes in progress: a replica that queues handshakes
 * (src/tls/handshake-queue.ts) then drops the connection at no cost.
 *
 * Cheaper handshakes (a storm of reconnects is paid in handshakes, on every agent and replica):
 * - Resumption: the last TLS session ticket a replica gave is kept per (target, checked name) and
 *   offered on the next connection there (RFC 8446 PSK resumption): the replica skips its
 *   certificate and signature and the agent its chain check while the ticket is valid (the
 *   replica's `sessionTimeout`); the identity is the one checked on the full handshake, which
 *   the replica keeps with the session (its host-name check still reads the client certificate).
 * - Node's TLS client builds the detailed peer chain (`getPeerCertificate(true)`, ~0.9 ms) only
 *   to hand it to `checkServerIdentity`, which reads the leaf's subject and subjectAltName: during
 *   the handshake the socket answers with the leaf alone (~70 µs); afterwards the method is
 *   Node's own again.
 *
 * Queued, not lost: `handshaking(target)` says whether a connection to that channel target is
 * up (TCP connected, ClientHello sent) and its TLS handshake not done yet. The replica is then
 * alive and has the connection, probably waiting in its handshake queue during a storm; the
 * sync client keeps such a connection past its connect deadline instead of giving up its place
 * (agent/sync-client.ts).
 */
import { isIP } from 'node:net';
import tls from 'node:tls';
import * as grpc from '@grpc/grpc-js';

type SecureConnector = grpc.experimental.SecureConnector;
type SecureConnectResult = grpc.experimental.SecureConnectResult;

/** Host part of a grpc-js target path (`host:port`, `[v6]:port`, `ipv4:a,b` lists take the first). */
export function targetHost(targetPath: string): string {
  const first = targetPath.split(',')[0] ?? targetPath;
  return grpc.experimental.splitHostPort(first)?.host ?? first;
}

/** The name the controller's certificate must carry, and whether it goes out as SNI. */
export function serverIdentity(targetPath: string, override: unknown): { readonly name: string; readonly sni: string | undefined } {
  const name = typeof override === 'string' && override !== '' ? override : targetHost(targetPath);
  return { name, sni: isIP(name) === 0 ? name : undefined };
}

export class AgentChannelCredentials extends grpc.ChannelCredentials {
  /** Handshakes in progress per channel target path (every connector made from these credentials). */
  private readonly inProgress = new Map<string, number>();
  /** The newest TLS session per target path and checked name, offered on the next connection (see the header). */
  private readonly sessions = new Map<string, Buffer>();
  private full = 0;
  private resumed = 0;

  constructor(private readonly context: tls.SecureContext) {
    super();
  }

  /** Handshakes completed with these credentials: in full, or resumed from a session ticket. */
  handshakes(): { readonly full: number; readonly resumed: number } {
    return { full: this.full, resumed: this.resumed };
  }

  /** A TCP connection to `target` (a channel target path, `host:port`) is up and its TLS handshake is in progress. */
  handshaking(target: string): boolean {
    return (this.inProgress.get(target) ?? 0) > 0;
  }

  private count(target: string, by: 1 | -1): void {
    const n = (this.inProgress.get(target) ?? 0) + by;
    if (n > 0) this.inProgress.set(target, n);
    else this.inProgress.delete(target);
  }

  _isSecure(): boolean {
    return true;
  }

  _equals(other: grpc.ChannelCredentials): boolean {
    return other === this;
  }

  _createSecureConnector(
    channelTarget: grpc.experimental.GrpcUri,
    options: grpc.ChannelOptions,
    callCredentials?: grpc.CallCredentials,
  ): SecureConnector {
    // Through an HTTP CONNECT proxy grpc-js passes the proxy as the target, the real one here.
    const proxied = options['grpc.http_connect_target'];
    const targetPath = typeof proxied === 'string' ? proxied.replace(/^[a-z][a-z0-9+.-]*:(\/\/[^/]*\/)?/i, '') : channelTarget.path;
    const { name, sni } = serverIdentity(targetPath, options['grpc.ssl_target_name_override']);
    const sessionKey = `${targetPath}\n${name}`;
    const context = this.context;
    const calls = callCredentials ?? grpc.CallCredentials.createEmpty();
    /** This connector's TLS handshakes in progress (destroyed with it). */
    const handshaking = new Set<tls.TLSSocket>();
    const ended = (secured: tls.TLSSocket): void => {
      if (handshaking.delete(secured)) this.count(targetPath, -1);
    };
    return {
      connect: (socket) =>
        new Promise<SecureConnectResult>((resolve, reject) => {
          const secured = tls.connect(
            {
              socket,
              secureContext: context,
              ALPNProtocols: ['h2'],
              host: name,
              ...(sni !== undefined ? { servername: sni } : {}),
              ...(this.sessions.has(sessionKey) ? { session: this.sessions.get(sessionKey) } : {}),
              checkServerIdentity: (_host, cert) => tls.checkServerIdentity(name, cert),
            },
            () => {
              ended(secured);
              restoreGetPeerCertificate(secured);
              if (secured.isSessionReused()) this.resumed += 1;
              else this.full += 1;
              if (!secured.authorized) {
                reject(secured.authorizationError);
                return;
              }
              resolve({ socket: secured, secure: true });
            },
          );
          leafOnlyDuringHandshake(secured);
          secured.on('session', (session: Buffer) => this.sessions.set(sessionKey, session));
          handshaking.add(secured);
          this.count(targetPath, 1);
          secured.on('error', (err) => {
            ended(secured);
            reject(err);
          });
          secured.once('close', () => {
            ended(secured);
            reject(new Error('TLS handshake abandoned'));
          });
        }),
      waitForReady: () => Promise.resolve(),
      getCallCredentials: () => calls,
      destroy: () => {
        for (const socket of handshaking) socket.destroy();
      },
    };
  }
}

/** See the header: Node's own check reads only the leaf's names, so it is given the leaf alone. */
function leafOnlyDuringHandshake(socket: tls.TLSSocket): void {
  const own = tls.TLSSocket.prototype.getPeerCertificate;
  Object.defineProperty(socket, 'getPeerCertificate', { configurable: true, writable: true, value: () => own.call(socket, false) });
}

function restoreGetPeerCertificate(socket: tls.TLSSocket): void {
  delete (socket as { getPeerCertificate?: unknown }).getPeerCertificate;
}
