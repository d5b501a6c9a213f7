/**
 * The state behind the Consul API double (consul-double.ts): one datacenter with one raft index,
 * the catalog of service instances with their checks, the local agent's registrations, the KV
 * store and sessions. Semantics follow Consul's HTTP API docs (hashicorp/consul
 * website/content/api-docs/, see test/fixtures/consul-payloads/SOURCES.md); where the docs are
 * silent the choice is written next to the code.
 *
 * Indexes: every write takes the next raft index. A query's index (X-Consul-Index) is the last
 * index that changed what it reads: per service name for health/catalog, the key's ModifyIndex
 * (or its deletion) for a key, the highest of those under a prefix, the KV table index when
 * nothing under it ever existed (as Consul's state store does: so any KV write wakes a query on
 * a missing key, with the same 404). `touch()` is a raft write that changes no result (the docs: "an
 * idempotent write that does not affect the result"); `restore()` puts back an older snapshot,
 * so every index goes BACKWARDS, as after a raft snapshot restore. Deterministic: session TTLs
 * expire only when a test says so (`expireSession`), session ids come from a counter; the one
 * clock is a session's lock delay (set "0s" to have none).
 */

import type { ConsulServiceInstance } from '../../src/consul/consul-payloads.js';

export type CheckStatus = 'passing' | 'warning' | 'critical';

/** What a registration says of a service (the client's view of an instance, without its node). */
export type ServiceFields = Omit<ConsulServiceInstance, 'node'>;

export interface CheckState {
  readonly checkId: string;
  readonly name: string;
  status: CheckStatus;
  output: string;
  readonly http: string;
  readonly interval: string;
  readonly deregisterCriticalServiceAfter: string;
}

export interface ServiceInstance extends ServiceFields {
  readonly node: string;
  readonly nodeAddress: string;
  readonly checks: CheckState[];
  /** Registered through this double's local agent (vs. another node's agent). */
  readonly local: boolean;
  readonly createIndex: number;
  modifyIndex: number;
}

export interface KvEntry {
  readonly key: string;
  value: Buffer;
  flags: string;
  session: string | undefined;
  lockIndex: number;
  readonly createIndex: number;
  modifyIndex: number;
}

export interface SessionState {
  readonly id: string;
  readonly name: string;
  readonly node: string;
  readonly ttl: string;
  readonly behavior: 'release' | 'delete';
  /** Nanoseconds, as the docs' Read Session answer shows it. */
  readonly lockDelayNs: number;
  readonly createIndex: number;
  renewals: number;
}

interface Snapshot {
  readonly raft: number;
  readonly kvTable: number;
  readonly instances: ServiceInstance[];
  readonly serviceIndex: Map<string, number>;
  readonly kv: Map<string, KvEntry>;
  readonly tombstones: Map<string, number>;
  readonly sessions: Map<string, SessionState>;
}

export type KvPutResult = boolean | { readonly error: string; readonly status: number };

export interface KvPutOptions {
  readonly cas?: string;
  readonly flags?: string;
  readonly acquire?: string;
  readonly release?: string;
}

export class ConsulState {
  raft = 10;
  private kvTable = 1;
  instances: ServiceInstance[] = [];
  private serviceIndex = new Map<string, number>();
  kv = new Map<string, KvEntry>();
  /** Deleted key → index of its deletion (Consul keeps tombstones, so a delete does not lower a prefix's index). */
  private tombstones = new Map<string, number>();
  sessions = new Map<string, SessionState>();
  /** Key → time (ms) before which it cannot be acquired (lock delay after an invalidated holder). */
  private lockDelayUntil = new Map<string, number>();
  private sessionCounter = 0;
  private touched = 0;
  private readonly listeners = new Set<() => void>();

  /** Called after every change (waiters re-check their index). */
  onChange(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private changed(): void {
    for (const fn of [...this.listeners]) fn();
  }

  private next(): number {
    this.raft += 1;
    return this.raft;
  }

  // ---- indexes ----

  serviceQueryIndex(name: string): number {
    return Math.max(this.serviceIndex.get(name) ?? this.tableIndexOfServices(), this.touched, 1);
  }

  private tableIndexOfServices(): number {
    let max = 1;
    for (const v of this.serviceIndex.values()) max = Math.max(max, v);
    return max;
  }

  kvQueryIndex(key: string, recurse: boolean): number {
    let max = 0;
    if (recurse) {
      for (const e of this.kv.values()) if (e.key.startsWith(key)) max = Math.max(max, e.modifyIndex);
      for (const [k, i] of this.tombstones) if (k.startsWith(key)) max = Math.max(max, i);
    } else {
      max = this.kv.get(key)?.modifyIndex ?? this.tombstones.get(key) ?? 0;
    }
    return Math.max(max === 0 ? this.kvTable : max, this.touched, 1);
  }

  sessionQueryIndex(id: string): number {
    return Math.max(this.sessions.get(id)?.createIndex ?? this.raft, this.touched, 1);
  }

  /** A raft write that changes no result: every blocking query returns with a higher index and the same body. */
  touch(): void {
    this.touched = this.next();
    this.changed();
  }

  snapshot(): Snapshot {
    return structuredClone({
      raft: this.raft,
      kvTable: this.kvTable,
      instances: this.instances,
      serviceIndex: this.serviceIndex,
      kv: this.kv,
      tombstones: this.tombstones,
      sessions: this.sessions,
    });
  }

  /** A raft snapshot restore: state and indexes go back to `snap` (indexes go backwards); blocking queries return at once. */
  restore(snap: Snapshot): void {
    const s = structuredClone(snap);
    this.raft = s.raft;
    this.kvTable = s.kvTable;
    this.instances = s.instances;
    this.serviceIndex = s.serviceIndex;
    this.kv = s.kv;
    // structuredClone turns a Buffer into a plain Uint8Array.
    for (const e of this.kv.values()) e.value = Buffer.from(e.value);
    this.tombstones = s.tombstones;
    this.sessions = s.sessions;
    this.touched = 0;
    this.lockDelayUntil.clear();
    this.changed();
  }

  // ---- services ----

  /** Adds or replaces (same node and ID) an instance. A check that already exists keeps its status. */
  register(inst: Omit<ServiceInstance, 'createIndex' | 'modifyIndex'>): void {
    const at = this.next();
    const i = this.instances.findIndex((x) => x.node === inst.node && x.id === inst.id);
    const old = i >= 0 ? this.instances[i] : undefined;
    for (const c of inst.checks) {
      const before = old?.checks.find((o) => o.checkId === c.checkId);
      if (before) {
        c.status = before.status;
        c.output = before.output;
      }
    }
    const full: ServiceInstance = { ...inst, createIndex: old?.createIndex ?? at, modifyIndex: at };
    if (old) this.instances[i] = full;
    else this.instances.push(full);
    if (old && old.name !== inst.name) this.serviceIndex.set(old.name, at);
    this.serviceIndex.set(inst.name, at);
    this.changed();
  }

  deregister(node: string, id: string): boolean {
    const i = this.instances.findIndex((x) => x.node === node && x.id === id);
    if (i < 0) return false;
    const [gone] = this.instances.splice(i, 1);
    this.serviceIndex.set(gone!.name, this.next());
    this.changed();
    return true;
  }

  /** The local agent lost every registration (agent restarted without its state): gone from the catalog too. */
  forgetLocal(): number {
    const local = this.instances.filter((x) => x.local);
    for (const x of local) this.deregister(x.node, x.id);
    return local.length;
  }

  /** Sets the status of a check, found by check id or by the id of its service (its only check). */
  setCheck(idOrService: string, status: CheckStatus, output = ''): void {
    for (const inst of this.instances) {
      for (const c of inst.checks) {
        if (c.checkId === idOrService || inst.id === idOrService) {
          if (c.status === status && c.output === output) continue;
          c.status = status;
          c.output = output;
          inst.modifyIndex = this.next();
          this.serviceIndex.set(inst.name, inst.modifyIndex);
        }
      }
    }
    this.changed();
  }

  instancesOf(name: string, passingOnly: boolean): ServiceInstance[] {
    return this.instances.filter((x) => x.name === name && (!passingOnly || x.checks.every((c) => c.status === 'passing')));
  }

  // ---- KV ----

  kvGet(key: string, recurse: boolean): KvEntry[] {
    if (!recurse) {
      const e = this.kv.get(key);
      return e ? [e] : [];
    }
    return [...this.kv.values()].filter((e) => e.key.startsWith(key)).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  kvPut(key: string, value: Buffer, o: KvPutOptions): KvPutResult {
    const old = this.kv.get(key);
    if (o.acquire !== undefined && o.release !== undefined) return { status: 400, error: 'Conflicting flags: acquire=&release=' };
    if (o.cas !== undefined) {
      const cas = Number(o.cas);
      if (!/^\d+$/.test(o.cas)) return { status: 400, error: `Invalid CAS index: ${o.cas}` };
      if (cas === 0 ? old !== undefined : old?.modifyIndex !== cas) return false;
    }
    if (o.flags !== undefined && !/^\d+$/.test(o.flags)) return { status: 400, error: `Invalid flags: ${o.flags}` };
    let session = old?.session;
    let lockIndex = old?.lockIndex ?? 0;
    if (o.acquire !== undefined) {
      if (!this.sessions.has(o.acquire)) return { status: 500, error: `invalid session "${o.acquire}"` };
      if (old?.session !== undefined && old.session !== o.acquire) return false;
      if ((this.lockDelayUntil.get(key) ?? 0) > Date.now()) return false;
      if (old?.session !== o.acquire) lockIndex += 1;
      session = o.acquire;
    }
    if (o.release !== undefined) {
      if (old?.session !== o.release) return false;
      session = undefined;
    }
    const at = this.next();
    this.kv.set(key, { key, value, flags: o.flags ?? old?.flags ?? '0', session, lockIndex, createIndex: old?.createIndex ?? at, modifyIndex: at });
    this.tombstones.delete(key);
    this.kvTable = at;
    this.changed();
    return true;
  }

  kvDelete(key: string, recurse: boolean, cas: string | undefined): KvPutResult {
    if (cas !== undefined) {
      if (!/^\d+$/.test(cas)) return { status: 400, error: `Invalid CAS index: ${cas}` };
      // "Unlike PUT, the index must be greater than 0 for Consul to take any action".
      if (recurse || Number(cas) === 0 || this.kv.get(key)?.modifyIndex !== Number(cas)) return false;
    }
    const keys = recurse ? [...this.kv.keys()].filter((k) => k.startsWith(key)) : this.kv.has(key) ? [key] : [];
    if (keys.length === 0) return true;
    const at = this.next();
    for (const k of keys) {
      this.kv.delete(k);
      this.tombstones.set(k, at);
    }
    this.kvTable = at;
    this.changed();
    return true;
  }

  // ---- sessions ----

  /** Deterministic UUID-shaped ids: 00000000-0000-4000-8000-<counter>. */
  createSession(s: Omit<SessionState, 'id' | 'createIndex' | 'renewals'>): SessionState {
    this.sessionCounter += 1;
    const id = `00000000-0000-4000-8000-${this.sessionCounter.toString(16).padStart(12, '0')}`;
    const full: SessionState = { ...s, id, createIndex: this.next(), renewals: 0 };
    this.sessions.set(id, full);
    this.changed();
    return full;
  }

  /**
   * Invalidates a session (destroy, or its TTL ran out): every key it holds is released (the
   * Session field cleared, LockIndex kept) or deleted, as its Behavior says, and cannot be acquired
   * again during the session's lock delay (the one clock of the double; LockDelay "0s" disables it).
   */
  invalidateSession(id: string): boolean {
    const s = this.sessions.get(id);
    if (!s) return false;
    this.sessions.delete(id);
    const at = this.next();
    for (const e of [...this.kv.values()]) {
      if (e.session !== id) continue;
      if (s.lockDelayNs > 0) this.lockDelayUntil.set(e.key, Date.now() + s.lockDelayNs / 1e6);
      if (s.behavior === 'delete') {
        this.kv.delete(e.key);
        this.tombstones.set(e.key, at);
      } else {
        e.session = undefined;
        e.modifyIndex = at;
      }
      this.kvTable = at;
    }
    this.changed();
    return true;
  }
}
