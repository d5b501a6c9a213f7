/**
 * `portcullis diff OLD NEW`: what a policy edit changes on each host. Both policies are compiled
 * against the same inventory and each host's states are compared with diffStates (the deltas
 * the controller would send): set members added (+) and removed (-), and mode changes. Allowed
 * (source, port) members are also said in words, naming the app and port that owns the host port.
 * Exit 0 with or without differences; 1 when a policy or the inventory does not load.
 */
import { parseArgs } from 'node:util';
import { ALLOW_KINDS, SET_KINDS, type DesiredState } from '../../compile/desired-state.js';
import { AddressSet } from '../../compile/address-set.js';
import { diffStates, type StateDelta } from '../../compile/state-delta.js';
import { sortDiagnostics, type Diagnostic } from '../../diagnostic.js';
import { formatSource } from '../../net/cidr.js';
import { formatAddress, tryParseAddress } from '../../net/address.js';
import type { ClusterState } from '../../inventory/cluster-state.js';
import type { Mode, Policy } from '../../policy/policy-model.js';
import { groupMatcher } from '../../policy/app-selector.js';
import { egressAppOf } from '../../net/member-syntax.js';
import { EXIT_INPUT_ERROR, EXIT_OK, type CliIO, type Command } from '../command.js';
import { UsageError } from '../../usage-error.js';
import { CONTROLLER_CLUSTER_HELP, loadClusterInput, policyDriftNote } from '../controller-client.js';
import {
  INVENTORY_OPTION_HELP,
  loadPolicyInput,
  oneOf,
  parseOptions,
  plural,
  resolvePolicyPath,
  writeDiagnostics,
} from '../load-inputs.js';
import { compileWithin, POLICY_LIMIT_HELP, POLICY_LIMIT_OPTIONS, policyLimitsFrom } from '../policy-limit-options.js';

const help = `Usage: portcullis diff OLD NEW [--inventory FILE | --controller URL] [--format text|json] [limits]

Compiles two versions of a policy (OLD and NEW: policy files or directories) against the same
inventory and prints, per host, what NEW adds (+) and removes (-) compared with OLD: set
members as the agent stores them (e.g. '+ allow-ip4 10.0.1.11,tcp:31100'), each allowed
source also said in words, and mode changes. A group whose mode changed (groups.<name>.mode)
is said first, e.g. 'group web: audit → enforce (hosts whose state changes by it: node-1)',
and each port or app egress that audits or enforces now is said per host. With per-app egress (defaults.egress on), what
each app on a host may now reach, or no longer, is said too (e.g. '/shop/batch may now reach
/shop/db postgres/tcp 31300 on node-3 (10.0.1.13)'). Hosts without change are listed on one line.

Options:
${INVENTORY_OPTION_HELP}
${CONTROLLER_CLUSTER_HELP}
                      (and a note on stderr when OLD is not what it enforces)
  --format text|json  output format (default: text)
${POLICY_LIMIT_HELP}

Exit codes: 0 compared (with or without differences), 1 a policy or the inventory does not
load (its errors are printed), 2 usage error.

Example:
  cp -r policies/shop /tmp/shop-new && \$EDITOR /tmp/shop-new/20-rules.yaml
  portcullis diff policies/shop /tmp/shop-new
`;

interface HostChange {
  readonly hostId: string;
  readonly prev: DesiredState | undefined;
  readonly next: DesiredState;
  readonly mode?: { readonly from: Mode; readonly to: Mode };
  readonly delta: StateDelta;
}

/** "<proto>\0<hostPort>" on a host → "<app> <port name>" for the words of allow-* members. */
function portOwners(cluster: ClusterState, hostId: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const task of cluster.tasks) {
    if (task.hostId !== hostId) continue;
    const app = cluster.apps.find((a) => a.id === task.appId);
    if (!app) continue;
    app.ports.forEach((port, i) => {
      const hostPort = task.hostPorts[i];
      if (!hostPort) return; // none (0: a port this task does not have)
      for (const proto of port.protocols) out.set(`${proto}\0${hostPort}`, `${app.id} ${port.name ?? `#${i}`}`);
    });
  }
  return out;
}

/** The allowed sources of each "<proto>:<port>" of a state, from its allow-* members. */
function sourcesByPort(state: DesiredState | undefined): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const kind of ALLOW_KINDS) {
    for (const member of state?.sets[kind] ?? []) {
      const comma = member.lastIndexOf(',');
      const key = member.slice(comma + 1);
      out.set(key, [...(out.get(key) ?? []), member.slice(0, comma)]);
    }
  }
  return out;
}

/**
 * Per changed port, which addresses NEW allows that OLD did not and the reverse, computed on
 * address sets (so a /31 replaced by one /32 reads as the one address that lost access), e.g.
 * "/shop/db postgres/tcp 31300 no longer allows 10.0.1.13, fd00:1::13".
 */
function inWords(change: HostChange, cluster: ClusterState): string[] {
  const owners = portOwners(cluster, change.hostId);
  const before = sourcesByPort(change.prev);
  const after = sourcesByPort(change.next);
  const keys = new Set<string>();
  for (const kind of ALLOW_KINDS) {
    for (const m of [...change.delta.adds[kind], ...change.delta.removes[kind]]) keys.add(m.slice(m.lastIndexOf(',') + 1));
  }
  const lines: string[] = [];
  for (const key of [...keys].sort()) {
    const [proto, port] = key.split(':') as [string, string];
    const owner = owners.get(`${proto}\0${port}`);
    const what = owner !== undefined ? `${owner}/${proto} ${port}` : `${proto} ${port}`;
    const old = AddressSet.fromStrings(before.get(key) ?? []);
    const now = AddressSet.fromStrings(after.get(key) ?? []);
    const gained = now.subtract(old).toCidrBlocks().map(formatSource);
    const lost = old.subtract(now).toCidrBlocks().map(formatSource);
    if (gained.length > 0) lines.push(`${change.hostId}: ${what} now allows ${gained.join(', ')}`);
    if (lost.length > 0) lines.push(`${change.hostId}: ${what} no longer allows ${lost.join(', ')}`);
  }
  return lines;
}

/** "<address>,<proto>:<port>" of every task port of the cluster → "<app> <port name>/<proto> <port> on <host>". */
function destinationOwners(cluster: ClusterState): Map<string, string> {
  const out = new Map<string, string>();
  const addresses = new Map(cluster.hosts.map((h) => [h.id, h.addresses.flatMap((a) => tryCanonical(a))]));
  const apps = new Map(cluster.apps.map((a) => [a.id, a]));
  for (const task of cluster.tasks) {
    apps.get(task.appId)?.ports.forEach((port, i) => {
      const hostPort = task.hostPorts[i];
      if (!hostPort) return; // none (0: a port this task does not have)
      for (const proto of port.protocols) {
        for (const a of addresses.get(task.hostId) ?? []) out.set(`${a},${proto}:${hostPort}`, `${task.appId} ${port.name ?? `#${i}`}/${proto} ${hostPort} on ${task.hostId}`);
      }
    });
  }
  return out;
}

function tryCanonical(text: string): string[] {
  const a = tryParseAddress(text);
  return a ? [formatAddress(a.family, a.value)] : [];
}

/**
 * Per local app of a changed host, the managed destinations it may now reach or no longer
 * reach (egress-ip* members), one line per app and destination port with its addresses, e.g.
 * "node-1: /shop/batch may now reach /shop/db postgres/tcp 31300 on node-3 (10.0.1.13, fd00:1::13)".
 */
function egressInWords(change: HostChange, owners: ReadonlyMap<string, string>): string[] {
  const lines: string[] = [];
  for (const [verb, lists] of [['may now reach', [change.delta.adds['egress-ip4'], change.delta.adds['egress-ip6']]], ['may no longer reach', [change.delta.removes['egress-ip4'], change.delta.removes['egress-ip6']]]] as const) {
    const byTarget = new Map<string, string[]>();
    for (const member of lists.flat()) {
      const bar = member.indexOf('|');
      const dest = member.slice(bar + 1);
      const comma = dest.lastIndexOf(',');
      const [proto, port] = dest.slice(comma + 1).split(':') as [string, string];
      const key = `${member.slice(0, bar)} ${verb} ${owners.get(dest) ?? `${proto} ${port}`}`;
      byTarget.set(key, [...(byTarget.get(key) ?? []), dest.slice(0, comma)]);
    }
    for (const [key, addresses] of [...byTarget].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) lines.push(`${change.hostId}: ${key} (${addresses.join(', ')})`);
  }
  return lines;
}

function changesOf(before: ReadonlyMap<string, DesiredState>, after: ReadonlyMap<string, DesiredState>): { changed: HostChange[]; unchanged: string[] } {
  const changed: HostChange[] = [];
  const unchanged: string[] = [];
  for (const [hostId, next] of after) {
    const prev = before.get(hostId);
    const delta = diffStates(prev, next);
    const modeChanged = prev !== undefined && prev.mode !== next.mode;
    const setsChanged = SET_KINDS.some((k) => delta.adds[k].length > 0 || delta.removes[k].length > 0);
    if (!modeChanged && !setsChanged) unchanged.push(hostId);
    else changed.push({ hostId, prev, next, delta, ...(modeChanged ? { mode: { from: prev!.mode, to: next.mode } } : {}) });
  }
  return { changed, unchanged };
}

/** A group whose mode (groups.<name>.mode) differs between OLD and NEW, and the changed hosts running its apps. */
interface GroupModeChange {
  readonly group: string;
  /** The explicit mode, or null: none (its apps follow defaults.mode). */
  readonly from: Mode | null;
  readonly to: Mode | null;
  readonly hosts: readonly string[];
}

/** Groups (of OLD or NEW) whose explicit mode changed, with the changed hosts running an app of theirs (in OLD or NEW). */
function groupModeChanges(oldPolicy: Policy, newPolicy: Policy, cluster: ClusterState, changed: readonly HostChange[]): GroupModeChange[] {
  const modeIn = (p: Policy) => new Map(p.groups.map((g) => [g.name, g.mode ?? null]));
  const [was, now] = [modeIn(oldPolicy), modeIn(newPolicy)];
  const names = [...new Set([...was.keys(), ...now.keys()])].filter((n) => was.has(n) && now.has(n) && was.get(n) !== now.get(n)).sort();
  if (names.length === 0) return [];
  const changedHosts = new Set(changed.map((c) => c.hostId));
  const groupsOf = [groupMatcher(oldPolicy), groupMatcher(newPolicy)];
  const appGroups = new Map(cluster.apps.map((a) => [a.id, new Set(groupsOf.flatMap((m) => m(a)))]));
  return names.map((group) => {
    const hosts = new Set(cluster.tasks.filter((t) => changedHosts.has(t.hostId) && appGroups.get(t.appId)?.has(group)).map((t) => t.hostId));
    return { group, from: was.get(group)!, to: now.get(group)!, hosts: [...hosts].sort() };
  });
}

function groupModeText(c: GroupModeChange, defaults: { readonly from: Mode; readonly to: Mode }): string {
  const mode = (m: Mode | null, d: Mode) => m ?? `none (defaults.mode ${d})`;
  const hosts = c.hosts.length > 0 ? `hosts whose state changes by it: ${c.hosts.join(', ')}` : 'no host changes by it';
  return `group ${c.group}: ${mode(c.from, defaults.from)} → ${mode(c.to, defaults.to)} (${hosts})\n`;
}

/** How the kernel reads a state's modes: a managed port, or a local app's egress (desired-state.ts). */
function portMode(state: DesiredState, protocol: 'tcp' | 'udp', port: string): Mode {
  return state.sets[`audit-${protocol}`].includes(port) ? 'audit' : state.mode;
}

/**
 * Per managed port and local app whose mode changed on a host (read as the kernel reads the
 * state: audit-<proto> / egress-audit, else the state's mode), e.g.
 * "node-1: /shop/web http/tcp 31000 now audits (logged, not dropped)".
 */
function modesInWords(change: HostChange, cluster: ClusterState): string[] {
  const prev = change.prev;
  if (!prev) return [];
  const next = change.next;
  const verb = (m: Mode) => (m === 'audit' ? 'now audits (logged, not dropped)' : 'now enforces (denied connections dropped)');
  const owners = portOwners(cluster, change.hostId);
  const lines: string[] = [];
  for (const protocol of ['tcp', 'udp'] as const) {
    for (const port of next.sets[`managed-${protocol}`]) {
      if (!prev.sets[`managed-${protocol}`].includes(port)) continue;
      const [a, b] = [portMode(prev, protocol, port), portMode(next, protocol, port)];
      const owner = owners.get(`${protocol}\0${port}`);
      if (a !== b) lines.push(`${change.hostId}: ${owner !== undefined ? `${owner}/` : ''}${protocol} ${port} ${verb(b)}`);
    }
  }
  const appMode = (s: DesiredState, app: string) => (s.sets['egress-audit'].includes(app) ? 'audit' : s.mode);
  const apps = (s: DesiredState) => new Set(s.sets['egress-task'].map(egressAppOf));
  const before = apps(prev);
  for (const app of [...apps(next)].sort()) {
    if (before.has(app) && appMode(prev, app) !== appMode(next, app)) lines.push(`${change.hostId}: egress of ${app} ${verb(appMode(next, app))}`);
  }
  return lines;
}

function hostText(change: HostChange, cluster: ClusterState, owners: ReadonlyMap<string, string>): string {
  const { delta } = change;
  const adds = SET_KINDS.reduce((n, k) => n + delta.adds[k].length, 0);
  const removes = SET_KINDS.reduce((n, k) => n + delta.removes[k].length, 0);
  const lines = [`${change.hostId}: ${adds} added, ${removes} removed`];
  if (change.mode) lines.push(`  mode ${change.mode.from} → ${change.mode.to}${change.mode.to === 'audit' ? ' (denied connections are logged, not dropped)' : ' (denied connections are dropped)'}`);
  for (const kind of SET_KINDS) {
    for (const [sign, list] of [['-', delta.removes[kind]], ['+', delta.adds[kind]]] as const) {
      for (const member of list) {
        lines.push(`  ${sign} ${kind} ${member}`);
      }
    }
  }
  for (const words of [...inWords(change, cluster), ...egressInWords(change, owners), ...modesInWords(change, cluster)]) lines.push(`  = ${words}`);
  return lines.join('\n') + '\n';
}

export const diffCommand: Command = {
  name: 'diff',
  help,
  async run(args: readonly string[], io: CliIO): Promise<number> {
    const { values, positionals } = parseOptions(() =>
      parseArgs({
        args: [...args],
        options: { inventory: { type: 'string' }, controller: { type: 'string' }, format: { type: 'string' }, ...POLICY_LIMIT_OPTIONS },
        strict: true,
        allowPositionals: true,
      }),
    );
    if (positionals.length !== 2) throw new UsageError(`expected two policies, OLD and NEW; got ${positionals.length} argument(s)`);
    const format = oneOf('format', values.format, ['text', 'json'] as const, 'text');
    const [oldPath, newPath] = positionals.map((p) => resolvePolicyPath(io, p)) as [string, string];
    const limits = policyLimitsFrom(values);
    const [oldPolicy, newPolicy, inventory] = await Promise.all([
      loadPolicyInput(oldPath, limits),
      loadPolicyInput(newPath, limits),
      loadClusterInput(io, values),
    ]);
    if (!oldPolicy.ok || !newPolicy.ok || !inventory.ok) {
      const errors: Diagnostic[] = [];
      for (const load of [oldPolicy, newPolicy, inventory]) if (!load.ok) errors.push(...load.errors);
      writeDiagnostics(io.stderr, io, sortDiagnostics(errors));
      const broken = [!oldPolicy.ok ? 'OLD' : '', !newPolicy.ok ? 'NEW' : '', !inventory.ok ? 'the inventory' : ''].filter(Boolean).join(' and ');
      io.stderr(`portcullis diff: nothing compared; ${broken} did not load (errors above)\n`);
      return EXIT_INPUT_ERROR;
    }
    const cluster = inventory.loaded.cluster;
    const compiled = [compileWithin(oldPolicy.loaded.policy, cluster, limits, oldPath), compileWithin(newPolicy.loaded.policy, cluster, limits, newPath)] as const;
    if (!compiled[0].ok || !compiled[1].ok) {
      writeDiagnostics(io.stderr, io, compiled.flatMap((c) => (c.ok ? [] : c.errors)));
      io.stderr('portcullis diff: nothing compared; a policy is over a load limit (errors above)\n');
      return EXIT_INPUT_ERROR;
    }
    const before = compiled[0].result.states;
    const after = compiled[1].result.states;
    const { changed, unchanged } = changesOf(before, after);
    const modeChanges = groupModeChanges(oldPolicy.loaded.policy, newPolicy.loaded.policy, cluster, changed);
    const defaults = { from: oldPolicy.loaded.policy.defaults.mode, to: newPolicy.loaded.policy.defaults.mode };
    const note = await policyDriftNote(values.controller, () => before, 'OLD');
    if (note !== '') io.stderr(note);

    if (format === 'json') {
      const body = {
        changed: Object.fromEntries(
          changed.map((c) => [
            c.hostId,
            {
              ...(c.mode ? { mode: c.mode } : {}),
              fromVersion: c.delta.baseVersion,
              toVersion: c.delta.version,
              adds: Object.fromEntries(SET_KINDS.filter((k) => c.delta.adds[k].length > 0).map((k) => [k, c.delta.adds[k]])),
              removes: Object.fromEntries(SET_KINDS.filter((k) => c.delta.removes[k].length > 0).map((k) => [k, c.delta.removes[k]])),
            },
          ]),
        ),
        unchanged,
        ...(modeChanges.length > 0 ? { groupModes: modeChanges } : {}),
      };
      io.stdout(JSON.stringify(body, null, 2) + '\n');
      return EXIT_OK;
    }
    io.stdout(modeChanges.map((c) => groupModeText(c, defaults)).join(''));
    if (changed.length === 0) {
      io.stdout(`no change: both policies compile to the same state on ${plural(unchanged.length, 'host')}\n`);
      return EXIT_OK;
    }
    const owners = destinationOwners(cluster);
    io.stdout(changed.map((c) => hostText(c, cluster, owners)).join(''));
    io.stdout(unchanged.length > 0 ? `unchanged (${unchanged.length}): ${unchanged.join(', ')}\n` : 'every host changes\n');
    return EXIT_OK;
  },
};
