/**
 * Where tasks run: the inventory model. The static inventory file and the live Marathon source
 * both produce a ClusterState; the compiler consumes it. Plain data, never mutated; an App object
 * stands for one definition (see sameApp below).
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
  /**
   * Host ports, aligned index for index with the app's `ports`; 0 for a port of the app this task
   * does not have (an old task during a deployment that added it: marathon/cluster-store.ts).
   */
  readonly hostPorts: readonly number[];
}

export interface ClusterState {
  readonly hosts: readonly Host[];
  readonly apps: readonly App[];
  readonly tasks: readonly Task[];
}

/**
 * Change signal for consumers: an App object stands for one definition. A source that re-reads
 * its apps (a Marathon re-list, an inventory file reload) keeps the previous object of every app
 * whose definition is unchanged (`reuseUnchangedApps`), so the compiler finds changed apps by
 * identity (src/compile/cluster-index.ts) instead of comparing them; a new object for an
 * unchanged app only costs the compiler a recompute of that app's hosts.
 */

/** Two definitions of an app are the same: every field, labels compared as key → value maps. */
export function sameApp(a: App, b: App): boolean {
  if (a === b) return true;
  if (a.id !== b.id || a.networkMode !== b.networkMode || !sameLabels(a.labels, b.labels)) return false;
  return a.ports.length === b.ports.length && a.ports.every((p, i) => samePort(p, b.ports[i]!));
}

/** Two tasks are the same placement: app, host and host ports. */
export function sameTask(a: Task, b: Task): boolean {
  return a.appId === b.appId && a.hostId === b.hostId && a.hostPorts.length === b.hostPorts.length && a.hostPorts.every((p, i) => p === b.hostPorts[i]);
}

/** `next` with each app replaced by the same-id app of `previous` when their definitions are the same. */
export function reuseUnchangedApps(previous: readonly App[], next: readonly App[]): App[] {
  const before = new Map<string, App>();
  for (const app of previous) if (!before.has(app.id)) before.set(app.id, app);
  return next.map((app) => {
    const old = before.get(app.id);
    return old !== undefined && sameApp(old, app) ? old : app;
  });
}

function samePort(a: AppPort, b: AppPort): boolean {
  return (
    a.name === b.name &&
    a.containerPort === b.containerPort &&
    a.protocols.length === b.protocols.length &&
    a.protocols.every((p, i) => p === b.protocols[i]) &&
    sameLabels(a.labels, b.labels)
  );
}

function sameLabels(a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>): boolean {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((k) => Object.hasOwn(b, k) && a[k] === b[k]);
}
