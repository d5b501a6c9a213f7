/**
 * Marathon payload parsers against the recorded payloads of test/fixtures/marathon-payloads (each file's
 * origin is in its SOURCES.md: Marathon's own docs and examples, and marathon-lb test fixtures),
 * plus hand-written edge cases for what the recordings do not show.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { createParser } from 'eventsource-parser';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseApps } from '../src/marathon/parse-apps.js';
import { parseEvent, type ParsedEvent } from '../src/marathon/parse-event.js';
import { parseTasks } from '../src/marathon/parse-tasks.js';

const repoRoot = path.resolve(import.meta.dirname, '..');
const payloads = path.join(repoRoot, 'test', 'fixtures', 'marathon-payloads');
const text = (f: string): string => readFileSync(path.join(payloads, f), 'utf8');
const load = (f: string): unknown => JSON.parse(text(f));
/** The .jsonc file keeps the `// soon only for ...` comments of the docs; strip them here only. */
const loadJsonc = (f: string): unknown => JSON.parse(text(f).replace(/\/\/[^\n"]*$/gm, ''));

describe('parseApps on recorded payloads', () => {
  it('GET /v2/apps docs example (v1.4.13 app_list.json): legacy `ports` numbers, HOST, no tasks', () => {
    const r = parseApps(load('apps-list-docs-v1.4.13.json'));
    expect(r.problems).toEqual([]);
    expect(r.wellFormed).toBe(true);
    expect(r.tasksEmbedded).toBe(false);
    expect(r.apps).toEqual([
      { id: '/myapp', labels: {}, networkMode: 'host', ports: [{ protocols: ['tcp'], labels: {} }, { protocols: ['tcp'], labels: {} }] },
    ]);
    expect(r.tasks).toEqual([]);
  });

  it('single app docs example (v1.4.13 app.json): BRIDGE uses docker.portMappings, not the service-port portDefinitions', () => {
    const r = parseApps(load('app-docker-bridge-portdefs-docs-v1.4.13.json'));
    expect(r.problems).toEqual([]);
    expect(r.apps).toHaveLength(1);
    const app = r.apps[0]!;
    expect(app.id).toBe('/foo');
    expect(app.networkMode).toBe('bridge');
    expect(app.labels).toEqual({ owner: 'zeus', note: 'Away from olympus' });
    expect(app.ports).toEqual([{ name: 'http', protocols: ['tcp'], containerPort: 80, labels: { vip: '192.168.0.1:80' } }]);
  });

  it('GET /v2/apps/{id} docs example (.jsonc, comments stripped): {app} with 2 running tasks without `state`', () => {
    const r = parseApps(loadJsonc('app-show-embed-tasks-docs-v1.4.13.jsonc'));
    expect(r.problems).toEqual([]);
    expect(r.apps.map((a) => [a.id, a.networkMode, a.ports.length])).toEqual([['/toggle', 'host', 1]]);
    expect(r.tasks).toEqual([
      { id: 'toggle.7c99814d-3ad4-11e4-a400-56847afe9799', appId: '/toggle', hostId: '10.141.141.10', hostPorts: [31234] },
      { id: 'toggle.802df2ae-3ad4-11e4-a400-56847afe9799', appId: '/toggle', hostId: '10.141.141.10', hostPorts: [31045] },
    ]);
    expect(r.hostNames).toEqual(['10.141.141.10']);
  });

  it('the .jsonc file is not JSON as recorded (the test strips comments, the parser never sees them)', () => {
    expect(() => JSON.parse(text('app-show-embed-tasks-docs-v1.4.13.jsonc'))).toThrow();
  });

  it('marathon-lb v0.15 fixture: docker BRIDGE, containerPort kept, 4 tasks on 2 hosts', () => {
    const r = parseApps(load('apps-embed-tasks-docker-bridge-v0.15-marathonlb.json'));
    expect(r.problems).toEqual([]);
    expect(r.tasksEmbedded).toBe(true);
    expect(r.apps.map((a) => a.id)).toEqual(['/nginx-blue', '/nginx-green']);
    for (const a of r.apps) {
      expect(a.networkMode).toBe('bridge');
      expect(a.ports).toEqual([{ protocols: ['tcp'], containerPort: 8080, labels: {} }]);
      expect(a.labels.HAPROXY_GROUP).toBe('external');
    }
    expect(r.tasks).toHaveLength(4);
    expect(r.hostNames).toEqual(['10.0.1.147', '10.0.6.25']);
    expect(r.tasks.find((t) => t.appId === '/nginx-blue')?.hostPorts).toEqual([25724]);
  });

  it('marathon-lb v1.5 fixture: networks container/bridge, container.portMappings with a name', () => {
    const r = parseApps(load('apps-embed-tasks-networks-bridge-v1.5-marathonlb.json'));
    expect(r.problems).toEqual([]);
    expect(r.apps).toEqual([
      {
        id: '/pywebserver',
        labels: { HAPROXY_GROUP: 'external', HAPROXY_0_VHOST: 'myvhost.com' },
        networkMode: 'bridge',
        ports: [{ name: 'test', protocols: ['tcp'], containerPort: 80, labels: {} }],
      },
    ]);
    expect(r.tasks).toEqual([{ id: 'pywebserver.8cad6a69-6ca8-11e7-beb2-0e2beceebfcc', appId: '/pywebserver', hostId: '10.0.2.148', hostPorts: [1565] }]);
  });

  it('marathon-lb v1.5 health-check fixture: 3 TASK_RUNNING tasks on one host', () => {
    const r = parseApps(load('apps-embed-tasks-networks-bridge-healthchecks-v1.5-marathonlb.json'));
    expect(r.problems).toEqual([]);
    expect(r.apps.map((a) => [a.id, a.networkMode])).toEqual([['/nginx-green', 'bridge']]);
    expect(r.tasks.map((t) => t.hostPorts[0]).sort()).toEqual([16916, 23336, 31184]);
    expect(r.hostNames).toEqual(['10.0.6.25']);
  });

  it('GET /v2/groups docs example: nested groups walked; docker HOST and BRIDGE apps', () => {
    const r = parseApps(load('apps-group-docker-host-docs-v1.4.13.json'));
    expect(r.problems).toEqual([]);
    expect(r.apps.map((a) => [a.id, a.networkMode, a.ports.length])).toEqual([
      ['/tools/datadog-agent', 'host', 1],
      ['/tools/docker/registry', 'bridge', 1],
      ['/tools/oauth-server', 'host', 1],
    ]);
    expect(r.apps[1]!.ports[0]).toEqual({ protocols: ['tcp'], containerPort: 5000, labels: {} });
  });

  it('benchmark group of 100 apps (v1.5.5): networks host, one named portDefinition each', () => {
    const r = parseApps(load('apps-group-networks-host-benchmark-real-v1.5.5.json'));
    expect(r.problems).toEqual([]);
    expect(r.apps).toHaveLength(100);
    expect(r.apps.every((a) => a.networkMode === 'host' && a.ports.length === 1 && a.ports[0]!.name === 'default')).toBe(true);
    expect(r.apps.every((a) => a.ports[0]!.protocols.join() === 'tcp')).toBe(true);
    expect(r.tasks).toEqual([]);
  });
});

describe('parseTasks on recorded payloads', () => {
  it.each([
    ['tasks-docs-v1.4.13.json', 'no state, startedAt set'],
    ['tasks-docs-v1.10.json', 'state TASK_RUNNING'],
  ])('%s (%s): 2 running tasks', (file) => {
    const r = parseTasks(load(file));
    expect(r.problems).toEqual([]);
    expect(r.tasks).toEqual([
      { id: 'frontend-foosball.083be411-5d1f-11e5-88f7-56b91e7a505b', appId: '/frontend-foosball', hostId: 'srv4.example.com', hostPorts: [31292] },
      { id: 'tools_docker_registry.002b4d28-46b9-11e5-b731-525400cce7ed', appId: '/tools/docker/registry', hostId: 'srv2.example.com', hostPorts: [31721] },
    ]);
    expect(r.hostNames).toEqual(['srv2.example.com', 'srv4.example.com']);
  });

  it('cross-checks against apps: unknown app reported, aligned task kept', () => {
    const apps = parseApps(load('apps-group-docker-host-docs-v1.4.13.json')).apps;
    const r = parseTasks(load('tasks-docs-v1.10.json'), apps);
    expect(r.tasks.map((t) => t.appId)).toEqual(['/tools/docker/registry']);
    expect(r.problems).toHaveLength(1);
    expect(r.problems[0]).toContain('unknown app');
  });

  it('GET /v2/tasks with health checks (rest-api.md v1.4.13)', () => {
    const r = parseTasks(load('tasks-list-healthchecks-docs-v1.4.13.json'));
    expect(r.problems).toEqual([]);
    expect(r.tasks.map((t) => [t.appId, t.hostId, t.hostPorts])).toEqual([
      ['/bridged-webapp', '10.141.141.10', [31000]],
      ['/bridged-webapp', '10.141.141.10', [31001]],
    ]);
  });

  it.each([
    ['tasks-item-ipaddresses-fixture-v1.1.1.json', 'startedAt null'],
    ['tasks-item-ipaddresses-fixture-v1.10.26.json', 'TASK_STAGING'],
  ])('%s (%s): a task not yet running is left out, not reported', (file) => {
    const r = parseTasks(load(file));
    expect(r.wellFormed).toBe(true);
    expect(r.tasks).toEqual([]);
    expect(r.problems).toEqual([]);
  });

  it('a tasks list is not an apps list (and vice versa)', () => {
    expect(parseApps(load('tasks-docs-v1.10.json')).wellFormed).toBe(false);
    expect(parseTasks(load('apps-list-docs-v1.4.13.json')).wellFormed).toBe(false);
  });
});

describe('parseApps edge cases', () => {
  const hostApp = (extra: Record<string, unknown>): Record<string, unknown> => ({ id: '/a', networks: [{ mode: 'host' }], ...extra });

  it('"udp,tcp" becomes [tcp, udp]; names and port labels kept; requirePorts accepted', () => {
    const r = parseApps({
      apps: [
        hostApp({
          requirePorts: true,
          portDefinitions: [
            { port: 53, protocol: 'udp,tcp', name: 'dns', labels: { 'portcullis.allow-from': 'web' } },
            { port: 0, protocol: 'udp' },
            { port: 0 },
          ],
          tasks: [{ id: 'a.1', host: 'h1', ports: [53, 31000, 31001], state: 'TASK_RUNNING' }],
        }),
      ],
    });
    expect(r.problems).toEqual([]);
    expect(r.apps[0]!.ports).toEqual([
      { name: 'dns', protocols: ['tcp', 'udp'], labels: { 'portcullis.allow-from': 'web' } },
      { protocols: ['udp'], labels: {} },
      { protocols: ['tcp'], labels: {} },
    ]);
    expect(r.tasks[0]!.hostPorts).toEqual([53, 31000, 31001]);
  });

  it('container mode: only mappings with a hostPort become ports; BRIDGE defaults hostPort to 0', () => {
    const mappings = [{ containerPort: 80, hostPort: 0, name: 'http' }, { containerPort: 9000, name: 'internal' }, { containerPort: 0, hostPort: 8443 }];
    const user = parseApps({ app: { id: '/u', networks: [{ mode: 'container', name: 'dcos' }], container: { portMappings: mappings } } });
    expect(user.apps[0]!.networkMode).toBe('container');
    expect(user.apps[0]!.ports).toEqual([
      { name: 'http', protocols: ['tcp'], containerPort: 80, labels: {} },
      { protocols: ['tcp'], labels: {} },
    ]);
    const bridge = parseApps({ app: { id: '/b', container: { docker: { network: 'BRIDGE', portMappings: mappings } } } });
    expect(bridge.apps[0]!.ports.map((p) => p.name ?? '-')).toEqual(['http', 'internal', '-']);
  });

  it('ids are kept exactly, whatever characters they hold', () => {
    const id = '/we"ird/../$(rm -rf)/\u0007\u202e';
    const r = parseApps({ apps: [{ id, tasks: [{ id: 't;1', host: 'h\n1', startedAt: 'x', ports: [] }] }] });
    expect(r.apps[0]!.id).toBe(id);
    expect(r.tasks[0]).toEqual({ id: 't;1', appId: id, hostId: 'h\n1', hostPorts: [] });
  });

  it('a malformed app is skipped and reported; the others still parse', () => {
    const good = hostApp({ id: '/good', portDefinitions: [{ port: 0 }], tasks: [] });
    const r = parseApps({
      apps: [
        good,
        { id: 42 },
        null,
        hostApp({ id: '/bad-labels', labels: { a: 1 } }),
        hostApp({ id: '/bad-proto', portDefinitions: [{ port: 0, protocol: 7 }] }),
        hostApp({ id: '/bad-mode', networks: [{ mode: 'weird' }] }),
        hostApp({ id: '/mixed', networks: [{ mode: 'host' }, { mode: 'container' }] }),
        hostApp({ id: '/bad-port', portDefinitions: [{ port: 70000 }] }),
        hostApp({ id: '/bad-require', requirePorts: 'yes' }),
        { id: '/bad-net', container: { docker: { network: 'WAT' } } },
        { ...good },
      ],
    });
    expect(r.apps.map((a) => a.id)).toEqual(['/good']);
    expect(r.skippedAppIds).toEqual(['/bad-labels', '/bad-mode', '/bad-net', '/bad-port', '/bad-proto', '/bad-require', '/mixed']);
    expect(r.problems).toHaveLength(10);
    expect(r.problems.at(-1)).toContain('listed twice');
  });

  it('tasks: a port-count mismatch (an app mid-deployment) and tasks not running are skipped alone', () => {
    const r = parseApps({
      apps: [
        hostApp({
          portDefinitions: [{ port: 0 }],
          tasks: [
            { id: 'ok', host: 'h', ports: [31000], state: 'TASK_RUNNING' },
            { id: 'two-ports', host: 'h', ports: [31000, 31001], state: 'TASK_RUNNING' },
            { id: 'staging', host: 'h', ports: [31000], state: 'TASK_STAGING' },
            { id: 'killing', host: 'h', ports: [31002], state: 'TASK_KILLING' },
            { id: 'failed', host: 'h', ports: [31003], state: 'TASK_FAILED', startedAt: 'x' },
          ],
        }),
      ],
    });
    expect(r.tasks.map((t) => t.id)).toEqual(['killing', 'ok']);
    expect(r.problems).toEqual([]);
    expect(r.misaligned.map((m) => m.task.id)).toEqual(['two-ports']);
    expect(r.misaligned[0]!.problem).toContain('has 2 host port(s) but the app defines 1');
  });

  it.each([
    [{ id: 'bad-port', host: 'h', ports: ['31000'], state: 'TASK_RUNNING' }, /"ports" must be a list of port numbers/],
    [{ id: 'zero-port', host: 'h', ports: [0], state: 'TASK_RUNNING' }, /"ports" must be a list of port numbers/],
    [{ id: 'no-host', ports: [31000], state: 'TASK_RUNNING' }, /"host" must be a non-empty string/],
    [{ id: 'other-app', appId: '/b', host: 'h', ports: [31000], state: 'TASK_RUNNING' }, /differs from its app/],
    [{ id: 'bad-state', host: 'h', ports: [31000], state: 5 }, /"state" must be a string/],
    ['not-a-task', /expected an object/],
  ])('a task of the wrong shape (%j) makes its app malformed, so the app keeps its last good tasks', (bad, message) => {
    const app = hostApp({ portDefinitions: [{ port: 0 }], tasks: [{ id: 'ok', host: 'h', ports: [31000], state: 'TASK_RUNNING' }, bad] });
    const r = parseApps({ apps: [app] });
    expect(r.apps).toEqual([]);
    expect(r.tasks).toEqual([]);
    expect(r.skippedAppIds).toEqual([app.id]);
    expect(r.problems).toHaveLength(1);
    expect(r.problems[0]).toMatch(message);
    expect(r.problems[0]).toMatch(/; app skipped$/);
  });

  it('unknown protocols are dropped and reported, the port stays aligned', () => {
    const r = parseApps({ apps: [hostApp({ portDefinitions: [{ port: 0, protocol: 'sctp' }, { port: 0, protocol: 'TCP' }], tasks: [] })] });
    expect(r.apps[0]!.ports.map((p) => p.protocols)).toEqual([[], ['tcp']]);
    expect(r.problems).toHaveLength(1);
  });

  it('top-level shapes that are not an apps answer are not well-formed', () => {
    for (const v of [null, 3, 'x', [], {}, { apps: 'no' }, { message: 'App does not exist' }]) {
      const r = parseApps(v);
      expect(r.wellFormed).toBe(false);
      expect(r.apps).toEqual([]);
    }
    expect(parseApps({ apps: [] })).toMatchObject({ wellFormed: true, tasksEmbedded: true, apps: [], problems: [] });
  });

  it('never throws, whatever JSON it gets', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        parseApps(v);
        parseApps({ apps: [v] });
        parseApps({ apps: [{ id: '/x', tasks: [v], portDefinitions: [v], container: v, networks: v }] });
        parseTasks({ tasks: [v] });
      }),
      { numRuns: 300 },
    );
  });
});

/** SSE text → parsed events, through the same SSE parser the source uses. */
function sseEvents(sse: string): ParsedEvent[] {
  const out: ParsedEvent[] = [];
  const parser = createParser({ onEvent: (m) => out.push(parseEvent(m.event, m.data)) });
  parser.feed(sse);
  return out;
}

describe('parseEvent on recorded streams', () => {
  it('events.txt (SSE with event names): attached, a failed task, a running task', () => {
    const evs = sseEvents(text('events-stream-status-update-docs.txt'));
    expect(evs).toEqual([
      { kind: 'stream_attached' },
      {
        kind: 'status_update',
        appId: '/foo',
        taskId: 'foo.0664256e-6771-11e5-94e1-be5b2935a987',
        host: 'srv5.hw.ca1.mesosphere.com',
        ports: [31776],
        taskStatus: 'TASK_FAILED',
        liveness: 'terminal',
      },
      {
        kind: 'status_update',
        appId: '/test-app',
        taskId: 'test-app.5dd78972-6771-11e5-94e1-be5b2935a987',
        host: 'srv4.hw.ca1.mesosphere.com',
        ports: [31182],
        taskStatus: 'TASK_RUNNING',
        liveness: 'running',
      },
    ]);
  });

  it('data-only stream (before 0.11): the type comes from the body', () => {
    expect(sseEvents(text('events-data-only-v1.4.13.txt') + '\n\n').map((e) => e.kind)).toEqual(['stream_attached', 'ignored']);
  });

  it('event-bus.md curl example (v1.10): attached (the recording has no final blank line, so one is added)', () => {
    expect(sseEvents(text('events-stream-attached-v1.10.txt') + '\n')).toEqual([{ kind: 'stream_attached' }]);
  });

  const expectedKinds: Record<string, string> = {
    api_post_event: 'api_post',
    status_update_event: 'status_update',
    app_terminated_event: 'app_terminated',
    instance_changed_event: 'instance_changed',
    event_stream_attached: 'stream_attached',
    deployment_success: 'deployment_success',
  };

  it.each([
    ['event-bodies-v1.10.26.txt', 27],
    ['event-bodies-v1.4.13.txt', 17],
  ])('every JSON body of %s maps to its kind, with and without an SSE name', (file, count) => {
    const blocks = text(file).split(/\n\s*\n/).filter((b) => b.trim() !== '');
    expect(blocks).toHaveLength(count);
    for (const block of blocks) {
      const type = (JSON.parse(block) as { eventType: string }).eventType;
      const want = expectedKinds[type] ?? 'ignored';
      expect(parseEvent(undefined, block).kind, type).toBe(want);
      expect(parseEvent(type, block).kind, type).toBe(want);
    }
  });

  it('bodies carry what the source needs', () => {
    const blocks = text('event-bodies-v1.10.26.txt').split(/\n\s*\n/);
    const by = (t: string): ParsedEvent => parseEvent(t, blocks.find((b) => b.includes(`"eventType": "${t}"`)) ?? '');
    expect(by('api_post_event')).toEqual({ kind: 'api_post', appId: '/my-app', uri: '/v2/apps/my-app' });
    expect(by('app_terminated_event')).toEqual({ kind: 'app_terminated', appId: '/my-app' });
    expect(by('deployment_success')).toEqual({ kind: 'deployment_success', id: '867ed450-f6a8-4d33-9b0e-e11c5513990b', appIds: [] });
    expect(by('instance_changed_event')).toMatchObject({ kind: 'instance_changed', appId: '/app-id', condition: 'Running', host: 'slave-1234.acme.org' });
    expect(by('status_update_event')).toMatchObject({ kind: 'status_update', appId: '/my-app', ports: [31372], liveness: 'running' });
  });
});

describe('parseEvent on bad input', () => {
  it.each([
    ['not JSON', 'status_update_event', 'nope'],
    ['truncated JSON', 'status_update_event', '{"appId":"/a","taskId":"t","taskStat'],
    ['an array', 'status_update_event', '[1]'],
    ['null', 'api_post_event', 'null'],
    ['taskId a number', 'status_update_event', '{"appId":"/a","taskId":5,"taskStatus":"TASK_RUNNING","host":"h","ports":[]}'],
    ['ports strings', 'status_update_event', '{"appId":"/a","taskId":"t","taskStatus":"TASK_RUNNING","host":"h","ports":["1"]}'],
    ['port 0', 'status_update_event', '{"appId":"/a","taskId":"t","taskStatus":"TASK_RUNNING","host":"h","ports":[0]}'],
    ['running without host', 'status_update_event', '{"appId":"/a","taskId":"t","taskStatus":"TASK_RUNNING","ports":[]}'],
    ['no appId', 'status_update_event', '{"taskId":"t","taskStatus":"TASK_KILLED"}'],
    ['name/body type mismatch', 'status_update_event', '{"eventType":"app_terminated_event","appId":"/a"}'],
    ['appId wrong type', 'app_terminated_event', '{"appId":["/a"]}'],
    ['appDefinition.id wrong type', 'api_post_event', '{"appDefinition":{"id":3}}'],
    ['no type at all', undefined, '{"appId":"/a"}'],
    ['eventType not a string', undefined, '{"eventType":7}'],
  ])('%s → malformed', (_what, type, data) => {
    expect(parseEvent(type, data).kind).toBe('malformed');
  });

  it('unknown types are ignored, without parsing the body', () => {
    expect(parseEvent('deployment_info', '{broken')).toEqual({ kind: 'ignored', eventType: 'deployment_info' });
    expect(parseEvent(undefined, '{"eventType":"pod_created_event"}')).toEqual({ kind: 'ignored', eventType: 'pod_created_event' });
  });

  it('TASK_UNREACHABLE keeps the task and its port: its agent lost the master, the task may still run (Mesos TaskState)', () => {
    const ev = '{"appId":"/a","taskId":"t","taskStatus":"TASK_UNREACHABLE","host":"h","ports":[31000],"eventType":"status_update_event"}';
    expect(parseEvent('status_update_event', ev)).toMatchObject({ kind: 'status_update', liveness: 'running', host: 'h', ports: [31000] });
    const listed = parseApps({ apps: [{ id: '/a', networks: [{ mode: 'host' }], portDefinitions: [{ port: 0 }], tasks: [{ id: 'u', host: 'h', ports: [31000], state: 'TASK_UNREACHABLE' }] }] });
    expect(listed.tasks.map((t) => [t.id, t.hostId, t.hostPorts])).toEqual([['u', 'h', [31000]]]);
  });

  it('a terminal update without host or ports is still a removal', () => {
    expect(parseEvent('status_update_event', '{"appId":"/a","taskId":"t","taskStatus":"TASK_LOST"}')).toMatchObject({ liveness: 'terminal', ports: [] });
    expect(parseEvent('status_update_event', '{"appId":"/a","taskId":"t","taskStatus":"TASK_STAGING","host":"h"}')).toMatchObject({ liveness: 'pending' });
  });

  it('never throws', () => {
    fc.assert(
      fc.property(fc.option(fc.constantFrom(...Object.keys(expectedTypes)), { nil: undefined }), fc.jsonValue(), fc.string(), (t, v, s) => {
        parseEvent(t, JSON.stringify(v) ?? 'null');
        parseEvent(t, s);
        if (t) parseEvent(t, JSON.stringify({ ...(typeof v === 'object' && v && !Array.isArray(v) ? v : {}), eventType: t }));
      }),
      { numRuns: 300 },
    );
  });
});

const expectedTypes = {
  status_update_event: 1,
  instance_changed_event: 1,
  api_post_event: 1,
  deployment_success: 1,
  app_terminated_event: 1,
  event_stream_attached: 1,
};
