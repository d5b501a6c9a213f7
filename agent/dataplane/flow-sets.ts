/**
 * The flow sets in the kernel (src/render/render-flows.ts; docs/architecture.md "Flows"): unlike
 * every other set of ours they hold what the kernel saw, not what a state says, so an apply never
 * swaps or flushes them. A full write (kernel-dataplane.ts) only makes sure each rendered flow
 * set exists with the recording's parameters:
 *
 * - missing: `create <name> hash:ip,port family inet|inet6 timeout T counters maxelem N` (in the
 *   same `ipset restore` as the state's sets, before the rules that name it);
 * - present with those parameters (type, family, timeout, counters, maxelem; compared with what
 *   `ipset list -t -o save` prints): kept as it is, entries and counters included;
 * - present with other parameters (another `--flow-timeout` or `--flow-max-entries`, or a set
 *   someone else made): recreated as `<name>-tmp` with the right ones and swapped in (a rule may
 *   name the set, so it cannot be destroyed first); its entries are lost, which is logged.
 *
 * A flow set the write no longer renders (an app that left the host, recording turned off) is
 * destroyed after the iptables-restore with the stale egress sets and audit port sets (`staleOwnedSets`). Drift
 * checks never compare flow set members. Pure but for `flowSetHeaders`.
 */
import type { Logger } from 'pino';
import { isEgressSetName, isFlowSetName, tmpSetName } from '../../src/render/owned-names.js';
import { flowSetTypeArgs, type FlowRecording, type FlowSet, type RenderedFlows } from '../../src/render/render-flows.js';
import type { CommandRunner } from './command-runner.js';

/** What `ipset list -t -o save` says about one set (its `create` line). */
export interface SetHeader {
  readonly type: string;
  /** Every option after the type, e.g. {family: 'inet', timeout: '600', counters: ''}. */
  readonly options: ReadonlyMap<string, string>;
}

/** Options of a create line that take no value. */
const FLAGS = new Set(['counters', 'comment', 'skbinfo', 'forceadd', 'nomatch']);

/** The `create` lines of `ipset list -t -o save` (or `ipset save`), by set name; other lines are ignored. */
export function parseSetHeaders(text: string): Map<string, SetHeader> {
  const headers = new Map<string, SetHeader>();
  for (const raw of text.split('\n')) {
    const parts = raw.trim().split(/\s+/);
    if (parts[0] !== 'create' || parts[1] === undefined || parts[2] === undefined) continue;
    const options = new Map<string, string>();
    for (let i = 3; i < parts.length; i++) {
      const key = parts[i] as string;
      if (FLAGS.has(key)) options.set(key, '');
      else options.set(key, parts[++i] ?? '');
    }
    headers.set(parts[1], { type: parts[2], options });
  }
  return headers;
}

/** True when an existing set has the parameters the recording wants. */
export function headerMatches(header: SetHeader, set: FlowSet, recording: FlowRecording): boolean {
  const o = header.options;
  return (
    header.type === 'hash:ip,port' &&
    o.get('family') === (set.family === 4 ? 'inet' : 'inet6') &&
    o.get('timeout') === String(recording.timeoutSeconds) &&
    o.has('counters') &&
    o.get('maxelem') === String(recording.maxEntries)
  );
}

export interface FlowSetPlan {
  /** `ipset restore` lines (empty when every set is there as wanted). */
  readonly text: string;
  /** Sets that existed with other parameters: recreated, their entries lost. */
  readonly recreated: readonly string[];
  readonly created: readonly string[];
}

/** The restore lines that make `sets` exist as `recording` wants them (see the header). */
export function planFlowSets(sets: readonly FlowSet[], present: ReadonlyMap<string, SetHeader>, recording: FlowRecording): FlowSetPlan {
  const lines: string[] = [];
  const recreated: string[] = [];
  const created: string[] = [];
  for (const set of sets) {
    const type = flowSetTypeArgs(set.family, recording);
    const header = present.get(set.name);
    if (header === undefined) {
      lines.push(`create ${set.name} ${type}`);
      created.push(set.name);
    } else if (!headerMatches(header, set, recording)) {
      const tmp = tmpSetName(set.name);
      if (present.has(tmp)) lines.push(`destroy ${tmp}`);
      lines.push(`create ${tmp} ${type}`, `swap ${tmp} ${set.name}`, `destroy ${tmp}`);
      recreated.push(set.name);
    }
  }
  return { text: lines.length === 0 ? '' : `${lines.join('\n')}\n`, recreated, created };
}

const AUDIT_PORT_SET = /^pcu[46]-audit-(tcp|udp)(-tmp)?$/;

/** Egress, flow and audit port sets in `listed` (`ipset list -n`) that the write does not render: to destroy. */
export function staleOwnedSets(listed: readonly string[], rendered: ReadonlySet<string>): string[] {
  return listed.filter((name) => (isEgressSetName(name) || isFlowSetName(name.replace(/-tmp$/, '')) || AUDIT_PORT_SET.test(name)) && !rendered.has(name));
}

/** The headers of every set in the kernel (`ipset list -t -o save`); empty when it cannot be read (creating then fails loudly). */
export async function flowSetHeaders(runner: CommandRunner): Promise<Map<string, SetHeader>> {
  const listed = await runner.run(['ipset', 'list', '-t', '-o', 'save']);
  return listed.code === 0 ? parseSetHeaders(listed.stdout) : new Map();
}

/** The restore lines that make the rendered flow sets exist as `recording` wants (logs the recreated ones). */
export function flowSetLines(flows: RenderedFlows | undefined, present: ReadonlyMap<string, SetHeader>, recording: FlowRecording | undefined, log: Logger): string {
  if (flows === undefined || recording === undefined) return '';
  const plan = planFlowSets(flows.sets, present, recording);
  if (plan.recreated.length > 0) log.warn({ event: 'dataplane.flow_sets_recreated', sets: plan.recreated }, 'flow sets had other parameters: recreated, their recorded entries are lost');
  return plan.text;
}
