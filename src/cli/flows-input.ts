/**
 * Where `flows`, `suggest` and `plan` get recorded flows: a controller's `/flows` (its status
 * listener, `--controller URL`, as `portcullis status` reaches it) or a saved answer
 * (`--flows FILE`). Both are untrusted: the body is read up to FLOWS_ANSWER_MAX_BYTES and no
 * further (a longer answer is an error, never cut short silently), then read record by record by
 * src/flows/flows-answer.ts (a bad record skipped with a message on stderr). The filter options
 * of `/flows` are checked here first, so a typo is a usage error (exit 2), not an HTTP 400.
 */
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { FLOWS_ANSWER_MAX_BYTES, readFlowsAnswer, type FlowsAnswer } from '../flows/flows-answer.js';
import { FLOW_VERDICTS, type FlowVerdict } from '../flows/flow-types.js';
import { UsageError } from '../usage-error.js';
import type { CliIO } from './command.js';
import { ControllerError, controllerBase, fetchController, loadClusterInput, printable } from './controller-client.js';
import { parseTimeParam } from '../flows/flow-query.js';
import type { ClusterState } from '../inventory/cluster-state.js';
import type { Diagnostic } from '../diagnostic.js';

export const FLOWS_FILE_HELP =
  '  --flows FILE        read the flows from a saved /flows answer instead of a controller\n' +
  "                      (e.g. curl -o flows.json 'http://10.0.0.5:7444/flows?limit=100000')";

/** `--since` / `--until`: a duration back from now (30s, 10m, 1h, 2d) or an ISO 8601 time, as /flows takes them (flow-query.ts). */
export function checkTime(option: string, value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (parseTimeParam(value, Date.now()) !== undefined) return value;
  throw new UsageError(`--${option} must be a duration back from now (30s, 10m, 1h, 2d) or an ISO 8601 time; got '${printable(value.slice(0, 100))}'`);
}

/** The time (ms since the epoch) a `--since` value names, durations counted back from `nowMs`. */
export function timeMs(value: string, nowMs: number): number {
  return parseTimeParam(value, nowMs) ?? Number.NaN;
}

/** `--verdict a,b`: each one of the three verdict classes. */
export function checkVerdicts(value: string | undefined, fallback: readonly FlowVerdict[]): FlowVerdict[] {
  if (value === undefined) return [...fallback];
  const list = value.split(',').map((v) => v.trim());
  for (const v of list) if (!(FLOW_VERDICTS as readonly string[]).includes(v)) throw new UsageError(`--verdict takes ${FLOW_VERDICTS.join(', ')} (a comma list); got '${printable(v.slice(0, 100))}'`);
  return [...new Set(list as FlowVerdict[])];
}

/** The body of `url` as text, at most `maxBytes` (more is an error), within `timeoutMs`. */
export async function fetchBounded(url: URL, maxBytes: number, timeoutMs: number, signal?: AbortSignal): Promise<string> {
  const response = await fetchController(url, timeoutMs, signal);
  if (response.status !== 200) {
    // An error answer is read up to 64 KiB only: its "error" is one line.
    const body = await readBody(response, url, 64 * 1024).catch(() => '');
    const error = /"error"\s*:\s*"((?:[^"\\]|\\.){0,200})"/.exec(body)?.[1];
    const hint = response.status === 404 ? ' (a controller older than this CLI, or not a Portcullis controller?)' : '';
    throw new ControllerError(`${url.href} answered HTTP ${response.status} ${response.statusText}${error ? `: ${printable(error)}` : hint}`);
  }
  return readBody(response, url, maxBytes);
}

/** A response body as text, at most `maxBytes` (more is an error, the rest is not read). */
async function readBody(response: Response, url: URL, maxBytes: number): Promise<string> {
  const reader = response.body?.getReader();
  if (!reader) return '';
  const decoder = new TextDecoder();
  let size = 0;
  let text = '';
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > maxBytes) {
        await reader.cancel();
        throw new ControllerError(`${url.href}: answer larger than the limit of ${maxBytes} bytes`);
      }
      text += decoder.decode(value, { stream: true });
    }
  } catch (err) {
    if (err instanceof ControllerError) throw err;
    throw new ControllerError(`${url.href}: the answer broke off: ${(err as Error).message}`);
  }
  return text + decoder.decode();
}

export interface FlowsLoad {
  readonly answer: FlowsAnswer;
  /** Where the flows came from: the /flows URL or the file. */
  readonly where: string;
  readonly fromController: boolean;
}

/**
 * The flows of `--flows FILE`, else of the controller's /flows with `query`. Bad records are
 * reported on stderr and skipped; an unreadable source is a ControllerError (one line).
 */
export async function loadFlows(io: CliIO, values: { flows?: string | undefined; controller?: string | undefined }, query: URLSearchParams, timeoutMs = 30_000): Promise<FlowsLoad> {
  let text: string;
  let where: string;
  const fromController = values.flows === undefined;
  if (values.flows !== undefined) {
    where = path.resolve(io.cwd, values.flows);
    try {
      const { size } = await stat(where);
      if (size > FLOWS_ANSWER_MAX_BYTES) throw new ControllerError(`${where}: larger than the limit of ${FLOWS_ANSWER_MAX_BYTES} bytes`);
      text = await readFile(where, 'utf8');
    } catch (err) {
      if (err instanceof ControllerError) throw err;
      throw new ControllerError(`cannot read ${where}: ${(err as Error).message}`);
    }
  } else {
    const url = new URL(`/flows?${query.toString()}`, controllerBase('controller', values.controller));
    where = url.href;
    text = await fetchBounded(url, FLOWS_ANSWER_MAX_BYTES, timeoutMs);
  }
  const read = readFlowsAnswer(text);
  if (!read.ok) throw new ControllerError(`${where}: ${read.error}`);
  for (const p of read.problems) io.stderr(`${printable(where)}: ${printable(p)}\n`);
  for (const r of read.answer.replicas ?? []) {
    if (!r.ok) io.stderr(`${printable(where)}: partial view: controller replica ${printable(r.name)} did not answer (${printable(r.error ?? 'no reason given')}); the flows its agents reported are missing\n`);
  }
  return { answer: read.answer, where, fromController };
}

/** Help of the cluster options of `suggest` and `plan`. */
export const FLOW_CLUSTER_HELP =
  '  --inventory FILE    the cluster the flows are judged in, from a static inventory file\n' +
  "                      (default: the controller's /cluster, the one it compiled from;\n" +
  '                      with --flows FILE and no --controller: the shipped example)';

export type FlowContext =
  | { readonly ok: true; readonly flows: FlowsLoad; readonly cluster: ClusterState; readonly clusterFrom: string }
  | { readonly ok: false; readonly errors: readonly Diagnostic[] };

/**
 * The flows (`--flows FILE`, else the controller's /flows with `query`) and the cluster they are
 * judged in (`--inventory FILE`, else the controller's /cluster when the flows come from it or
 * `--controller` is given, else the shipped example inventory). Problems come back as
 * diagnostics located at the file or URL, like a policy's.
 */
export async function loadFlowContext(io: CliIO, values: { flows?: string | undefined; controller?: string | undefined; inventory?: string | undefined }, query: URLSearchParams): Promise<FlowContext> {
  const fromController = values.flows === undefined;
  const clusterController = values.inventory === undefined && (fromController || values.controller !== undefined) ? controllerBase('controller', values.controller).href : undefined;
  const [flows, cluster] = await Promise.all([
    loadFlows(io, values, query).catch((err: unknown) => {
      if (err instanceof ControllerError) return err;
      throw err;
    }),
    loadClusterInput(io, { inventory: values.inventory, controller: clusterController }),
  ]);
  const errors: Diagnostic[] = [];
  if (flows instanceof ControllerError) errors.push({ file: values.flows ?? new URL('/flows', controllerBase('controller', values.controller)).href, line: 1, col: 1, message: flows.message });
  if (!cluster.ok) errors.push(...cluster.errors);
  if (flows instanceof ControllerError || !cluster.ok) return { ok: false, errors };
  return { ok: true, flows, cluster: cluster.loaded.cluster, clusterFrom: cluster.loaded.path };
}
