/**
 * Host addresses shared between controller replicas through Consul KV (issue 12 item 1: "each
 * replica compiles the same bytes"). A host's addresses come first from its agent's Hello
 * (host-addresses.ts), but a replica only sees the Hellos of the agents connected to it; without
 * this, a replica that does not serve h2 compiles h2's tasks with no address, and the replicas'
 * versions disagree. So:
 *
 *  - **Publish**: a replica that holds a connected agent's Hello writes
 *    `<prefix>/hosts/<segment>` = `{"addresses":[...],"at":"<ISO 8601>","by":"<writer id>"}` when the (canonical,
 *    sorted) list differs from what KV holds for that host, never on every poll. Writes go one at
 *    a time, at most one per `minWriteIntervalMs` (default 100 ms), the latest list per host
 *    wins, a failed write is retried with backoff; nothing is written before the first KV read
 *    (so a restart does not rewrite what KV already holds).
 *  - **Follow**: every replica follows `<prefix>/hosts/` (recurse, blocking queries,
 *    consul-follow.ts: the index going backwards resets it). Entries are validated like Hello
 *    addresses (src/net/address.ts; IPv4-mapped IPv6 refused); a bad entry is logged once per
 *    distinct content and skipped. A failed read keeps the last list (nothing applied changes).
 *    A change calls the listeners with the hosts whose list changed.
 *  - **Keys**: host ids are untrusted text. A segment keeps [A-Za-z0-9.-] and writes every other
 *    UTF-8 byte (and `_`, and a leading `.`) as `_XX` (hex), so it never holds '/', '%', '..' or
 *    anything a URL or Consul would read differently; ids over MAX_HOST_ID_BYTES are not shared.
 *  - **Contested**: when another writer replaces the list this replica wrote for a host (an agent
 *    that moved while this replica still holds its old stream, or two agents with one host id),
 *    ours is written again only after a wait that doubles from 5 s to 5 min within an episode of
 *    10 min, and the third replacement is said at warn: two replicas never overwrite each other
 *    on every refresh (see `replaced`).
 *  - **Stale entries**: an entry is replaced by the host's next Hello on any replica (when its
 *    addresses differ); entries are never deleted automatically (a host that left for good keeps
 *    its entry until an operator deletes the key; the entry only ever adds that host's own
 *    addresses).
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import pino from 'pino';
import { parseBoundedJson } from '../json/bounded-json.js';
import { parseAddress } from '../net/address.js';
import { Backoff, sleep } from '../retry/backoff.js';
import type { Follower } from '../consul/blocking-follow.js';
import type { ConsulClient } from '../consul/consul-client.js';
import { followKvPrefix } from '../consul/consul-follow.js';
import { describeSkipped, type ConsulKvEntry } from '../consul/consul-payloads.js';

export const MAX_HOST_ID_BYTES = 255;
/** How long a list another replica replaced waits before it is written again, at first and at most; and how long the replacements of one episode are counted. */
export const CONTEST_FIRST_MS = 5_000;
export const CONTEST_MAX_MS = 300_000;
const CONTEST_EPISODE_MS = 600_000;
const MAX_ADDRESSES = 64;
const MAX_ENTRY_BYTES = 16 * 1024;
const SAFE = /^[A-Za-z0-9.-]$/;

/** The KV key segment of a host id, or undefined when the id is empty or too long to share. */
export function hostKeySegment(hostId: string): string | undefined {
  const bytes = Buffer.from(hostId, 'utf8');
  if (bytes.length === 0 || bytes.length > MAX_HOST_ID_BYTES) return undefined;
  let out = '';
  for (let i = 0; i < bytes.length; i++) {
    const c = String.fromCharCode(bytes[i]!);
    out += bytes[i]! < 0x80 && SAFE.test(c) && !(i === 0 && c === '.') ? c : `_${bytes[i]!.toString(16).padStart(2, '0').toUpperCase()}`;
  }
  return out;
}

/** The host id of a key segment, or undefined when it is not one hostKeySegment makes. */
export function hostIdOfSegment(segment: string): string | undefined {
  if (!/^(?:[A-Za-z0-9.-]|_[0-9A-F]{2})+$/.test(segment)) return undefined;
  const bytes: number[] = [];
  for (let i = 0; i < segment.length; i++) {
    if (segment[i] === '_') {
      bytes.push(parseInt(segment.slice(i + 1, i + 3), 16));
      i += 2;
    } else bytes.push(segment.charCodeAt(i));
  }
  const id = Buffer.from(bytes).toString('utf8');
  return hostKeySegment(id) === segment ? id : undefined; // canonical form only (one key per host)
}

/** The usable addresses of `texts`, canonical, sorted, distinct; and why the others are not. */
export function canonicalAddresses(texts: readonly string[]): { list: string[]; refused: string[] } {
  const out = new Set<string>();
  const refused: string[] = [];
  for (const t of texts) {
    const a = parseAddress(t);
    if (a.ok) out.add(a.canonical);
    else refused.push(a.message);
  }
  return { list: [...out].sort(), refused };
}

/** One KV entry under `<prefix>/hosts/`: the host and its addresses, or why it is not usable. */
export function parseHostEntry(base: string, e: ConsulKvEntry): { hostId: string; addresses: string[]; by?: string } | string {
  const hostId = e.key.startsWith(base) ? hostIdOfSegment(e.key.slice(base.length)) : undefined;
  if (hostId === undefined) return 'the key is not an encoded host id';
  const parsed = parseBoundedJson(e.value.toString('utf8'), { maxBytes: MAX_ENTRY_BYTES, maxDepth: 3 });
  if (!parsed.ok) return `not JSON: ${parsed.error}`;
  const v = parsed.value as { addresses?: unknown; by?: unknown } | null;
  if (typeof v !== 'object' || v === null || !Array.isArray(v.addresses) || v.addresses.length === 0 || v.addresses.length > MAX_ADDRESSES || !v.addresses.every((a) => typeof a === 'string')) {
    return `addresses is not a list of 1 to ${MAX_ADDRESSES} strings`;
  }
  const { list, refused } = canonicalAddresses(v.addresses as string[]);
  if (refused.length > 0) return `addresses not usable: ${refused.join('; ')}`;
  // `by`: the writing replica's id (absent from entries of an earlier release), only compared.
  return typeof v.by === 'string' && v.by.length <= 64 ? { hostId, addresses: list, by: v.by } : { hostId, addresses: list };
}

const same = (a: readonly string[] | undefined, b: readonly string[] | undefined): boolean => a !== undefined && b !== undefined && a.join(' ') === b.join(' ');

export interface SharedHostAddressesOptions {
  readonly client: ConsulClient;
  /** The KV prefix; entries live under `<prefix>/hosts/`. */
  readonly prefix: string;
  readonly minWriteIntervalMs?: number;
  /** Blocking wait of each follow read. Default 60 s. */
  readonly waitMs?: number;
  readonly now?: () => Date;
  readonly logger?: Logger;
  /** This replica's id in the entries it writes (`by`). Default: random per process. */
  readonly writerId?: string;
}

export class SharedHostAddresses {
  private readonly base: string;
  private readonly kv = new Map<string, readonly string[]>();
  private readonly pending = new Map<string, readonly string[]>();
  private readonly listeners = new Set<(hostIds: readonly string[]) => void>();
  private readonly badLogged = new Map<string, string>();
  private readonly tooLong = new Set<string>();
  private readonly log: Logger;
  private readonly stopSignal = new AbortController();
  private follower: Follower | undefined;
  private known = false;
  private writing: Promise<void> | undefined;
  /** The host whose list is being written now (it stays in `pending` until the write is done). */
  private inFlight: string | undefined;
  /** Per host: the list this replica last wrote (joined), to tell when another writer replaced it. */
  private readonly wrote = new Map<string, string>();
  /** Per host whose list another writer replaced: ours, held back until `until` (see `replaced`). */
  private readonly contested = new Map<string, { readonly list: string; readonly count: number; readonly firstAt: number; readonly until: number; warned: boolean }>();
  /** Successful writes (tests and /metrics-style counters). */
  writes = 0;

  private readonly writerId: string;

  constructor(private readonly opts: SharedHostAddressesOptions) {
    this.base = `${opts.prefix}/hosts/`;
    this.writerId = opts.writerId ?? randomBytes(8).toString('hex');
    this.log = (opts.logger ?? pino({ level: 'silent' })).child({ module: 'shared-host-addresses' });
  }

  start(): void {
    if (this.follower) return;
    this.follower = followKvPrefix(this.opts.client, this.base, {
      ...(this.opts.waitMs !== undefined ? { waitMs: this.opts.waitMs } : {}),
      onChange: (entries, { skipped }) => {
        if (skipped.length > 0) this.log.warn({ event: 'hosts_kv.entries_skipped', skipped: skipped.length, entries: describeSkipped(skipped) }, 'Consul answered shared host address entries that are not KV entries: skipped');
        this.take(entries);
      },
      onError: (e, { delayMs }) => this.log.warn({ event: 'hosts_kv.read_failed', err: e.message, retryInMs: delayMs }, 'cannot read the shared host addresses from Consul; keeping the last ones'),
    });
  }

  async stop(): Promise<void> {
    this.stopSignal.abort();
    await this.follower?.stop();
    await this.writing;
  }

  onChange(listener: (hostIds: readonly string[]) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** A host's addresses as KV holds them (canonical, sorted), or undefined. */
  lookup(hostId: string): readonly string[] | undefined {
    return this.kv.get(hostId);
  }

  /** Every host KV holds addresses for. */
  hosts(): IterableIterator<[string, readonly string[]]> {
    return this.kv.entries();
  }

  /** This replica holds `hostId`'s Hello with `addresses` (canonical, sorted): written when KV differs. */
  publish(hostId: string, addresses: readonly string[]): void {
    // Compared with what KV will hold once the writes under way are done: the latest list wins.
    if (same(this.pending.get(hostId) ?? this.kv.get(hostId), addresses)) return;
    const held = this.contested.get(hostId);
    if (held && held.list === addresses.join(' ') && this.nowMs() < held.until) return; // another writer replaced it: later
    if (held && held.list !== addresses.join(' ')) this.contested.delete(hostId); // our agent's list changed
    if (hostKeySegment(hostId) === undefined) {
      if (!this.tooLong.has(hostId)) this.log.warn({ event: 'hosts_kv.not_shared', host: hostId.slice(0, 100) }, `host id over ${MAX_HOST_ID_BYTES} bytes: its addresses are not shared with other replicas`);
      this.tooLong.add(hostId);
      return;
    }
    if (this.inFlight !== hostId && same(this.kv.get(hostId), addresses)) {
      this.pending.delete(hostId); // back to what KV holds before another list was written
      return;
    }
    this.pending.set(hostId, addresses);
    this.pump();
  }

  private take(entries: readonly ConsulKvEntry[]): void {
    const next = new Map<string, readonly string[]>();
    const writers = new Map<string, string | undefined>();
    const present = new Set(entries.map((e) => e.key));
    for (const key of this.badLogged.keys()) if (!present.has(key)) this.badLogged.delete(key);
    for (const e of entries) {
      const r = parseHostEntry(this.base, e);
      if (typeof r === 'string') {
        const seen = e.value.toString('base64');
        if (this.badLogged.get(e.key) !== seen) this.log.warn({ event: 'hosts_kv.entry_skipped', key: e.key.slice(0, 300), error: r }, 'a shared host address entry in Consul is not usable: skipped');
        this.badLogged.set(e.key, seen);
        continue;
      }
      next.set(r.hostId, r.addresses);
      writers.set(r.hostId, r.by);
    }
    const changed: string[] = [];
    for (const [id, list] of next) if (!same(this.kv.get(id), list)) changed.push(id);
    for (const id of changed) if (id !== this.inFlight) this.replaced(id, next.get(id), writers.get(id));
    for (const id of this.kv.keys()) if (!next.has(id)) changed.push(id);
    this.kv.clear();
    for (const [id, list] of next) this.kv.set(id, list);
    this.known = true;
    // Not the host being written: the list under way would land after what was read.
    for (const [id, list] of [...this.pending]) if (id !== this.inFlight && same(this.kv.get(id), list)) this.pending.delete(id);
    this.pump();
    if (changed.length > 0) for (const fn of [...this.listeners]) fn(changed);
  }

  private nowMs(): number {
    return (this.opts.now ?? (() => new Date()))().getTime();
  }

  /**
   * KV's list of `hostId` changed to `theirs` (undefined: deleted). When it replaced the list
   * this replica wrote, another replica holds a Hello of that host id with other addresses: an
   * agent that moved while this replica still holds its old stream (it ends within the ping
   * deadline), or two agents with one --host-id. Writing ours back at once would make the two
   * replicas overwrite each other on every refresh, and every replica recompile the host each
   * time; so ours waits CONTEST_FIRST_MS, doubling with each replacement within
   * CONTEST_EPISODE_MS up to CONTEST_MAX_MS, and the third replacement of an episode is said at
   * warn.
   */
  private replaced(hostId: string, theirs: readonly string[] | undefined, by: string | undefined): void {
    const mine = this.wrote.get(hostId);
    // Our own write read back (a follower read can lag behind our later writes): not replaced.
    if (mine === undefined || theirs === undefined || by === this.writerId || theirs.join(' ') === mine) return;
    this.wrote.delete(hostId);
    const now = this.nowMs();
    const last = this.contested.get(hostId);
    const ongoing = last !== undefined && now - last.firstAt < CONTEST_EPISODE_MS;
    const count = ongoing ? last.count + 1 : 1;
    const entry = { list: mine, count, firstAt: ongoing ? last.firstAt : now, until: now + Math.min(CONTEST_FIRST_MS * 2 ** (count - 1), CONTEST_MAX_MS), warned: ongoing && last.warned };
    this.contested.set(hostId, entry);
    if (count >= 3 && !entry.warned) {
      entry.warned = true;
      this.log.warn(
        { event: 'hosts_kv.contested', host: hostId, ours: mine.split(' '), theirs, replaced: count, holdMs: entry.until - now },
        'another replica keeps sharing other addresses for this host id (two agents with one --host-id?): ours are written again more and more rarely',
      );
    }
  }

  /** Writes the pending lists one at a time, rate bounded, retrying failures with backoff (a failed one after the others). */
  private pump(): void {
    if (this.writing || !this.known || this.pending.size === 0 || this.stopSignal.signal.aborted) return;
    this.writing = this.drain().finally(() => {
      this.writing = undefined;
      this.pump();
    });
  }

  private async drain(): Promise<void> {
    const backoff = new Backoff({ initialMs: 250, maxMs: 30_000 });
    const signal = this.stopSignal.signal;
    while (this.pending.size > 0 && !signal.aborted) {
      const [hostId, addresses] = this.pending.entries().next().value as [string, readonly string[]];
      const at = (this.opts.now ?? (() => new Date()))().toISOString();
      this.inFlight = hostId;
      try {
        await this.opts.client.kvPut(`${this.base}${hostKeySegment(hostId)!}`, JSON.stringify({ addresses, at, by: this.writerId }), { signal });
        this.writes += 1;
        backoff.reset();
        if (same(this.pending.get(hostId), addresses)) this.pending.delete(hostId);
        this.kv.set(hostId, addresses); // what KV holds now (the follower confirms)
        this.wrote.set(hostId, addresses.join(' '));
        this.inFlight = undefined;
        this.log.debug({ event: 'hosts_kv.written', host: hostId, addresses }, 'host addresses shared in Consul');
        await sleep(this.opts.minWriteIntervalMs ?? 100, signal);
      } catch (e) {
        this.inFlight = undefined;
        if (signal.aborted) return;
        // To the back of the queue: a write Consul keeps refusing (one key's ACL, say) does not hold up the others.
        const queued = this.pending.get(hostId);
        if (queued !== undefined) {
          this.pending.delete(hostId);
          this.pending.set(hostId, queued);
        }
        const delayMs = backoff.next();
        this.log.warn({ event: 'hosts_kv.write_failed', host: hostId, err: (e as Error).message, retryInMs: delayMs }, 'cannot share host addresses in Consul; will retry');
        await sleep(delayMs, signal);
      }
    }
  }
}
