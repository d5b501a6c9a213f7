/**
 * Where tasks run: the inventory model. The static inventory file and the live Marathon source
 * both produce a ClusterState; the compiler consumes it. Plain data, never mutated.
 *
 * Identity of a task endpoint is (host address, host port, protocol): apps share their host's
 * addresses and are told apart by host ports.
 */
import type { Protocol } from '../policy/policy-model.js';

export type NetworkMode = 'host' | 'bridge' | 'container';

export interface Host {
  /** The agent's host id: Marathon's `host` field (usually a hostname). */
  readonly id: string;
  /** IPv4 and IPv6 addresses, canonical text. Empty = unknown (reported, never guessed). */
  readonly addresses: readonly string[];
}

/**
 * One port of an app that gets a host port: a `portDefinitions` entry (HOST networking) or a
 * `portMappings` entry with a host port (BRIDGE). Ports that get no host port are not listed.
 */
export interface AppPort {
  readonly name?: string;
  /** Marathon's `"udp,tcp"` becomes ['tcp', 'udp'] (sorted). */
  readonly protocols: readonly Protocol[];
  /** BRIDGE only: the port inside the container that Docker DNATs the host port to. */
  readonly containerPort?: number;
  readonly labels: Readonly<Record<string, string>>;
}

export interface App {
  /** Marathon app id, e.g. `/shop/web`. Untrusted text. */
  readonly id: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly networkMode: NetworkMode;
  readonly ports: readonly AppPort[];
}

export interface Task {
  readonly id: string;
  readonly appId: string;
  readonly hostId: string;
  /** Host ports, aligned index for index with the app's `ports`. */
  readonly hostPorts: readonly number[];
}

export interface ClusterState {
  readonly hosts: readonly Host[];
  readonly apps: readonly App[];
  readonly tasks: readonly Task[];
}
