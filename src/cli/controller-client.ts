/**
 * Reading a running controller's status listener (`--status-listen`, plain HTTP, read-only) for
 * the CLI: `status` reads /status; `compile --controller` the states it serves (/hosts,
 * /hosts/<id>/state); `explain`, `diff` and `check --controller` the cluster it compiled from
 * (/cluster), compiled here with the local --policy, and `check --controller` also /status (the
 * agents that cannot enforce egress). Every failure (unreachable, an HTTP error,
 * an answer that is not what a controller sends) is a ControllerError with one readable line.
 */
import type { DesiredState } from '../compile/desired-state.js';
import { checkDesiredState } from '../compile/desired-state-check.js';
import { clusterFromDocument } from '../inventory/cluster-document.js';
import { type CliIO } from './command.js';
import { escapeUnprintable, type Diagnostic } from '../diagnostic.js';
import { UsageError } from '../usage-error.js';
import { loadInventoryInput, resolveInventoryPath, type InventoryLoad } from './load-inputs.js';

/** The controller's default `--status-listen`. */
export const DEFAULT_STATUS_LISTEN = '127.0.0.1:7444';
const TIMEOUT_MS = 10_000;

export const CONTROLLER_OPTION_HELP =
  '  --controller URL    read from a running controller instead: its status listener\n' +
  "                      (its --status-listen, e.g. http://10.0.0.5:7444; read-only)";

export class ControllerError extends Error {}

/**
 * Text from a controller for the terminal: control characters and bidirectional overrides (a name
 * from Marathon could carry escape sequences, or reorder what a terminal shows) as \\uXXXX.
 */
export const printable = (v: string): string => escapeUnprintable(v, false);

/** The base URL of `--<option>`, or a UsageError. */
export function controllerBase(option: string, given: string | undefined): URL {
  let url: URL;
  try {
    url = new URL(given ?? `http://${DEFAULT_STATUS_LISTEN}`);
  } catch {
    throw new UsageError(`--${option} must be a URL like http://10.0.0.5:7444, got '${given}'`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError(`--${option} must be an http:// or https:// URL, got '${given}'`);
  return url;
}

/** GET `url` of the status listener; a ControllerError saying what to check when it cannot be reached. */
export async function fetchController(url: URL, timeoutMs = TIMEOUT_MS, signal?: AbortSignal): Promise<Response> {
  try {
    const timeout = AbortSignal.timeout(timeoutMs);
    return await fetch(url, { signal: signal ? AbortSignal.any([timeout, signal]) : timeout });
  } catch (err) {
    const cause = (err as { cause?: { message?: string } }).cause?.message;
    throw new ControllerError(`cannot read ${url.href}: ${(err as Error).message}${cause ? ` (${cause})` : ''}; is the controller running, and is this its --status-listen address?`);
  }
}

/** GET `path` below `base` as JSON; `accept` lists the HTTP codes whose body is returned. */
export async function getJson(base: URL, path: string, accept: readonly number[] = [200], timeoutMs = TIMEOUT_MS): Promise<{ status: number; body: unknown; url: URL }> {
  const url = new URL(path, base);
  const response = await fetchController(url, timeoutMs);
  if (!accept.includes(response.status)) {
    const hint = response.status === 404 ? ' (a controller older than this CLI, or not a Portcullis controller?)' : '';
    throw new ControllerError(`${url.href} answered HTTP ${response.status} ${response.statusText}${hint}`);
  }
  try {
    return { status: response.status, body: (await response.json()) as unknown, url };
  } catch (err) {
    throw new ControllerError(`${url.href} did not answer JSON: ${(err as Error).message}`);
  }
}

export interface HostVersion {
  readonly hostId: string;
  readonly version: string;
}

/** Every host the controller has a state for, with its version (sorted by host id). */
export async function fetchHostVersions(base: URL): Promise<HostVersion[]> {
  const { body, url } = await getJson(base, '/hosts');
  const hosts = (body as { hosts?: unknown } | null)?.hosts;
  const valid = Array.isArray(hosts) && hosts.every((h) => typeof (h as HostVersion)?.hostId === 'string' && typeof (h as HostVersion)?.version === 'string');
  if (!valid) throw new ControllerError(`${url.href} is not a controller's host list`);
  return hosts as HostVersion[];
}

/** The DesiredState the controller serves `hostId`; undefined when it has none. */
export async function fetchHostState(base: URL, hostId: string): Promise<DesiredState | undefined> {
  const { status, body, url } = await getJson(base, `/hosts/${encodeURIComponent(hostId)}/state`, [200, 404]);
  if (status === 404) return undefined;
  const problem = checkDesiredState(body);
  if (problem !== undefined) throw new ControllerError(`${url.href} is not a desired state: ${problem}`);
  return body as DesiredState;
}

/**
 * The cluster of `--inventory FILE`, or with `--controller URL` the one that controller compiled
 * from, as an InventoryLoad: a controller problem is an error located at the URL, like a file's.
 */
export async function loadClusterInput(io: CliIO, values: { inventory?: string | undefined; controller?: string | undefined }): Promise<InventoryLoad> {
  if (values.controller === undefined) return loadInventoryInput(resolveInventoryPath(io, values.inventory));
  if (values.inventory !== undefined) throw new UsageError('--inventory and --controller exclude each other: the cluster comes from one of them');
  const base = controllerBase('controller', values.controller);
  const where = new URL('/cluster', base).href;
  const error = (message: string): InventoryLoad => ({ ok: false, path: where, errors: [{ file: where, line: 1, col: 1, message }] });
  try {
    const { status, body } = await getJson(base, '/cluster', [200, 503]);
    if (status === 503) return error('the controller has no cluster yet (not ready: see portcullis status)');
    const decoded = clusterFromDocument(body);
    return decoded.ok ? { ok: true, loaded: { path: where, cluster: decoded.cluster } } : error(`not a cluster document: ${decoded.error}`);
  } catch (err) {
    if (err instanceof ControllerError) return error(err.message);
    throw err;
  }
}

/**
 * A note for stderr when `states` (compiled from the local --policy against the controller's
 * cluster) are not what the controller serves; '' when they are, or without --controller.
 */
export async function policyDriftNote(controller: string | undefined, states: () => ReadonlyMap<string, DesiredState>, what = 'the local --policy'): Promise<string> {
  if (controller === undefined) return '';
  const base = controllerBase('controller', controller);
  let differing: string[];
  try {
    differing = await hostsDifferingFromController(base, states());
  } catch (err) {
    if (err instanceof ControllerError) return `note: cannot compare with the controller's states: ${err.message}\n`;
    throw err;
  }
  if (differing.length === 0) return '';
  const shown = differing.slice(0, 10).join(', ') + (differing.length > 10 ? `, ... (${differing.length} hosts)` : '');
  return `note: ${what} is not the policy the controller enforces: the states differ on ${shown} (or the controller has not reloaded it yet)\n`;
}

/**
 * With `--controller`, the hosts where `states` (compiled here from the local --policy against
 * the controller's cluster) differ from what the controller serves: a non-empty answer means the
 * local policy is not the one in force (or the controller has not reloaded it yet).
 */
export async function hostsDifferingFromController(base: URL, states: ReadonlyMap<string, DesiredState>): Promise<string[]> {
  const served = new Map((await fetchHostVersions(base)).map((h) => [h.hostId, h.version]));
  const ids = new Set([...served.keys(), ...states.keys()]);
  return [...ids].filter((id) => served.get(id) !== states.get(id)?.version).sort();
}

/** An agent of a controller's /status that cannot enforce per-app egress (host-level only on its host). */
export interface EgressShortfall {
  readonly hostId: string;
  /** The agent's reason, as the controller cleaned it (print it through `printable` still). */
  readonly reason: string;
  readonly connected: boolean;
}

/**
 * The agents of a /status document's `agents` whose last egress report says they do not enforce
 * it (an agent that never connected has no report and is not one of them), in document order.
 */
export function egressShortfalls(agents: unknown): EgressShortfall[] {
  if (!Array.isArray(agents)) return [];
  return agents.flatMap((a: unknown) => {
    const row = (a ?? {}) as { hostId?: unknown; connected?: unknown; egress?: { enforcing?: unknown; reason?: unknown } | null };
    const egress = row.egress;
    if (typeof row.hostId !== 'string' || egress === null || typeof egress !== 'object' || egress.enforcing !== false) return [];
    return [{ hostId: row.hostId, reason: typeof egress.reason === 'string' && egress.reason !== '' ? egress.reason : 'no reason given', connected: row.connected === true }];
  });
}

/** "host-level only — <reason>", with where the report is from when the agent is gone; printable. */
export function egressShortfallText(s: EgressShortfall): string {
  return `host-level only — ${printable(s.reason)}${s.connected ? '' : ' (its last report; the agent is not connected)'}`;
}

/**
 * `check --controller`: one warning per host whose agent cannot enforce egress, located at the
 * controller's /status (a controller that cannot be read for it is one warning too: the agents'
 * state is unknown, which the check must not pass off as "every agent enforces").
 */
export async function egressWarnings(controller: string): Promise<Diagnostic[]> {
  const base = controllerBase('controller', controller);
  const where = new URL('/status', base).href;
  const warning = (message: string): Diagnostic => ({ file: where, line: 1, col: 1, severity: 'warning', message });
  try {
    const { body } = await getJson(base, '/status');
    const agents = (body as { agents?: unknown } | null)?.agents;
    if (!Array.isArray(agents)) return [warning('not a status document: cannot tell which agents enforce egress')];
    return egressShortfalls(agents).map((s) => warning(`host ${printable(s.hostId)}: its agent cannot enforce egress: ${egressShortfallText(s)}`));
  } catch (err) {
    if (err instanceof ControllerError) return [warning(`cannot tell which agents enforce egress: ${err.message}`)];
    throw err;
  }
}

/** Help of `--controller` for the commands that compile the local policy against its cluster. */
export const CONTROLLER_CLUSTER_HELP =
  '  --controller URL    take the cluster from a running controller instead of --inventory:\n' +
  '                      the one it compiled from (its --status-listen, e.g.\n' +
  '                      http://10.0.0.5:7444); with Marathon, where tasks run now';
