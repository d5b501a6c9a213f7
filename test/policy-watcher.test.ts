/**
 * PolicyWatcher's bookkeeping of "the policy in force" when its caller refuses a valid policy
 * (a compile over a load limit): the refused content never counts as in force, so reverting to
 * the previous content is a restore, the refused content again is tried again (not a restore),
 * and `refused()` forgets a policy that was taken as in force and then turned down.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { PolicyWatcher } from '../src/sources/policy-watcher.js';

const policy = (rule: string): string => `groups:\n  web: { apps: ["/web"] }\nrules:\n  - { name: ${rule}, from: any, to: web, action: allow }\n`;

let dir = '';
afterEach(() => {
  if (dir !== '') rmSync(dir, { recursive: true, force: true });
  dir = '';
});

describe('PolicyWatcher: a policy the caller refuses is not the policy in force', () => {
  it('refused content: not a restore, tried again; the previous content: a restore', async () => {
    dir = mkdtempSync(join(tmpdir(), 'pcut-watch-'));
    const file = join(dir, 'p.yaml');
    const events: string[] = [];
    let refuse = new Set<string>();
    const watcher = new PolicyWatcher({
      path: file,
      pollMs: 60_000,
      onPolicy: (p) => {
        const name = p.rules[0]?.name ?? '';
        events.push(`policy ${name}`);
        return !refuse.has(name);
      },
      onRestored: () => events.push('restored'),
      onError: () => events.push('error'),
    });
    try {
      writeFileSync(file, policy('good'));
      expect(await watcher.start()).toBe(true);
      refuse = new Set(['big']);
      writeFileSync(file, policy('big'));
      await watcher.reload();
      writeFileSync(file, policy('good'));
      await watcher.reload(); // back to the policy in force: nothing to compile
      writeFileSync(file, policy('big'));
      await watcher.reload(); // the refused one again: offered again, not "restored"
      expect(events).toEqual(['policy good', 'policy big', 'restored', 'policy big']);

      // The policy in force turned down after all (its first compile was over a limit).
      writeFileSync(file, policy('good'));
      await watcher.reload();
      expect(events.at(-1)).toBe('restored');
      watcher.refused();
      refuse = new Set(['other']);
      writeFileSync(file, policy('other'));
      await watcher.reload();
      writeFileSync(file, policy('good'));
      await watcher.reload(); // not a restore any more: offered (and compiled) again
      expect(events.slice(-2)).toEqual(['policy other', 'policy good']);
    } finally {
      watcher.stop();
    }
  });
});
