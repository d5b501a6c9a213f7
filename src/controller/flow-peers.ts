/**
 * Flow records from every replica, visible from any replica (issue 12 item 4): the asking side of
 * the Peers service (src/grpc/peers-service.ts answers). Modelled on Cilium's Hubble Relay, which
 * asks every Hubble server it knows and reports the ones that did not answer rather than hiding
 * them; records stay in each replica's store (Consul KV is not for bulk data).
 *
 * Contract
 * - Peers: every `--flow-peer HOST:PORT`, and with `--consul-service NAME` the passing instances
 *   of that service (this replica's own registration, its service ID, skipped), followed with
 *   blocking queries; Consul unreachable keeps the peers last known. Named `host:port`.
 * - `answer(q, local)`: asks every peer at once with the same filters and limit (absolute times),
 *   each within `deadlineMs` (default 2 s) and `maxAnswerBytes`; what a peer sends is untrusted
 *   and read like any /flows answer (src/flows/flows-answer.ts: a bad record skipped and counted).
 *   The merge (src/flows/flows-merge.ts) of this replica's records and every answer, then a
 *   second question to each replica (this one included, `localKeys`) whose answer was cut at
 *   the limit and lacks keys the merge shows: exactly those keys (`keys`), merged too, so every
 *   count shown is exact (a failed second answer is logged at debug; its part stays out), plus
 *   `replicas`: this one (`self: true`) first, then each peer by name with `ok`, and `error` (a
 *   cleaned, bounded text) when it did not answer, so a partial view is never silent (logged at
 *   warn once a minute per peer and error, the repeats at debug).
 * - Who counts as a peer when one asks this replica (`isPeerName`): a certificate name in
 *   `--peer-name` when that list is given, else the host of a known peer (a --flow-peer host, a
 *   Consul instance's address or node name).
 * - `counts()`: peers known and questions answered / unanswered since start (the metrics
 *   `portcullis_flow_peers`, `portcullis_flow_peer_queries_total{result}`).
 * - `stop()` ends the Consul follower and closes every peer channel.
 */
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { ConsulClient } from '../consul/consul-client.js';
import { followPassingInstances } from '../consul/consul-follow.js';
import type { Follower } from '../consul/blocking-follow.js';
import type { FlowQuery } from '../flows/flow-query.js';
import type { FlowAnswer } from '../flows/flow-store.js';
import { FLOWS_ANSWER_MAX_BYTES, readFlowsDocument, type FlowLostRow } from '../flows/flows-answer.js';
import { mergeFlowsParts, type FlowsPart } from '../flows/flows-merge.js';
import type { ObservedFlow } from '../flows/observed-flow.js';
import { cleanAgentText } from '../grpc/egress-status.js';
import { loadPeersProto, type PeersClient, type PeersProto } from '../grpc/peers-proto.js';
import { peerQueryMessage } from '../grpc/peers-service.js';
import { parseBoundedJson } from '../json/bounded-json.js';
import { clientCredentialsFrom, type TlsMaterial } from '../tls/credentials.js';
import { formatHostPort, type HostPort } from './host-port.js';

export const DEFAULT_PEER_DEADLINE_MS = 2000;
/** The largest PeerFlows message taken (the peer sends about 1 MiB each). */
const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;
const WARN_EVERY_MS = 60_000;

export interface FlowPeersOptions {
  /** mTLS material of this replica (its controller certificate presented as a client); undefined: plaintext. */
  readonly credentials: TlsMaterial | undefined;
  /** `--flow-peer` (repeatable). */
  readonly targets?: readonly HostPort[];
  /** `--peer-name` (repeatable): the certificate names of peers allowed to ask this replica. */
  readonly peerNames?: readonly string[];
  /** Peers from Consul: the passing instances of `service` but the one whose ID `selfId()` gives. */
  readonly consul?: { readonly client: ConsulClient; readonly service: string; readonly selfId: () => string | undefined };
  /** This replica's name in `replicas` (its gRPC address). */
  readonly selfName: () => string;
  readonly deadlineMs?: number;
  /** Bytes of one peer's answer taken at most. Default FLOWS_ANSWER_MAX_BYTES. */
  readonly maxAnswerBytes?: number;
  readonly logger: Logger;
}

interface Peer {
  readonly name: string;
  /** Names a peer's certificate may carry (its host, and its Consul node). */
  readonly hosts: readonly string[];
}

export interface ReplicaAnswer {
  readonly name: string;
  readonly self?: true;
  readonly ok: boolean;
  readonly error?: string;
  /** Records it answered (before the merge). */
  readonly flows?: number;
}

export interface MergedFlowsAnswer {
  readonly flows: ObservedFlow[];
  readonly lost: FlowLostRow[];
  readonly now: string;
  readonly replicas: ReplicaAnswer[];
}

type Asked = { readonly ok: true; readonly part: FlowsPart; readonly skipped: number } | { readonly ok: false; readonly error: string };

export class FlowPeers {
  private readonly staticPeers: Peer[];
  private consulPeers: Peer[] = [];
  private follower: Follower | undefined;
  private readonly clients = new Map<string, PeersClient>();
  private proto: PeersProto | undefined;
  private readonly deadlineMs: number;
  private readonly warned = new Map<string, { at: number; error: string }>();
  /** Peer questions since start by outcome (the metrics, `counts`). */
  private answered = 0;
  private unanswered = 0;

  constructor(private readonly o: FlowPeersOptions) {
    this.staticPeers = (o.targets ?? []).map((t) => ({ name: formatHostPort(t.host, t.port), hosts: [t.host] }));
    this.deadlineMs = o.deadlineMs ?? DEFAULT_PEER_DEADLINE_MS;
  }

  /** Starts following Consul (when configured). */
  start(): void {
    const c = this.o.consul;
    if (!c || this.follower) return;
    this.follower = followPassingInstances(c.client, c.service, {
      onChange: (instances) => {
        const self = c.selfId();
        this.consulPeers = instances.filter((i) => i.id !== self).map((i) => ({ name: formatHostPort(i.address, i.port), hosts: [i.address, i.node] }));
        this.o.logger.info({ event: 'flow_peers.changed', peers: this.consulPeers.map((p) => p.name) }, 'flow peers from Consul changed');
      },
      onError: (e, { delayMs }) => this.o.logger.warn({ event: 'flow_peers.consul_failed', err: e.message, retryInMs: delayMs }, 'cannot read the flow peers from Consul; keeping the ones known'),
    });
  }

  async stop(): Promise<void> {
    await this.follower?.stop();
    this.follower = undefined;
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
  }

  /** The peers known now, by name (a --flow-peer and a Consul instance of one name count once). */
  peers(): readonly Peer[] {
    const byName = new Map<string, Peer>();
    for (const p of [...this.staticPeers, ...this.consulPeers]) if (!byName.has(p.name)) byName.set(p.name, p);
    return [...byName.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** Whether a client certificate naming `names` is a peer's (see the header). */
  isPeerName(names: readonly string[]): boolean {
    const allowed = this.o.peerNames !== undefined && this.o.peerNames.length > 0 ? new Set(this.o.peerNames) : new Set(this.peers().flatMap((p) => p.hosts));
    return names.some((n) => allowed.has(n));
  }

  /** Peers known now, and questions to peers since start: answered, and not (an error or past the deadline). */
  counts(): { readonly peers: number; readonly answered: number; readonly unanswered: number } {
    return { peers: this.peers().length, answered: this.answered, unanswered: this.unanswered };
  }

  /**
   * This replica's `local` answer to `q` merged with every peer's (see the header); `localKeys`
   * answers `q` for only some keys from this replica's own store (the second question).
   */
  async answer(q: FlowQuery, local: FlowAnswer, localKeys?: (keys: ReadonlySet<string>) => FlowAnswer): Promise<MergedFlowsAnswer> {
    const peers = this.peers();
    this.closeGone(peers);
    const asked = await Promise.all(peers.map((p) => this.ask(p.name, q)));
    const parts: FlowsPart[] = [local];
    const replicas: ReplicaAnswer[] = [{ name: this.o.selfName(), self: true, ok: true, flows: local.flows.length }];
    asked.forEach((a, i) => {
      const name = peers[i]!.name;
      if (a.ok) {
        this.answered += 1;
        parts.push(a.part);
        replicas.push({ name, ok: true, flows: a.part.flows.length });
        if (a.skipped > 0) this.o.logger.warn({ event: 'flow_peers.bad_records', peer: name, skipped: a.skipped }, 'flow peer answered records that are not valid: skipped');
      } else {
        this.unanswered += 1;
        replicas.push({ name, ok: false, error: a.error });
        this.logUnanswered(name, a.error);
      }
    });
    const first = mergeFlowsParts(parts, q.limit);
    // The second question: a part cut at the limit may lack keys the merge shows (their part
    // on that replica was in its tail): those keys are asked for again, of that replica only.
    const shown = first.flows.map((f) => f.key);
    const missing = (part: FlowsPart): Set<string> | undefined => {
      if (part.flows.length < q.limit) return undefined; // not cut: it has every key
      const has = new Set(part.flows.map((f) => f.key));
      const m = new Set(shown.filter((k) => !has.has(k)));
      return m.size > 0 ? m : undefined;
    };
    const again: Promise<FlowsPart | undefined>[] = [];
    const ownMissing = localKeys && missing(local);
    if (ownMissing) again.push(Promise.resolve({ flows: localKeys(ownMissing).flows, lost: [] }));
    asked.forEach((a, i) => {
      const keys = a.ok ? missing(a.part) : undefined;
      if (!keys) return;
      again.push(
        this.ask(peers[i]!.name, { ...q, keys, limit: keys.size }).then((b) => {
          if (b.ok) return { flows: b.part.flows, lost: [] };
          this.o.logger.debug({ event: 'flow_peers.second_unanswered', peer: peers[i]!.name, error: b.error }, 'flow peer did not answer the second question: its counts of some flows shown are missing');
          return undefined;
        }),
      );
    });
    const more = (await Promise.all(again)).filter((p): p is FlowsPart => p !== undefined);
    const merged = more.length > 0 ? mergeFlowsParts([...parts, ...more], q.limit) : first;
    return { ...merged, now: local.now, replicas };
  }

  /** Warn once per peer and error text a minute (the dashboard reads /flows every few seconds); the repeats at debug. */
  private logUnanswered(peer: string, error: string): void {
    const now = Date.now();
    const last = this.warned.get(peer);
    const line = { event: 'flow_peers.unanswered', peer, error };
    if (last && last.error === error && now - last.at < WARN_EVERY_MS) {
      this.o.logger.debug(line, 'flow peer did not answer (repeat)');
      return;
    }
    if (this.warned.size >= 1024) this.warned.clear();
    this.warned.set(peer, { at: now, error });
    this.o.logger.warn(line, 'flow peer did not answer: /flows shows the other replicas only');
  }

  private client(name: string): PeersClient {
    let client = this.clients.get(name);
    if (client === undefined) {
      this.proto ??= loadPeersProto();
      const credentials = this.o.credentials ? clientCredentialsFrom(this.o.credentials) : grpc.credentials.createInsecure();
      client = new this.proto.Client(name, credentials, { 'grpc.max_receive_message_length': MAX_MESSAGE_BYTES });
      this.clients.set(name, client);
    }
    return client;
  }

  private closeGone(peers: readonly Peer[]): void {
    const names = new Set(peers.map((p) => p.name));
    for (const [name, client] of this.clients) {
      if (names.has(name)) continue;
      client.close();
      this.clients.delete(name);
    }
  }

  /** One peer's records for `q`, read within the deadline and the byte bound. */
  private ask(name: string, q: FlowQuery): Promise<Asked> {
    const maxBytes = this.o.maxAnswerBytes ?? FLOWS_ANSWER_MAX_BYTES;
    let call: ReturnType<PeersClient['QueryFlows']>;
    try {
      call = this.client(name).QueryFlows(peerQueryMessage(q), { deadline: Date.now() + this.deadlineMs });
    } catch (e) {
      return Promise.resolve({ ok: false, error: `cannot ask it: ${cleanAgentText(String(e), 200)}` });
    }
    return new Promise<Asked>((resolve) => {
      const flows: ObservedFlow[] = [];
      const lost: FlowLostRow[] = [];
      let bytes = 0;
      let skipped = 0;
      let settled = false;
      const finish = (a: Asked): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(a);
      };
      const fail = (error: string): void => {
        finish({ ok: false, error });
        call.cancel();
      };
      // grpc-js ends the call at the deadline; this one is the bound should it not.
      const timer = setTimeout(() => fail(`no answer within ${this.deadlineMs} ms`), this.deadlineMs + 500);
      call.on('data', (m: { answerJson: string }) => {
        if (settled) return;
        bytes += m.answerJson.length;
        if (bytes > maxBytes) return fail(`answer larger than ${maxBytes} bytes`);
        const parsed = parseBoundedJson(m.answerJson, { maxBytes: MAX_MESSAGE_BYTES });
        const doc = parsed.ok ? readFlowsDocument(parsed.value, { requireNow: false }) : parsed;
        if (!doc.ok) return fail(`not a flows answer: ${cleanAgentText(doc.error, 200)}`);
        skipped += doc.problems.length;
        // A peer of an earlier release answers a second question (`keys`) as the first: keep the asked keys only.
        for (const f of doc.answer.flows) if (flows.length < q.limit && (!q.keys || q.keys.has(f.key))) flows.push(f);
        lost.push(...doc.answer.lost);
      });
      call.on('error', (e: grpc.ServiceError) => finish({ ok: false, error: `${grpc.status[e.code] ?? e.code}: ${cleanAgentText(e.details ?? e.message, 200)}` }));
      call.on('end', () => finish({ ok: true, part: { flows, lost }, skipped }));
    });
  }
}
