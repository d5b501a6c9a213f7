/**
 * `portcullis controller`: the long-running controller process. Parses its flags, builds the
 * cluster feed (static inventory file, or Marathon), starts src/controller/controller-main.ts and
 * runs until SIGTERM/SIGINT (clean stop, exit 0). SIGHUP re-reads the policy and the inventory.
 * Start-up problems (unreadable TLS files, a port in use, bad Marathon flags) are one clear line
 * on stderr and exit 1; flag mistakes exit 2 with the usage.
 */
import { StaticInventoryFeed } from '../../controller/static-inventory-feed.js';
import { createMarathonFeed } from '../../controller/marathon-feed.js';
import { startController, type RunningController } from '../../controller/controller-main.js';
import { formatHostPort, type HostPort } from '../../controller/host-port.js';
import { LOG_LEVEL_HELP, createLogger, parseLogLevel } from '../../logging.js';
import { readTlsFiles, type TlsMaterial } from '../../tls/credentials.js';
import { EXIT_INPUT_ERROR, EXIT_OK, type CliIO, type Command } from '../command.js';
import { UsageError } from '../../usage-error.js';
import { DEFAULT_STATUS_LISTEN } from '../controller-client.js';
import { MARATHON_OPTIONS, marathonFlagsFrom, resolveMarathonFlags, type MarathonFlags } from '../marathon-options.js';
import { INVENTORY_OPTION_HELP, POLICY_OPTION_HELP, parseFlags, resolveInventoryPath, resolvePolicyPath } from '../load-inputs.js';
import type { PolicyLimits } from '../../policy/policy-limits.js';
import { POLICY_LIMIT_HELP, POLICY_LIMIT_OPTIONS, policyLimitsFrom } from '../policy-limit-options.js';
import { absolutePath, hostPortOption, parseSeconds, tlsFilesFrom, TLS_OPTION_HELP, waitForStopSignal } from '../process-options.js';
import { DEFAULT_CONTROLLER_STATE_DIR } from '../../controller/flow-persistence.js';
import { DEFAULT_REBALANCE_INTERVAL_MS } from '../../grpc/agent-rebalance.js';
import { CONSUL_TOKEN_HELP, consulClientOf, consulTargetFrom, type ConsulTarget } from '../consul-options.js';
import { DEFAULT_POLICY_PREFIX, prefixError } from '../../consul/policy-kv.js';
import { parseDurationMs } from '../../flows/flow-query.js';
import { DEFAULT_FLOW_MAX_RECORDS, type FlowStoreOptions } from '../../flows/flow-store.js';
import { DEFAULT_HANDSHAKE_QUEUE_WAIT_MS, DEFAULT_MAX_HANDSHAKES } from '../../tls/handshake-queue.js';

export const DEFAULT_CONTROLLER_LISTEN = '0.0.0.0:7443';

const help = `Usage: portcullis controller [--policy FILE|DIR] [--inventory FILE | --marathon URL...]
                             (--ca FILE --cert FILE --key FILE | --insecure) [options]

Serves every agent its host's desired state over the gRPC Sync stream (mTLS), compiled from
the policy and from where tasks run (a static inventory file, or Marathon live). The policy
and the inventory file are hot-reloaded; a broken edit is logged with every error and the
last good version keeps being served. Logs are JSON lines on stdout.
SIGHUP re-reads the policy and the inventory; SIGTERM or SIGINT stops (agents keep their rules).

Inputs:
${POLICY_OPTION_HELP}
${INVENTORY_OPTION_HELP}
  --marathon URL      follow Marathon instead of --inventory (repeatable: tried in turn)
  --marathon-credentials FILE
                      basic auth from a file holding user:password
  --marathon-user U / --marathon-password P
                      the same on the command line (labs only)
  --marathon-token-file FILE
                      DC/OS: 'Authorization: token=<contents>'
  --marathon-ca FILE  PEM CA bundle that signed Marathon's certificate
  --marathon-insecure-skip-verify
                      do not verify Marathon's certificate (labs only)
  --relist-interval SECONDS
                      full Marathon re-list period behind the event stream (default 60)
  --dns               resolve Marathon host names no agent has announced (default off)

Policy limits (a policy over one is refused like a broken one: the last good one stays):
${POLICY_LIMIT_HELP}

Serving:
  --listen HOST:PORT  gRPC Sync listener (default ${DEFAULT_CONTROLLER_LISTEN}; port 0 = any)
  --status-listen HOST:PORT
                      HTTP /healthz /readyz /status /metrics (default ${DEFAULT_STATUS_LISTEN})
${TLS_OPTION_HELP}
  --ping-interval SECONDS
                      keepalive ping period on every stream (default 10)
  --coalesce-ms MS    cluster changes within this window are compiled once (default 20)
  --max-agents N      open agent streams this replica serves; one more is refused 'at
                      capacity' and that agent tries another replica (default 0: no cap;
                      sizing in the README, "Controller replicas")
  --max-handshakes N  TLS handshakes run at once (default ${DEFAULT_MAX_HANDSHAKES}; 0: no limit); more
                      connections wait un-handshaked, as many as --max-agents (or 64 x N),
                      and one beyond, or one that waited --handshake-queue-wait, is closed
                      at once ('busy': the agent retries later or at another replica)
  --handshake-queue-wait SECONDS
                      how long a connection may wait for a handshake (default ${DEFAULT_HANDSHAKE_QUEUE_WAIT_MS / 1000}: as long
                      as an agent keeps a queued connection; agents close one they give up on)
  --rebalance-interval SECONDS|off
                      how often this replica checks whether it holds more than its share
                      of the agents, ceil(ceil(agents / replicas) x 1.2), and then asks ONE
                      agent to move to another replica (with jitter; default ${DEFAULT_REBALANCE_INTERVAL_MS / 1000}); 'off': never
  --rebalance-slack X the 1.2 above: how far above its fair share a replica may be (1..10)
  --replicas N        how many replicas serve, for rebalancing (default: the passing
                      instances of --consul-service; without either nothing is shed)
${LOG_LEVEL_HELP}

Consul (optional; replicas: README "Controller replicas"):
  --consul URL        the local Consul agent's HTTP API, e.g. http://127.0.0.1:8500
${CONSUL_TOKEN_HELP}
  --policy-consul     take the policy from Consul KV (what 'portcullis policy push' wrote)
                      instead of --policy; a policy that does not check never replaces the
                      one in force; Consul unreachable changes nothing in force
  --consul-prefix P   KV prefix of the policy (default ${DEFAULT_POLICY_PREFIX})
  --policy-bundles-keep N|off
                      the replica holding the lock P/lock/housekeeping deletes old policy
                      bundles, keeping the current one and the N newest others (default 1;
                      off: this replica never collects); needs --policy-consul
  --consul-service NAME
                      register this replica as service NAME with an HTTP check on its
                      /readyz (agents: --consul URL --consul-service NAME); deregistered on a
                      clean stop, registered again when the local agent forgets it
  --consul-address ADDR
                      the address agents dial, registered with the service (default: the
                      Consul node's address); with --consul-service the other passing
                      instances are also this replica's flow peers (below)

Flows (what agents record, served on /flows and /flows/events of the status listener):
  --state-dir DIR     where the recorded flows are kept across restarts, in DIR/flows/
                      (default ${DEFAULT_CONTROLLER_STATE_DIR}; created 0700 at the first save)
  --flow-window D     flows are aggregated per key in windows of this length (default 60s;
                      D is seconds, or a number with s, m, h or d)
  --flow-retention D  windows older than this are dropped (default 24h)
  --flow-max-records N
                      at most N aggregates are kept; beyond, the oldest windows go first
                      (default ${DEFAULT_FLOW_MAX_RECORDS}; counted in portcullis_flow_records_dropped_total)
  --flow-peer HOST:PORT
                      another replica's gRPC listener (repeatable): /flows merges its records
                      with this one's and says which replicas answered (each within 2 s)
  --peer-name NAME    a certificate name (CN or subjectAltName) of a peer replica allowed to
                      read this one's flows (repeatable; default: the hosts of the peers of
                      --flow-peer and Consul). Peers present their controller certificate,
                      which needs extendedKeyUsage clientAuth too ('portcullis certs issue
                      --server' of this release; an older one must be issued again)

Exit codes: 0 stopped by a signal, 1 cannot start (TLS files, listen address, Marathon
flags), 2 usage error.

Examples:
  portcullis controller --insecure                      # the shipped example, local trial
  portcullis controller --policy /etc/portcullis/policy --marathon http://marathon:8080 \\
    --ca /etc/portcullis/ca.crt --cert /etc/portcullis/controller.crt \\
    --key /etc/portcullis/controller.key --status-listen 0.0.0.0:7444
`;

interface ControllerArgs {
  readonly policyPath: string;
  readonly inventoryPath: string | undefined;
  readonly marathon: MarathonFlags | undefined;
  readonly listen: HostPort;
  readonly statusListen: HostPort;
  readonly tls: ReturnType<typeof tlsFilesFrom>;
  readonly pingIntervalMs: number;
  readonly coalesceMs: number;
  /** `--max-agents`: open agent streams this replica serves (0: no cap). */
  readonly maxAgents: number;
  /** `--max-handshakes`, `--handshake-queue-wait` (src/tls/handshake-queue.ts). */
  readonly maxHandshakes: number;
  readonly handshakeQueueWaitMs: number;
  readonly limits: PolicyLimits;
  readonly logLevel: ReturnType<typeof parseLogLevel>;
  readonly stateDir: string;
  readonly flows: FlowStoreOptions;
  readonly consul: ConsulArgs | undefined;
  readonly flowPeers: { readonly targets: readonly HostPort[]; readonly peerNames: readonly string[] };
  /** `--rebalance-interval`, `--replicas`; undefined: rebalancing off. */
  readonly rebalance: { readonly intervalMs: number; readonly replicas?: number; readonly slack?: number } | undefined;
}

interface ConsulArgs {
  readonly target: ConsulTarget;
  readonly policyPrefix: string | undefined;
  readonly service: { readonly name: string; readonly address?: string } | undefined;
  /** `--policy-bundles-keep`: old bundles kept by the housekeeping; undefined: off. */
  readonly bundlesKeep: number | undefined;
}

/** `--rebalance-interval SECONDS|off`, `--rebalance-slack X` and `--replicas N` (which excludes the Consul count). */
function rebalanceArgs(interval: string | undefined, slackText: string | undefined, replicas: string | undefined, consul: ConsulArgs | undefined): ControllerArgs['rebalance'] {
  if (replicas !== undefined && !/^[0-9]{1,4}$/.test(replicas)) throw new UsageError(`--replicas must be a whole number 1..1000, got '${replicas}'`);
  const n = replicas === undefined ? undefined : Number(replicas);
  if (n !== undefined && (n < 1 || n > 1000)) throw new UsageError(`--replicas must be a whole number 1..1000, got '${replicas}'`);
  if (n !== undefined && consul?.service) throw new UsageError('--replicas and --consul-service exclude each other: the replica count comes from one source');
  const slack = slackText === undefined ? undefined : Number(slackText);
  if (slack !== undefined && (slackText!.trim() === '' || !(slack >= 1 && slack <= 10))) throw new UsageError(`--rebalance-slack must be a number in 1..10, got '${slackText}'`);
  if (interval === 'off') {
    if (n !== undefined || slack !== undefined) throw new UsageError('--replicas and --rebalance-slack are for rebalancing, which --rebalance-interval off turns off');
    return undefined;
  }
  const intervalMs = interval === undefined ? DEFAULT_REBALANCE_INTERVAL_MS : Math.round(1000 * parseSeconds(interval, 'rebalance-interval', 0.1, 3600));
  return { intervalMs, ...(n !== undefined ? { replicas: n } : {}), ...(slack !== undefined ? { slack } : {}) };
}

const SERVICE_NAME = /^[A-Za-z0-9][A-Za-z0-9-]{0,62}$/;

function consulArgs(values: { consul?: string; 'consul-token-file'?: string; 'policy-consul'?: boolean; 'consul-prefix'?: string; 'consul-service'?: string; 'consul-address'?: string; 'policy-bundles-keep'?: string; policy?: string }, io: CliIO): ConsulArgs | undefined {
  const given = (['policy-consul', 'consul-prefix', 'consul-service', 'consul-address', 'policy-bundles-keep'] as const).filter((k) => values[k] !== undefined);
  const target = consulTargetFrom(values, io);
  if (target === undefined) {
    if (given.length > 0) throw new UsageError(`--${given[0]} needs --consul URL (the local Consul agent)`);
    return undefined;
  }
  if (values['policy-consul'] && values.policy !== undefined) throw new UsageError('--policy and --policy-consul exclude each other: the policy comes from one place');
  if (values['consul-prefix'] !== undefined && !values['policy-consul']) throw new UsageError('--consul-prefix needs --policy-consul');
  const keepText = values['policy-bundles-keep'];
  if (keepText !== undefined && !values['policy-consul']) throw new UsageError('--policy-bundles-keep needs --policy-consul');
  if (keepText !== undefined && keepText !== 'off' && !/^[0-9]{1,4}$/.test(keepText)) throw new UsageError(`--policy-bundles-keep must be a whole number 0..9999 or off, got '${keepText.slice(0, 100)}'`);
  const prefix = values['consul-prefix'] ?? DEFAULT_POLICY_PREFIX;
  const bad = prefixError(prefix);
  if (bad !== undefined) throw new UsageError(`--consul-prefix: ${bad}`);
  const name = values['consul-service'];
  if (name !== undefined && !SERVICE_NAME.test(name)) throw new UsageError(`--consul-service must be a service name of letters, digits and '-' (at most 63), got '${name.slice(0, 100)}'`);
  if (values['consul-address'] !== undefined && name === undefined) throw new UsageError('--consul-address needs --consul-service');
  if (!values['policy-consul'] && name === undefined) throw new UsageError('--consul needs --policy-consul, --consul-service NAME or both (what to use Consul for)');
  return {
    target,
    policyPrefix: values['policy-consul'] ? prefix : undefined,
    bundlesKeep: !values['policy-consul'] || keepText === 'off' ? undefined : Number(keepText ?? 1),
    service: name === undefined ? undefined : { name, ...(values['consul-address'] !== undefined ? { address: values['consul-address'] } : {}) },
  };
}

/** A duration flag: seconds, or a number with s, m, h or d; within [min, max] ms. */
function durationFlag(value: string | undefined, flag: string, fallbackMs: number, minMs: number, maxMs: number): number {
  if (value === undefined) return fallbackMs;
  const ms = /^[0-9]{1,9}$/.test(value) ? Number(value) * 1000 : parseDurationMs(value);
  if (ms === undefined || ms < minMs || ms > maxMs) {
    throw new UsageError(`--${flag} must be a duration of ${minMs / 1000}s to ${maxMs / 86_400_000}d (seconds, or with s, m, h or d: 60s, 10m, 24h), got '${value}'`);
  }
  return ms;
}

export function parseControllerArgs(args: readonly string[], io: CliIO): ControllerArgs {
  const values = parseFlags(args, {
    policy: { type: 'string' },
    inventory: { type: 'string' },
    ...MARATHON_OPTIONS,
    listen: { type: 'string' },
    'status-listen': { type: 'string' },
    ca: { type: 'string' },
    cert: { type: 'string' },
    key: { type: 'string' },
    insecure: { type: 'boolean' },
    'ping-interval': { type: 'string' },
    'coalesce-ms': { type: 'string' },
    'max-agents': { type: 'string' },
    'max-handshakes': { type: 'string' },
    'handshake-queue-wait': { type: 'string' },
    'rebalance-interval': { type: 'string' },
    'rebalance-slack': { type: 'string' },
    replicas: { type: 'string' },
    'log-level': { type: 'string' },
    ...POLICY_LIMIT_OPTIONS,
    'state-dir': { type: 'string' },
    'flow-window': { type: 'string' },
    'flow-retention': { type: 'string' },
    'flow-max-records': { type: 'string' },
    consul: { type: 'string' },
    'policy-consul': { type: 'boolean' },
    'consul-prefix': { type: 'string' },
    'consul-service': { type: 'string' },
    'consul-address': { type: 'string' },
    'consul-token-file': { type: 'string' },
    'flow-peer': { type: 'string', multiple: true },
    'peer-name': { type: 'string', multiple: true },
    'policy-bundles-keep': { type: 'string' },
  });
  if ((values.marathon ?? []).length > 0 && values.inventory !== undefined) throw new UsageError('--inventory and --marathon exclude each other: tasks come from one source');
  const marathon = marathonFlagsFrom(values, io);
  const coalesce = values['coalesce-ms'] === undefined ? 20 : Number(values['coalesce-ms']);
  if (!Number.isInteger(coalesce) || coalesce < 0 || coalesce > 10_000) throw new UsageError(`--coalesce-ms must be 0..10000, got '${values['coalesce-ms']}'`);
  const windowMs = durationFlag(values['flow-window'], 'flow-window', 60_000, 1000, 86_400_000);
  const retentionMs = durationFlag(values['flow-retention'], 'flow-retention', 86_400_000, 60_000, 366 * 86_400_000);
  if (retentionMs < windowMs) throw new UsageError(`--flow-retention (${retentionMs / 1000}s) must be at least --flow-window (${windowMs / 1000}s)`);
  const maxText = values['flow-max-records'];
  const maxRecords = maxText === undefined ? DEFAULT_FLOW_MAX_RECORDS : /^[0-9]{1,9}$/.test(maxText) && Number(maxText) >= 1 ? Number(maxText) : undefined;
  if (maxRecords === undefined) throw new UsageError(`--flow-max-records must be a whole number from 1 to 999999999, got '${maxText}'`);
  const maxAgents = values['max-agents'] === undefined ? 0 : Number(values['max-agents']);
  if (!Number.isInteger(maxAgents) || maxAgents < 0 || maxAgents > 1_000_000) throw new UsageError(`--max-agents must be a whole number 0..1000000, got '${values['max-agents']}'`);
  const maxHandshakes = values['max-handshakes'] === undefined ? DEFAULT_MAX_HANDSHAKES : Number(values['max-handshakes']);
  if (!Number.isInteger(maxHandshakes) || maxHandshakes < 0 || maxHandshakes > 100_000) throw new UsageError(`--max-handshakes must be a whole number 0..100000, got '${values['max-handshakes']}'`);
  const waitText = values['handshake-queue-wait'];
  const handshakeQueueWaitMs = waitText === undefined ? DEFAULT_HANDSHAKE_QUEUE_WAIT_MS : Math.round(1000 * parseSeconds(waitText, 'handshake-queue-wait', 0.01, 600));
  const consul = consulArgs(values, io);
  const targets = (values['flow-peer'] ?? []).map((t) => hostPortOption(t, undefined, '--flow-peer') as HostPort);
  for (const t of targets) if (t.port === 0 || t.host === '0.0.0.0' || t.host === '::') throw new UsageError(`--flow-peer needs the address and port another replica listens on, got '${formatHostPort(t.host, t.port)}'`);
  const peerNames = values['peer-name'] ?? [];
  for (const n of peerNames) if (n === '' || n.length > 253 || /[\s,]/.test(n)) throw new UsageError(`--peer-name must be one certificate name, got '${n.slice(0, 100)}'`);
  return {
    flowPeers: { targets, peerNames },
    consul,
    rebalance: rebalanceArgs(values['rebalance-interval'], values['rebalance-slack'], values.replicas, consul),
    policyPath: resolvePolicyPath(io, values.policy),
    inventoryPath: marathon ? undefined : resolveInventoryPath(io, values.inventory),
    marathon,
    listen: hostPortOption(values.listen, DEFAULT_CONTROLLER_LISTEN, '--listen'),
    statusListen: hostPortOption(values['status-listen'], DEFAULT_STATUS_LISTEN, '--status-listen'),
    tls: tlsFilesFrom(values, io),
    pingIntervalMs: Math.round(1000 * (values['ping-interval'] === undefined ? 10 : parseSeconds(values['ping-interval'], 'ping-interval', 0.1, 3600))),
    coalesceMs: coalesce,
    maxAgents,
    maxHandshakes,
    handshakeQueueWaitMs,
    limits: policyLimitsFrom(values),
    logLevel: parseLogLevel(values['log-level']),
    stateDir: absolutePath(io, values['state-dir'] ?? DEFAULT_CONTROLLER_STATE_DIR),
    flows: { windowMs, retentionMs, maxRecords },
  };
}

export const controllerCommand: Command = {
  name: 'controller',
  help,
  async run(args: readonly string[], io: CliIO): Promise<number> {
    const options = parseControllerArgs(args, io);
    const log = createLogger({ component: 'controller', level: options.logLevel });
    let credentials: TlsMaterial | undefined;
    let controller: RunningController;
    try {
      credentials = options.tls ? await readTlsFiles(options.tls) : undefined;
      controller = await startController({
        policyPath: options.policyPath,
        feed: async ({ agents, logger, sharedAddresses }) => {
          if (options.marathon) return createMarathonFeed(await resolveMarathonFlags(options.marathon), agents, logger.child({ module: 'marathon' }), sharedAddresses?.());
          return new StaticInventoryFeed({ path: options.inventoryPath as string, logger: logger.child({ module: 'inventory' }) });
        },
        listen: options.listen,
        statusListen: options.statusListen,
        credentials,
        pingIntervalMs: options.pingIntervalMs,
        maxAgents: options.maxAgents,
        maxHandshakes: options.maxHandshakes,
        handshakeQueueWaitMs: options.handshakeQueueWaitMs,
        ...(options.rebalance ? { rebalance: options.rebalance } : {}),
        coalesceMs: options.coalesceMs,
        limits: options.limits,
        stateDir: options.stateDir,
        flows: options.flows,
        flowPeers: options.flowPeers,
        ...(options.consul
          ? {
              consul: {
                client: await consulClientOf(options.consul.target),
                ...(options.consul.policyPrefix !== undefined ? { policyPrefix: options.consul.policyPrefix } : {}),
                ...(options.consul.service ? { service: options.consul.service } : {}),
                ...(options.consul.bundlesKeep !== undefined ? { housekeeping: { keep: options.consul.bundlesKeep } } : {}),
              },
            }
          : {}),
        logger: log,
      });
    } catch (err) {
      // Everything that fails before the listeners are up is a start-up problem the operator fixes.
      if (err instanceof Error) {
        io.stderr(`portcullis controller: ${err.message}\n`);
        log.fatal({ err: err.message }, 'controller could not start');
        return EXIT_INPUT_ERROR;
      }
      throw err;
    }
    const onHup = (): void => void controller.reload().catch((e: unknown) => log.error({ err: String(e) }, 'reload failed'));
    process.on('SIGHUP', onHup);
    const signal = await waitForStopSignal();
    process.off('SIGHUP', onHup);
    log.info({ signal }, 'stopping: agents keep their rules');
    await controller.stop();
    log.info('controller stopped');
    return EXIT_OK;
  },
};
