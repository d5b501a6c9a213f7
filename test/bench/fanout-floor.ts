/**
 * The platform's floor for the fanout memory figure: what an idle HTTP/2-over-mTLS connection
 * costs a bare Node server (node:http2, no grpc-js, no Portcullis), measured the same way as the
 * controller (RSS and V8 heap + external after a forced GC, before and after, over the count),
 * and the bare server's CPU per session (its TLS handshakes and HTTP/2 session setup: the floor of
 * a replica's CPU per agent connecting).
 *
 * `measureTlsFloor` forks this file as the server (a process of its own, so nothing else is in
 * its memory) and opens `count` client sessions to it from the calling process, each with its own
 * host certificate of the benchmark CA, as the agents do. Server mode: `node fanout-floor.js
 * --server <cert> <key> <ca> <streamBytes>`, IPC: sends {port}, answers 'measure' with the figures.
 *
 * With `streamBytes` > 0 each session also carries what an agent's Sync stream does: one stream
 * that stays open, on which the server has written `streamBytes` bytes of DATA (the client
 * reads them all before the measure). A bare node:http2 server's RSS per session grows with
 * what its sessions have written (buffers of the TLS and HTTP/2 layers that stay with the
 * session: on this machine, 74 KB idle, ~86 KB after 5 KB, ~116 KB after 40 KB), so the
 * replicas' figure is also given against this floor at the bytes their agents were sent.
 */
import { fork } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http2 from 'node:http2';
import { fileURLToPath } from 'node:url';
import { AgentCertIssuer } from './fanout-certs.js';
import { waitUntil } from './stats.js';

export interface FloorFigures {
  readonly sessions: number;
  readonly rssPerConnKB: number;
  readonly heapPerConnKB: number;
  /** The bare server's CPU (user + system) from listening to the measure, over the sessions: its handshakes. */
  readonly cpuPerConnMs: number;
  /** What the server's sockets wrote per session, as they count it (socket.bytesWritten). */
  readonly bytesWrittenPerConn: number;
}

interface ServerReply {
  readonly port?: number;
  readonly figures?: FloorFigures;
}

function runServer(certFile: string, keyFile: string, caFile: string, streamBytes: number): void {
  const gc = (globalThis as { gc?: () => void }).gc ?? (() => undefined);
  const server = http2.createSecureServer({
    cert: readFileSync(certFile),
    key: readFileSync(keyFile),
    ca: readFileSync(caFile),
    requestCert: true,
    rejectUnauthorized: true,
  });
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (session) => {
    sessions.add(session);
    session.on('close', () => sessions.delete(session));
    session.on('error', () => undefined);
  });
  // An agent's stream: answered, `streamBytes` written, left open.
  server.on('stream', (stream) => {
    stream.on('error', () => undefined);
    stream.respond({ ':status': 200 });
    stream.write(Buffer.alloc(streamBytes, 0x61));
  });
  server.listen(0, '127.0.0.1', () => {
    gc();
    gc();
    const before = process.memoryUsage();
    const cpuBefore = process.cpuUsage();
    const address = server.address();
    process.send?.({ port: typeof address === 'object' && address ? address.port : 0 });
    process.on('message', () => {
      gc();
      gc();
      const after = process.memoryUsage();
      const cpu = process.cpuUsage(cpuBefore);
      const n = Math.max(1, sessions.size);
      let written = 0;
      for (const session of sessions) written += session.socket?.bytesWritten ?? 0;
      process.send?.({
        figures: {
          sessions: sessions.size,
          bytesWrittenPerConn: written / n,
          rssPerConnKB: (after.rss - before.rss) / n / 1024,
          heapPerConnKB: (after.heapUsed + after.external - before.heapUsed - before.external) / n / 1024,
          cpuPerConnMs: (cpu.user + cpu.system) / 1000 / n,
        },
      });
    });
  });
  process.on('disconnect', () => process.exit(0));
}

/** Opens `count` mTLS HTTP/2 sessions to a bare node:http2 server in a child process: idle, or each with one open stream that was sent `streamBytes` (see the header). */
export async function measureTlsFloor(files: { caFile: string; caKeyFile: string; certFile: string; keyFile: string }, count: number, serverName: string, streamBytes = 0): Promise<FloorFigures> {
  const self = fileURLToPath(import.meta.url);
  streamBytes = Math.max(0, Math.round(streamBytes)); // whole bytes: the client waits for exactly what the server writes
  const child = fork(self, ['--server', files.certFile, files.keyFile, files.caFile, String(streamBytes)], { execArgv: ['--expose-gc'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const replies: ServerReply[] = [];
  child.on('message', (m: ServerReply) => void replies.push(m));
  let exited = false;
  child.on('exit', () => {
    exited = true;
  });
  const sessions: http2.ClientHttp2Session[] = [];
  try {
    const alive = (): void => {
      if (exited) throw new Error('the floor server exited');
    };
    await waitUntil('floor server to listen', () => (alive(), replies.some((r) => r.port !== undefined)), 10_000, 5);
    const port = replies.find((r) => r.port !== undefined)!.port!;
    const ca = readFileSync(files.caFile);
    const issuer = new AgentCertIssuer(ca, readFileSync(files.caKeyFile));
    let connected = 0;
    let failed = 0;
    const batch = 50;
    for (let i = 0; i < count; i += batch) {
      for (let k = i; k < Math.min(count, i + batch); k++) {
        const { certPem, keyPem } = issuer.issue(`floor-${k}`);
        const session = http2.connect(`https://127.0.0.1:${port}`, { ca, cert: certPem, key: keyPem, servername: serverName });
        session.on('error', () => failed++);
        if (streamBytes > 0) {
          let received = 0;
          const stream = session.request({ ':method': 'POST', ':path': '/floor' });
          stream.on('error', () => failed++);
          stream.on('data', (chunk: Buffer) => {
            const before = received;
            received += chunk.length;
            if (before < streamBytes && received >= streamBytes) connected++;
          });
        } else session.once('connect', () => connected++);
        sessions.push(session);
      }
      await waitUntil(streamBytes > 0 ? 'floor streams to receive their bytes' : 'floor sessions to connect', () => (alive(), connected + failed >= sessions.length), 30_000, 5);
    }
    if (failed > 0) throw new Error(`${failed} floor sessions failed to connect`);
    // The server may see the last sessions a moment after the clients: measure until it has all.
    let figures: FloorFigures | undefined;
    for (let attempt = 0; attempt < 20; attempt++) {
      replies.length = 0;
      child.send('measure');
      await waitUntil('floor figures', () => (alive(), replies.some((r) => r.figures)), 30_000, 5);
      figures = replies.find((r) => r.figures)!.figures!;
      if (figures.sessions >= count) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return figures!;
  } finally {
    for (const s of sessions) s.destroy();
    if (!exited) child.kill('SIGKILL');
    await waitUntil('floor server to exit', () => exited, 5000, 10).catch(() => undefined);
  }
}

if (process.argv[2] === '--server') runServer(process.argv[3]!, process.argv[4]!, process.argv[5]!, Number(process.argv[6] ?? 0));
