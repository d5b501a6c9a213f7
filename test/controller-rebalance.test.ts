/**
 * Rebalancing in the running controller (startController, real gRPC and HTTP on port 0; the
 * rule itself and the convergence over 3 replicas are in sync-rebalance.test.ts): with
 * `--replicas 2` a replica holding every agent of the shipped inventory sheds above its limit,
 * the agents keep their state, and /metrics counts it; `--rebalance-interval off` sheds nothing;
 * the replica count from Consul (the Consul API double) follows the passing instances and keeps
 * the last count through an outage; the flags' usage errors.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ControllerTargets } from '../agent/controller-targets.js';
import { parseControllerArgs } from '../src/cli/commands/controller.js';
import { ConsulClient } from '../src/consul/consul-client.js';
import type { ControllerOptions, RunningController } from '../src/controller/controller-main.js';
import { replicaCount } from '../src/controller/replica-count.js';
import { isRebalancing } from '../src/grpc/agent-rebalance.js';
import { packageRoot } from '../src/package-root.js';
import { UsageError } from '../src/usage-error.js';
import { ConsulDouble } from './support/consul-double.js';
import { waitFor } from './support/grpc-harness.js';
import { logCapture } from './support/log-capture.js';
import { shippedController } from './support/shipped-controller.js';
import { agent } from './support/sync-replicas-harness.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const HOSTS = ['node-1', 'node-2', 'node-3', 'node-4'];

const controller = (rebalance: ControllerOptions['rebalance']): Promise<RunningController> => shippedController(cleanups, rebalance ? { rebalance } : {});

async function metric(c: RunningController, name: string): Promise<number> {
  const text = await (await fetch(`http://${c.statusAddress}/metrics`)).text();
  const m = new RegExp(`^${name} (\\d+)$`, 'm').exec(text);
  if (!m) throw new Error(`no ${name} in /metrics`);
  return Number(m[1]);
}

describe('controller rebalancing', () => {
  it('--replicas 2: a replica holding all 4 agents sheds above ceil(ceil(4/2) x 1.2) = 3; the agents keep their state; counted on /metrics', async () => {
    const c = await controller({ intervalMs: 100, replicas: 2 });
    const agents = HOSTS.map((h) => agent(cleanups, h, new ControllerTargets([c.grpcAddress])));
    await waitFor('every agent applied its state', () => agents.every((a) => a.held() !== undefined), 20_000);
    let shed = 0;
    const deadline = Date.now() + 20_000;
    for (let i = 0; i < 200 && shed === 0 && Date.now() < deadline; i++) shed = await metric(c, 'portcullis_agents_rebalanced_total');
    expect(shed).toBeGreaterThanOrEqual(1);
    await waitFor('an agent was told to move', () => agents.some((a) => a.events.some((e) => e.type === 'rejected' && isRebalancing(e.reason))), 10_000);
    // The only target: the shed agent came back and was sent nothing new (it holds the version).
    for (const a of agents) expect(a.applies).toHaveLength(1);
  }, 60_000);

  it('--rebalance-interval off: nothing is shed', async () => {
    const c = await controller(undefined);
    const agents = HOSTS.map((h) => agent(cleanups, h, new ControllerTargets([c.grpcAddress])));
    await waitFor('every agent applied its state', () => agents.every((a) => a.held() !== undefined), 20_000);
    const until = Date.now() + 500;
    await waitFor('0.5 s passed', () => Date.now() >= until, 5_000);
    expect(await metric(c, 'portcullis_agents_rebalanced_total')).toBe(0);
  }, 60_000);

  it('the replica count from Consul: passing instances of the own service; none is unknown; an outage keeps the last count', async () => {
    const consul = new ConsulDouble();
    const url = await consul.start();
    cleanups.push(() => consul.close());
    const client = new ConsulClient({ url, timeoutMs: 2_000 });
    cleanups.push(() => client.close());
    const { logger, lines } = logCapture();
    const count = replicaCount({ consul: { client, service: 'portcullis' }, logger, waitMs: 300 });
    cleanups.push(() => count.stop());
    consul.addRemoteInstance({ node: 'n-other', nodeAddress: '127.0.0.1', id: 'other', name: 'other-service', port: 1 });
    await waitFor('the first answer (no instance: unknown)', () => lines.some((l) => l['msg'] === 'replicas serving (Consul, passing)'), 10_000);
    expect(count.current()).toBeUndefined();
    consul.addRemoteInstance({ node: 'n-a', nodeAddress: '127.0.0.1', id: 'portcullis-a', name: 'portcullis', port: 7000 });
    consul.addRemoteInstance({ node: 'n-b', nodeAddress: '127.0.0.1', id: 'portcullis-b', name: 'portcullis', port: 7001 });
    consul.addRemoteInstance({ node: 'n-c', nodeAddress: '127.0.0.1', id: 'portcullis-c', name: 'portcullis', port: 7002, status: 'critical' });
    await waitFor('two passing replicas', () => count.current() === 2, 10_000);
    consul.setOutage('refuse');
    await waitFor('the outage was seen', () => lines.some((l) => l['msg'] === 'cannot read the replicas from Consul: keeping the last count'), 10_000);
    expect(count.current()).toBe(2);
    expect(replicaCount({ fixed: 3, logger }).current()).toBe(3);
    expect(replicaCount({ logger }).current()).toBeUndefined();
  }, 30_000);

  it('flags: --rebalance-interval default 5 s, off, --replicas 1..1000, not with --consul-service', () => {
    const io = { stdout: () => undefined, stderr: () => undefined, cwd: packageRoot() };
    expect(parseControllerArgs(['--insecure'], io).rebalance).toEqual({ intervalMs: 5_000 });
    expect(parseControllerArgs(['--insecure', '--rebalance-interval', '2.5', '--replicas', '3'], io).rebalance).toEqual({ intervalMs: 2_500, replicas: 3 });
    expect(parseControllerArgs(['--insecure', '--rebalance-interval', 'off'], io).rebalance).toBeUndefined();
    expect(parseControllerArgs(['--insecure', '--rebalance-slack', '1'], io).rebalance).toEqual({ intervalMs: 5_000, slack: 1 });
    for (const bad of [['--replicas', '0'], ['--replicas', 'two'], ['--rebalance-interval', '0'], ['--rebalance-interval', 'off', '--replicas', '2'], ['--rebalance-slack', '0.9'], ['--rebalance-slack', ''], ['--replicas', '2', '--consul', 'http://127.0.0.1:8500', '--consul-service', 'portcullis']]) {
      expect(() => parseControllerArgs(['--insecure', ...bad], io)).toThrow(UsageError);
    }
  });
});
