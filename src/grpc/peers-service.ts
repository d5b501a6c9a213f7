/**
 * The controller-to-controller Peers service (proto/portcullis/v1/sync.proto `Peers`, issue 12):
 * a peer replica asks this one for its own flow records, to merge them with its own and its
 * other peers' (src/controller/flow-peers.ts).
 *
 * Contract
 * - Who may call: on an mTLS listener, a client whose certificate (already verified against the
 *   cluster CA by src/tls/mtls-listener.ts) is a controller certificate, extendedKeyUsage
 *   serverAuth (an agent certificate has clientAuth only), and names (CN, DNS and IP
 *   subjectAltNames) one the replica counts as a peer (`isPeerName`). Anything else is answered
 *   PERMISSION_DENIED with the reason, logged at warn (`peers: query refused`, field
 *   `refusal: "not_a_peer"`) and told to `onRefused` (TLS refusals: /status, /metrics). On a
 *   plaintext listener (`insecure`) no one is authenticated and every caller is answered.
 * - What it answers: the records of its own store only, with the caller's filters and limit
 *   (the /flows ones, checked by src/flows/flow-query.ts: a bad one is INVALID_ARGUMENT), as
 *   /flows JSON documents of at most PEER_MESSAGE_BYTES each (one record more only when a single
 *   record is larger), the first with `lost` and `now`. It never asks anyone else: a peer query
 *   does not fan out, so replicas asking each other cannot loop. Writes wait for the stream to
 *   drain; a cancelled call stops the answer.
 */
import * as grpc from '@grpc/grpc-js';
import { FLOW_KEY, parseFlowQuery, quoted, type FlowQuery } from '../flows/flow-query.js';
import type { FlowAnswer } from '../flows/flow-store.js';
import { certificateIdentities } from '../tls/peer-identity.js';
import { loadPeersProto, type PeerFlowQuery, type PeerFlowQuery__Output, type PeerFlows, type PeersHandlers } from './peers-proto.js';
import { silentLogger, type SyncLogger } from './sync-logger.js';

/** Bytes of JSON per PeerFlows message (grpc-js receives up to 4 MiB by default). */
export const PEER_MESSAGE_BYTES = 1024 * 1024;
/** extendedKeyUsage serverAuth: what tells a controller certificate from an agent's. */
export const SERVER_AUTH_OID = '1.3.6.1.5.5.7.3.1';

export interface PeersServiceOptions {
  /** The replica's own records (FlowStore.query). */
  readonly query: (q: FlowQuery, nowMs: number) => FlowAnswer;
  /** Plaintext listener: every caller is answered. */
  readonly insecure: boolean;
  /** Whether a certificate naming `names` is a peer replica's (FlowPeers.isPeerName). */
  readonly isPeerName: (names: readonly string[]) => boolean;
  readonly logger?: SyncLogger;
  /** Told of every refused caller (TlsRefusals, reason not_a_peer). */
  readonly onRefused?: (peer: string, detail: string) => void;
  readonly now?: () => number;
}

type QueryCall = grpc.ServerWritableStream<PeerFlowQuery__Output, PeerFlows>;

/** A FlowQuery as the wire carries it (empty strings and zeros: not given). */
export function peerQueryMessage(q: FlowQuery): PeerFlowQuery {
  return {
    from: q.from ?? '',
    to: q.to ?? '',
    port: q.port ?? '',
    verdicts: [...(q.verdicts ?? [])],
    direction: q.direction ?? '',
    sinceMs: q.sinceMs ?? 0,
    untilMs: q.untilMs ?? 0,
    limit: q.limit,
    keys: [...(q.keys ?? [])],
  };
}

/** The query a peer sent, checked as /flows checks its parameters. */
export function flowQueryOf(m: PeerFlowQuery__Output, nowMs: number): ReturnType<typeof parseFlowQuery> {
  const p = new URLSearchParams();
  for (const name of ['from', 'to', 'port', 'direction'] as const) if (m[name] !== '') p.set(name, m[name]);
  for (const v of m.verdicts) p.append('verdict', v);
  for (const [name, ms] of [['since', m.sinceMs], ['until', m.untilMs]] as const) {
    if (ms === 0) continue;
    const t = new Date(ms);
    if (!Number.isFinite(t.getTime())) return { ok: false, error: `${name}_ms ${String(ms)} is not a time` };
    p.set(name, t.toISOString());
  }
  if (m.limit !== 0) p.set('limit', String(m.limit));
  const q = parseFlowQuery(p, nowMs);
  if (!q.ok || m.keys.length === 0) return q;
  if (m.keys.length > q.query.limit) return { ok: false, error: `${m.keys.length} keys for a limit of ${q.query.limit}` };
  const bad = m.keys.find((k) => !FLOW_KEY.test(k));
  if (bad !== undefined) return { ok: false, error: `key ${quoted(bad)} is not 16 lowercase hex characters` };
  return { ok: true, query: { ...q.query, keys: new Set(m.keys) } };
}

/** The answer as /flows JSON documents of about `maxBytes` each (see the header). */
export function peerFlowsMessages(answer: FlowAnswer, maxBytes = PEER_MESSAGE_BYTES): PeerFlows[] {
  const out: PeerFlows[] = [];
  let head = `"lost":${JSON.stringify(answer.lost)},"now":${JSON.stringify(answer.now)}`;
  let batch: string[] = [];
  let size = 0;
  const flush = (): void => {
    out.push({ answerJson: `{"flows":[${batch.join(',')}]${head === '' ? '' : `,${head}`}}` });
    head = '';
    batch = [];
    size = 0;
  };
  for (const flow of answer.flows) {
    const text = JSON.stringify(flow);
    if (batch.length > 0 && size + text.length > maxBytes) flush();
    batch.push(text);
    size += text.length + 1;
  }
  flush();
  return out;
}

export class PeersService {
  private readonly logger: SyncLogger;
  private readonly now: () => number;

  constructor(private readonly options: PeersServiceOptions) {
    this.logger = options.logger ?? silentLogger;
    this.now = options.now ?? Date.now;
  }

  addToServer(server: grpc.Server): void {
    const handlers: PeersHandlers = { QueryFlows: (call) => void this.queryFlows(call) };
    server.addService(loadPeersProto().service, handlers);
  }

  /** Why the caller may not query, or undefined when it may. */
  private refusal(call: QueryCall): string | undefined {
    if (this.options.insecure) return undefined;
    const cert = call.getAuthContext().sslPeerCertificate;
    const names = certificateIdentities(cert);
    const shown = `[${names.slice(0, 8).join(', ').slice(0, 300)}]`;
    if (!(cert?.ext_key_usage ?? []).includes(SERVER_AUTH_OID)) return `certificate ${shown} is not a controller certificate (no serverAuth in extendedKeyUsage): only peer replicas may query flows`;
    if (!this.options.isPeerName(names)) return `certificate ${shown} names no peer of this replica (--peer-name, or the hosts of its --flow-peer and Consul peers)`;
    return undefined;
  }

  private async queryFlows(call: QueryCall): Promise<void> {
    const peer = call.getPeer();
    const refused = this.refusal(call);
    if (refused !== undefined) {
      this.logger.warn({ peer, refusal: 'not_a_peer', reason: refused }, 'peers: query refused');
      this.options.onRefused?.(peer, refused);
      call.emit('error', { code: grpc.status.PERMISSION_DENIED, details: refused });
      return;
    }
    const now = this.now();
    const q = flowQueryOf(call.request, now);
    if (!q.ok) {
      this.logger.warn({ peer, error: q.error }, 'peers: bad flow query');
      call.emit('error', { code: grpc.status.INVALID_ARGUMENT, details: q.error });
      return;
    }
    const messages = peerFlowsMessages(this.options.query(q.query, now));
    for (const m of messages) {
      if (call.cancelled) return;
      if (!call.write(m)) await new Promise<void>((resolve) => {
        const done = (): void => {
          call.off('drain', done);
          call.off('cancelled', done);
          resolve();
        };
        call.on('drain', done);
        call.on('cancelled', done);
      });
    }
    if (!call.cancelled) call.end();
  }
}
