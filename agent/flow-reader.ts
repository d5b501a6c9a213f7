/**
 * The agent's recorded flows (issue 11; docs/architecture.md "Flows"): every `--flow-interval`
 * it reads the kernel's flow sets and overflow counters (src/render/render-flows.ts) and keeps
 * what changed since the previous read until the sync client takes it (`FlowSource`).
 *
 * Contract
 * - What is read: the flow sets and overflow rules of the state the kernel holds
 *   (KernelDataplane.flowLayout, per family), each set with `ipset list -o save <set>` (one
 *   process per set: a missing set fails alone), the counters with `iptables-save -c -t mangle`
 *   (`ip6tables-save` for IPv6). Parsing is pure (src/render/flow-read.ts): a line that does not
 *   parse is skipped and counted (`skipped` on /status), never thrown.
 * - The diff, per set entry (address, proto:port), against the previous read: new (not known),
 *   grown (packets larger: the difference is reported), or re-added (its remaining timeout is
 *   larger than the previous remaining minus the time elapsed, beyond 2 s of slack: the entry
 *   expired and came back, its counts start again and are reported whole). Unchanged entries
 *   report nothing; entries gone from the set are forgotten. A set that could not be read this
 *   time keeps what was known of it. `firstSeenMs` is estimated from the timeout (when the kernel
 *   added the entry), `lastSeenMs` is the read that saw it grow.
 * - Overflow: each overflow rule's packet counter against the previous read; a counter smaller
 *   than last time (its chain was rewritten) counts from zero.
 * - Bounds: at most `maxEntries` known entries per set (the kernel set holds no more); pending
 *   records are merged by key (direction, verdict, source, destination, protocol, port), at most
 *   `maxEntries` per set read, the rest is dropped and counted; `take(max)` hands out at most
 *   `max` records, the rest stays for the next call. What is known of a set or an overflow rule
 *   the kernel no longer holds (an app left the host: its sets were read once more, then
 *   destroyed) is forgotten at the next full read.
 * - After an agent restart the entries still in the sets are reported once more (the reader keeps
 *   nothing on disk): at most `--flow-timeout` of history is counted twice.
 * - Reads never overlap (a slow read makes the next interval wait); a read failure is logged and
 *   shown on /status (`reason`), the next interval tries again.
 */
import type { Logger } from 'pino';
import type { FlowEntry, FlowOverflow, FlowSource, FlowStatusInfo } from '../src/flows/flow-types.js';
import type { Family } from '../src/net/family.js';
import { counterKey, parseFlowEntries, parseRuleCounters, type FlowSetEntry } from '../src/render/flow-read.js';
import type { FlowRecording, FlowSet, RenderedFlows } from '../src/render/render-flows.js';
import type { CommandRunner } from './dataplane/command-runner.js';

/** Slack when comparing remaining timeouts (the kernel's timer granularity, the read's own duration). */
const READD_SLACK_SECONDS = 2;

export interface FlowReaderOptions {
  readonly runner: CommandRunner;
  /** The flow sets and overflow rules the kernel holds now (KernelDataplane.flowLayout). */
  readonly layout: () => readonly RenderedFlows[] | undefined;
  /** Why the kernel does not record although asked to (KernelDataplane.flowsRefused). */
  readonly refused?: () => string | undefined;
  readonly intervalSeconds: number;
  readonly recording: FlowRecording;
  readonly logger: Logger;
  /** Tests: the clock (ms since the epoch). */
  readonly now?: () => number;
}

interface Known {
  readonly packets: number;
  readonly timeout: number;
  readonly readAtMs: number;
  readonly addedMs: number;
}

type Pending = { -readonly [K in keyof FlowEntry]: FlowEntry[K] };

export interface FlowReaderCounters {
  readonly reads: number;
  readonly readFailures: number;
  /** Set lines that did not parse. */
  readonly skipped: number;
  /** Records dropped because pending was full. */
  readonly dropped: number;
  readonly lastReadMs: number;
}

export class FlowReader implements FlowSource {
  private readonly opts: FlowReaderOptions;
  private readonly now: () => number;
  private readonly known = new Map<string, Map<string, Known>>();
  private readonly ruleCounts = new Map<string, number>();
  private readonly pending = new Map<string, Pending>();
  private readonly lost = new Map<string, { direction: FlowOverflow['direction']; verdict: FlowOverflow['verdict']; family: 4 | 6; packets: number }>();
  private timer: NodeJS.Timeout | undefined;
  private reading: Promise<void> | undefined;
  private lastError: string | undefined;
  private counts = { reads: 0, readFailures: 0, skipped: 0, dropped: 0, lastReadMs: 0 };

  constructor(options: FlowReaderOptions) {
    this.opts = options;
    this.now = options.now ?? Date.now;
  }

  get counters(): FlowReaderCounters {
    return { ...this.counts };
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.read(), this.opts.intervalSeconds * 1000);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One read of every flow set held (or only `names`); concurrent calls share the read in progress. */
  read(names?: readonly string[]): Promise<void> {
    if (this.reading) return names ? this.reading.then(() => this.read(names)) : this.reading;
    this.reading = this.readNow(names).finally(() => {
      this.reading = undefined;
    });
    return this.reading;
  }

  take(max: number): { entries: FlowEntry[]; overflow: FlowOverflow[]; more: boolean } {
    const entries: FlowEntry[] = [];
    for (const [key, entry] of this.pending) {
      if (entries.length >= max) break;
      entries.push(entry);
      this.pending.delete(key);
    }
    const overflow = [...this.lost.values()].filter((l) => l.packets > 0);
    this.lost.clear();
    return { entries, overflow, more: this.pending.size > 0 };
  }

  status(): FlowStatusInfo {
    const held = this.opts.layout() !== undefined;
    const reason = this.opts.refused?.() ?? this.lastError ?? (held ? 'recording' : 'no state applied yet: nothing recorded');
    return { recording: held && reason === 'recording', reason, intervalSeconds: this.opts.intervalSeconds, maxEntries: this.opts.recording.maxEntries };
  }

  private async readNow(names: readonly string[] | undefined): Promise<void> {
    const layout = this.opts.layout();
    if (layout === undefined) return;
    const started = performance.now();
    this.counts.reads++;
    try {
      const wanted = names === undefined ? undefined : new Set(names);
      for (const flows of layout) {
        for (const set of flows.sets) if (wanted === undefined || wanted.has(set.name)) await this.readSet(set);
      }
      if (names === undefined) {
        this.forgetUnheld(layout);
        for (const flows of layout) await this.readCounters(flows);
      }
      this.lastError = undefined;
    } catch (err) {
      this.counts.readFailures++;
      this.lastError = `reading the flow sets failed: ${(err as Error).message}`;
      this.opts.logger.warn({ event: 'flows.read_failed', err: (err as Error).message }, 'reading the flow sets failed: retrying at the next interval');
    }
    this.counts.lastReadMs = performance.now() - started;
  }

  private async readSet(set: FlowSet): Promise<void> {
    const result = await this.opts.runner.run(['ipset', 'list', '-o', 'save', set.name]);
    if (result.code !== 0) return; // gone or being recreated: what was known stays
    const parsed = parseFlowEntries(result.stdout);
    this.counts.skipped += parsed.skipped;
    this.diffSet(set, parsed.sets.get(set.name) ?? [], this.now());
  }

  /** The diff of one set's entries against the previous read (see the header). */
  diffSet(set: FlowSet, entries: readonly FlowSetEntry[], nowMs: number): void {
    const before = this.known.get(set.name) ?? new Map<string, Known>();
    const after = new Map<string, Known>();
    const max = this.opts.recording.maxEntries;
    for (const e of entries) {
      if (after.size >= max) break;
      const key = `${e.address},${e.protocol}:${e.port}`;
      const prev = before.get(key);
      const addedMs = nowMs - Math.max(0, this.opts.recording.timeoutSeconds - e.timeout) * 1000;
      const readded = prev !== undefined && e.timeout > prev.timeout - (nowMs - prev.readAtMs) / 1000 + READD_SLACK_SECONDS;
      const fresh = prev === undefined || readded;
      after.set(key, { packets: e.packets, timeout: e.timeout, readAtMs: nowMs, addedMs: fresh ? addedMs : prev.addedMs });
      const packets = fresh ? e.packets : e.packets - prev.packets;
      if (packets <= 0) continue;
      // Bytes: counted whole for a new entry; for a grown one the share of the new packets.
      const bytes = fresh ? e.bytes : Math.round((e.bytes * packets) / Math.max(1, e.packets));
      this.addPending(set, e, packets, bytes, fresh ? addedMs : prev.addedMs, nowMs);
    }
    this.known.set(set.name, after);
  }

  private addPending(set: FlowSet, e: FlowSetEntry, packets: number, bytes: number, firstSeenMs: number, lastSeenMs: number): void {
    const ingress = set.direction === 'ingress';
    const source = ingress ? e.address : (set.appId ?? '');
    const destination = ingress ? '' : e.address;
    const key = [set.direction, set.verdict, source, destination, e.protocol, e.port].join('|');
    const prev = this.pending.get(key);
    if (prev) {
      prev.packets += packets;
      prev.bytes += bytes;
      prev.firstSeenMs = Math.min(prev.firstSeenMs, firstSeenMs);
      prev.lastSeenMs = Math.max(prev.lastSeenMs, lastSeenMs);
      return;
    }
    if (this.pending.size >= this.pendingLimit()) {
      this.counts.dropped++;
      return;
    }
    this.pending.set(key, { direction: set.direction, verdict: set.verdict, source, destination, protocol: e.protocol, port: e.port, packets, bytes, firstSeenMs, lastSeenMs });
  }

  /** Pending is bounded by the sets' sizes: `maxEntries` per set held. */
  private pendingLimit(): number {
    const sets = (this.opts.layout() ?? []).reduce((n, f) => n + f.sets.length, 0);
    return Math.max(1, sets) * this.opts.recording.maxEntries;
  }

  /** Forgets the sets and overflow rules `layout` no longer holds, so what is known stays bounded by the sets held. */
  private forgetUnheld(layout: readonly RenderedFlows[]): void {
    const sets = new Set(layout.flatMap((f) => f.sets.map((s) => s.name)));
    for (const name of this.known.keys()) if (!sets.has(name)) this.known.delete(name);
    const rules = new Set<string>();
    for (const f of layout) {
      const family = f.sets[0]?.family; // as readCounters reads them
      if (family !== undefined) for (const r of f.overflow) rules.add(ruleStateKey(family, r));
    }
    for (const key of this.ruleCounts.keys()) if (!rules.has(key)) this.ruleCounts.delete(key);
  }

  private async readCounters(flows: RenderedFlows): Promise<void> {
    const family = flows.sets[0]?.family;
    if (family === undefined || flows.overflow.length === 0) return;
    const result = await this.opts.runner.run([family === 4 ? 'iptables-save' : 'ip6tables-save', '-c', '-t', 'mangle']);
    if (result.code !== 0) throw new Error(`${family === 4 ? 'iptables-save' : 'ip6tables-save'} exited ${result.code}: ${result.stderr.trim().slice(0, 200)}`);
    this.diffCounters(family, flows, parseRuleCounters(result.stdout));
  }

  /** The overflow counters' growth since the previous read (a smaller counter: its chain was rewritten). */
  diffCounters(family: Family, flows: RenderedFlows, counters: ReadonlyMap<string, { packets: number }>): void {
    for (const rule of flows.overflow) {
      const key = counterKey(rule.chain, rule.comment);
      const now = counters.get(key)?.packets;
      if (now === undefined) continue;
      const stateKey = ruleStateKey(family, rule);
      const prev = this.ruleCounts.get(stateKey) ?? 0;
      this.ruleCounts.set(stateKey, now);
      const grown = now >= prev ? now - prev : now;
      if (grown === 0) continue;
      const lostKey = `${rule.direction}|${rule.verdict}|${family}`;
      const entry = this.lost.get(lostKey) ?? { direction: rule.direction, verdict: rule.verdict, family, packets: 0 };
      entry.packets += grown;
      this.lost.set(lostKey, entry);
    }
  }
}

/** An overflow rule's key in `ruleCounts` (its family: that of the sets read with it). */
function ruleStateKey(family: Family, rule: RenderedFlows['overflow'][number]): string {
  return `${family} ${counterKey(rule.chain, rule.comment)}`;
}
