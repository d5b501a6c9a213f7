/**
 * Changed apps reach the compiler as new App objects, and only they (src/inventory/cluster-state.ts
 * reuseUnchangedApps): the incremental compiler tells a changed app by its identity
 * (src/compile/cluster-index.ts), with no JSON diff. So these fail when a changed app is missed:
 *  - by the compiler: every kind of definition change, as a new object, gives compile()'s states;
 *  - by a source: the Marathon source's store (re-list and re-read) and the static inventory feed
 *    (reload) keep the object of an unchanged app and never that of a changed one, and their
 *    snapshots drive the incremental compiler to compile()'s states.
 * And an unchanged app re-created as an equal object changes no state.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { compile } from '../src/compile/compile.js';
import { IncrementalCompiler } from '../src/compile/incremental-compiler.js';
import { StaticInventoryFeed } from '../src/controller/static-inventory-feed.js';
import { reuseUnchangedApps, sameApp, type App, type ClusterState } from '../src/inventory/cluster-state.js';
import { ClusterStore } from '../src/marathon/cluster-store.js';
import { ALLOW_FROM_LABEL } from '../src/policy/policy-model.js';
import { app, cluster, group, host, network, policy, task } from './support/policy-builder.js';

const P = policy({
  networks: [network('office', ['192.168.0.0/24'])],
  groups: [group('web', [], { tier: 'front' }), group('api', ['/api'])],
  rules: [{ action: 'allow', from: ['web'], to: ['api'], ports: ['http'] }],
});
const WEB = app('/web', [{ name: 'http' }], { tier: 'front' });
const API = app('/api', [{ name: 'http' }]);
const HOSTS = [host('h1', '10.0.0.1'), host('h2', '10.0.0.2'), host('h3', '10.0.0.3')];
const TASKS = [task('web.1', '/web', 'h1', [31000]), task('api.1', '/api', 'h2', [31000]), task('api.2', '/api', 'h3', [31001])];
const BEFORE = cluster(HOSTS, [WEB, API], TASKS);

/** Definition changes the compiler must see, each as a new object for the same app id. */
const CHANGES: readonly { readonly what: string; readonly apps: readonly App[] }[] = [
  { what: 'a port renamed (the rule names the port)', apps: [WEB, app('/api', [{ name: 'admin' }])] },
  { what: 'a port protocol', apps: [WEB, app('/api', [{ name: 'http', protocols: ['udp'] }])] },
  { what: 'an app label declaring a source', apps: [WEB, app('/api', [{ name: 'http' }], { [ALLOW_FROM_LABEL]: 'office' })] },
  { what: 'a port label declaring a source', apps: [WEB, app('/api', [{ name: 'http', labels: { [ALLOW_FROM_LABEL]: 'office' } }])] },
  { what: 'a label that takes the app out of a group', apps: [app('/web', [{ name: 'http' }], { tier: 'back' }), API] },
];

describe('changed apps reach the compiler', () => {
  it.each(CHANGES)('the incremental compiler sees $what', ({ apps }) => {
    const after = cluster(HOSTS, apps, TASKS);
    const expected = compile(P, after);
    expect(expected.states).not.toEqual(compile(P, BEFORE).states); // the change matters
    const inc = new IncrementalCompiler(P, BEFORE);
    const r = inc.applyClusterChange(after);
    expect(inc.states()).toEqual(expected.states);
    expect(inc.reports()).toEqual(expected.reports);
    for (const [hostId, state] of expected.states) {
      if (state.version !== compile(P, BEFORE).states.get(hostId)!.version) expect(r.changed.get(hostId)).toEqual(state);
    }
  });

  it('an unchanged app re-created as an equal object changes no state', () => {
    const inc = new IncrementalCompiler(P, BEFORE);
    const r = inc.applyClusterChange(cluster(HOSTS, structuredClone([WEB, API]), TASKS));
    expect(r.changed.size).toBe(0);
    expect(inc.states()).toEqual(compile(P, BEFORE).states);
  });

  it('sameApp compares every field, labels as maps', () => {
    expect(sameApp(WEB, structuredClone(WEB))).toBe(true);
    expect(sameApp(app('/a', [{}], { x: '1', y: '2' }), app('/a', [{}], { y: '2', x: '1' }))).toBe(true);
    const base = app('/a', [{ name: 'p', containerPort: 80, labels: { k: 'v' } }], { x: '1' }, 'bridge');
    const others = [
      app('/b', [{ name: 'p', containerPort: 80, labels: { k: 'v' } }], { x: '1' }, 'bridge'),
      app('/a', [{ name: 'p', containerPort: 80, labels: { k: 'v' } }], { x: '2' }, 'bridge'),
      app('/a', [{ name: 'p', containerPort: 80, labels: { k: 'v' } }], { x: '1', y: '' }, 'bridge'),
      app('/a', [{ name: 'p', containerPort: 80, labels: { k: 'v' } }], { x: '1' }, 'container'),
      app('/a', [{ name: 'q', containerPort: 80, labels: { k: 'v' } }], { x: '1' }, 'bridge'),
      app('/a', [{ containerPort: 80, labels: { k: 'v' } }], { x: '1' }, 'bridge'),
      app('/a', [{ name: 'p', containerPort: 81, labels: { k: 'v' } }], { x: '1' }, 'bridge'),
      app('/a', [{ name: 'p', containerPort: 80, labels: { k: 'w' } }], { x: '1' }, 'bridge'),
      app('/a', [{ name: 'p', containerPort: 80, labels: { k: 'v' }, protocols: ['tcp', 'udp'] }], { x: '1' }, 'bridge'),
      app('/a', [{ name: 'p', containerPort: 80, labels: { k: 'v' } }, {}], { x: '1' }, 'bridge'),
    ];
    for (const other of others) expect(sameApp(base, other)).toBe(false);
    const reused = reuseUnchangedApps([base, WEB], [structuredClone(WEB), others[1]!]);
    expect(reused[0]).toBe(WEB);
    expect(reused[1]).toBe(others[1]);
  });
});

describe('the Marathon store keeps unchanged apps and only those', () => {
  it('a re-list or a re-read keeps the object of an unchanged app, never of a changed one', () => {
    const store = new ClusterStore();
    store.replaceAll([WEB, API], TASKS);
    const first = store.snapshot();
    const inc = new IncrementalCompiler(P, { ...first, hosts: HOSTS });
    const [web, api] = first.apps;

    // A re-list with equal definitions (freshly parsed objects): the same App objects, no recompute.
    expect(store.replaceAll(structuredClone([WEB, API]), structuredClone(TASKS))).toEqual([]);
    const relisted = store.snapshot();
    expect(relisted.apps[0]).toBe(web);
    expect(relisted.apps[1]).toBe(api);
    expect(inc.applyClusterChange({ ...relisted, hosts: HOSTS }).recomputed).toBe(0);

    // Each change, by re-list and by re-read of the app: a new object, and compile()'s states.
    for (const change of CHANGES) {
      for (const how of ['re-list', 're-read'] as const) {
        store.replaceAll([WEB, API], TASKS);
        inc.applyClusterChange({ ...store.snapshot(), hosts: HOSTS });
        const changedId = change.apps.find((a) => !sameApp(a, a.id === '/web' ? WEB : API))!.id;
        const before = store.snapshot().apps.find((a) => a.id === changedId)!;
        const tasksOf = TASKS.filter((t) => t.appId === changedId);
        if (how === 're-list') store.replaceAll(structuredClone(change.apps), TASKS);
        else store.replaceApp(changedId, structuredClone(change.apps.find((a) => a.id === changedId)!), tasksOf);
        const snapshot: ClusterState = { ...store.snapshot(), hosts: HOSTS };
        const now = snapshot.apps.find((a) => a.id === changedId)!;
        expect(now, `${change.what} (${how})`).not.toBe(before);
        expect(now).toEqual(change.apps.find((a) => a.id === changedId));
        for (const a of snapshot.apps) if (a.id !== changedId) expect(a).toBe(first.apps.find((b) => b.id === a.id));
        inc.applyClusterChange(snapshot);
        expect(inc.states(), `${change.what} (${how})`).toEqual(compile(P, snapshot).states);
      }
    }
  });
});

describe('the static inventory feed keeps unchanged apps and only those', () => {
  let dir = '';
  afterEach(() => {
    if (dir !== '') rmSync(dir, { recursive: true, force: true });
    dir = '';
  });

  const inventory = (apiLabels: string) => `hosts:
  - { id: h1, addresses: [10.0.0.1] }
  - { id: h2, addresses: [10.0.0.2] }
apps:
  - { id: /web, labels: { tier: front }, ports: [{ name: http }] }
  - { id: /api, labels: { ${apiLabels} }, ports: [{ name: http }] }
tasks:
  - { app: /web, host: h1, ports: [31000] }
  - { app: /api, host: h2, ports: [31000] }
`;

  it('a reload that edits one app gives a new object for it and the old objects for the others', async () => {
    dir = mkdtempSync(join(tmpdir(), 'portcullis-changed-apps-'));
    const file = join(dir, 'inventory.yaml');
    writeFileSync(file, inventory('owner: a'));
    const delivered: ClusterState[] = [];
    const feed = new StaticInventoryFeed({ path: file, pollMs: 60_000 });
    try {
      await feed.start((c) => delivered.push(c));
      expect(delivered).toHaveLength(1);
      const inc = new IncrementalCompiler(P, delivered[0]!);
      writeFileSync(file, inventory(`"${ALLOW_FROM_LABEL}": office`));
      await feed.reload();
      expect(delivered).toHaveLength(2);
      const [before, after] = delivered as [ClusterState, ClusterState];
      expect(after.apps.find((a) => a.id === '/web')).toBe(before.apps.find((a) => a.id === '/web'));
      const api = after.apps.find((a) => a.id === '/api')!;
      expect(api).not.toBe(before.apps.find((a) => a.id === '/api'));
      expect(api.labels).toEqual({ [ALLOW_FROM_LABEL]: 'office' });
      inc.applyClusterChange(after);
      expect(inc.states()).toEqual(compile(P, after).states);
      expect(inc.states()).not.toEqual(compile(P, before).states);
    } finally {
      await feed.stop();
    }
  });
});
