/**
 * A whole Portcullis cluster on one machine, for end-to-end tests and the demo: a test network
 * (netns.ts) with N agent hosts, optional extra hosts (sources that run no agent) and one more
 * namespace for the controller; the real `portcullis controller` and one real `portcullis agent`
 * per host, each a child process inside its namespace.
 *
 * Contract
 * - Host k (1-based) of the network is agent host k: its id (h<k>) is the agent's --host-id and
 *   the id the inventory must use; its v4 and v6 addresses are the agent's --address values.
 * - The controller runs in the last namespace, listening on that namespace's v4 address with port
 *   0 the first time; the real ports are read from its `controller listening` log line, and a
 *   restart reuses the gRPC port so the agents find it again.
 * - Policy (one file `policy.yaml` in a policy directory, replaced by rename so the directory
 *   watcher sees one complete file) and inventory (rewritten in place) live in a temp dir.
 * - `/status` is read with curl inside the controller's namespace (the test runs outside it).
 * - With `marathon`, no inventory file: the Marathon API double runs as a child process
 *   (marathon-double-main.ts) in the controller's namespace on 127.0.0.1, seeded by
 *   `marathon.setup` before the controller starts, and the controller follows it with
 *   `--marathon http://127.0.0.1:PORT` (so nothing leaves the test network). Marathon's task
 *   `host` must be the agent host ids (h1..hN); host addresses come from the agents' Hello.
 *   `cluster.marathon` drives the double (marathon-double-process.ts).
 * - With `replicas: N` (issue 12) N controllers run in that namespace, each on its own ports
 *   (0 the first time, kept on restart); every agent gets `--controller` once per replica;
 *   `controller(i)`, `status(i)`, `killController(i)`, `startController(i)` name replica i
 *   (default 0). With `consul`, the Consul API double runs as a child process there too
 *   (consul-double-main.ts, on 127.0.0.1): the policy is pushed to its KV (`policy push`, again
 *   by `pushPolicy`) and followed by every replica (`--policy-consul`), and each replica
 *   registers as service `portcullis` (`--consul-service`, `--consul-address` its v4).
 * - `destroy()` stops every process, deletes every namespace of the run (container namespaces of
 *   bridge-task.ts included) and the temp dir; it is idempotent and safe after a failed start.
 */
import { mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { packageRoot } from '../../src/package-root.js';
import { issueCert, makeTestPki, type TestPki } from '../../src/tls/pki.js';
import { ConsulDoubleProcess } from './consul-double-process.js';
import { MarathonDoubleProcess, type DoubleFormat } from './marathon-double-process.js';
import { createTestNetwork, listNamespaces, run, type ExecResult, type TestHost, type TestNetwork } from './netns.js';
import { logged, type LoggedProcess, type LogLine } from './process-log.js';

export interface ClusterOptions {
  readonly hosts: number;
  /** YAML text of the policy (one file), or a function of the agent hosts and the extra hosts. */
  readonly policy: string | ((hosts: readonly TestHost[], extraHosts: readonly TestHost[]) => string);
  /** YAML text of the inventory, given the agent hosts and the extra hosts. Required unless `marathon`. */
  readonly inventory?: (hosts: readonly TestHost[], extraHosts: readonly TestHost[]) => string;
  /** Follow a Marathon API double (in the controller's namespace) instead of an inventory file. */
  readonly marathon?: ClusterMarathonOptions;
  readonly tls?: boolean;
  /** Namespaces on the network that run no agent (outside sources). Default 0. */
  readonly extraHosts?: number;
  /** Agent --refresh-interval in seconds. Default 1. */
  readonly refreshIntervalS?: number;
  /** Wait for every agent to report its first apply. Default true. */
  readonly waitForAgents?: boolean;
  /** Extra arguments of every agent (e.g. `--flow-interval 1`). */
  readonly agentArgs?: readonly string[];
  /** Controller replicas (see the header). Default 1. */
  readonly replicas?: number;
  /** The Consul API double for the policy (KV) and the replicas' registration (see the header). */
  readonly consul?: boolean;
  /** Extra arguments of every controller (e.g. `--rebalance-interval 0.5`). */
  readonly controllerArgs?: readonly string[];
}

export interface ClusterMarathonOptions {
  /** App JSON shape the double serves. Default 'v1.5'. */
  readonly format?: DoubleFormat;
  /** Seeds the double (apps, tasks) before the controller starts: the controller's first list. */
  readonly setup?: (double: MarathonDoubleProcess, hosts: readonly TestHost[], extraHosts: readonly TestHost[]) => Promise<void>;
  /** Controller --relist-interval in seconds. Default: the controller's (60). */
  readonly relistIntervalS?: number;
}

export interface AgentReport {
  readonly hostId: string;
  readonly connected: boolean;
  readonly appliedVersion: string | undefined;
  readonly desiredVersion: string | undefined;
}

export interface Cluster {
  readonly net: TestNetwork;
  readonly prefix: string;
  readonly hosts: readonly TestHost[];
  readonly extraHosts: readonly TestHost[];
  readonly controllerHost: TestHost;
  /** `address:port` agents dial. */
  readonly controllerTarget: () => string;
  readonly dir: string;
  readonly pki: TestPki | undefined;
  /** The Marathon double (only with `marathon`); it runs in the controller's namespace. */
  readonly marathon: MarathonDoubleProcess | undefined;
  /** The Consul double (only with `consul`); it runs in the controller's namespace. */
  readonly consul: ConsulDoubleProcess | undefined;
  /** `address:port` of every replica's gRPC listener. */
  readonly replicaTargets: () => string[];
  /** With `consul`: `portcullis policy push` of the policy directory (inside the controller's namespace). */
  pushPolicy(): Promise<ExecResult>;
  setPolicy(text: string): Promise<void>;
  /** Writes (atomically) one more file of the policy directory, e.g. `99-suggested.yaml`. */
  writePolicyFile(name: string, text: string): Promise<void>;
  /** `address:port` of the controller's status listener (in the controller's namespace). */
  statusAddress(): string;
  setInventory(text: string): Promise<void>;
  /** Parsed GET /status of the running controller (replica i, default 0). */
  status(i?: number): Promise<unknown>;
  agentReports(): Promise<AgentReport[]>;
  /**
   * Waits until every agent host is connected with applied == desired; with `changedFrom`, also
   * until some host's desired version differs from it. Returns hostId → version.
   */
  waitConverged(deadlineMs: number, changedFrom?: ReadonlyMap<string, string>): Promise<Map<string, string>>;
  controller(i?: number): LoggedProcess;
  killController(i?: number): Promise<void>;
  startController(i?: number): Promise<void>;
  agent(i: number): LoggedProcess;
  agentLog(i: number): string;
  startAgent(i: number): Promise<LoggedProcess>;
  stopAgent(i: number): Promise<void>;
  restartAgent(i: number): Promise<LoggedProcess>;
  /** Starts an agent with arbitrary arguments after `agent` in namespace `ns` (tests of misuse). */
  spawnAgent(ns: string, args: readonly string[], label: string): LoggedProcess;
  destroy(): Promise<void>;
}

const binPath = (): string => path.join(packageRoot(), 'bin', 'portcullis.js');

/** Polls `condition` every `everyMs` until it returns a value other than undefined/false. */
export async function waitFor<T>(
  condition: () => Promise<T | undefined | false> | T | undefined | false,
  deadlineMs: number,
  what: string,
  everyMs = 150,
): Promise<T> {
  const end = Date.now() + deadlineMs;
  let last: unknown;
  for (let i = 0; i < 100_000; i++) {
    try {
      const value = await condition();
      if (value !== undefined && value !== false) return value;
      last = undefined;
    } catch (error) {
      last = error;
    }
    if (Date.now() >= end) break;
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
  throw new Error(`timed out after ${deadlineMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}

/** Agent records in a /status document: the `agents` array, or the first array of objects with a hostId. */
export function agentsOf(status: unknown): AgentReport[] {
  const find = (value: unknown, depth: number): unknown[] | undefined => {
    if (depth > 4 || value === null || typeof value !== 'object') return undefined;
    if (Array.isArray(value)) {
      if (value.some((v) => v !== null && typeof v === 'object' && 'hostId' in v)) return value;
      return undefined;
    }
    const record = value as Record<string, unknown>;
    if (Array.isArray(record['agents'])) return record['agents'];
    for (const v of Object.values(record)) {
      const hit = find(v, depth + 1);
      if (hit) return hit;
    }
    return undefined;
  };
  const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);
  return (find(status, 0) ?? []).flatMap((raw) => {
    if (raw === null || typeof raw !== 'object') return [];
    const r = raw as Record<string, unknown>;
    const hostId = str(r['hostId']);
    if (!hostId) return [];
    return [{
      hostId,
      connected: r['connected'] === true,
      appliedVersion: str(r['appliedVersion']),
      desiredVersion: str(r['desiredVersion']),
    }];
  });
}

/** Names of namespaces of this run (prefix) that still exist. */
export async function leftoverNamespaces(prefix: string): Promise<string[]> {
  return (await listNamespaces()).filter((name) => name.startsWith(`${prefix}-`));
}

export async function startCluster(options: ClusterOptions): Promise<Cluster> {
  if (!options.inventory && !options.marathon) throw new Error('startCluster needs `inventory` or `marathon`');
  const n = options.hosts;
  const extra = options.extraHosts ?? 0;
  const dir = await mkdtemp(path.join(tmpdir(), 'portcullis-e2e-'));
  let net: TestNetwork | undefined;
  const processes = new Set<LoggedProcess>();
  let marathon: MarathonDoubleProcess | undefined;
  let consul: ConsulDoubleProcess | undefined;
  let destroyed = false;

  const destroy = async (): Promise<void> => {
    if (destroyed) return;
    destroyed = true;
    await Promise.all([...processes].map((p) => p.stop('SIGKILL', 2000)));
    await marathon?.stop(1000);
    await consul?.stop(1000);
    const errors: string[] = [];
    if (net) {
      const prefix = net.prefix;
      // Container namespaces first (their veths live in host namespaces the network deletes).
      for (const ns of await leftoverNamespaces(prefix).catch(() => [])) {
        if (/-c\d+$/.test(ns)) await run('ip', ['netns', 'del', ns]);
      }
      await net.destroy().catch((e: unknown) => errors.push(String(e)));
      for (const ns of await leftoverNamespaces(prefix).catch(() => [])) await run('ip', ['netns', 'del', ns]);
    }
    await rm(dir, { recursive: true, force: true });
    if (errors.length > 0) throw new Error(errors.join('; '));
  };

  try {
    net = await createTestNetwork({ hosts: n + extra + 1, ipv6: true });
    const theNet = net;
    const hosts = net.hosts.slice(0, n);
    const extraHosts = net.hosts.slice(n, n + extra);
    const ctl = net.hosts[n + extra] as TestHost;
    const policyDir = path.join(dir, 'policy');
    const policyFile = path.join(policyDir, 'policy.yaml');
    const inventoryFile = path.join(dir, 'inventory.yaml');
    await mkdir(policyDir);
    await writeFile(policyFile, typeof options.policy === 'string' ? options.policy : options.policy(hosts, extraHosts));
    if (options.inventory) await writeFile(inventoryFile, options.inventory(hosts, extraHosts));
    if (options.marathon) {
      marathon = await MarathonDoubleProcess.start({
        ...(options.marathon.format ? { format: options.marathon.format } : {}),
        spawn: (argv) => theNet.spawnIn(ctl.ns, argv),
      });
      await options.marathon.setup?.(marathon, hosts, extraHosts);
    }
    const pushPolicy = (): Promise<ExecResult> => {
      if (!consul) throw new Error('pushPolicy needs a cluster with `consul`');
      return theNet.exec(ctl.ns, [process.execPath, binPath(), 'policy', 'push', '--policy', policyDir, ...(options.inventory ? ['--inventory', inventoryFile] : []), '--consul', consul.url], { timeoutMs: 30_000 });
    };
    if (options.consul) {
      consul = await ConsulDoubleProcess.start({ spawn: (argv) => theNet.spawnIn(ctl.ns, argv) });
      const pushed = await pushPolicy();
      if (pushed.code !== 0) throw new Error(`policy push failed (${pushed.code}): ${pushed.stderr}${pushed.stdout}`);
    }
    const policyArgs = (): string[] =>
      consul ? ['--policy-consul', '--consul', consul.url, '--consul-service', 'portcullis', '--consul-address', ctl.v4] : ['--policy', policyDir];
    const inventoryArgs = (): string[] => {
      if (!marathon) return ['--inventory', inventoryFile];
      const relist = options.marathon?.relistIntervalS;
      return ['--marathon', marathon.url, ...(relist !== undefined ? ['--relist-interval', String(relist)] : [])];
    };

    let pki: TestPki | undefined;
    if (options.tls) {
      pki = await makeTestPki(path.join(dir, 'pki'), { hosts: hosts.map((h) => h.id), controllerNames: [] });
      await issueCert(pki.dir, { name: 'controller', server: true, sans: [ctl.v4, ctl.v6, 'localhost'], days: 2 });
    }
    const tlsArgs = (name: string): string[] => {
      if (!pki) return ['--insecure'];
      const f = pki.files(name);
      return ['--ca', f.caFile, '--cert', f.certFile, '--key', f.keyFile];
    };

    const replicas = options.replicas ?? 1;
    const grpcPorts: number[] = Array.from({ length: replicas }, () => 0);
    const statusAddresses: string[] = Array.from({ length: replicas }, () => '');
    const controllerProcs: (LoggedProcess | undefined)[] = Array.from({ length: replicas }, () => undefined);
    const replicaAt = (i: number): number => {
      if (!Number.isInteger(i) || i < 0 || i >= replicas) throw new Error(`no controller replica #${i} (${replicas} replicas)`);
      return i;
    };
    const startController = async (i = 0): Promise<void> => {
      replicaAt(i);
      const argv = [
        process.execPath, binPath(), 'controller',
        ...policyArgs(), ...inventoryArgs(),
        '--listen', `${ctl.v4}:${grpcPorts[i]}`, '--status-listen', `${ctl.v4}:0`,
        '--ping-interval', '1', '--log-level', 'debug', '--state-dir', path.join(dir, i === 0 ? 'controller-state' : `controller-state-${i}`),
        ...tlsArgs('controller'),
        ...(options.controllerArgs ?? []),
      ];
      const proc = logged(theNet.spawnIn(ctl.ns, argv), replicas === 1 ? 'controller' : `controller ${i}`);
      processes.add(proc);
      proc.child.once('exit', () => processes.delete(proc));
      controllerProcs[i] = proc;
      const line = await proc.waitFor((l) => l['msg'] === 'controller listening', 20_000, '"controller listening"');
      const grpcText = String(line['grpc'] ?? '');
      grpcPorts[i] = Number(grpcText.slice(grpcText.lastIndexOf(':') + 1));
      statusAddresses[i] = String(line['status'] ?? '');
      if (!(grpcPorts[i]! > 0) || statusAddresses[i] === '') throw new Error(`bad "controller listening" line: ${JSON.stringify(line)}`);
    };
    const replicaTargets = (): string[] => grpcPorts.map((port) => `${ctl.v4}:${port}`);
    const controllerTarget = (): string => replicaTargets()[0]!;

    const agents: (LoggedProcess | undefined)[] = hosts.map(() => undefined);
    const spawnAgent = (ns: string, args: readonly string[], label: string): LoggedProcess => {
      const proc = logged(theNet.spawnIn(ns, [process.execPath, binPath(), 'agent', ...args]), label);
      processes.add(proc);
      proc.child.once('exit', () => processes.delete(proc));
      return proc;
    };
    const hostAt = (i: number): TestHost => {
      const h = hosts[i];
      if (!h) throw new Error(`no agent host #${i} (0-based, ${n} hosts)`);
      return h;
    };
    const startAgent = async (i: number): Promise<LoggedProcess> => {
      const h = hostAt(i);
      const stateDir = path.join(dir, 'state', h.id);
      await mkdir(stateDir, { recursive: true });
      const proc = spawnAgent(h.ns, [
        ...replicaTargets().flatMap((t) => ['--controller', t]), '--host-id', h.id, '--address', h.v4, '--address', h.v6,
        '--state-dir', stateDir, '--refresh-interval', String(options.refreshIntervalS ?? 1),
        ...tlsArgs(h.id),
        ...(options.agentArgs ?? []),
      ], `agent ${h.id}`);
      agents[i] = proc;
      return proc;
    };
    const agent = (i: number): LoggedProcess => {
      const proc = agents[i];
      if (!proc) throw new Error(`agent #${i} was never started`);
      return proc;
    };
    const stopAgent = async (i: number): Promise<void> => {
      await agents[i]?.stop('SIGTERM');
    };

    const status = async (i = 0): Promise<unknown> => {
      const r = await theNet.exec(ctl.ns, ['curl', '-sS', '--max-time', '3', `http://${statusAddresses[replicaAt(i)]}/status`], { timeoutMs: 10_000 });
      if (r.code !== 0) throw new Error(`GET /status failed (${r.code}): ${r.stderr.trim()}`);
      return JSON.parse(r.stdout) as unknown;
    };
    const agentReports = async (): Promise<AgentReport[]> => agentsOf(await status());
    const waitConverged = async (deadlineMs: number, changedFrom?: ReadonlyMap<string, string>): Promise<Map<string, string>> => {
      let last: AgentReport[] = [];
      try {
        return await waitFor(async () => {
          last = await agentReports();
          const versions = new Map<string, string>();
          for (const h of hosts) {
            const r = last.find((a) => a.hostId === h.id);
            if (!r || !r.connected || r.desiredVersion === undefined || r.appliedVersion !== r.desiredVersion) return undefined;
            versions.set(h.id, r.desiredVersion);
          }
          if (changedFrom && ![...versions].some(([id, v]) => changedFrom.get(id) !== v)) return undefined;
          return versions;
        }, deadlineMs, 'every agent to converge');
      } catch (error) {
        throw new Error(`${String(error)}\nlast agent reports: ${JSON.stringify(last)}`);
      }
    };

    for (let i = 0; i < replicas; i++) await startController(i);
    for (let i = 0; i < n; i++) await startAgent(i);
    if (options.waitForAgents ?? true) {
      await Promise.all(hosts.map((_, i) => agent(i).waitFor((l: LogLine) => l['msg'] === 'applied', 30_000, 'first "applied"')));
    }

    return {
      net: theNet,
      prefix: theNet.prefix,
      hosts,
      extraHosts,
      controllerHost: ctl,
      controllerTarget,
      dir,
      pki,
      marathon,
      consul,
      replicaTargets,
      pushPolicy,
      setPolicy: async (text) => {
        const tmp = path.join(policyDir, '.policy.yaml.tmp');
        await writeFile(tmp, text);
        await rename(tmp, policyFile);
      },
      writePolicyFile: async (name, text) => {
        if (!/^[A-Za-z0-9_-][A-Za-z0-9._-]*\.yaml$/.test(name)) throw new Error(`not a policy file name: ${name}`);
        const tmp = path.join(policyDir, `.${name}.tmp`);
        await writeFile(tmp, text);
        await rename(tmp, path.join(policyDir, name));
      },
      statusAddress: () => statusAddresses[0]!,
      setInventory: async (text) => {
        if (marathon) throw new Error('this cluster follows the Marathon double: change it through cluster.marathon');
        await writeFile(inventoryFile, text);
      },
      status,
      agentReports,
      waitConverged,
      controller: (i = 0) => {
        const proc = controllerProcs[replicaAt(i)];
        if (!proc) throw new Error('controller never started');
        return proc;
      },
      killController: async (i = 0) => {
        await controllerProcs[replicaAt(i)]?.stop('SIGKILL');
      },
      startController,
      agent,
      agentLog: (i) => agent(i).text(),
      startAgent,
      stopAgent,
      restartAgent: async (i) => {
        await stopAgent(i);
        return startAgent(i);
      },
      spawnAgent,
      destroy,
    };
  } catch (error) {
    await destroy().catch(() => undefined);
    throw error;
  }
}
