/**
 * Addresses of the hosts Marathon names: Marathon gives a task's `host` (a name or an address),
 * the compiler needs the host's addresses (a group's source set is every address of every host
 * that runs one of its tasks).
 *
 * Contract — where an address comes from, first match wins, never guessed:
 *  1. the agent's Hello on that host (SyncService records `addresses` per host id; we poll
 *     `agents()` every `pollMs`, default 1 s, and on `refreshAgents()`); with shared addresses
 *     (2.) only while that agent is connected here, after them once it left,
 *  2. with Consul (`--consul` and `--consul-service`), the addresses another replica learnt from
 *     that host's Hello, shared in KV under `<prefix>/hosts/` (shared-host-addresses.ts); this
 *     replica publishes there the Hello addresses of the agents connected to it, so every
 *     replica compiles a host with the same addresses whichever replica its agent is on,
 *  3. the host id itself when it is an IP address literal,
 *  4. DNS, only when enabled (`--dns`): `lookup(name, {all: true})`, cached for `ttlMs`
 *     (default 60 s); a failure keeps the last good answer and is retried after `retryMs`
 *     (default 10 s); at most `maxInFlight` lookups at a time (default 16). Names that are not
 *     syntactically host names (Marathon data is untrusted) are never looked up.
 * A host with none of these has no address: `fill` leaves it empty (the compiler then reports
 * it and its tasks are in no group's source set) and `problems` says so in one line per host.
 * `onChange` fires when a host's known addresses change, so the caller recompiles.
 * `fill` also adds every host whose agent said Hello (here, or shared) but that runs no task.
 * Addresses are canonical text (src/net/address.ts); invalid ones are dropped, and so are
 * IPv4-mapped IPv6 ones (IPv4 traffic from the host is matched as IPv4 and would never match
 * them): an agent's Hello address dropped for either reason is logged at warn, once per host and
 * distinct list, with why (start the agent with the address as its IPv4 form, or fix --address).
 */
import { promises as dnsPromises } from 'node:dns';
import type { Logger } from 'pino';
import pino from 'pino';
import { parseAddress } from '../net/address.js';
import type { ClusterState, Host } from '../inventory/cluster-state.js';
import { canonicalAddresses as canonicalList } from './shared-host-addresses.js';

export type AddressResolver = (name: string) => Promise<readonly string[]>;

/** What the Sync service knows: `SyncService.agents()` fits. */
export type AgentAddressSource = () => Iterable<{ readonly hostId: string; readonly addresses: readonly string[]; readonly connected?: boolean }>;

/** Addresses other replicas learnt from Hellos (SharedHostAddresses fits). */
export interface SharedAddressSource {
  lookup(hostId: string): readonly string[] | undefined;
  hosts(): Iterable<[string, readonly string[]]>;
  /** This replica holds a connected agent's Hello with these (canonical, sorted) addresses. */
  publish(hostId: string, addresses: readonly string[]): void;
  onChange(listener: (hostIds: readonly string[]) => void): () => void;
}

export interface HostAddressesOptions {
  readonly agents?: AgentAddressSource;
  /** Hello addresses shared between replicas (Consul KV); between this replica's Hellos and the literal. */
  readonly shared?: SharedAddressSource;
  /** Resolve unknown host names with DNS. Default false. */
  readonly dns?: boolean;
  /** Injectable for tests; default `dns.promises.lookup(name, {all: true})`. */
  readonly resolver?: AddressResolver;
  readonly ttlMs?: number;
  readonly retryMs?: number;
  readonly pollMs?: number;
  readonly maxInFlight?: number;
  readonly now?: () => number;
  readonly logger?: Logger;
}

export type AddressOrigin = 'hello' | 'shared' | 'literal' | 'dns';

interface DnsEntry {
  addresses: readonly string[];
  /** When to look up again. */
  refreshAt: number;
  error: string | undefined;
}

const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;

async function systemLookup(name: string): Promise<readonly string[]> {
  const answers = await dnsPromises.lookup(name, { all: true });
  return answers.map((a) => a.address);
}

export class HostAddresses {
  private readonly hello = new Map<string, readonly string[]>();
  /** Per host, the Hello addresses last refused (logged once per distinct list). */
  private readonly refusedHello = new Map<string, string>();
  private readonly dnsCache = new Map<string, DnsEntry>();
  private readonly inFlight = new Set<string>();
  private readonly waiting: string[] = [];
  private readonly listeners = new Set<(hostIds: readonly string[]) => void>();
  private readonly resolver: AddressResolver;
  private readonly now: () => number;
  private readonly log: Logger;
  private timer: NodeJS.Timeout | undefined;
  private unshare: (() => void) | undefined;
  /** Hosts whose agent is connected here (as of the last poll). */
  private connected = new Set<string>();
  private stopped = false;

  constructor(private readonly opts: HostAddressesOptions = {}) {
    this.resolver = opts.resolver ?? systemLookup;
    this.now = opts.now ?? Date.now;
    this.log = (opts.logger ?? pino({ level: 'silent' })).child({ module: 'host-addresses' });
  }

  /** Starts polling the agents' Hello addresses. */
  start(): void {
    this.stopped = false;
    // Another replica's Hello changes a host only where this replica has none of its own.
    this.unshare ??= this.opts.shared?.onChange((ids) => {
      const changed = ids.filter((id) => !this.connected.has(id));
      if (changed.length > 0) this.fire(changed);
    });
    this.refreshAgents();
    if (this.opts.agents && !this.timer) {
      this.timer = setInterval(() => this.refreshAgents(), this.opts.pollMs ?? 1000);
      this.timer.unref();
    }
  }

  stop(): void {
    this.stopped = true;
    this.unshare?.();
    this.unshare = undefined;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.waiting.length = 0;
  }

  onChange(listener: (hostIds: readonly string[]) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Reads the agents' Hello addresses now; fires onChange for hosts whose addresses changed. */
  refreshAgents(): void {
    if (!this.opts.agents) return;
    const changed: string[] = [];
    const connected = new Set<string>();
    for (const agent of this.opts.agents()) {
      const { list, refused } = canonicalList(agent.addresses);
      const refusedKey = refused.join('\n');
      if (refusedKey !== (this.refusedHello.get(agent.hostId) ?? '')) {
        if (refused.length > 0) this.log.warn({ host: agent.hostId, refused }, 'agent Hello addresses ignored: not usable as source addresses');
        this.refusedHello.set(agent.hostId, refusedKey);
      }
      if (list.length === 0) continue;
      if (agent.connected !== false) {
        connected.add(agent.hostId);
        this.opts.shared?.publish(agent.hostId, list);
      }
      const old = this.hello.get(agent.hostId);
      if (old && old.join(' ') === list.join(' ')) continue;
      this.hello.set(agent.hostId, list);
      changed.push(agent.hostId);
    }
    // With shared addresses, an agent that connects here or leaves changes which list wins.
    if (this.opts.shared) {
      const listed = new Set(changed);
      for (const id of connected) if (!this.connected.has(id) && !listed.has(id)) changed.push(id);
      for (const id of this.connected) if (!connected.has(id) && !listed.has(id)) changed.push(id);
    }
    this.connected = connected;
    if (changed.length > 0) this.fire(changed);
  }

  /** The known addresses of a host and where they came from, or undefined (unknown). */
  lookup(hostId: string): { addresses: readonly string[]; origin: AddressOrigin } | undefined {
    // Our own Hello first while that agent is connected here; once it left (e.g. to another
    // replica), what KV holds is newer than the Hello we kept.
    const hello = this.hello.get(hostId);
    if (hello && this.connected.has(hostId)) return { addresses: hello, origin: 'hello' };
    const shared = this.opts.shared?.lookup(hostId);
    if (shared && shared.length > 0) return { addresses: shared, origin: 'shared' };
    if (hello) return { addresses: hello, origin: 'hello' };
    const literal = parseAddress(hostId);
    if (literal.ok) return { addresses: [literal.canonical], origin: 'literal' };
    const entry = this.dnsCache.get(hostId);
    if (entry && entry.addresses.length > 0) return { addresses: entry.addresses, origin: 'dns' };
    return undefined;
  }

  /**
   * The cluster with every host's known addresses (hosts it lists already keep theirs when we
   * know none). Starts DNS lookups for hosts without a fresh answer (when enabled).
   */
  fill(cluster: ClusterState): ClusterState {
    const hosts: Host[] = cluster.hosts.map((h) => {
      const known = this.lookup(h.id);
      if (this.opts.dns && (known === undefined || known.origin === 'dns')) this.maybeResolve(h.id);
      return known ? { id: h.id, addresses: known.addresses } : h;
    });
    // Hosts whose agent said Hello but that run no task: they get a state too (failsafe only, no
    // managed port), so ports of tasks that left the host are released, not kept filtered. The
    // shared ones too, so every replica compiles the same hosts.
    const listed = new Set(hosts.map((h) => h.id));
    for (const id of this.hello.keys()) if (!listed.has(id)) hosts.push({ id, addresses: this.lookup(id)!.addresses }), listed.add(id);
    for (const [id, addresses] of this.opts.shared?.hosts() ?? []) if (!listed.has(id)) hosts.push({ id, addresses }), listed.add(id);
    return { hosts, apps: cluster.apps, tasks: cluster.tasks };
  }

  /** One line per host of `cluster` without a known address. */
  problems(cluster: ClusterState): string[] {
    const out: string[] = [];
    for (const h of cluster.hosts) {
      if (h.addresses.length > 0 || this.lookup(h.id)) continue;
      const dnsError = this.dnsCache.get(h.id)?.error;
      const why = dnsError ? ` (DNS: ${dnsError})` : this.opts.dns ? '' : ' (no agent Hello yet; --dns is off)';
      out.push(`host ${h.id} has no known address: its tasks are not allowed as sources${why}`);
    }
    return out;
  }

  private maybeResolve(name: string): void {
    if (this.stopped || !HOSTNAME.test(name) || this.inFlight.has(name) || this.waiting.includes(name)) return;
    const entry = this.dnsCache.get(name);
    if (entry && entry.refreshAt > this.now()) return;
    this.waiting.push(name);
    this.pump();
  }

  private pump(): void {
    const max = this.opts.maxInFlight ?? 16;
    while (!this.stopped && this.inFlight.size < max && this.waiting.length > 0) {
      const name = this.waiting.shift()!;
      this.inFlight.add(name);
      void this.resolve(name).finally(() => {
        this.inFlight.delete(name);
        this.pump();
      });
    }
  }

  private async resolve(name: string): Promise<void> {
    const old = this.dnsCache.get(name);
    let next: DnsEntry;
    try {
      const { list } = canonicalList(await this.resolver(name));
      if (list.length === 0) throw new Error('no addresses');
      next = { addresses: list, refreshAt: this.now() + (this.opts.ttlMs ?? 60_000), error: undefined };
    } catch (e) {
      const error = (e as Error).message;
      if (old?.error !== error) this.log.warn({ host: name, error }, 'DNS lookup of a host failed; will retry');
      next = { addresses: old?.addresses ?? [], refreshAt: this.now() + (this.opts.retryMs ?? 10_000), error };
    }
    this.dnsCache.set(name, next);
    if (this.stopped) return;
    if ((old?.addresses ?? []).join(' ') !== next.addresses.join(' ')) this.fire([name]);
  }

  private fire(hostIds: readonly string[]): void {
    for (const fn of [...this.listeners]) {
      try {
        fn(hostIds);
      } catch (e) {
        this.log.error({ err: e }, 'host address listener threw');
      }
    }
  }
}
