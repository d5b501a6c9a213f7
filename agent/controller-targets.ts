/**
 * Which controller replica an agent dials (issue 12, "Agents know several controllers"), in the
 * manner of Calico's Typha clients:
 *
 * - Candidates come from a source: `--controller` given several times (a fixed list), a DNS name
 *   with several addresses (every address `HOST` of `--controller HOST:PORT` resolves to,
 *   resolved again whenever the agent has tried them all), or the passing instances of a Consul
 *   service (followed with blocking queries by the caller, which calls `setCandidates`).
 * - Each agent keeps its OWN random order of the candidates (shuffled with the injected random
 *   source), so thousands of agents spread over the replicas instead of all dialling the first.
 *   A stream that fails or is refused (a replica at its connection cap says so) moves the agent to
 *   the next candidate in its order; the delay before dialling is the sync client's backoff with
 *   full jitter, reset once a replica answers.
 * - A new candidate list keeps the order of the candidates still in it and puts new ones at
 *   random places; the candidate in use stays in use while it is listed (an agent never leaves a
 *   working replica because Consul's list changed), and a vanished one is left at the next move.
 *
 * Pure bookkeeping: no I/O here; the DNS source is `resolveAll`, given a lookup function.
 */

/** A dialable target, "host:port" (IPv6 in brackets). */
export type Target = string;

export interface ControllerTargetsOptions {
  /** Uniform in [0, 1). Default Math.random. */
  readonly random?: () => number;
}

export class ControllerTargets {
  private order: Target[] = [];
  private at = 0;
  /** Moves since the list was last gone round completely (0..order.length). */
  private moves = 0;
  private readonly random: () => number;

  constructor(candidates: readonly Target[] = [], options: ControllerTargetsOptions = {}) {
    this.random = options.random ?? Math.random;
    this.setCandidates(candidates);
  }

  /** The candidates in this agent's order. */
  get candidates(): readonly Target[] {
    return this.order;
  }

  /** The target to dial now; undefined when there is none. */
  current(): Target | undefined {
    return this.order[this.at];
  }

  /**
   * The stream to the current target failed or was refused: the next target in this agent's
   * order. `roundDone` is true when every candidate was tried since the last good stream (the
   * caller may then re-resolve the source before going round again).
   */
  advance(): { target: Target | undefined; roundDone: boolean } {
    if (this.order.length === 0) return { target: undefined, roundDone: true };
    this.at = (this.at + 1) % this.order.length;
    this.moves++;
    const roundDone = this.moves >= this.order.length;
    if (roundDone) this.moves = 0;
    return { target: this.order[this.at], roundDone };
  }

  /** A replica answered: a new round starts from it. */
  connected(): void {
    this.moves = 0;
  }

  /** A new candidate list (from the source); see the header for what is kept. */
  setCandidates(list: readonly Target[]): void {
    const wanted = new Set(list);
    const current = this.current();
    const kept = this.order.filter((t) => wanted.has(t));
    const known = new Set(kept);
    const next = [...kept];
    for (const t of [...wanted].sort()) {
      if (known.has(t)) continue;
      next.splice(Math.floor(this.random() * (next.length + 1)), 0, t);
      known.add(t);
    }
    this.order = next;
    const stay = current !== undefined ? next.indexOf(current) : -1;
    // The one in use stays; a vanished one is replaced by the candidate that took its place.
    this.at = stay >= 0 ? stay : next.length === 0 ? 0 : Math.min(this.at, next.length - 1);
    if (stay < 0) this.moves = 0;
  }
}

/** "host:port" → its parts (IPv6 in brackets); undefined when it is not one. */
export function splitTarget(target: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]{1,253})):(\d{1,5})$/.exec(target);
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port < 1 || port > 65535) return undefined;
  return { host: m[1] ?? m[2]!, port };
}

/** A dialable target for an address and a port (IPv6 bracketed). */
export function targetOf(address: string, port: number): Target {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

export type LookupAll = (host: string) => Promise<readonly { readonly address: string; readonly family: number }[]>;

/**
 * Every address `host:port` names: the address itself when it is one, else each address the
 * lookup returns (A and AAAA), as targets, sorted and without duplicates. Throws when the name
 * does not resolve (the caller keeps the list it had).
 */
export async function resolveAll(target: string, lookup: LookupAll): Promise<Target[]> {
  const parts = splitTarget(target);
  if (!parts) throw new Error(`${JSON.stringify(target.slice(0, 100))} is not HOST:PORT`);
  if (/^[0-9.]+$/.test(parts.host) || parts.host.includes(':')) return [targetOf(parts.host, parts.port)];
  const found = await lookup(parts.host);
  if (found.length === 0) throw new Error(`${parts.host} resolves to no address`);
  return [...new Set(found.map((a) => targetOf(a.address, parts.port)))].sort();
}
