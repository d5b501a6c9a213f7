/**
 * A ClusterState as a JSON document in the static inventory's shape (hosts, apps, tasks with the
 * keys of policies/inventory.yaml), and back. The controller serves the cluster it compiled from
 * this way (`GET /cluster` on its status listener) and the CLI reads it for
 * `explain|diff|check --controller`.
 *
 * Contract: `clusterFromDocument(clusterDocument(c))` equals `c` (same order, same values), so a
 * local compile of the document gives byte-identical states to the controller's. The decoder
 * checks types only, not the static file's stricter rules (unique addresses, no shared host
 * ports, id syntax): a live cluster from Marathon may break those, and the compiler reports them
 * (as it did in the controller) instead of the CLI refusing to answer. Pure.
 */
import type { Protocol } from '../policy/policy-model.js';
import type { App, AppPort, ClusterState, Host, NetworkMode, Task } from './cluster-state.js';

export interface PortDocument {
  readonly name?: string;
  /**
   * `tcp`, `udp` or `tcp,udp`, as in the static inventory; `''` for a port with neither (a
   * Marathon `sctp` port: kept, not managed), which the static inventory has no way to say.
   */
  readonly protocol: string;
  readonly containerPort?: number;
  readonly labels: Readonly<Record<string, string>>;
}

export interface ClusterDocument {
  readonly hosts: readonly { readonly id: string; readonly addresses: readonly string[] }[];
  readonly apps: readonly { readonly id: string; readonly network: NetworkMode; readonly labels: Readonly<Record<string, string>>; readonly ports: readonly PortDocument[] }[];
  readonly tasks: readonly { readonly id: string; readonly app: string; readonly host: string; readonly ports: readonly number[] }[];
}

export function clusterDocument(cluster: ClusterState): ClusterDocument {
  return {
    hosts: cluster.hosts.map((h) => ({ id: h.id, addresses: [...h.addresses] })),
    apps: cluster.apps.map((a) => ({
      id: a.id,
      network: a.networkMode,
      labels: { ...a.labels },
      ports: a.ports.map((p) => ({
        ...(p.name !== undefined ? { name: p.name } : {}),
        protocol: p.protocols.join(','),
        ...(p.containerPort !== undefined ? { containerPort: p.containerPort } : {}),
        labels: { ...p.labels },
      })),
    })),
    tasks: cluster.tasks.map((t) => ({ id: t.id, app: t.appId, host: t.hostId, ports: [...t.hostPorts] })),
  };
}

export type ClusterDocumentResult = { readonly ok: true; readonly cluster: ClusterState } | { readonly ok: false; readonly error: string };

class DocumentError extends Error {}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function fail(where: string, what: string): never {
  throw new DocumentError(`${where}: ${what}`);
}

function list(v: unknown, where: string): unknown[] {
  if (!Array.isArray(v)) fail(where, 'not a list');
  return v;
}

function record(v: unknown, where: string): Record<string, unknown> {
  if (!isRecord(v)) fail(where, 'not an object');
  return v;
}

function str(v: unknown, where: string): string {
  if (typeof v !== 'string' || v === '') fail(where, 'not a non-empty string');
  return v;
}

function port(v: unknown, where: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 65535) fail(where, 'not a port number');
  return v;
}

function labels(v: unknown, where: string): Readonly<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const [k, value] of Object.entries(record(v ?? {}, where))) {
    if (typeof value !== 'string') fail(`${where}.${k}`, 'not a string');
    out[k] = value;
  }
  return out;
}

const PROTOCOLS: Readonly<Record<string, readonly Protocol[]>> = { tcp: ['tcp'], udp: ['udp'], 'tcp,udp': ['tcp', 'udp'], 'udp,tcp': ['tcp', 'udp'] };
const NETWORKS: readonly NetworkMode[] = ['host', 'bridge', 'container'];

function appPort(v: unknown, where: string): AppPort {
  const p = record(v, where);
  const protocols = p['protocol'] === '' ? [] : (PROTOCOLS[str(p['protocol'], `${where}.protocol`)] ?? fail(`${where}.protocol`, 'not tcp, udp or tcp,udp'));
  return {
    ...(p['name'] !== undefined ? { name: str(p['name'], `${where}.name`) } : {}),
    protocols,
    ...(p['containerPort'] !== undefined ? { containerPort: port(p['containerPort'], `${where}.containerPort`) } : {}),
    labels: labels(p['labels'], `${where}.labels`),
  };
}

/** The ClusterState of a document made by `clusterDocument`, or what is wrong with it. */
export function clusterFromDocument(value: unknown): ClusterDocumentResult {
  try {
    const doc = record(value, 'cluster');
    const hosts = list(doc['hosts'], 'hosts').map((v, i): Host => {
      const h = record(v, `hosts[${i}]`);
      return { id: str(h['id'], `hosts[${i}].id`), addresses: list(h['addresses'], `hosts[${i}].addresses`).map((a, j) => str(a, `hosts[${i}].addresses[${j}]`)) };
    });
    const apps = list(doc['apps'], 'apps').map((v, i): App => {
      const a = record(v, `apps[${i}]`);
      const network = a['network'] ?? 'host';
      if (!NETWORKS.includes(network as NetworkMode)) fail(`apps[${i}].network`, 'not host, bridge or container');
      return {
        id: str(a['id'], `apps[${i}].id`),
        labels: labels(a['labels'], `apps[${i}].labels`),
        networkMode: network as NetworkMode,
        ports: list(a['ports'] ?? [], `apps[${i}].ports`).map((p, j) => appPort(p, `apps[${i}].ports[${j}]`)),
      };
    });
    const tasks = list(doc['tasks'], 'tasks').map((v, i): Task => {
      const t = record(v, `tasks[${i}]`);
      return {
        id: str(t['id'], `tasks[${i}].id`),
        appId: str(t['app'], `tasks[${i}].app`),
        hostId: str(t['host'], `tasks[${i}].host`),
        hostPorts: list(t['ports'], `tasks[${i}].ports`).map((p, j) => port(p, `tasks[${i}].ports[${j}]`)),
      };
    });
    return { ok: true, cluster: { hosts, apps, tasks } };
  } catch (e) {
    if (e instanceof DocumentError) return { ok: false, error: e.message };
    throw e;
  }
}
