/**
 * The controller's optional Consul part (issue 12; `--consul URL`): its policy from Consul KV
 * instead of the policy directory (`--policy-consul`, src/controller/consul-policy-feed.ts), and
 * its registration as a service the agents find (`--consul-service NAME`, passing instances
 * only): an HTTP check on its own /readyz, registered again when the local Consul agent forgets
 * it, deregistered on a clean stop (src/consul/service-registrar.ts). Consul down changes nothing
 * in force: the last good policy stays, and agents keep the replicas they know. With the policy in
 * KV, the one job that must happen once, collecting old policy bundles, runs on the replica that
 * holds the housekeeping lock (`--policy-bundles-keep`, policy-housekeeping.ts).
 */
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { ConsulClient } from '../consul/consul-client.js';
import { ServiceRegistrar } from '../consul/service-registrar.js';
import { formatHostPort } from './host-port.js';
import { PolicyHousekeeping, type HousekeepingOptions } from './policy-housekeeping.js';

export interface ControllerConsulOptions {
  readonly client: ConsulClient;
  /** Take the policy from this KV prefix (`--policy-consul`, `--consul-prefix`) instead of `--policy`. */
  readonly policyPrefix?: string;
  /** Register as this service (`--consul-service`). */
  readonly service?: {
    readonly name: string;
    /** The address agents dial (`--consul-address`); absent: the Consul node's address. */
    readonly address?: string;
  };
  /** With `policyPrefix`: collect old bundles under the housekeeping lock (absent: not here). */
  readonly housekeeping?: Pick<HousekeepingOptions, 'keep' | 'intervalMs' | 'ttl' | 'lockDelay'>;
}

/** Starts the housekeeping of the policy in KV when asked for; stopped by the caller. */
export function startHousekeeping(o: ControllerConsulOptions, log: Logger): PolicyHousekeeping | undefined {
  if (o.policyPrefix === undefined || !o.housekeeping) return undefined;
  const housekeeping = new PolicyHousekeeping({ ...o.housekeeping, client: o.client, prefix: o.policyPrefix, logger: log });
  housekeeping.start();
  return housekeeping;
}

/** The check URL of a status listener: a wildcard host is reached on loopback by the local agent. */
export function readyzUrl(statusHost: string, statusPort: number): string {
  const host = statusHost === '0.0.0.0' || statusHost === '' ? '127.0.0.1' : statusHost === '::' ? '::1' : statusHost;
  return `http://${formatHostPort(host, statusPort)}/readyz`;
}

/** The service ID this replica registers under (its peers are the instances with another ID). */
export function controllerServiceId(name: string, grpcPort: number): string {
  return `${name}-${hostname()}-${grpcPort}`.replace(/[^A-Za-z0-9_.-]/g, '-').slice(0, 128);
}

/** Registers this replica (gRPC on `grpcPort`, status on `statusHost:statusPort`); the registrar, started. */
export function registerController(o: ControllerConsulOptions, grpcPort: number, statusHost: string, statusPort: number, log: Logger): ServiceRegistrar | undefined {
  if (!o.service) return undefined;
  const id = controllerServiceId(o.service.name, grpcPort);
  const registrar = new ServiceRegistrar({
    client: o.client,
    registration: {
      id,
      name: o.service.name,
      port: grpcPort,
      ...(o.service.address !== undefined ? { address: o.service.address } : {}),
      tags: ['portcullis-controller'],
      check: { http: readyzUrl(statusHost, statusPort), interval: '5s', timeout: '2s', deregisterCriticalServiceAfter: '10m' },
    },
    onRegistered: ({ again }) => log.info({ event: 'consul.registered', id, service: o.service?.name, again }, again ? 'registered in Consul again (the local agent had forgotten this replica)' : 'registered in Consul'),
    onError: (e, { delayMs }) => log.warn({ event: 'consul.register_failed', id, err: e.message, retryInMs: delayMs }, 'cannot register in Consul; agents that know this replica still reach it'),
  });
  registrar.start();
  return registrar;
}
