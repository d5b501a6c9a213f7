/**
 * The state version (src/compile/state-version.ts): the from-scratch definition (`stateVersion`,
 * members only) against a literal reading of the definition written here, and the compiler's
 * O(change) fast path (`HostVersions`: per-claim terms, sums patched by claim changes) against
 * the from-scratch one, on random states and random change sequences, and on compiled and
 * incrementally patched states of random clusters.
 */
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compile } from '../src/compile/compile.js';
import { AUDIT_KINDS, EGRESS_KINDS, INGRESS_KINDS, SET_KINDS, type DesiredState, type SetContents, type SetKind } from '../src/compile/desired-state.js';
import { IncrementalCompiler } from '../src/compile/incremental-compiler.js';
import { HostVersions, stateVersion, viewVersion, type ClaimChange } from '../src/compile/state-version.js';
import { agentView, type WireFeatures } from '../src/grpc/agent-view.js';
import type { Mode } from '../src/policy/policy-model.js';
import type { ClusterState, Task } from '../src/inventory/cluster-state.js';
import { modedScenarioArb } from './support/group-mode-scenario.js';
import { scenarioArb } from './support/random-cluster.js';

const ALLOW: readonly SetKind[] = ['allow-ip4', 'allow-net4', 'allow-ip6', 'allow-net6'];

/** The definition of the header comment, read literally (streamed hashes, BigInt sums). */
function referenceVersion(mode: Mode, sets: SetContents): string {
  const h = createHash('sha256').update(`portcullis-state-v2\n${mode}\n`);
  const groups = new Map<string, string[][]>();
  for (const kind of INGRESS_KINDS) {
    const members = sets[kind];
    h.update(`#${kind} ${members.length}\n`);
    const k = ALLOW.indexOf(kind);
    if (k < 0) {
      for (const m of members) h.update(`${m}\n`);
      continue;
    }
    for (const m of members) {
      const at = m.lastIndexOf(',');
      const [source, suffix] = at < 0 ? [m, ''] : [m.slice(0, at), m.slice(at)];
      if (!groups.has(suffix)) groups.set(suffix, [[], [], [], []]);
      groups.get(suffix)![k]!.push(source);
    }
  }
  let sum = 0n;
  for (const [suffix, perKind] of groups) {
    const digests = perKind.map((sources) => {
      const s = createHash('sha256');
      for (const source of sources) s.update(`${source}\n`);
      return s.digest('hex');
    });
    const g = createHash('sha256').update(`${suffix}\n${digests.join('\n')}`).digest('hex');
    sum = (sum + BigInt(`0x${g}`)) % 2n ** 256n;
  }
  h.update(`#allow ${sum.toString(16).padStart(64, '0')}\n`);
  if (EGRESS_KINDS.some((kind) => sets[kind].length > 0)) {
    let egress = 0n;
    for (const kind of EGRESS_KINDS) {
      for (const m of sets[kind]) egress = (egress + BigInt(`0x${createHash('sha256').update(`${kind}\n${m}`).digest('hex')}`)) % 2n ** 256n;
    }
    h.update(`#egress ${egress.toString(16).padStart(64, '0')}\n`);
  }
  return h.digest('hex').slice(0, 16);
}

/** A source set as the fast path sees it: texts per allow kind (any order, duplicate-free). */
interface FakeSet {
  readonly texts: readonly (readonly string[])[];
}

const octet = fc.integer({ min: 0, max: 255 });
const ip4 = fc.tuple(octet, octet, octet, octet).map((o) => o.join('.'));
const net4 = fc.tuple(octet, octet, fc.integer({ min: 1, max: 31 })).map(([a, b, p]) => `${a}.${b}.0.0/${p}`);
const hex = fc.integer({ min: 0, max: 0xffff }).map((n) => n.toString(16));
const ip6 = fc.tuple(hex, hex).map(([a, b]) => `2001:db8:${a}::${b}`);
const net6 = fc.tuple(hex, fc.integer({ min: 1, max: 127 })).map(([a, p]) => `fd00:${a}::/${p}`);
const setArb: fc.Arbitrary<FakeSet> = fc
  .tuple(...[ip4, net4, ip6, net6].map((a) => fc.uniqueArray(a, { maxLength: 12 })))
  .map((texts) => ({ texts }));
const suffixArb = fc.tuple(fc.constantFrom('tcp', 'udp'), fc.integer({ min: 1, max: 40 })).map(([p, n]) => `,${p}:${31000 + n}`);

/** The sorted lists of a host whose claims are `claims` (suffix → set). */
function listsOf(claims: ReadonlyMap<string, FakeSet>, managed: readonly string[]): SetContents {
  const sets = Object.fromEntries(SET_KINDS.map((k) => [k, [] as string[]])) as Record<SetKind, string[]>;
  sets['managed-tcp'] = [...managed];
  sets['failsafe-tcp'] = ['22'];
  for (const [suffix, set] of claims) ALLOW.forEach((kind, k) => sets[kind].push(...set.texts[k]!.map((t) => t + suffix)));
  for (const kind of ALLOW) sets[kind].sort();
  return sets;
}

const changeArb = fc.record({ suffix: suffixArb, set: fc.option(setArb, { nil: undefined }) });

/** Task `pick` (mod) of `c` moved to host `host` (mod), its first port changed: the n-th step of a random history. */
function move(c: ClusterState, pick: number, host: number, n: number): ClusterState {
  if (c.tasks.length === 0 || c.hosts.length === 0) return c;
  const k = pick % c.tasks.length;
  const old = c.tasks[k]!;
  const task: Task = { id: `${old.id}~${n}`, appId: old.appId, hostId: c.hosts[host % c.hosts.length]!.id, hostPorts: old.hostPorts.map((p, i) => (i === 0 ? 31000 + (n % 5) : p)) };
  const tasks = c.tasks.slice();
  tasks[k] = task;
  return { hosts: c.hosts, apps: c.apps, tasks };
}

const FEATURES: readonly WireFeatures[] = [
  { egress: false, groupModes: false },
  { egress: false, groupModes: true },
  { egress: true, groupModes: false },
  { egress: true, groupModes: true },
];

/** What an agent with `features` must be sent, written out here: the kinds it lacks emptied, mode audit when an audit kind it lacks had a member; versioned from scratch. */
function expectedView(state: DesiredState, features: WireFeatures): { mode: Mode; sets: SetContents; version: string } {
  const drop = (kind: SetKind) => (!features.egress && (EGRESS_KINDS as readonly SetKind[]).includes(kind)) || (!features.groupModes && (AUDIT_KINDS as readonly SetKind[]).includes(kind));
  const sets = Object.fromEntries(SET_KINDS.map((k) => [k, drop(k) ? [] : [...state.sets[k]]])) as unknown as SetContents;
  const mode = !features.groupModes && AUDIT_KINDS.some((k) => state.sets[k].length > 0) ? 'audit' : state.mode;
  return { mode, sets, version: stateVersion(mode, sets) };
}

describe('state version', () => {
  it('stateVersion is the definition, read literally', () => {
    fc.assert(
      fc.property(fc.constantFrom<Mode>('enforce', 'audit'), fc.array(fc.tuple(suffixArb, setArb), { maxLength: 6 }), (mode, claims) => {
        const sets = listsOf(new Map(claims), ['31001', '31002']);
        expect(stateVersion(mode, sets)).toBe(referenceVersion(mode, sets));
        expect(stateVersion(mode, sets)).toMatch(/^[0-9a-f]{16}$/);
      }),
      { numRuns: 200, seed: 9 },
    );
    // Malformed members (no ',', a trailing ',') are versioned too, and differently.
    const odd = (m: string) => ({ ...listsOf(new Map(), []), 'allow-ip4': [m] });
    expect(stateVersion('enforce', odd('10.0.0.1'))).toBe(referenceVersion('enforce', odd('10.0.0.1')));
    expect(stateVersion('enforce', odd('10.0.0.1'))).not.toBe(stateVersion('enforce', odd('10.0.0.1,')));
  });

  it('versions egress members by the "#egress" line, and a state without any as before egress', () => {
    const egressArb = fc.record({
      task: fc.uniqueArray(fc.constantFrom('/a|t1', '/a|t2', '/b|t3'), { maxLength: 3 }),
      managed: fc.uniqueArray(ip4.map((a) => `${a},tcp:31000`), { maxLength: 8 }),
      allowed: fc.uniqueArray(ip4.map((a) => `/a|${a},tcp:31000`), { maxLength: 8 }),
    });
    fc.assert(
      fc.property(fc.array(fc.tuple(suffixArb, setArb), { maxLength: 3 }), egressArb, (claims, e) => {
        const sets = { ...listsOf(new Map(claims), ['31001']), 'egress-task': e.task.sort(), 'egress-managed4': e.managed.sort(), 'egress-ip4': e.allowed.sort() };
        expect(stateVersion('enforce', sets)).toBe(referenceVersion('enforce', sets));
      }),
      { numRuns: 100, seed: 10 },
    );
    // Without egress members the version is the one pinned below (unchanged by the egress kinds).
    const plain = listsOf(new Map([[',tcp:31000', { texts: [['10.0.0.5', '10.0.0.10'], ['10.1.0.0/16'], [], ['fd00::/8']] }]]), ['31000']);
    expect(stateVersion('enforce', plain)).toBe('c063121e12c169a0');
    const withEgress = { ...plain, 'egress-task': ['/a|t1'] };
    expect(stateVersion('enforce', withEgress)).not.toBe('c063121e12c169a0');
    // Kind and member both count: the same text in another egress kind is another version.
    expect(stateVersion('enforce', { ...plain, 'egress-managed4': ['10.0.0.1,tcp:1'] })).not.toBe(
      stateVersion('enforce', { ...plain, 'egress-managed6': ['10.0.0.1,tcp:1'] }),
    );
  });

  it('pins the version of one state (a change of the definition must be deliberate)', () => {
    const sets = listsOf(new Map([[',tcp:31000', { texts: [['10.0.0.5', '10.0.0.10'], ['10.1.0.0/16'], [], ['fd00::/8']] }]]), ['31000']);
    expect(sets['allow-ip4']).toEqual(['10.0.0.10,tcp:31000', '10.0.0.5,tcp:31000']);
    expect(referenceVersion('enforce', sets)).toBe('c063121e12c169a0');
    expect(stateVersion('enforce', sets)).toBe('c063121e12c169a0');
  });

  it('changes with any change of content', () => {
    const a: FakeSet = { texts: [['10.0.0.1'], [], [], []] };
    const b: FakeSet = { texts: [['10.0.0.2'], [], [], []] };
    const base = listsOf(new Map([[',tcp:1', a], [',tcp:2', b]]), ['1', '2']);
    const versions = [
      stateVersion('enforce', base),
      stateVersion('audit', base),
      // The two claims' sets swapped: same sources, same suffixes, other pairs.
      stateVersion('enforce', listsOf(new Map([[',tcp:1', b], [',tcp:2', a]]), ['1', '2'])),
      // One source moved from one port's group to the other's.
      stateVersion('enforce', listsOf(new Map([[',tcp:1', { texts: [['10.0.0.1', '10.0.0.2'], [], [], []] }], [',tcp:2', { texts: [[], [], [], []] }]]), ['1', '2'])),
      // The same member in another allow kind, a member twice, a managed port more.
      stateVersion('enforce', { ...base, 'allow-ip4': ['10.0.0.2,tcp:2'], 'allow-net4': ['10.0.0.1,tcp:1'] }),
      stateVersion('enforce', { ...base, 'allow-ip4': ['10.0.0.1,tcp:1', '10.0.0.1,tcp:1', '10.0.0.2,tcp:2'] }),
      stateVersion('enforce', { ...base, 'managed-tcp': ['1', '2', '3'] }),
    ];
    expect(new Set(versions).size).toBe(versions.length);
  });

  it('the fast path (fresh, then patched claim by claim) equals stateVersion on random states', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(suffixArb, setArb), { maxLength: 6 }), fc.array(fc.array(changeArb, { maxLength: 4 }), { maxLength: 8 }), (initial, steps) => {
        const versions = new HostVersions<FakeSet>((s) => s.texts);
        const claims = new Map(initial);
        const managed = ['31000'];
        let sets = listsOf(claims, managed);
        expect(versions.fresh('h', 'enforce', sets, [...claims].map(([suffix, set]) => ({ suffix, set })))).toBe(stateVersion('enforce', sets));
        for (const step of steps) {
          const changes: ClaimChange<FakeSet>[] = [];
          for (const { suffix, set } of step) {
            changes.push({ suffix, from: claims.get(suffix), to: set });
            if (set) claims.set(suffix, set);
            else claims.delete(suffix);
          }
          sets = listsOf(claims, managed);
          expect(versions.patched('h', 'audit', sets, changes)).toBe(stateVersion('audit', sets));
        }
      }),
      { numRuns: 300, seed: 10 },
    );
  });

  it('refuses to patch a host it never versioned', () => {
    const versions = new HostVersions<FakeSet>((s) => s.texts);
    expect(() => versions.patched('h', 'enforce', listsOf(new Map(), []), [])).toThrow(/no version sum/);
    versions.fresh('h', 'enforce', listsOf(new Map(), []), []);
    versions.forget('h');
    expect(() => versions.patched('h', 'enforce', listsOf(new Map(), []), [])).toThrow(/no version sum/);
  });

  it('compiled and incrementally patched states carry their from-scratch version', () => {
    let patched = 0;
    fc.assert(
      fc.property(scenarioArb, fc.array(fc.tuple(fc.nat(), fc.nat()), { minLength: 5, maxLength: 25 }), (scenario, steps) => {
        for (const s of compile(scenario.policy, scenario.cluster).states.values()) expect(s.version).toBe(stateVersion(s.mode, s.sets));
        const inc = new IncrementalCompiler(scenario.policy, scenario.cluster);
        let c = scenario.cluster;
        steps.forEach(([pick, host], n) => {
          c = move(c, pick, host, n);
          const r = inc.applyClusterChange(c);
          patched += r.changed.size;
          for (const s of r.changed.values()) expect(s.version, `host ${s.hostId}`).toBe(stateVersion(s.mode, s.sets));
        });
      }),
      { numRuns: 60, seed: 11 },
    );
    expect(patched).toBeGreaterThan(100);
  }, 120_000);
});

describe("the version of an agent's view (agent-view.ts) from the compiler's parts", () => {
  it('equals the view versioned from scratch, for compiled and patched states with egress and per-group modes', () => {
    let stripped = 0;
    fc.assert(
      fc.property(fc.oneof(scenarioArb, modedScenarioArb), fc.array(fc.tuple(fc.nat(), fc.nat()), { minLength: 3, maxLength: 12 }), (scenario, steps) => {
        const check = (s: DesiredState) => {
          for (const features of FEATURES) {
            const expected = expectedView(s, features);
            const view = agentView(s, features);
            expect({ mode: view.mode, sets: { ...view.sets }, version: view.version }, `host ${s.hostId}`).toEqual(expected);
            // The fast path answers for every state the compiler made (not only through agentView's fallback).
            const without = { egress: !features.egress, audit: !features.groupModes };
            expect(viewVersion(s, expected.mode, without)).toBe(expected.version);
            if (view !== s) stripped++;
          }
        };
        for (const s of compile(scenario.policy, scenario.cluster).states.values()) check(s);
        const inc = new IncrementalCompiler(scenario.policy, scenario.cluster);
        let c = scenario.cluster;
        steps.forEach(([pick, host], n) => {
          c = move(c, pick, host, n);
          for (const s of inc.applyClusterChange(c).changed.values()) check(s);
        });
      }),
      { numRuns: 60, seed: 12 },
    );
    // Views that strip something were checked, not only states that are their own view.
    expect(stripped).toBeGreaterThan(100);
  }, 120_000);

  it('is not derived for a state the compiler did not version as it is: stateVersion is used', () => {
    const scenario = fc.sample(scenarioArb.filter((s) => s.policy.defaults.egress), { numRuns: 1, seed: 13 })[0]!;
    const compiled = [...compile(scenario.policy, scenario.cluster).states.values()].find((s) => EGRESS_KINDS.some((k) => s.sets[k].length > 0));
    expect(compiled, 'a compiled state with egress members').toBeDefined();
    const state = compiled!;
    const none = { egress: true, audit: true };
    // Equal sets in another object (a state decoded or loaded), or the same sets named with another version or mode.
    const copy = { ...state, sets: { ...state.sets } };
    expect(viewVersion(copy, 'enforce', none)).toBeUndefined();
    expect(viewVersion({ ...state, version: '0123456789abcdef' }, state.mode, none)).toBeUndefined();
    expect(viewVersion({ ...state, mode: state.mode === 'audit' ? 'enforce' : 'audit' }, state.mode, none)).toBeUndefined();
    // agentView still versions such a state's view from its members.
    const features = { egress: false, groupModes: true };
    expect(agentView(copy, features).version).toBe(expectedView(copy, features).version);
    expect(agentView(copy, features).version).toBe(agentView(state, features).version);
  });
});
