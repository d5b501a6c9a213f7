/**
 * A large policy reload does not stall the controller's event loop (the agent streams, their
 * pings and /status are all served from it): while a reload of a few thousand rules and
 * networks is parsed (worker thread) and compiled (in slices), the longest event-loop delay
 * stays a small part of the reload's duration. Not a speed test: the bound is a ratio of two
 * durations of the same run. Before parsing moved to a worker and the compile to slices, the
 * whole reload was one synchronous block (ratio ≈ 1).
 *
 * It runs the BUILT controller (dist/, made by `npm test`'s pretest build): the parse worker is
 * a compiled script, which the TypeScript sources under the test runner do not have.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import type * as ControllerMain from '../src/controller/controller-main.js';
import { packageRoot } from '../src/package-root.js';
import { createLogger } from '../src/logging.js';
import { largePolicyFiles } from './bench/large-policy.js';
import { syntheticCluster } from './bench/synthetic-cluster.js';

const SIZE = { hosts: 300, apps: 600, tasks: 3000, groups: 150, rules: 4000, networks: 4000 };

describe('controller: a large policy reload keeps the event loop turning', () => {
  let controller: ControllerMain.RunningController | undefined;
  let dir = '';
  afterAll(async () => {
    await controller?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('the longest event-loop delay during a 4,000-rule reload is under a quarter of the reload', async () => {
    const built = pathToFileURL(join(packageRoot(), 'dist/src/controller/controller-main.js')).href;
    const { startController } = (await import(built)) as typeof ControllerMain;
    dir = await mkdtemp(join(tmpdir(), 'pcut-stall-'));
    const writePolicy = async (rules: number): Promise<void> => {
      await rm(join(dir, 'policy'), { recursive: true, force: true });
      const files = largePolicyFiles({ ...SIZE, rules, networks: rules }, 3, join(dir, 'policy'));
      await mkdir(join(dir, 'policy'), { recursive: true });
      for (const f of files) await writeFile(f.path, f.text);
    };
    await writePolicy(50);
    const cluster = syntheticCluster(SIZE, 1);
    controller = await startController({
      policyPath: join(dir, 'policy'),
      feed: () => {
        let ready = false;
        return {
          start: async (onCluster) => {
            onCluster(cluster);
            ready = true;
          },
          stop: async () => undefined,
          status: () => ({ source: 'test', ready }),
        };
      },
      listen: { host: '127.0.0.1', port: 0 },
      statusListen: { host: '127.0.0.1', port: 0 },
      credentials: undefined,
      pollMs: 3_600_000,
      logger: createLogger({ component: 'controller', level: 'silent' }),
    });
    const status = () => controller!.status.status() as { ready: boolean; policy: { valid: boolean; loadedAt: string | null }; compile: { revision: number } };
    expect(status().ready).toBe(true);
    const revision = status().compile.revision;

    await writePolicy(SIZE.rules);
    const delay = monitorEventLoopDelay({ resolution: 5 });
    delay.enable();
    const started = performance.now();
    await controller.reload();
    const deadline = Date.now() + 120_000;
    while (status().compile.revision === revision && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    const reloadMs = performance.now() - started;
    delay.disable();
    expect(status().compile.revision).toBeGreaterThan(revision);
    expect(status().policy.valid).toBe(true);
    const maxDelayMs = delay.max / 1e6;
    console.log(`reload of ${SIZE.rules} rules: ${reloadMs.toFixed(0)} ms; longest event-loop delay ${maxDelayMs.toFixed(0)} ms`);
    expect(reloadMs).toBeGreaterThan(200);
    expect(maxDelayMs).toBeLessThan(reloadMs / 4);
  });
});
