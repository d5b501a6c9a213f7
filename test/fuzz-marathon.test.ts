/**
 * Fuzz: generated Marathon payloads — deep, huge, truncated, wrong types, hostile strings — thrown
 * at the payload parsers (pure) and at a running MarathonSource through the Marathon double
 * (list answers and event-stream frames). Asserted: nothing throws, an unusable answer gives a
 * clear reason, and the last good cluster is kept (a broken app keeps its last good definition).
 * Runs are bounded in count and time (numRuns, interruptAfterTimeLimit) so the file takes seconds;
 * a failure prints fast-check's seed and shrunk counterexample.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_JSON_LIMITS, parseBoundedJson } from '../src/json/bounded-json.js';
import { previewJson } from '../src/json/json-preview.js';
import { isRecord } from '../src/marathon/json-guards.js';
import { MarathonSource } from '../src/marathon/marathon-source.js';
import { parseApps, requireEmbeddedTasks } from '../src/marathon/parse-apps.js';
import { parseEvent } from '../src/marathon/parse-event.js';
import { parseTasks } from '../src/marathon/parse-tasks.js';
import { MarathonDouble, waitFor } from './support/marathon-double.js';

const LIMIT_MS = 4000;
const run = { numRuns: 300, interruptAfterTimeLimit: LIMIT_MS } as const;

const hostileString = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 30 }),
  fc.constantFrom('', '/', '/a;rm -rf /', '/$(reboot)', '/a\nb', '\u0000', '\ud800', '/../..', '/shop/tasks', '%2e%2e', '"', '\\', '{}', '[['),
  fc.integer({ min: 1, max: 300_000 }).map((n) => `/${'x'.repeat(n)}`),
);

/** Nesting as text: arrays, objects or both, up to far past any recursion limit. */
const deepText = fc
  .tuple(fc.integer({ min: 1, max: 150_000 }), fc.constantFrom('[', '{"a":', 'mixed'))
  .map(([n, kind]) => {
    if (kind === '[') return `${'['.repeat(n)}${']'.repeat(n)}`;
    if (kind === '{"a":') return `${'{"a":'.repeat(n)}1${'}'.repeat(n)}`;
    return `${'[{"a":'.repeat(n)}1${'}]'.repeat(n)}`;
  });

/** A value 1..N levels deep (built iteratively; only fast-check-free code walks it). */
const deepValue = fc.integer({ min: 1, max: 120_000 }).map((n) => {
  let v: unknown = 'leaf';
  for (let i = 0; i < n; i++) v = i % 2 ? [v] : { apps: v };
  return v;
});

/** Any JSON type (shallow: generated payloads are serialised with the recursive JSON.stringify). */
const wrongType = fc.oneof(fc.jsonValue({ maxDepth: 3 }), hostileString);

/** App-shaped objects whose fields have any type. */
const appLike = fc.record(
  {
    id: fc.oneof(hostileString, fc.constantFrom('/ok/a', '/ok/b'), wrongType),
    labels: fc.oneof(fc.dictionary(hostileString, hostileString, { maxKeys: 3 }), wrongType),
    portDefinitions: fc.oneof(fc.array(fc.record({ port: wrongType, name: wrongType, protocol: wrongType, labels: wrongType }, { requiredKeys: [] }), { maxLength: 3 }), wrongType),
    networks: fc.oneof(fc.array(fc.record({ mode: fc.oneof(fc.constantFrom('host', 'container/bridge', 'container'), wrongType) }), { maxLength: 2 }), wrongType),
    container: wrongType,
    requirePorts: wrongType,
    tasks: fc.oneof(
      fc.array(fc.record({ id: wrongType, appId: wrongType, host: wrongType, ports: wrongType, state: wrongType, startedAt: wrongType }, { requiredKeys: [] }), { maxLength: 3 }),
      wrongType,
    ),
  },
  { requiredKeys: [] },
);

const payloadValue = fc.oneof(
  fc.record({ apps: fc.array(fc.oneof(appLike, wrongType), { maxLength: 5 }) }),
  fc.record({ app: fc.oneof(appLike, wrongType) }),
  fc.record({ tasks: fc.array(wrongType, { maxLength: 4 }) }),
  fc.record({ id: hostileString, apps: fc.array(appLike, { maxLength: 2 }), groups: fc.array(wrongType, { maxLength: 2 }) }),
  wrongType,
);

/** Values with a very deep part where a parser looks (never serialised: walked by the parsers only). */
const deepPayloadValue = fc
  .tuple(deepValue, fc.constantFrom('apps', 'app', 'tasks', 'labels', 'portDefinitions', 'networks', 'container', 'id'))
  .map(([v, where]) => {
    if (where === 'apps') return { apps: [v, { id: '/ok/a', tasks: [v] }] };
    if (where === 'app') return { app: v };
    if (where === 'tasks') return { tasks: [v, { id: 't', host: v, ports: v, startedAt: 'x' }] };
    return { apps: [{ id: '/ok/a', tasks: [], [where]: v }] };
  });

/** Payload text: valid JSON of a hostile value, truncated JSON, deep nesting, or bytes. */
const payloadText = fc.oneof(
  payloadValue.map((v) => JSON.stringify(v) ?? 'null'),
  fc.tuple(payloadValue, fc.nat()).map(([v, cut]) => {
    const t = JSON.stringify(v) ?? 'null';
    return t.slice(0, cut % (t.length + 1));
  }),
  deepText,
  deepText.map((t) => `{"apps": ${t}}`),
  fc.string({ unit: 'binary', maxLength: 200 }),
);

/** Depth of a JSON value, iteratively. */
function depthOf(v: unknown): number {
  let max = 0;
  const stack: [unknown, number][] = [[v, 0]];
  while (stack.length > 0) {
    const [x, d] = stack.pop()!;
    if (typeof x !== 'object' || x === null) continue;
    max = Math.max(max, d + 1);
    for (const c of Array.isArray(x) ? x : Object.values(x)) stack.push([c, d + 1]);
  }
  return max;
}

describe('fuzz: payload parsers', () => {
  it('parseBoundedJson never throws; what it accepts is within the depth limit', () => {
    fc.assert(
      fc.property(payloadText, (text) => {
        const r = parseBoundedJson(text);
        if (r.ok) expect(depthOf(r.value)).toBeLessThanOrEqual(DEFAULT_JSON_LIMITS.maxDepth);
        else expect(r.error).toMatch(/^(JSON nested deeper|JSON larger|invalid JSON)/);
      }),
      run,
    );
  });

  it('parseApps / requireEmbeddedTasks / parseTasks never throw on hostile values; problems are short strings', () => {
    fc.assert(
      fc.property(fc.oneof(payloadValue, deepPayloadValue, deepValue), (v) => {
        const apps = parseApps(v);
        requireEmbeddedTasks(apps);
        const tasks = parseTasks(v, apps.apps);
        for (const p of [...apps.problems, ...tasks.problems]) {
          expect(typeof p).toBe('string');
          expect(p.length).toBeLessThan(2000);
        }
        // Every app kept has a string id and only string labels.
        for (const a of apps.apps) {
          expect(typeof a.id).toBe('string');
          for (const val of Object.values(a.labels)) expect(typeof val).toBe('string');
        }
      }),
      run,
    );
  });

  it('parseEvent never throws on any type and data', () => {
    const type = fc.oneof(fc.constant(undefined), fc.constantFrom('status_update_event', 'api_post_event', 'deployment_success', 'app_terminated_event', 'instance_changed_event', 'event_stream_attached', 'message'), hostileString);
    fc.assert(
      fc.property(type, payloadText, (t, data) => {
        const ev = parseEvent(t, data);
        if (ev.kind === 'malformed') expect(typeof ev.error).toBe('string');
      }),
      run,
    );
  });

  it('previewJson never throws and stays within its bound', () => {
    fc.assert(
      fc.property(fc.oneof(fc.anything(), deepValue, deepPayloadValue, payloadValue), fc.integer({ min: 1, max: 300 }), (v, max) => {
        expect(previewJson(v, max).length).toBeLessThanOrEqual(max + 1);
      }),
      run,
    );
  });
});

describe('fuzz: a running MarathonSource fed hostile answers and events', () => {
  let d: MarathonDouble;
  let s: MarathonSource;

  beforeAll(async () => {
    d = await MarathonDouble.start();
    d.addApp({ id: '/ok/a', network: 'host', labels: { tier: 'front' }, ports: [{ name: 'http' }] });
    d.addApp({ id: '/ok/b', network: 'bridge', ports: [{ name: 'grpc', containerPort: 9000 }] });
    d.startTask('/ok/a', 'agent-1', [31000]);
    d.startTask('/ok/b', 'agent-2', [31001]);
    s = new MarathonSource({ url: d.url, backoff: { initialMs: 5, maxMs: 20 }, requestTimeoutMs: 5000, maxBodyBytes: 512 * 1024 });
    await s.start();
    await waitFor(() => s.status().streamConnected, 'stream attached');
    await s.relist();
  });

  afterAll(async () => {
    await s?.stop();
    await d?.close();
  });

  it('a hostile list answer: rejected with a reason and the cluster kept, or applied app by app', async () => {
    const good = s.cluster();
    expect(good.tasks).toHaveLength(2);
    await fc.assert(
      fc.asyncProperty(payloadText, async (text) => {
        d.setListRewrite(null);
        await s.relist(); // back to the good cluster
        d.setListRewrite(() => text);
        await s.relist();
        const st = s.status();
        // What the source should make of it, from the pure parsers.
        const json = parseBoundedJson(text, { maxBytes: 512 * 1024 });
        const list = json.ok && isRecord(json.value) && Array.isArray(json.value.apps) ? requireEmbeddedTasks(parseApps({ apps: json.value.apps })) : null;
        if (list === null || (list.apps.length === 0 && list.skippedAppIds.length === 0 && list.anonymousSkipped === 0)) {
          expect(st.stale).toBe(true);
          expect(st.reason).toMatch(list === null ? /^GET \/v2\/apps\?embed=apps\.tasks: \S/ : /^Marathon answered an empty app list/);
          expect(s.cluster()).toEqual(good);
          return;
        }
        expect(st.stale).toBe(false);
        // Skipped apps keep their last good state; an entry without a readable id keeps them all.
        const kept = good.apps.filter((a) => (list.anonymousSkipped > 0 || list.skippedAppIds.includes(a.id)) && !list.apps.some((b) => b.id === a.id));
        expect(s.cluster().apps).toEqual([...list.apps, ...kept].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)));
        for (const app of kept) expect(s.cluster().tasks.filter((t) => t.appId === app.id)).toEqual(good.tasks.filter((t) => t.appId === app.id));
      }),
      { numRuns: 60, interruptAfterTimeLimit: LIMIT_MS },
    );
    d.setListRewrite(null);
    await s.relist();
    expect(s.cluster()).toEqual(good);
    expect(s.status().stale).toBe(false);
  });

  it('one app of a good list broken in a field: that app keeps its last good definition, the others apply', async () => {
    const good = s.cluster();
    const field = fc.constantFrom('labels', 'portDefinitions', 'networks', 'container', 'requirePorts', 'tasks');
    const broken = fc.oneof(fc.constantFrom(5, 'x', true, [1], { a: 1 }), hostileString.filter((x) => x.length < 1000));
    await fc.assert(
      fc.asyncProperty(fc.constantFrom('/ok/a', '/ok/b'), field, broken, async (victim, key, value) => {
        // A "tasks" list of broken entries is a good app whose broken tasks are skipped (parse-tasks.ts).
        fc.pre(!(key === 'tasks' && Array.isArray(value)));
        // A container object without portMappings is a valid BRIDGE app with no ports (its task is then misaligned).
        fc.pre(!(key === 'container' && isRecord(value)));
        d.setListRewrite((body) => ({ apps: body.apps.map((a) => (a.id === victim ? { ...a, [key]: value } : a)) }));
        await s.relist();
        // The victim is skipped (kept as it was) or, where the field does not matter for its
        // network mode (portDefinitions of a BRIDGE app), read the same: nothing changes.
        expect(s.cluster()).toEqual(good);
        expect(s.status().stale).toBe(false);
      }),
      { numRuns: 60, interruptAfterTimeLimit: LIMIT_MS },
    );
    d.setListRewrite(null);
    await s.relist();
    expect(s.cluster()).toEqual(good);
  });

  it('hostile event-stream frames are skipped; the source keeps running and the cluster is kept', async () => {
    const good = s.cluster();
    const frame = fc.tuple(fc.oneof(fc.constantFrom('status_update_event', 'api_post_event', 'deployment_success', 'app_terminated_event'), hostileString.filter((x) => x.length < 200 && !/[\r\n]/.test(x))), payloadText);
    await fc.assert(
      fc.asyncProperty(fc.array(frame, { minLength: 1, maxLength: 4 }), async (frames) => {
        const text = frames.map(([type, data]) => `event: ${type}\n${data.split(/\r\n|\r|\n/).map((l) => `data: ${l}`).join('\n')}\n\n`).join('');
        d.sendRaw(text);
        await waitFor(() => s.status().streamConnected, 'stream (re)attached');
        await s.relist();
        expect(s.cluster().tasks).toEqual(good.tasks);
      }),
      { numRuns: 40, interruptAfterTimeLimit: LIMIT_MS },
    );
    await s.relist();
    expect(s.cluster()).toEqual(good);
  });
});
