/**
 * `portcullis agent`: the per-host process. Parses its flags, then runs agent/agent-runner.ts
 * until SIGTERM/SIGINT (the kernel keeps its rules), or with `--uninstall` removes everything the
 * agent owns from the kernel and exits.
 */
import { hostname, networkInterfaces } from 'node:os';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { Agent, type AgentEgressOptions, type AgentFlowOptions } from '../../../agent/agent-runner.js';
import type { ControllerSource } from '../../../agent/target-source.js';
import { DEFAULT_CONNECT_TIMEOUT_MS } from '../../../agent/sync-client.js';
import { ExecCommandRunner } from '../../../agent/dataplane/command-runner.js';
import { DEFAULT_MESOS_POLL_MS } from '../../../agent/egress-mapper.js';
import { DEFAULT_DOCKER_SOCKET } from '../../mesos/docker-engine.js';
import { StatusServer } from '../../status/status-server.js';
import { LOG_LEVEL_HELP, createLogger, parseLogLevel } from '../../logging.js';
import { FAMILIES, type Family } from '../../net/family.js';
import { parseAddress } from '../../net/address.js';
import { loadClientCredentials } from '../../tls/credentials.js';
import { EXIT_INPUT_ERROR, EXIT_OK, type CliIO, type Command } from '../command.js';
import { UsageError } from '../../usage-error.js';
import { parseFlags } from '../load-inputs.js';
import { packageRoot } from '../../package-root.js';
import { DEFAULT_FLOW_RECORDING } from '../../render/render-flows.js';
import { absolutePath, hostPortOption, httpUrlOption, parseSeconds, tlsFilesFrom, TLS_OPTION_HELP, waitForStopSignal } from '../process-options.js';
import { CONSUL_TOKEN_HELP, consulTargetFrom, consulToken, type ConsulTarget } from '../consul-options.js';

export const DEFAULT_STATE_DIR = '/var/lib/portcullis';
export const DEFAULT_MESOS_AGENT = 'http://127.0.0.1:5051';
export const DEFAULT_FLOW_INTERVAL = 10;

const help = `Usage: portcullis agent --controller HOST:PORT... (--ca FILE --cert FILE --key FILE | --insecure) [options]
       portcullis agent --consul URL --consul-service NAME (--ca ... | --insecure) [options]
       portcullis agent --uninstall [--state-dir DIR]

Runs on every Mesos host: receives this host's desired state from the controller and makes the
kernel enforce it (ipset + iptables-restore, IPv4 and IPv6, table mangle before Docker's DNAT).
At boot it first applies the last state saved in --state-dir, so the host is protected before
the controller answers; when the controller is gone the rules stay as they are. The kernel is
read back every --refresh-interval and any drift (our chains flushed, our jump deleted, set
members removed) is repaired. Needs root (CAP_NET_ADMIN). Logs are JSON lines on stdout.

Options:
  --controller HOST:PORT
                      a controller replica's gRPC address (repeatable: several replicas; a
                      name with several addresses counts as each of them). Each agent tries
                      them in its own random order and moves on when one fails or is full
  --consul URL        instead of --controller: the local Consul agent (e.g.
                      http://127.0.0.1:8500); the replicas are the passing instances of
                      --consul-service, followed with blocking queries (a Consul outage
                      keeps the last list)
${CONSUL_TOKEN_HELP}
  --consul-service NAME
                      the controllers' Consul service name (with --consul)
  --connect-timeout SECONDS
                      a replica whose connection (TCP and TLS handshake) is not up within
                      this long is left for the next one (default ${DEFAULT_CONNECT_TIMEOUT_MS / 1000}); 'off': wait for
                      the controller's first message (120 s)
  --host-id ID        this host's id: Marathon's task 'host', and the name in this agent's
                      certificate (default: the system host name, ${JSON.stringify(hostname())})
  --address IP        an address of this host other hosts' traffic comes from (repeatable;
                      default: every global address of the host's interfaces)
  --state-dir DIR     last applied state and the last rendered inputs (default ${DEFAULT_STATE_DIR})
  --refresh-interval SECONDS
                      kernel drift check period (default 30)
  --family 4|6        manage one address family only (repeatable; default both)
  --mesos-agent URL   the local Mesos agent's HTTP API, polled to learn which container each
                      local task runs in, for per-app egress (default ${DEFAULT_MESOS_AGENT});
                      'off': no per-app egress, host-level enforcement only
  --mesos-poll-interval SECONDS
                      how often the Mesos agent is polled (default ${DEFAULT_MESOS_POLL_MS / 1000})
  --cgroups-root PATH the Mesos agent's --cgroups_root, used when its GET_FLAGS does not say
                      (default mesos)
  --docker-socket PATH|none
                      the Docker daemon's socket, asked where the Docker containerizer's HOST
                      tasks run (their container's cgroup; default ${DEFAULT_DOCKER_SOCKET}); 'none':
                      such tasks stay unmapped
  --egress-unmapped host|deny
                      a local task the agent has not mapped to its cgroup or address yet:
                      'host' treats it host-level (default), 'deny' drops its new connections
                      to managed destinations until it is mapped (see the README)
  --flow-interval SECONDS|off
                      how often the flows recorded in the kernel (new connections to managed
                      ports, and of local apps to managed destinations, by verdict) are read
                      and what changed is sent to the controller (default ${DEFAULT_FLOW_INTERVAL}); 'off': no
                      recording, the chains are exactly those of an agent without it
  --flow-max-entries N
                      entries per flow set (pcu4-fl-allow, ...; default ${DEFAULT_FLOW_RECORDING.maxEntries}); new
                      connections a full set cannot record are counted, traffic is unaffected
  --flow-timeout SECONDS
                      how long a recorded entry stays in its set unless counted again
                      (default ${DEFAULT_FLOW_RECORDING.timeoutSeconds}; at least --flow-interval)
${TLS_OPTION_HELP}
  --server-name NAME  the name to expect in the controller's certificate when it differs
                      from the HOST in --controller (or with --consul, whose instances are
                      addresses)
  --status-listen HOST:PORT
                      serve /healthz /readyz /status /metrics over HTTP (default: off)
  --uninstall         remove every chain, jump and set the agent owns (PCU-*, pcu4-*, pcu6-*)
                      and every file it wrote in --state-dir (the directory too if the agent
                      created it), then exit; touches nothing else (see the README for the
                      empty built-in mangle table that stays)
${LOG_LEVEL_HELP}

Exit codes: 0 stopped by a signal or uninstalled, 1 cannot start (TLS files, no kernel
tools, status port in use), 2 usage error.

Example:
  portcullis agent --controller portcullis.example:7443 --host-id node-1.example \\
    --ca /etc/portcullis/ca.crt --cert /etc/portcullis/node-1.example.crt \\
    --key /etc/portcullis/node-1.example.key
`;

/** Every global unicast address of this machine (no loopback, no link-local). */
export function defaultAddresses(): string[] {
  const out: string[] = [];
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) {
      if (a.internal) continue;
      if (a.family === 'IPv6' && /^fe[89ab]/i.test(a.address)) continue;
      out.push(a.address.replace(/%.*$/, ''));
    }
  }
  return [...new Set(out)].sort();
}

function agentVersion(): string {
  try {
    return String(JSON.parse(readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')).version ?? 'unknown');
  } catch {
    return 'unknown';
  }
}

function integerOption(text: string | undefined, flag: string, fallback: number, min: number, max: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!/^[0-9]{1,10}$/.test(text) || n < min || n > max) throw new UsageError(`--${flag} must be a whole number in ${min}..${max}, got '${text}'`);
  return n;
}

/** The flow recording flags; undefined with `--flow-interval off`. */
export function flowOptions(values: Record<string, string | boolean | string[] | undefined>): AgentFlowOptions | undefined {
  const intervalText = values['flow-interval'] as string | undefined;
  const maxEntries = integerOption(values['flow-max-entries'] as string | undefined, 'flow-max-entries', DEFAULT_FLOW_RECORDING.maxEntries, 1, 4_194_304);
  const timeoutSeconds = integerOption(values['flow-timeout'] as string | undefined, 'flow-timeout', DEFAULT_FLOW_RECORDING.timeoutSeconds, 1, 2_147_483);
  if (intervalText === 'off') return undefined;
  const intervalSeconds = intervalText === undefined ? DEFAULT_FLOW_INTERVAL : parseSeconds(intervalText, 'flow-interval', 0.1, 3600);
  if (timeoutSeconds < intervalSeconds) throw new UsageError(`--flow-timeout (${timeoutSeconds}) must be at least --flow-interval (${intervalSeconds}): entries would expire unread`);
  return { intervalSeconds, recording: { maxEntries, timeoutSeconds } };
}

/** The per-app egress flags; undefined with `--mesos-agent off`. */
function egressOptions(values: Record<string, string | boolean | string[] | undefined>): AgentEgressOptions | undefined {
  const url = (values['mesos-agent'] as string | undefined) ?? DEFAULT_MESOS_AGENT;
  const unmapped = (values['egress-unmapped'] as string | undefined) ?? 'host';
  if (unmapped !== 'host' && unmapped !== 'deny') throw new UsageError(`--egress-unmapped must be host or deny, got '${unmapped}'`);
  const pollText = values['mesos-poll-interval'] as string | undefined;
  const poll = pollText === undefined ? DEFAULT_MESOS_POLL_MS / 1000 : parseSeconds(pollText, 'mesos-poll-interval', 0.05, 3600);
  const cgroupsRoot = (values['cgroups-root'] as string | undefined) ?? 'mesos';
  if (!/^[A-Za-z0-9_.-]{1,255}(\/[A-Za-z0-9_.-]{1,255}){0,15}$/.test(cgroupsRoot.replace(/^\/+|\/+$/g, '')) || /(^|\/)\.\.?(\/|$)/.test(cgroupsRoot)) {
    throw new UsageError(`--cgroups-root '${cgroupsRoot}' must be a relative path of [A-Za-z0-9_.-] segments (the Mesos agent's --cgroups_root)`);
  }
  if (url === 'off') return undefined;
  httpUrlOption(url, '--mesos-agent', "the Mesos agent's HTTP authentication is not supported: its read-only endpoints must be open to this host (the default)", " or 'off'");
  const socket = (values['docker-socket'] as string | undefined) ?? DEFAULT_DOCKER_SOCKET;
  if (socket !== 'none' && !socket.startsWith('/')) throw new UsageError(`--docker-socket must be an absolute path or 'none', got '${socket}'`);
  return { mesosAgent: url, pollIntervalMs: Math.round(poll * 1000), cgroupsRoot: cgroupsRoot.replace(/^\/+|\/+$/g, ''), unmapped, dockerSocket: socket === 'none' ? undefined : socket };
}

/** `--connect-timeout SECONDS|off` in ms (0: off). */
export function connectTimeoutOption(text: string | undefined): number {
  if (text === undefined) return DEFAULT_CONNECT_TIMEOUT_MS;
  if (text === 'off') return 0;
  return Math.round(1000 * parseSeconds(text, 'connect-timeout', 0.1, 3600));
}

/** `--controller` (repeatable) or `--consul URL --consul-service NAME`; exactly one of the two. With Consul, `consul` says where (its token is read at start). */
export function controllerSourceFrom(values: Record<string, string | boolean | string[] | undefined>, io: CliIO): { source: ControllerSource; consul?: ConsulTarget } {
  const controllers = (values.controller as string[] | undefined) ?? [];
  const service = values['consul-service'] as string | undefined;
  if (controllers.length > 0 && (values.consul !== undefined || service !== undefined)) {
    throw new UsageError('--controller and --consul exclude each other: the replicas come from one source');
  }
  const consul = consulTargetFrom({ consul: values.consul as string | undefined, 'consul-token-file': values['consul-token-file'] as string | undefined }, io);
  if (consul === undefined && service !== undefined) throw new UsageError('--consul-service needs --consul URL');
  if (consul !== undefined) {
    if (service === undefined) throw new UsageError('--consul needs --consul-service NAME (the controllers\' Consul service)');
    if (!/^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/.test(service)) throw new UsageError(`--consul-service '${service.slice(0, 100)}' must be letters, digits, '-' and '_'`);
    return { source: { kind: 'consul', url: consul.url, service }, consul };
  }
  if (controllers.length === 0) throw new UsageError('--controller HOST:PORT is required (repeatable: one per replica), or --consul URL --consul-service NAME');
  for (const c of controllers) hostPortOption(c, undefined, '--controller');
  return { source: { kind: 'list', controllers: [...new Set(controllers)] } };
}

function describeSource(source: ControllerSource): string {
  return source.kind === 'list' ? source.controllers.join(',') : `consul:${source.service}`;
}

export const agentCommand: Command = {
  name: 'agent',
  help,
  async run(args: readonly string[], io: CliIO): Promise<number> {
    const values = parseFlags(args, {
      controller: { type: 'string', multiple: true },
      consul: { type: 'string' },
      'consul-token-file': { type: 'string' },
      'consul-service': { type: 'string' },
      'connect-timeout': { type: 'string' },
      'host-id': { type: 'string' },
      address: { type: 'string', multiple: true },
      'state-dir': { type: 'string' },
      'refresh-interval': { type: 'string' },
      family: { type: 'string', multiple: true },
      ca: { type: 'string' },
      cert: { type: 'string' },
      key: { type: 'string' },
      insecure: { type: 'boolean' },
      'server-name': { type: 'string' },
      'status-listen': { type: 'string' },
      uninstall: { type: 'boolean' },
      'log-level': { type: 'string' },
      'mesos-agent': { type: 'string' },
      'mesos-poll-interval': { type: 'string' },
      'cgroups-root': { type: 'string' },
      'docker-socket': { type: 'string' },
      'egress-unmapped': { type: 'string' },
      'flow-interval': { type: 'string' },
      'flow-max-entries': { type: 'string' },
      'flow-timeout': { type: 'string' },
    });
    const egress = egressOptions(values);
    const flows = flowOptions(values);
    const families: Family[] = [];
    for (const f of values.family ?? []) {
      const family = Number(f) as Family;
      if (!FAMILIES.includes(family)) throw new UsageError(`--family must be 4 or 6, got '${f}'`);
      if (!families.includes(family)) families.push(family);
    }
    const hostId = values['host-id'] ?? hostname();
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/.test(hostId)) throw new UsageError(`--host-id '${hostId}' must be letters, digits, '.', '-' and '_'`);
    const addresses = values.address ?? defaultAddresses();
    for (const a of addresses) {
      const parsed = parseAddress(a);
      if (!parsed.ok) throw new UsageError(`--address: ${parsed.message}`);
    }
    const stateDir = absolutePath(io, values['state-dir'] ?? DEFAULT_STATE_DIR);
    const refresh = values['refresh-interval'] === undefined ? 30 : parseSeconds(values['refresh-interval'], 'refresh-interval', 0.2, 86_400);
    const statusListen = hostPortOption(values['status-listen'], undefined, '--status-listen');
    const connectTimeoutMs = connectTimeoutOption(values['connect-timeout']);
    const log = createLogger({ component: 'agent', level: parseLogLevel(values['log-level']) });
    const agentFor = (credentials: grpc.ChannelCredentials, controllers?: ControllerSource): Agent =>
      new Agent({
        controller: controllers ? describeSource(controllers) : 'none',
        ...(controllers ? { controllers } : {}),
        credentials,
        ...(values['server-name'] !== undefined ? { channelOptions: { 'grpc.ssl_target_name_override': values['server-name'], 'grpc.default_authority': values['server-name'] } } : {}),
        hostId,
        addresses,
        stateDir,
        refreshIntervalMs: Math.round(refresh * 1000),
        families: families.length > 0 ? families : [...FAMILIES],
        runner: new ExecCommandRunner(),
        agentVersion: agentVersion(),
        logger: log,
        ...(egress ? { egress } : {}),
        ...(flows ? { flows } : {}),
        connectTimeoutMs,
      });

    if (values.uninstall) {
      const agent = agentFor(grpc.credentials.createInsecure());
      let cleanup;
      try {
        cleanup = await agent.uninstall();
      } catch (err) {
        io.stderr(`portcullis agent --uninstall: ${(err as Error).message}\n`);
        return EXIT_INPUT_ERROR;
      }
      log.info(
        { stateDir, removedFiles: cleanup.removed, keptFiles: cleanup.kept, removedDirs: cleanup.removedDirs },
        'uninstalled: every PCU-* chain, its jump, every pcu4-*/pcu6-* set and every file the agent wrote in the state directory removed',
      );
      return EXIT_OK;
    }
    const from = controllerSourceFrom(values, io);
    const tls = tlsFilesFrom(values, io);
    if (!tls && values['server-name'] !== undefined) throw new UsageError('--server-name needs TLS (--ca, --cert, --key)');

    let agent: Agent | undefined;
    let statusServer: StatusServer | undefined;
    try {
      const credentials = tls ? await loadClientCredentials(tls) : grpc.credentials.createInsecure();
      const token = from.consul && (await consulToken(from.consul));
      const controllers: ControllerSource = from.source.kind === 'consul' && token ? { ...from.source, token } : from.source;
      if (!tls) log.warn({ controller: describeSource(from.source) }, 'gRPC is PLAINTEXT (--insecure): the controller is not authenticated');
      agent = agentFor(credentials, controllers);
      await agent.start();
      if (statusListen) {
        statusServer = new StatusServer(agent);
        const bound = await statusServer.listen(statusListen.host, statusListen.port);
        log.info({ status: `${statusListen.host}:${bound.port}` }, 'status listening');
      }
    } catch (err) {
      await agent?.stop();
      io.stderr(`portcullis agent: ${(err as Error).message}\n`);
      log.fatal({ err: (err as Error).message }, 'agent could not start');
      return EXIT_INPUT_ERROR;
    }
    const signal = await waitForStopSignal();
    log.info({ signal }, 'stopping: the kernel keeps the applied rules');
    await agent.stop();
    await statusServer?.close();
    return EXIT_OK;
  },
};
