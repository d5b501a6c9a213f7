/**
 * The JSON log lines of src/logging.ts: one key once per line (a child of a child replaces
 * `module`, it does not repeat it), and times in fields are ISO 8601 like in /status.
 */
import { describe, expect, it } from 'vitest';
import type { ClusterState } from '../src/inventory/cluster-state.js';
import { HostAddresses } from '../src/controller/host-addresses.js';
import { MarathonFeed, type MarathonLike } from '../src/controller/marathon-feed.js';
import { createLogger } from '../src/logging.js';
import type { MarathonSourceStatus } from '../src/marathon/marathon-source.js';
import { repeatedKeys } from './support/json-keys.js';
import { waitFor } from './support/grpc-harness.js';

function rawLogger(component: string) {
  const raw: string[] = [];
  const logger = createLogger({ component, level: 'debug', destination: { write: (s: string) => void raw.push(s) } });
  return { logger, raw, lines: () => raw.map((s) => JSON.parse(s) as Record<string, unknown>) };
}

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

describe('log lines', () => {
  it('repeatedKeys sees what JSON.parse hides', () => {
    expect(repeatedKeys('{"a":1,"b":{"c":[{"d":1,"d":2}]},"a":"x,\\"a\\":"}')).toEqual(['d', 'a']);
    expect(repeatedKeys('{"a":{"a":1},"b":[1,"a"]}')).toEqual([]);
  });

  it('a child of a child has one module, the innermost, and keeps pid and component', () => {
    const { logger, raw, lines } = rawLogger('controller');
    const feed = logger.child({ module: 'marathon' }).child({ module: 'marathon-feed', source: 'x' }).child({ source: 'y' });
    feed.info({ n: 1 }, 'hello');
    logger.child({ module: 'sync' }).warn('sibling');
    for (const line of raw) expect(repeatedKeys(line), line).toEqual([]);
    expect(lines()[0]).toMatchObject({ level: 'info', component: 'controller', pid: process.pid, module: 'marathon-feed', source: 'y', n: 1, msg: 'hello' });
    expect(lines()[1]).toMatchObject({ module: 'sync', msg: 'sibling' });
    expect(String(lines()[0]?.['time'])).toMatch(ISO);
  });

  it("the Marathon feed's stale / fresh lines carry ISO times, as its /status does, with one module", async () => {
    const { logger, raw, lines } = rawLogger('controller');
    const empty: ClusterState = { hosts: [], apps: [], tasks: [] } as unknown as ClusterState;
    let status: MarathonSourceStatus = { stale: true, reason: 'listing apps: HTTP 500', since: Date.UTC(2026, 0, 2, 3, 4, 5), streamConnected: false, problems: [], lastSync: Date.UTC(2026, 0, 1) } as unknown as MarathonSourceStatus;
    const source: MarathonLike = {
      start: async () => undefined,
      stop: async () => undefined,
      cluster: () => empty,
      status: () => status,
      onChange: () => () => undefined,
    };
    const feed = new MarathonFeed({ source, addresses: new HostAddresses(), logger: logger.child({ module: 'marathon' }), checkMs: 5 });
    try {
      await feed.start(() => undefined);
      await waitFor('stale line', () => lines().some((l) => l['msg'] === 'Marathon inventory is stale: keeping the last good cluster and the states built from it'));
      status = { ...status, stale: false } as MarathonSourceStatus;
      await waitFor('fresh line', () => lines().some((l) => l['msg'] === 'Marathon inventory is fresh again'));
    } finally {
      await feed.stop();
    }
    const stale = lines().find((l) => String(l['msg']).startsWith('Marathon inventory is stale'));
    expect(stale?.['since']).toBe('2026-01-02T03:04:05.000Z');
    expect(feed.status().lastSync).toBe('2026-01-01T00:00:00.000Z');
    for (const l of lines().filter((x) => 'lastSync' in x)) expect(String(l['lastSync'])).toMatch(ISO);
    for (const line of raw) expect(repeatedKeys(line), line).toEqual([]);
    expect(lines().every((l) => l['module'] === 'marathon-feed')).toBe(true);
  });
});
