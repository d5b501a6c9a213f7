/**
 * The line formats of the controller's saved flows (under --state-dir; written and read by
 * src/controller/flow-persistence.ts). Pure: lines in, windows out, and back. One JSON value per
 * line, so a million aggregates are written and read line by line, never as one string.
 *
 * v2 (`flows/`, what is written): resolutions are defined once, in a file of their own that
 * grows by appending, and each time window is a file of its own naming them by id, so a save
 * writes what changed (new resolutions, the windows that changed) and not everything:
 *
 *   resolutions.jsonl
 *     {"format":"portcullis-flows-v2","part":"resolutions","windowMs":60000}   first line
 *     {"D":<id>,"destination":{…}}                                             a destination (shared)
 *     {"E":<id>,"decided":{"tier","rule"?,"at"?,"parts":[…]}}                  a decision (shared)
 *     {"r":<id>,"d":dir,"h":reporter,"s":source,"t":destination,"source":{…},"D":<id>,"E":<id>}
 *   window-<start>.jsonl
 *     {"format":"portcullis-flows-v2","part":"window","w":<window start, ms>,"savedAt":"<ISO>"}
 *     {"a":<resolution id>,"v":<verdict index>,"p":packets,"b":bytes,"f":first ms,"l":last ms}
 *     {"lost":{"reportedBy","direction","verdict","family","packets"}}
 *
 * Ids are whole numbers, each defined once, before the first line that names it; they need not
 * be dense (a compacted resolutions file keeps the ids of the resolutions still named).
 *
 * v1 (`flows.json`, what releases before wrote; read once, then replaced by v2): one file, its
 * first line {"format":"portcullis-flows-v1",…}, then the D/E/r lines with ids 0, 1, 2, … in
 * sequence and the windows, each {"w":<start>} followed by its a/lost lines.
 *
 * Any line that does not read as what its file may hold makes that file corrupt (FlowFileError,
 * with its line number): the caller sets the file aside.
 */
import { FLOW_VERDICTS } from './flow-types.js';
import type { ObservedFlow } from './observed-flow.js';
import { keyOf, type FlowResolution, type SharedDecision } from './resolve-flow.js';
import { lostKey, type Aggregate, type FlowWindow, type LostCount } from './flow-store.js';

export const FLOW_FILE_FORMAT = 'portcullis-flows-v1';
export const FLOW_FILE_FORMAT_V2 = 'portcullis-flows-v2';

export class FlowFileError extends Error {}

type Destination = ObservedFlow['destination'];

/** The resolutions (and their destinations and decisions) defined so far, by id: what window files name. */
export interface FlowDict {
  readonly resolutions: Map<number, FlowResolution>;
  readonly destinations: Map<number, Destination>;
  readonly decisions: Map<number, SharedDecision>;
}

export function newFlowDict(): FlowDict {
  return { resolutions: new Map(), destinations: new Map(), decisions: new Map() };
}

/** The writing side of a FlowDict: the id of every resolution written, and the lines of new ones. */
export class FlowDictWriter {
  private readonly ids = new Map<FlowResolution, number>();
  private readonly destinationIds = new Map<Destination, number>();
  private readonly decisionIds = new Map<SharedDecision, number>();
  private next: { r: number; D: number; E: number } = { r: 0, D: 0, E: 0 };

  /** A writer that knows what `dict` defines (read back from disk), with the same ids. */
  static of(dict: FlowDict): FlowDictWriter {
    const w = new FlowDictWriter();
    for (const [id, d] of dict.destinations) w.destinationIds.set(d, id);
    for (const [id, e] of dict.decisions) w.decisionIds.set(e, id);
    for (const [id, r] of dict.resolutions) w.ids.set(r, id);
    w.next = { r: nextId(dict.resolutions), D: nextId(dict.destinations), E: nextId(dict.decisions) };
    return w;
  }

  /** Resolutions defined. */
  get size(): number {
    return this.ids.size;
  }

  /** The id of a resolution already defined (by `linesFor`). */
  idOf(r: FlowResolution): number {
    const id = this.ids.get(r);
    if (id === undefined) throw new Error('flow file: a resolution without an id');
    return id;
  }

  /** The lines that define every resolution of `windows` not defined yet, and their destinations and decisions. */
  *linesFor(windows: Iterable<FlowWindow>): Generator<string> {
    for (const w of windows) {
      for (const a of w.aggs.values()) {
        const r = a.r;
        if (this.ids.has(r)) continue;
        let D = this.destinationIds.get(r.destination);
        if (D === undefined) {
          this.destinationIds.set(r.destination, (D = this.next.D++));
          yield JSON.stringify({ D, destination: r.destination });
        }
        let E = this.decisionIds.get(r.decided);
        if (E === undefined) {
          this.decisionIds.set(r.decided, (E = this.next.E++));
          yield JSON.stringify({ E, decided: r.decided });
        }
        const id = this.next.r++;
        this.ids.set(r, id);
        yield resolutionLine(id, r, D, E);
      }
    }
  }

  /**
   * A writer defining only the resolutions `windows` name, with the ids they have here (a new id
   * for one not defined here), and the lines of a whole resolutions file for it: a compaction
   * after windows went, or the first file of a writer. The writer knows its ids once the lines
   * have been read to the end (they are made as they are read: a million of them are never one
   * array).
   */
  compacted(windows: readonly FlowWindow[], windowMs: number): { readonly writer: FlowDictWriter; readonly lines: Generator<string> } {
    const writer = new FlowDictWriter();
    writer.next = this.next;
    const idIn = <K>(own: Map<K, number>, mine: Map<K, number>, key: K, kind: 'r' | 'D' | 'E'): number | undefined => {
      if (mine.has(key)) return undefined;
      const id = own.get(key) ?? writer.next[kind]++;
      mine.set(key, id);
      return id;
    };
    const self = this;
    function* lines(): Generator<string> {
      yield resolutionsHeader(windowMs);
      for (const w of windows) {
        for (const a of w.aggs.values()) {
          const r = a.r;
          if (writer.ids.has(r)) continue;
          const D = idIn(self.destinationIds, writer.destinationIds, r.destination, 'D');
          if (D !== undefined) yield JSON.stringify({ D, destination: r.destination });
          const E = idIn(self.decisionIds, writer.decisionIds, r.decided, 'E');
          if (E !== undefined) yield JSON.stringify({ E, decided: r.decided });
          const id = idIn(self.ids, writer.ids, r, 'r')!;
          yield resolutionLine(id, r, writer.destinationIds.get(r.destination)!, writer.decisionIds.get(r.decided)!);
        }
      }
    }
    return { writer, lines: lines() };
  }
}

/** The line defining resolution `id` (its destination and decision defined before, as D and E). */
function resolutionLine(id: number, r: FlowResolution, D: number, E: number): string {
  return JSON.stringify({ r: id, d: r.direction, h: r.reportedBy, s: r.rawSource, t: r.rawDestination, source: r.source, D, E });
}

function nextId(m: Map<number, unknown>): number {
  let max = -1;
  for (const id of m.keys()) if (id > max) max = id;
  return max + 1;
}

/** The first line of a resolutions file. */
export function resolutionsHeader(windowMs: number): string {
  return JSON.stringify({ format: FLOW_FILE_FORMAT_V2, part: 'resolutions', windowMs });
}

/** The lines of one window's file; every resolution it names must be defined in `dict` (linesFor). */
export function* windowFileLines(w: FlowWindow, dict: FlowDictWriter, savedAtMs: number): Generator<string> {
  yield JSON.stringify({ format: FLOW_FILE_FORMAT_V2, part: 'window', w: w.start, savedAt: new Date(savedAtMs).toISOString() });
  for (const a of w.aggs.values()) yield JSON.stringify({ a: dict.idOf(a.r), v: a.v, p: a.p, b: a.b, f: a.f, l: a.l });
  for (const l of w.lost.values()) yield JSON.stringify({ lost: l });
}

type Json = Record<string, unknown>;

const isString = (v: unknown): v is string => typeof v === 'string';
const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v >= 0;
const isTime = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const isStrings = (v: unknown): v is string[] => Array.isArray(v) && v.every(isString);
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

function validSource(v: unknown): v is ObservedFlow['source'] {
  return isObject(v) && isString(v['address']) && ['app', 'host', 'network', 'outside'].includes(v['kind'] as string) && (v['hostId'] === undefined || isString(v['hostId'])) && isStrings(v['apps']) && isStrings(v['networks']);
}

function validDestination(v: unknown): v is ObservedFlow['destination'] {
  if (!isObject(v) || !isString(v['hostId']) || !isString(v['address']) || (v['protocol'] !== 'tcp' && v['protocol'] !== 'udp')) return false;
  if (!Number.isInteger(v['port']) || (v['portName'] !== undefined && !isString(v['portName']))) return false;
  return Array.isArray(v['apps']) && v['apps'].every((a) => isObject(a) && isString(a['appId']) && isStrings(a['taskIds']));
}

function validDecision(v: unknown): v is SharedDecision {
  const parts = isObject(v) ? v['parts'] : undefined;
  return isObject(v) && isString(v['tier']) && isStrings(parts) && parts.length > 0 && (v['rule'] === undefined || isString(v['rule'])) && (v['at'] === undefined || isString(v['at']));
}

/** What a file holds: a v1 `flows.json`, or one part of v2. */
export type FlowFilePart = 'v1' | 'resolutions' | 'window';

/**
 * Reads the lines of one saved file one by one; `finish` gives its windows. The resolutions a
 * v2 window file names come from `dict` (filled by reading the resolutions file with the same
 * dict); a v1 file has its own.
 */
export class FlowFileReader {
  private lineNo = 0;
  private readonly windows: FlowWindow[] = [];
  private current: FlowWindow | undefined;

  constructor(
    private readonly part: FlowFilePart = 'v1',
    private readonly dict: FlowDict = newFlowDict(),
  ) {}

  /** Lines read so far. */
  get lines(): number {
    return this.lineNo;
  }

  line(text: string): void {
    this.lineNo++;
    if (text.trim() === '') return;
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch {
      return this.fail('is not JSON');
    }
    if (!isObject(v)) return this.fail('is not a JSON object');
    if (this.lineNo === 1) return this.header(v);
    const defining = 'r' in v || 'D' in v || 'E' in v;
    const counting = 'w' in v || 'a' in v || 'lost' in v;
    if (this.part === 'window' && defining) return this.fail('defines a resolution in a window file');
    if (this.part === 'resolutions' && counting) return this.fail('has counts in the resolutions file');
    if ('w' in v) return this.window(v);
    if ('r' in v) return this.resolution(v);
    if ('D' in v) return this.shared(v, 'D', 'destination', validDestination, this.dict.destinations);
    if ('E' in v) return this.shared(v, 'E', 'decided', validDecision, this.dict.decisions);
    if ('a' in v) return this.aggregate(v);
    if ('lost' in v) return this.lost(v['lost']);
    return this.fail('is none of the line kinds');
  }

  finish(): FlowWindow[] {
    if (this.lineNo === 0) this.fail('is missing (the file is empty)');
    return this.windows;
  }

  private header(v: Json): void {
    if (this.part === 'v1') {
      if (v['format'] !== FLOW_FILE_FORMAT) return this.fail(`does not name the format ${FLOW_FILE_FORMAT}`);
      return;
    }
    if (v['format'] !== FLOW_FILE_FORMAT_V2 || v['part'] !== this.part) return this.fail(`does not name the format ${FLOW_FILE_FORMAT_V2} and the part '${this.part}'`);
    if (this.part === 'window') this.window(v);
  }

  private fail(what: string): never {
    throw new FlowFileError(`line ${this.lineNo} ${what}`);
  }

  private window(v: Json): void {
    if (!isTime(v['w'])) return this.fail('has a window start that is not a number');
    if (this.part === 'window' && this.current) return this.fail('has a second window');
    this.current = { start: v['w'], aggs: new Map(), lost: new Map() };
    this.windows.push(this.current);
  }

  /** Whether `id` may define a new entry of `into`: the next in sequence (v1), or any whole number not defined yet (v2). */
  private newId(id: unknown, into: Map<number, unknown>): boolean {
    if (this.part === 'v1') return id === into.size;
    return Number.isSafeInteger(id) && (id as number) >= 0 && !into.has(id as number);
  }

  private resolution(v: Json): void {
    if (!this.newId(v['r'], this.dict.resolutions)) return this.fail(this.part === 'v1' ? 'has a resolution id out of sequence' : 'has a resolution id that is not new');
    if (v['d'] !== 'ingress' && v['d'] !== 'egress') return this.fail('has a direction that is not ingress or egress');
    if (!isString(v['h']) || !isString(v['s']) || !isString(v['t'])) return this.fail('has a reporter, source or destination that is not text');
    if (!validSource(v['source'])) return this.fail('has a malformed source');
    const destination = typeof v['D'] === 'number' ? this.dict.destinations.get(v['D']) : undefined;
    const decided = typeof v['E'] === 'number' ? this.dict.decisions.get(v['E']) : undefined;
    if (!destination || !decided) return this.fail('names an unknown destination or decision');
    this.dict.resolutions.set(v['r'] as number, { direction: v['d'], reportedBy: v['h'], rawSource: v['s'], rawDestination: v['t'], source: v['source'], destination, decided, keys: [undefined, undefined, undefined] });
  }

  private shared<T>(v: Json, id: string, field: string, valid: (x: unknown) => x is T, into: Map<number, T>): void {
    if (!this.newId(v[id], into)) return this.fail(this.part === 'v1' ? `has a ${field} id out of sequence` : `has a ${field} id that is not new`);
    if (!valid(v[field])) return this.fail(`has a malformed ${field}`);
    into.set(v[id] as number, v[field]);
  }

  private aggregate(v: Json): void {
    const w = this.current;
    if (!w) return this.fail('has an aggregate before any window');
    const r = typeof v['a'] === 'number' ? this.dict.resolutions.get(v['a']) : undefined;
    if (!r) return this.fail('names an unknown resolution');
    const verdict = typeof v['v'] === 'number' ? FLOW_VERDICTS[v['v']] : undefined;
    if (verdict === undefined) return this.fail('has an unknown verdict');
    if (!isCount(v['p']) || !isCount(v['b']) || !isTime(v['f']) || !isTime(v['l'])) return this.fail('has counts or times that are not numbers');
    const a: Aggregate = { r, v: v['v'] as number, p: v['p'], b: v['b'], f: v['f'], l: v['l'] };
    w.aggs.set(keyOf(r, verdict), a);
  }

  private lost(v: unknown): void {
    const w = this.current;
    if (!w) return this.fail('has a lost count before any window');
    if (!isObject(v) || !isString(v['reportedBy']) || (v['direction'] !== 'ingress' && v['direction'] !== 'egress')) return this.fail('has a malformed lost count');
    if (!(FLOW_VERDICTS as readonly unknown[]).includes(v['verdict']) || (v['family'] !== 4 && v['family'] !== 6) || !isCount(v['packets'])) return this.fail('has a malformed lost count');
    const l = v as unknown as LostCount;
    w.lost.set(lostKey(l.reportedBy, l), { reportedBy: l.reportedBy, direction: l.direction, verdict: l.verdict, family: l.family, packets: l.packets });
  }
}
