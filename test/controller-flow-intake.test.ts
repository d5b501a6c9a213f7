import { describe, expect, it } from 'vitest';
import type { FlowEntry } from '../src/flows/flow-types.js';
import { FlowStore } from '../src/flows/flow-store.js';
import { FlowResolver } from '../src/flows/resolve-flow.js';
import { FlowIntakeQueue } from '../src/controller/flow-intake-queue.js';
import { parseControllerArgs } from '../src/cli/commands/controller.js';
import { UsageError } from '../src/usage-error.js';
import { waitFor } from './support/cluster-harness.js';
import { app, cluster, host, policy, task } from './support/policy-builder.js';

const resolver = new FlowResolver(policy({}), cluster([host('h', '10.0.0.1')], [app('/a', [{ name: 'http' }])], [task('a.1', '/a', 'h', [31000])]));
const T = Date.parse('2026-12-01T10:00:00Z');

function entries(n: number): FlowEntry[] {
  return Array.from({ length: n }, (_, i) => ({ direction: 'ingress', verdict: 'denied', source: `198.51.${(i >> 8) & 255}.${i & 255}`, destination: '', protocol: 'tcp', port: 31000, packets: 1, bytes: 60, firstSeenMs: T, lastSeenMs: T }));
}

describe('FlowIntakeQueue', () => {
  it('ingests a report in slices after the call returns, lost counts at once', async () => {
    const store = new FlowStore(() => resolver);
    const q = new FlowIntakeQueue(store, { sliceMs: 1 });
    q.ingest('h', entries(3000), [{ direction: 'ingress', verdict: 'denied', family: 4, packets: 2 }], T);
    expect(store.summary(T)).toMatchObject({ records: 0, lost: 2 });
    expect(q.size()).toBe(3000);
    await waitFor(() => store.summary(T).records === 3000, 10_000, 'every record ingested');
    expect(q.size()).toBe(0);
    expect(store.counters.records).toBe(3000);
  });

  it('drops (and counts) a report that would overflow the queue, and flush ingests what waits', () => {
    const store = new FlowStore(() => resolver);
    const q = new FlowIntakeQueue(store, { maxQueued: 1000 });
    q.ingest('h', entries(800), [], T);
    q.ingest('h', entries(300), [], T);
    expect(store.counters.dropped).toBe(300);
    q.flush();
    expect(store.summary(T).records).toBe(800);
    q.close();
  });
});

describe('controller flow flags', () => {
  const io = { stdout: () => undefined, stderr: () => undefined, cwd: '/srv' };
  const parse = (...args: string[]) => parseControllerArgs(['--insecure', ...args], io);

  it('has the documented defaults', () => {
    const a = parse();
    expect(a.stateDir).toBe('/var/lib/portcullis/controller');
    expect(a.flows).toEqual({ windowMs: 60_000, retentionMs: 86_400_000, maxRecords: 1_000_000 });
  });

  it('reads durations in seconds or with a unit, a relative state dir against the working directory', () => {
    expect(parse('--flow-window', '30', '--flow-retention', '2d', '--flow-max-records', '5000', '--state-dir', 'state').flows).toEqual({ windowMs: 30_000, retentionMs: 172_800_000, maxRecords: 5000 });
    expect(parse('--state-dir', 'state').stateDir).toBe('/srv/state');
    expect(parse('--flow-window', '10m').flows.windowMs).toBe(600_000);
  });

  it('refuses bad values with a usage error naming the flag', () => {
    expect(() => parse('--flow-window', 'soon')).toThrow(/--flow-window must be a duration/);
    expect(() => parse('--flow-window', '0')).toThrow(UsageError);
    expect(() => parse('--flow-retention', '1m', '--flow-window', '2m')).toThrow(/--flow-retention \(60s\) must be at least --flow-window \(120s\)/);
    expect(() => parse('--flow-max-records', '0')).toThrow(/--flow-max-records must be a whole number/);
    expect(() => parse('--flow-max-records', '1e6')).toThrow(UsageError);
  });
});
