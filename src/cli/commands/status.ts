/**
 * `portcullis status`: asks a running controller (its HTTP status listener) how things stand and
 * prints it for a person: readiness, the policy and inventory in force (with the last error of a
 * broken edit), and one line per agent with its applied vs desired version and its last error,
 * then one line per agent that cannot enforce per-app egress, with its reason, and one per agent
 * this replica holds because it is behind the state the agent applied (issue 12).
 */
import { EXIT_INPUT_ERROR, EXIT_OK, type CliIO, type Command } from '../command.js';
import { UsageError } from '../../usage-error.js';
import { ControllerError, DEFAULT_STATUS_LISTEN, controllerBase, egressShortfallText, egressShortfalls, getJson, printable } from '../controller-client.js';
import { oneOf, parseFlags } from '../load-inputs.js';

const help = `Usage: portcullis status [--controller-status URL] [--format table|json] [--check]

Shows a running controller's state: ready or not (and why), the policy and inventory in force
and the last error of a broken edit, every agent with its applied and desired version, and
every agent that cannot enforce per-app egress (host-level only on its host) with its reason,
every agent this controller holds because it is behind what the agent applied (a replica
whose policy or Marathon view is older: it sends nothing until it catches up),
and the groups with an explicit mode (groups.<name>.mode: audit or enforce) with their app counts.

Options:
  --controller-status URL
                      the controller's status listener (default http://${DEFAULT_STATUS_LISTEN},
                      the controller's default --status-listen); --controller URL is the
                      same option, under the name compile/explain/diff/check use
  --format table|json table (default), or the controller's /status document as it is
  --check             exit 1 unless the controller is ready and every agent is connected
                      with applied == desired (for scripts and health checks)
  --timeout SECONDS   give up after this long (default 5)

Exit codes: 0 answered (with --check: and all in sync), 1 controller unreachable or a bad
answer (with --check: not ready or an agent out of sync), 2 usage error.

Example:
  portcullis status --controller-status http://10.0.0.5:7444
`;

interface AgentRow {
  hostId?: unknown;
  agentVersion?: unknown;
  lastSeen?: unknown;
  connected?: unknown;
  appliedVersion?: unknown;
  desiredVersion?: unknown;
  inSync?: unknown;
  lastError?: unknown;
  peer?: unknown;
  heldBehind?: unknown;
}

interface StatusDoc {
  ready?: unknown;
  reason?: unknown;
  policy?: { path?: unknown; valid?: unknown; loadedAt?: unknown; lastError?: { diagnostics?: unknown } | null };
  inventory?: Record<string, unknown>;
  compile?: { hosts?: unknown; reports?: unknown };
  agentCounts?: { known?: unknown; connected?: unknown; inSync?: unknown };
  egress?: { enforcing?: unknown; hostLevel?: unknown };
  groupModes?: unknown;
  agents?: unknown;
  tls?: { refusals?: unknown; lastRefusal?: { peer?: unknown; reason?: unknown; detail?: unknown; at?: unknown } | null } | null;
}

/** A host whose agent never opened a stream (it has a desired state, nothing more). */
const neverConnected = (a: AgentRow): boolean => a.connected !== true && a.lastSeen === null && a.agentVersion === null;

const text = (v: unknown, fallback = '-'): string => (typeof v === 'string' && v !== '' ? printable(v) : typeof v === 'number' || typeof v === 'boolean' ? String(v) : fallback);

/** Rows as columns padded to their widest cell (the last column unpadded). */
export function table(rows: readonly (readonly string[])[]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i] ?? 0))).join('  ').trimEnd()).join('\n');
}

export function renderStatus(doc: StatusDoc, url: string): string {
  const out: string[] = [];
  out.push(`controller ${url}: ${doc.ready === true ? 'ready' : `NOT READY (${text(doc.reason, 'no reason given')})`}`);
  const p = doc.policy ?? {};
  const diagnostics = Array.isArray(p.lastError?.diagnostics) ? (p.lastError?.diagnostics as unknown[]).map((d) => text(d)) : [];
  out.push(`policy ${text(p.path)}: ${p.valid === true ? 'valid' : 'INVALID'}; in force since ${text(p.loadedAt, 'never')}`);
  if (diagnostics.length > 0) {
    out.push(`  last broken edit (the last good policy is served):`);
    for (const d of diagnostics.slice(0, 20)) out.push(`    ${d}`);
    if (diagnostics.length > 20) out.push(`    ... ${diagnostics.length - 20} more`);
  }
  const inv = doc.inventory ?? {};
  const stale = inv['stale'] === true ? `; STALE: ${text(inv['reason'])}` : '';
  out.push(`inventory: ${text(inv['source'])}${inv['path'] !== undefined ? ` ${text(inv['path'])}` : ''}, ${inv['ready'] === true ? 'loaded' : 'not loaded'}${stale}`);
  const reports = Array.isArray(doc.compile?.reports) ? doc.compile.reports.length : 0;
  out.push(`hosts with a state: ${text(doc.compile?.hosts, '0')}; compile reports: ${reports}${reports > 0 ? ' (see --format json)' : ''}`);
  const agents = (Array.isArray(doc.agents) ? doc.agents : []) as AgentRow[];
  const counted = (v: unknown, fallback: number): number => (typeof v === 'number' && Number.isInteger(v) ? v : fallback);
  const known = counted(doc.agentCounts?.known, agents.filter((a) => !neverConnected(a)).length);
  const connected = counted(doc.agentCounts?.connected, agents.filter((a) => a.connected === true).length);
  const inSync = counted(doc.agentCounts?.inSync, agents.filter((a) => a.connected === true && a.inSync === true).length);
  out.push(known === 0 ? 'agents: none has connected yet' : `agents: ${known} known, ${connected} connected, ${inSync} in sync`);
  const enforcing = doc.egress?.enforcing;
  const hostLevel = doc.egress?.hostLevel;
  if (connected > 0 && typeof enforcing === 'number' && typeof hostLevel === 'number') {
    out.push(`egress: ${enforcing} of ${connected} connected agents enforce it${hostLevel > 0 ? `; ${hostLevel} host-level only (below)` : ''}`);
  }
  const modes = (Array.isArray(doc.groupModes) ? doc.groupModes : []) as { group?: unknown; mode?: unknown; apps?: unknown }[];
  if (modes.length > 0) {
    const shown = modes.slice(0, 50).map((m) => `${text(m?.group)} ${text(m?.mode)} (${typeof m?.apps === 'number' ? `${m.apps} app${m.apps === 1 ? '' : 's'}` : '?'})`);
    out.push(`group modes: ${shown.join(', ')}${modes.length > 50 ? `, ... ${modes.length - 50} more` : ''}`);
  }
  const tls = doc.tls;
  if (tls === null) out.push('tls: off (--insecure): agents are not authenticated');
  else if (tls !== undefined) {
    const refusals = counted(tls.refusals, 0);
    const last = tls.lastRefusal;
    out.push(
      refusals === 0 || !last
        ? `tls: ${refusals} refused connections`
        : `tls: ${refusals} refused connections; last ${text(last.at)} from ${text(last.peer)}: ${text(last.reason)} (${text(last.detail)})`,
    );
  }
  if (agents.length > 0) {
    const rows = [['HOST', 'CONNECTED', 'APPLIED', 'DESIRED', 'IN SYNC', 'LAST ERROR']];
    for (const a of agents) {
      const link = a.connected === true ? 'yes' : neverConnected(a) ? 'never' : 'no';
      rows.push([text(a.hostId), link, text(a.appliedVersion), text(a.desiredVersion), a.inSync === true ? 'yes' : 'NO', text(a.lastError, '')]);
    }
    out.push(table(rows));
  }
  for (const s of egressShortfalls(agents)) out.push(`${printable(s.hostId)}: egress: ${egressShortfallText(s)}`);
  for (const a of agents) {
    if (a.connected === true && typeof a.heldBehind === 'string') out.push(`${text(a.hostId)}: held: this replica is behind the state the agent applied (${text(a.heldBehind)}); nothing is sent until it catches up`);
  }
  return `${out.join('\n')}\n`;
}

export function allInSync(doc: StatusDoc): boolean {
  const agents = (Array.isArray(doc.agents) ? doc.agents : []) as AgentRow[];
  return doc.ready === true && agents.every((a) => a.connected === true && a.inSync === true);
}

export const statusCommand: Command = {
  name: 'status',
  help,
  async run(args: readonly string[], io: CliIO): Promise<number> {
    const values = parseFlags(args, {
      'controller-status': { type: 'string' },
      controller: { type: 'string' },
      format: { type: 'string' },
      check: { type: 'boolean' },
      timeout: { type: 'string' },
    });
    const format = oneOf('format', values.format, ['table', 'json'] as const, 'table');
    const timeout = values.timeout === undefined ? 5 : Number(values.timeout);
    if (!Number.isFinite(timeout) || timeout <= 0 || timeout > 600) throw new UsageError(`--timeout must be a number of seconds in (0, 600], got '${values.timeout}'`);
    if (values.controller !== undefined && values['controller-status'] !== undefined) throw new UsageError('--controller and --controller-status are the same option: give one');
    const base = values.controller !== undefined ? controllerBase('controller', values.controller) : controllerBase('controller-status', values['controller-status']);
    let doc: StatusDoc;
    try {
      const { body, url } = await getJson(base, '/status', [200], timeout * 1000);
      if (body === null || typeof body !== 'object') throw new ControllerError(`${url.href} is not a status document`);
      doc = body as StatusDoc;
    } catch (err) {
      if (!(err instanceof ControllerError)) throw err;
      io.stderr(`portcullis status: ${err.message}\n`);
      return EXIT_INPUT_ERROR;
    }
    io.stdout(format === 'json' ? `${JSON.stringify(doc, null, 2)}\n` : renderStatus(doc, base.origin));
    return values.check && !allInSync(doc) ? EXIT_INPUT_ERROR : EXIT_OK;
  },
};
