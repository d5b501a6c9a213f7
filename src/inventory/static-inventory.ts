/**
 * parseStaticInventory: the static inventory file (hosts, apps, tasks) → ClusterState.
 *
 * Contract: pure; every problem is reported as a Diagnostic with file:line:col (all of them, not
 * the first); the output is sorted (hosts, apps and tasks by id) and addresses are canonical, so
 * equal inventories give equal ClusterStates. Checked: unknown keys, duplicate ids, bad addresses
 * (and one address on two hosts), unknown app or host in a task, a task's port count differing
 * from its app's, ports out of range, two tasks on one host sharing a (protocol, host port), and
 * an empty file (blank or comments only: an error at 1:1, never an empty cluster).
 */
import { isScalar } from 'yaml';
import type { Node as YamlNode } from 'yaml';
import type { Diagnostic } from '../diagnostic.js';
import { sortDiagnostics } from '../diagnostic.js';
import { parseYaml } from '../yaml/yaml-reader.js';
import type { YamlReader } from '../yaml/yaml-reader.js';
import { describe } from '../yaml/yaml-reader.js';
import { didYouMean } from '../yaml/suggest.js';
import { parseAddress } from '../net/address.js';
import { PORT_NAME_RE, PORT_NAME_RULE_TEXT } from '../policy/names.js';
import type { Protocol } from '../policy/policy-model.js';
import type { SourceLocation } from '../diagnostic.js';
import type { App, AppPort, ClusterState, Host, NetworkMode, Task } from './cluster-state.js';

export type InventoryResult = { readonly ok: true; readonly cluster: ClusterState } | { readonly ok: false; readonly errors: Diagnostic[] };

const TOP_KEYS = ['hosts', 'apps', 'tasks'] as const;
const HOST_KEYS = ['id', 'addresses'] as const;
const APP_KEYS = ['id', 'network', 'labels', 'ports'] as const;
const PORT_KEYS = ['name', 'protocol', 'containerPort', 'labels'] as const;
const TASK_KEYS = ['id', 'app', 'host', 'ports'] as const;
const NETWORK_MODES: readonly NetworkMode[] = ['host', 'bridge', 'container'];
const PROTOCOL_TEXT: Readonly<Record<string, readonly Protocol[]>> = {
  tcp: ['tcp'],
  udp: ['udp'],
  'udp,tcp': ['tcp', 'udp'],
  'tcp,udp': ['tcp', 'udp'],
};

const EMPTY_INVENTORY_MESSAGE =
  'the inventory file is empty (nothing but blank lines or comments): refused, because a file emptied by mistake would ' +
  "leave no task port managed (nothing filtered); write 'hosts: []' for an inventory without hosts on purpose";

export function parseStaticInventory(path: string, text: string): InventoryResult {
  const { reader: r, root, syntaxErrors } = parseYaml(path, text);
  if (syntaxErrors.length > 0) return { ok: false, errors: sortDiagnostics(syntaxErrors) };
  const hosts: Host[] = [];
  const apps: App[] = [];
  const tasks: Task[] = [];
  // An emptied file (a truncated write) would unmanage every task port on a hot reload.
  if (root === null) r.error({ file: path, line: 1, col: 1 }, EMPTY_INVENTORY_MESSAGE);
  const top = root === null ? undefined : r.mapping(root, 'the top level of an inventory file', TOP_KEYS);
  if (top) {
    const hostAt = new Map<string, SourceLocation>();
    const addressOwner = new Map<string, string>();
    for (const node of listOf(r, top.get('hosts')?.value, "'hosts'")) {
      const host = readHost(r, node, hostAt, addressOwner);
      if (host) hosts.push(host);
    }
    const appById = new Map<string, { app: App; at: SourceLocation }>();
    for (const node of listOf(r, top.get('apps')?.value, "'apps'")) {
      const app = readApp(r, node);
      if (!app) continue;
      const prior = appById.get(app.id);
      if (prior) r.error(node, `duplicate app id '${app.id}': already defined at ${where(prior.at)}`);
      else {
        appById.set(app.id, { app, at: r.at(node) });
        apps.push(app);
      }
    }
    readTasks(r, listOf(r, top.get('tasks')?.value, "'tasks'"), appById, hostAt, tasks);
  }
  const errors = r.diagnostics.filter((d) => d.severity !== 'warning');
  if (errors.length > 0) return { ok: false, errors: sortDiagnostics(errors) };
  const byId = <T extends { id: string }>(a: T, b: T): number => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
  return { ok: true, cluster: { hosts: hosts.sort(byId), apps: apps.sort(byId), tasks: tasks.sort(byId) } };
}

function where(at: SourceLocation): string {
  return `${at.file}:${at.line}:${at.col}`;
}

function listOf(r: YamlReader, node: YamlNode | null | undefined, what: string): (YamlNode | null)[] {
  if (node === undefined || node === null || (isScalar(node) && node.value === null)) return [];
  return r.list(node, what, { allowEmpty: true }) ?? [];
}

function readId(r: YamlReader, m: Map<string, { value: YamlNode | null }>, node: YamlNode | null, what: string): string | undefined {
  const e = m.get('id');
  if (!e) {
    r.error(node, `${what} has no 'id'`);
    return undefined;
  }
  const id = r.string(e.value, `'id' of ${what}`);
  if (id !== undefined && id.trim() === '') {
    r.error(e.value, `'id' of ${what} is empty`);
    return undefined;
  }
  return id;
}

function readHost(r: YamlReader, node: YamlNode | null, hostAt: Map<string, SourceLocation>, addressOwner: Map<string, string>): Host | undefined {
  const m = r.mapping(node, 'a host', HOST_KEYS);
  if (!m) return undefined;
  const id = readId(r, m, node, 'a host');
  if (id === undefined) return undefined;
  if (!/^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$/.test(id)) {
    r.error(m.get('id')!.value, `invalid host id '${id}': use a hostname (letters, digits, '.', '-', '_')`);
  }
  const prior = hostAt.get(id);
  if (prior) {
    r.error(m.get('id')!.value, `duplicate host id '${id}': already defined at ${where(prior)}`);
    return undefined;
  }
  hostAt.set(id, r.at(node));
  const addresses: string[] = [];
  const addrEntry = m.get('addresses');
  for (const item of addrEntry ? r.list(addrEntry.value, `'addresses' of host '${id}'`, { single: true, allowEmpty: true }) ?? [] : []) {
    const text = r.string(item, `each address of host '${id}'`);
    if (text === undefined) continue;
    const a = parseAddress(text);
    if (!a.ok) {
      r.error(item, `bad address of host '${id}': ${a.message}; expected an IPv4 or IPv6 address like 10.0.1.11 or fd00:1::11`);
      continue;
    }
    const owner = addressOwner.get(a.canonical);
    if (owner !== undefined && owner !== id) r.error(item, `address ${a.canonical} of host '${id}' is already an address of host '${owner}'`);
    addressOwner.set(a.canonical, id);
    if (!addresses.includes(a.canonical)) addresses.push(a.canonical);
  }
  return { id, addresses };
}

function readLabels(r: YamlReader, node: YamlNode | null | undefined, owner: string): Record<string, string> {
  const out: Record<string, string> = {};
  if (node === undefined) return out;
  const what = owner;
  const entries = r.anyMapping(node, `'labels' of ${owner}`) ?? [];
  for (const e of [...entries].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))) {
    const v = r.string(e.value, `label '${e.key}' of ${what} (Marathon label values are text)`);
    if (v !== undefined) out[e.key] = v;
  }
  return out;
}

function portNumber(r: YamlReader, node: YamlNode | null, what: string): number | undefined {
  if (isScalar(node) && typeof node.value === 'number' && Number.isInteger(node.value) && node.value >= 1 && node.value <= 65535) {
    return node.value;
  }
  r.error(node, `${what} must be a port number from 1 to 65535, found ${describe(node)}`);
  return undefined;
}

function readApp(r: YamlReader, node: YamlNode | null): App | undefined {
  const m = r.mapping(node, 'an app', APP_KEYS);
  if (!m) return undefined;
  const id = readId(r, m, node, 'an app');
  if (id === undefined) return undefined;
  if (!id.startsWith('/')) r.error(m.get('id')!.value, `app id '${id}' must start with '/' (Marathon app ids are absolute), e.g. '/${id}'`);
  const what = `app '${id}'`;
  let networkMode: NetworkMode = 'host';
  const netEntry = m.get('network');
  if (netEntry) {
    const v = r.string(netEntry.value, `'network' of ${what}`);
    if (v !== undefined && (NETWORK_MODES as readonly string[]).includes(v)) networkMode = v as NetworkMode;
    else if (v !== undefined) r.error(netEntry.value, `unknown network mode '${v}' of ${what}${didYouMean(v, NETWORK_MODES)}; expected host or bridge`);
  }
  const labels = readLabels(r, m.get('labels')?.value, what);
  const ports: AppPort[] = [];
  const portsEntry = m.get('ports');
  const items = portsEntry ? r.list(portsEntry.value, `'ports' of ${what}`, { allowEmpty: true }) ?? [] : [];
  items.forEach((item, i) => {
    const pwhat = `port #${i + 1} of ${what}`;
    const pm = r.mapping(item, pwhat, PORT_KEYS);
    if (!pm) return;
    let name: string | undefined;
    const nameEntry = pm.get('name');
    if (nameEntry) {
      name = r.string(nameEntry.value, `'name' of ${pwhat}`);
      if (name !== undefined && !PORT_NAME_RE.test(name)) r.error(nameEntry.value, `invalid port name '${name}' of ${what}: ${PORT_NAME_RULE_TEXT}`);
      else if (name !== undefined && ports.some((p) => p.name === name)) r.error(nameEntry.value, `${what} already has a port named '${name}'; port names must be unique within an app`);
    }
    let protocols: readonly Protocol[] = ['tcp'];
    const protoEntry = pm.get('protocol');
    if (protoEntry) {
      const v = r.string(protoEntry.value, `'protocol' of ${pwhat}`);
      const p = v === undefined ? undefined : PROTOCOL_TEXT[v.replace(/\s+/g, '')];
      if (p) protocols = p;
      else if (v !== undefined) r.error(protoEntry.value, `unknown protocol '${v}' of ${pwhat}; expected tcp, udp or "udp,tcp"`);
    }
    let containerPort: number | undefined;
    const cpEntry = pm.get('containerPort');
    if (cpEntry) {
      if (networkMode === 'host') {
        r.error(cpEntry.keyNode, `'containerPort' of ${pwhat} only applies to bridge networking; remove it or set network: bridge on the app`);
      } else containerPort = portNumber(r, cpEntry.value, `'containerPort' of ${pwhat}`);
    }
    const portLabels = readLabels(r, pm.get('labels')?.value, pwhat);
    ports.push({
      ...(name !== undefined ? { name } : {}),
      protocols,
      ...(containerPort !== undefined ? { containerPort } : {}),
      labels: portLabels,
    });
  });
  return { id, labels, networkMode, ports };
}

function readTasks(
  r: YamlReader,
  nodes: readonly (YamlNode | null)[],
  appById: ReadonlyMap<string, { app: App; at: SourceLocation }>,
  hostAt: ReadonlyMap<string, SourceLocation>,
  out: Task[],
): void {
  const idAt = new Map<string, SourceLocation>();
  const perApp = new Map<string, number>();
  /** "<host>\0<proto>\0<port>" → the task that owns it. */
  const owners = new Map<string, string>();
  nodes.forEach((node, i) => {
    const what = `task #${i + 1}`;
    const m = r.mapping(node, what, TASK_KEYS);
    if (!m) return;
    const appEntry = m.get('app');
    const hostEntry = m.get('host');
    if (!appEntry) r.error(node, `${what} has no 'app': name the Marathon app id it belongs to`);
    if (!hostEntry) r.error(node, `${what} has no 'host': name the host id it runs on`);
    const appId = appEntry ? r.string(appEntry.value, `'app' of ${what}`) : undefined;
    const hostId = hostEntry ? r.string(hostEntry.value, `'host' of ${what}`) : undefined;
    const app = appId === undefined ? undefined : appById.get(appId)?.app;
    if (appId !== undefined && !app) {
      r.error(appEntry!.value, `unknown app '${appId}' in ${what}${didYouMean(appId, appById.keys())}; define it under 'apps'`);
    }
    if (hostId !== undefined && !hostAt.has(hostId)) {
      r.error(hostEntry!.value, `unknown host '${hostId}' in ${what}${didYouMean(hostId, hostAt.keys())}; define it under 'hosts'`);
    }
    let n = 0;
    if (appId !== undefined) {
      n = (perApp.get(appId) ?? 0) + 1;
      perApp.set(appId, n);
    }
    const idEntry = m.get('id');
    let id = idEntry ? r.string(idEntry.value, `'id' of ${what}`) : appId === undefined ? undefined : defaultTaskId(appId, n, idAt);
    if (id !== undefined) {
      const prior = idAt.get(id);
      if (prior) r.error(idEntry?.value ?? node, `duplicate task id '${id}': already used by the task at ${where(prior)}`);
      else idAt.set(id, r.at(node));
    }
    const portsEntry = m.get('ports');
    const portNodes = portsEntry ? r.list(portsEntry.value, `'ports' of ${what}`, { allowEmpty: true }) ?? [] : [];
    const hostPorts = portNodes.map((p) => portNumber(r, p, `each host port of ${what}`));
    if (app && portNodes.length !== app.ports.length) {
      r.error(portsEntry?.value ?? node, `${what} has ${portNodes.length} host port(s) but app '${app.id}' declares ${app.ports.length}; list one host port per app port, in the same order`);
      return;
    }
    if (!app || id === undefined || hostId === undefined || !hostAt.has(hostId) || hostPorts.some((p) => p === undefined)) return;
    hostPorts.forEach((port, k) => {
      const clashes = new Map<string, Protocol[]>();
      for (const proto of app.ports[k]!.protocols) {
        const key = `${hostId}\0${proto}\0${port}`;
        const owner = owners.get(key);
        if (owner !== undefined) clashes.set(owner, [...(clashes.get(owner) ?? []), proto]);
        else owners.set(key, id!);
      }
      for (const [owner, protos] of clashes) {
        r.error(portNodes[k]!, `host port ${port} (${protos.join(', ')}) on host '${hostId}' is already used by task '${owner}'; two tasks cannot share a host port`);
      }
    });
    out.push({ id, appId: app.id, hostId, hostPorts: hostPorts as number[] });
  });
}

/**
 * A task's id when the file gives none: Marathon's form, the app id without its leading '/' and
 * with '_' for '/', then '.<n>' (`/shop/web` → `shop_web.1`), so that it can stand in an egress
 * member; a count is appended when that id is taken (`/a/b` and `/a_b` share a form).
 */
function defaultTaskId(appId: string, n: number, taken: ReadonlyMap<string, unknown>): string {
  const base = `${appId.replace(/^\/+/, '').replaceAll('/', '_')}.${n}`;
  let id = base;
  for (let k = 2; taken.has(id); k++) id = `${base}-${k}`;
  return id;
}
