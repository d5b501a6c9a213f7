/**
 * A throwaway network for kernel tests: one "switch" namespace holding a Linux bridge and N host
 * namespaces, each joined to the bridge by a veth pair (`eth0` inside the host), addressed
 * 10.77.0.(10+i)/24 and fd77::(10+i)/64 (i = 1..N). No default route anywhere and no link to the
 * machine's own namespace, so nothing routes out. IPv6 addresses are added `nodad` (usable at
 * once). Everything is built with `ip` argument arrays, never a shell.
 *
 * Names are unique per run: `pcut-<pid>-<rand>-sw`, `pcut-<pid>-<rand>-h<i>`. `destroy()` kills
 * every process started through `spawnIn` and deletes every namespace; a process 'exit' hook does
 * the same (synchronously) if a test run dies before calling it. `sweepStaleNamespaces()` removes
 * `pcut-<pid>-*` namespaces whose pid is no longer alive (left by crashed runs).
 */
import { execFile, execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';

export interface TestHost {
  /** "h1".."hN" */
  readonly id: string;
  readonly ns: string;
  readonly v4: string;
  readonly v6: string;
}

export interface ExecResult {
  readonly stdout: string;
  readonly stderr: string;
  readonly code: number;
}

export interface ExecOptions {
  readonly input?: string;
  /** Kill the command after this long (default 30 s); the result then has code 124. */
  readonly timeoutMs?: number;
}

export interface TestNetwork {
  readonly prefix: string;
  readonly switchNs: string;
  readonly hosts: readonly TestHost[];
  exec(ns: string, argv: readonly string[], opts?: ExecOptions): Promise<ExecResult>;
  spawnIn(ns: string, argv: readonly string[], opts?: SpawnOptions): ChildProcess;
  destroy(): Promise<void>;
}

export interface TestNetworkOptions {
  readonly hosts: number;
  /** Add the fd77::/64 addresses (default true). */
  readonly ipv6?: boolean;
}

export const NS_PREFIX = 'pcut-';
export const V4_PREFIX = '10.77.0.';
export const V6_PREFIX = 'fd77::';

/** Runs a command with an argument array; never throws for a non-zero exit. */
export function run(cmd: string, argv: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      cmd,
      [...argv],
      { timeout: opts.timeoutMs ?? 30_000, maxBuffer: 256 * 1024 * 1024, encoding: 'utf8' },
      (error, stdout, stderr) => {
        if (error && typeof error.code !== 'number' && !error.killed) {
          reject(new Error(`${cmd} ${argv.join(' ')}: ${error.message}`));
          return;
        }
        const code = error ? (error.killed ? 124 : (error.code as number)) : 0;
        resolve({ stdout, stderr, code });
      },
    );
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(opts.input ?? '');
  });
}

/** Like run, but throws with stderr when the command fails. */
export async function runOk(cmd: string, argv: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
  const result = await run(cmd, argv, opts);
  if (result.code !== 0) {
    throw new Error(`${cmd} ${argv.join(' ')} exited ${result.code}: ${result.stderr.trim()}`);
  }
  return result;
}

export async function listNamespaces(): Promise<string[]> {
  const { stdout } = await runOk('ip', ['netns', 'list']);
  return stdout
    .split('\n')
    .map((line) => line.trim().split(/\s+/)[0] ?? '')
    .filter((name) => name !== '');
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Deletes `pcut-<pid>-*` namespaces whose pid is not alive; returns the names deleted. */
export async function sweepStaleNamespaces(): Promise<string[]> {
  const stale = (await listNamespaces()).filter((name) => {
    const m = /^pcut-(\d+)-/.exec(name);
    return m !== null && Number(m[1]) !== process.pid && !pidAlive(Number(m[1]));
  });
  for (const name of stale) await run('ip', ['netns', 'del', name]);
  return stale;
}

function killAndWait(child: ChildProcess, deadlineMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, deadlineMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGKILL');
  });
}

export async function createTestNetwork(options: TestNetworkOptions): Promise<TestNetwork> {
  if (!Number.isInteger(options.hosts) || options.hosts < 1 || options.hosts > 200) {
    throw new Error(`hosts must be an integer 1..200, got ${options.hosts}`);
  }
  const ipv6 = options.ipv6 ?? true;
  const prefix = `${NS_PREFIX}${process.pid}-${randomBytes(3).toString('hex')}`;
  const switchNs = `${prefix}-sw`;
  const hosts: TestHost[] = Array.from({ length: options.hosts }, (_, k) => ({
    id: `h${k + 1}`,
    ns: `${prefix}-h${k + 1}`,
    v4: `${V4_PREFIX}${11 + k}`,
    v6: `${V6_PREFIX}${11 + k}`,
  }));
  const created: string[] = [];
  const children = new Set<ChildProcess>();

  const exitHook = (): void => {
    for (const child of children) child.kill('SIGKILL');
    for (const ns of created) {
      try {
        execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore', timeout: 5000 });
      } catch {
        // best effort while the process exits
      }
    }
  };
  process.on('exit', exitHook);

  let destroyed = false;
  const destroy = async (): Promise<void> => {
    if (destroyed) return;
    destroyed = true;
    await Promise.all([...children].map((child) => killAndWait(child, 5000)));
    children.clear();
    const errors: string[] = [];
    for (const ns of [...created].reverse()) {
      const r = await run('ip', ['netns', 'del', ns]);
      if (r.code !== 0 && !/No such file/.test(r.stderr)) errors.push(`${ns}: ${r.stderr.trim()}`);
    }
    created.length = 0;
    process.removeListener('exit', exitHook);
    if (errors.length > 0) throw new Error(`could not delete namespaces: ${errors.join('; ')}`);
  };

  const ip = (argv: string[]): Promise<ExecResult> => runOk('ip', argv);
  const addNs = async (ns: string): Promise<void> => {
    await ip(['netns', 'add', ns]);
    created.push(ns);
    await ip(['-n', ns, 'link', 'set', 'lo', 'up']);
  };

  try {
    await addNs(switchNs);
    await ip(['-n', switchNs, 'link', 'add', 'br0', 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0', 'mcast_snooping', '0']);
    await ip(['-n', switchNs, 'link', 'set', 'br0', 'up']);
    for (const [k, host] of hosts.entries()) {
      await addNs(host.ns);
      if (ipv6) {
        // Link-local addresses and any later address come up without duplicate detection.
        await runOk('ip', ['netns', 'exec', host.ns, 'sysctl', '-q', '-w', 'net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0']);
      }
      const port = `p${k + 1}`;
      await ip(['-n', switchNs, 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', host.ns]);
      await ip(['-n', switchNs, 'link', 'set', port, 'master', 'br0']);
      await ip(['-n', switchNs, 'link', 'set', port, 'up']);
      await ip(['-n', host.ns, 'addr', 'add', `${host.v4}/24`, 'dev', 'eth0']);
      if (ipv6) await ip(['-n', host.ns, 'addr', 'add', `${host.v6}/64`, 'dev', 'eth0', 'nodad']);
      await ip(['-n', host.ns, 'link', 'set', 'eth0', 'up']);
    }
  } catch (error) {
    await destroy().catch(() => undefined);
    throw error;
  }

  return {
    prefix,
    switchNs,
    hosts,
    exec: (ns, argv, opts) => run('ip', ['netns', 'exec', ns, ...argv], opts),
    spawnIn: (ns, argv, opts = {}) => {
      if (destroyed) throw new Error('test network already destroyed');
      const child = spawn('ip', ['netns', 'exec', ns, ...argv], { stdio: ['pipe', 'pipe', 'pipe'], ...opts });
      children.add(child);
      child.once('exit', () => children.delete(child));
      return child;
    },
    destroy,
  };
}
