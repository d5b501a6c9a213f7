/**
 * The line format of the controller's saved flows (`flows.json` under --state-dir; written by
 * src/controller/flow-persistence.ts). Pure: lines in, windows out, and back.
 *
 *   {"format":"portcullis-flows-v1","savedAt":"<ISO>","windowMs":60000}      first line
 *   {"D":<id>,"destination":{…}}                                               a destination (shared)
 *   {"E":<id>,"decided":{"tier","rule"?,"at"?,"parts":[…]}}                    a decision (shared)
 *   {"r":<id>,"d":dir,"h":reporter,"s":source,"t":destination,"source":{…},"D":<id>,"E":<id>}
 *   {"w":<window start, ms>}                                                   then its lines:
 *   {"a":<resolution id>,"v":<verdict index>,"p":packets,"b":bytes,"f":first ms,"l":last ms}
 *   {"lost":{"reportedBy","direction","verdict","family","packets"}}
 * Every line comes before the first line that names its id; one line per JSON value, so
 * a file of a million aggregates is written and read line by line, never as one string. Any
 * line that does not read as one of these makes the whole file corrupt (FlowFileError, with
 * its line number): the caller sets it aside and starts empty.
 */
import { FLOW_VERDICTS } from './flow-types.js';
import type { ObservedFlow } from './observed-flow.js';
import { keyOf, type FlowResolution, type SharedDecision } from './resolve-flow.js';
import { lostKey, type Aggregate, type FlowWindow, type LostCount } from './flow-store.js';

export const FLOW_FILE_FORMAT = 'portcullis-flows-v1';

export class FlowFileError extends Error {}

/** The lines of `windows` (each without its line feed). */
export function* flowFileLines(windows: readonly FlowWindow[], savedAtMs: number, windowMs: number): Generator<string> {
  yield JSON.stringify({ format: FLOW_FILE_FORMAT, savedAt: new Date(savedAtMs).toISOString(), windowMs });
  const ids = new Map<FlowResolution, number>();
  const destinations = new Map<object, number>();
  const decisions = new Map<object, number>();
  for (const w of windows) {
    yield JSON.stringify({ w: w.start });
    for (const a of w.aggs.values()) {
      let id = ids.get(a.r);
      if (id === undefined) {
        id = ids.size;
        ids.set(a.r, id);
        const r = a.r;
        let D = destinations.get(r.destination);
        if (D === undefined) {
          D = destinations.size;
          destinations.set(r.destination, D);
          yield JSON.stringify({ D, destination: r.destination });
        }
        let E = decisions.get(r.decided);
        if (E === undefined) {
          E = decisions.size;
          decisions.set(r.decided, E);
          yield JSON.stringify({ E, decided: r.decided });
        }
        yield JSON.stringify({ r: id, d: r.direction, h: r.reportedBy, s: r.rawSource, t: r.rawDestination, source: r.source, D, E });
      }
      yield JSON.stringify({ a: id, v: a.v, p: a.p, b: a.b, f: a.f, l: a.l });
    }
    for (const l of w.lost.values()) yield JSON.stringify({ lost: l });
  }
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

/** Reads the lines of a saved file one by one; `finish` gives the windows. */
export class FlowFileReader {
  private lineNo = 0;
  private readonly resolutions: FlowResolution[] = [];
  private readonly destinations: ObservedFlow['destination'][] = [];
  private readonly decisions: SharedDecision[] = [];
  private readonly windows: FlowWindow[] = [];
  private current: FlowWindow | undefined;

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
    if (this.lineNo === 1) {
      if (v['format'] !== FLOW_FILE_FORMAT) return this.fail(`does not name the format ${FLOW_FILE_FORMAT}`);
      return;
    }
    if ('w' in v) return this.window(v);
    if ('r' in v) return this.resolution(v);
    if ('D' in v) return this.shared(v, 'D', 'destination', validDestination, this.destinations);
    if ('E' in v) return this.shared(v, 'E', 'decided', validDecision, this.decisions);
    if ('a' in v) return this.aggregate(v);
    if ('lost' in v) return this.lost(v['lost']);
    return this.fail('is none of the line kinds');
  }

  finish(): FlowWindow[] {
    if (this.lineNo === 0) this.fail('is missing (the file is empty)');
    return this.windows;
  }

  private fail(what: string): never {
    throw new FlowFileError(`line ${this.lineNo} ${what}`);
  }

  private window(v: Json): void {
    if (!isTime(v['w'])) return this.fail('has a window start that is not a number');
    this.current = { start: v['w'], aggs: new Map(), lost: new Map() };
    this.windows.push(this.current);
  }

  private resolution(v: Json): void {
    if (v['r'] !== this.resolutions.length) return this.fail('has a resolution id out of sequence');
    if (v['d'] !== 'ingress' && v['d'] !== 'egress') return this.fail('has a direction that is not ingress or egress');
    if (!isString(v['h']) || !isString(v['s']) || !isString(v['t'])) return this.fail('has a reporter, source or destination that is not text');
    if (!validSource(v['source'])) return this.fail('has a malformed source');
    const destination = typeof v['D'] === 'number' ? this.destinations[v['D']] : undefined;
    const decided = typeof v['E'] === 'number' ? this.decisions[v['E']] : undefined;
    if (!destination || !decided) return this.fail('names an unknown destination or decision');
    this.resolutions.push({ direction: v['d'], reportedBy: v['h'], rawSource: v['s'], rawDestination: v['t'], source: v['source'], destination, decided, keys: [undefined, undefined, undefined] });
  }

  private shared<T>(v: Json, id: string, field: string, valid: (x: unknown) => x is T, into: T[]): void {
    if (v[id] !== into.length) return this.fail(`has a ${field} id out of sequence`);
    if (!valid(v[field])) return this.fail(`has a malformed ${field}`);
    into.push(v[field]);
  }

  private aggregate(v: Json): void {
    const w = this.current;
    if (!w) return this.fail('has an aggregate before any window');
    const r = typeof v['a'] === 'number' ? this.resolutions[v['a']] : undefined;
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
