/**
 * A controller (startController) on the shipped example policy and inventory, copied to a
 * temporary directory, plaintext gRPC and HTTP on loopback port 0, logs silent. What it makes is
 * registered with `cleanups` (the caller runs them in afterEach, in reverse).
 */
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startController, type ControllerOptions, type RunningController } from '../../src/controller/controller-main.js';
import { StaticInventoryFeed } from '../../src/controller/static-inventory-feed.js';
import { createLogger } from '../../src/logging.js';
import { defaultInventoryPath, defaultPolicyPath } from '../../src/package-root.js';

export async function shippedController(cleanups: (() => unknown)[], extra: Partial<ControllerOptions> = {}): Promise<RunningController> {
  const dir = mkdtempSync(join(tmpdir(), 'pcut-ctl-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  cpSync(defaultPolicyPath(), join(dir, 'policy'), { recursive: true });
  cpSync(defaultInventoryPath(), join(dir, 'inventory.yaml'));
  const c = await startController({
    policyPath: join(dir, 'policy'),
    feed: () => new StaticInventoryFeed({ path: join(dir, 'inventory.yaml'), pollMs: 60_000 }),
    listen: { host: '127.0.0.1', port: 0 },
    statusListen: { host: '127.0.0.1', port: 0 },
    credentials: undefined,
    pollMs: 60_000,
    stateDir: join(dir, 'state'),
    logger: createLogger({ component: 'controller', level: 'silent' }),
    ...extra,
  });
  cleanups.push(() => c.stop());
  return c;
}
