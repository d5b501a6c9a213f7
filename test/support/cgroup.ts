/**
 * Throwaway cgroup2 directories for kernel tests of per-app egress: a test puts a process (a probe)
 * in a cgroup and checks what `iptables -m cgroup --path` makes of its sockets.
 *
 * - The cgroup2 mount is found in /proc/self/mountinfo: /sys/fs/cgroup on a unified host, or
 *   /sys/fs/cgroup/unified on a hybrid one (our machines); none = the test says so and skips.
 * - A test cgroup is `pcut-<pid>-<rand>/<label>` under that mount; `path` is what the iptables
 *   match takes (relative to the cgroup2 root).
 * - `destroy()` kills the processes still in it and removes the directories (children first);
 *   a process 'exit' hook does the same if a run dies first, and `sweepStaleCgroups()` removes
 *   `pcut-<pid>-*` trees whose pid is gone.
 * - `ip netns exec` mounts a fresh /sys for the namespace, so a process inside cannot see the
 *   cgroup tree: the test moves it from outside (write its pid to `procsFile`).
 */
import { readFileSync, readdirSync, rmdirSync, mkdirSync, existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';

export interface TestCgroup {
  /** Relative to the cgroup2 root, e.g. `pcut-123-ab12/web` (what `-m cgroup --path` takes). */
  readonly path: string;
  readonly dir: string;
  /** Write a pid here to move that process into the cgroup. */
  readonly procsFile: string;
  /** Kills what is left in it and removes it (and the run's parent directory once empty). */
  destroy(): void;
}

/** The cgroup2 mount point, or undefined when the host has none. */
export function cgroup2Mount(): string | undefined {
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const [pre, post] = line.split(' - ');
    if (post?.startsWith('cgroup2 ')) return pre!.split(' ')[4];
  }
  return undefined;
}

const live = new Set<string>();
let parentDir: string | undefined;

function killAll(dir: string): void {
  let procs: string[] = [];
  try {
    procs = readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter((p) => p !== '');
  } catch {
    return;
  }
  for (const p of procs) {
    try {
      process.kill(Number(p), 'SIGKILL');
    } catch {
      // gone already
    }
  }
}

/** rmdir, retried while the killed processes leave the cgroup (bounded: 200 tries). */
function removeDir(dir: string): void {
  for (let i = 0; i < 200 && existsSync(dir); i++) {
    try {
      for (const child of readdirSync(dir, { withFileTypes: true })) if (child.isDirectory()) removeDir(join(dir, child.name));
      killAll(dir);
      rmdirSync(dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EBUSY') throw e;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5); // a killed process takes a moment to leave
    }
  }
}

process.on('exit', () => {
  for (const dir of live) removeDir(dir);
  if (parentDir) removeDir(parentDir);
});

/** A new empty cgroup `pcut-<pid>-<rand>/<label>`; throws when the host has no cgroup2 mount. */
export function createTestCgroup(label: string): TestCgroup {
  const mount = cgroup2Mount();
  if (!mount) throw new Error('no cgroup2 mount on this host');
  parentDir ??= join(mount, `pcut-${process.pid}-${randomBytes(3).toString('hex')}`);
  mkdirSync(parentDir, { recursive: true });
  const dir = join(parentDir, label);
  mkdirSync(dir);
  live.add(dir);
  const path = dir.slice(mount.length + 1);
  return {
    path,
    dir,
    procsFile: join(dir, 'cgroup.procs'),
    destroy: () => {
      removeDir(dir);
      live.delete(dir);
      if (live.size === 0 && parentDir) {
        removeDir(parentDir);
        parentDir = undefined;
      }
    },
  };
}

/** Removes `pcut-<pid>-*` cgroup trees of runs that are gone; returns their paths. */
export function sweepStaleCgroups(): string[] {
  const mount = cgroup2Mount();
  if (!mount) return [];
  const stale: string[] = [];
  for (const e of readdirSync(mount, { withFileTypes: true })) {
    const m = /^pcut-(\d+)-/.exec(e.name);
    if (!e.isDirectory() || !m || Number(m[1]) === process.pid) continue;
    try {
      process.kill(Number(m[1]), 0);
      continue;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EPERM') continue;
    }
    removeDir(join(mount, e.name));
    stale.push(join(mount, e.name));
  }
  return stale;
}
