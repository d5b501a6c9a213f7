/**
 * Command-line flags of `npm run bench` (node:util parseArgs). Defaults are sized to finish in a
 * few minutes on a 2-core machine; every size can be raised for a full run.
 */
import { parseArgs } from 'node:util';

export const SCENARIOS = ['compile', 'kernel', 'packet', 'egress', 'flows', 'suggest', 'fanout', 'convergence', 'flow-store', 'replicas'] as const;
export type ScenarioName = (typeof SCENARIOS)[number];
/** What one child process runs: a scenario, or the large-policy part of `compile`. */
export type ChildName = ScenarioName | 'compile-policy';
const CHILDREN: readonly string[] = [...SCENARIOS, 'compile-policy'];

export interface BenchOptions {
  readonly only: readonly ScenarioName[];
  readonly hosts: number;
  readonly tasks: number;
  readonly apps: number;
  readonly groups: number;
  readonly rules: number;
  readonly policyRules: number;
  readonly policyNetworks: number;
  readonly runs: number;
  readonly moves: number;
  readonly agents: number;
  readonly workers: number;
  readonly replicas: number;
  readonly members: number;
  readonly pairs: number;
  readonly connectSeconds: number;
  readonly convHosts: number;
  readonly changes: number;
  readonly seed: number;
  /** compile: 1 = the synthetic policy has defaults.egress on, 0 = off (the same-session A/B). */
  readonly egress: number;
  readonly flowRecords: number;
}

const NUMERIC = {
  hosts: { default: 1000, help: 'compile: hosts' },
  tasks: { default: 20_000, help: 'compile: tasks' },
  apps: { default: 2000, help: 'compile: apps' },
  groups: { default: 300, help: 'compile: groups' },
  rules: { default: 1000, help: 'compile: rules' },
  'policy-rules': { default: 10_000, help: 'compile: rules of the large YAML policy (0 = skip that case)' },
  'policy-networks': { default: 10_000, help: 'compile: networks of the large YAML policy' },
  runs: { default: 3, help: 'compile: full compiles timed, suggest: runs over 1M records (median reported)' },
  moves: { default: 10_000, help: 'compile: random task moves applied one at a time' },
  agents: { default: 1000, help: 'fanout, replicas: simulated agents (full run: 5000)' },
  workers: { default: 3, help: 'fanout, replicas: child processes hosting the agents' },
  replicas: { default: 3, help: 'replicas: controller replica processes (at least 2)' },
  members: { default: 100_000, help: 'kernel, flows: set members in the large state' },
  pairs: { default: 50_000, help: 'packet: allowed (source, port) pairs' },
  'connect-seconds': { default: 3, help: 'packet, egress, flows: seconds per connection-rate run' },
  'conv-hosts': { default: 8, help: 'convergence: namespaced hosts with agents' },
  changes: { default: 40, help: 'convergence: controller state changes measured' },
  seed: { default: 1, help: 'generators: PRNG seed' },
  egress: { default: 1, help: 'compile: defaults.egress of the synthetic policy (1 on, 0 off: the A/B)' },
  'flow-records': { default: 1_000_000, help: 'flow-store: distinct flow records ingested' },
} as const;

export function usage(): string {
  const lines = [
    'usage: npm run bench -- [--only compile,kernel,packet,egress,flows,suggest,fanout,convergence,flow-store,replicas] [size flags]',
    '',
    'Each scenario runs in a fresh child process; kernel, packet, egress and convergence need root',
    '(they work only inside network namespaces they create and delete).',
    '',
    '  --only LIST            scenarios to run (default: all)',
    ...Object.entries(NUMERIC).map(([name, o]) => `  --${name.padEnd(20)} ${o.help} (default ${o.default})`),
    '  --help                 this text',
  ];
  return lines.join('\n');
}

export class UsageError extends Error {}

export function parseOptions(argv: readonly string[]): { options: BenchOptions; help: boolean; child: ChildName | undefined } {
  const numericOptions = Object.fromEntries(Object.keys(NUMERIC).map((k) => [k, { type: 'string' as const }]));
  const { values } = parseArgs({
    args: [...argv],
    options: { ...numericOptions, only: { type: 'string' }, help: { type: 'boolean' }, child: { type: 'string' } },
    strict: true,
    allowPositionals: false,
  });
  const v = values as Record<string, string | boolean | undefined>;
  const n = (name: keyof typeof NUMERIC): number => {
    const raw = v[name];
    if (raw === undefined) return NUMERIC[name].default;
    const value = Number(raw);
    if (typeof raw !== 'string' || !Number.isFinite(value) || value < 0) throw new UsageError(`--${name} needs a non-negative number, got '${String(raw)}'`);
    return value;
  };
  const only = typeof v['only'] === 'string' ? v['only'].split(',').map((s) => s.trim()).filter((s) => s !== '') : [...SCENARIOS];
  for (const s of only) if (!(SCENARIOS as readonly string[]).includes(s)) throw new UsageError(`unknown scenario '${s}' (expected ${SCENARIOS.join(', ')})`);
  const child = typeof v['child'] === 'string' ? v['child'] : undefined;
  if (child !== undefined && !CHILDREN.includes(child)) throw new UsageError(`unknown scenario '${child}'`);
  return {
    help: v['help'] === true,
    child: child as ChildName | undefined,
    options: {
      only: only as ScenarioName[],
      hosts: n('hosts'),
      tasks: n('tasks'),
      apps: n('apps'),
      groups: n('groups'),
      rules: n('rules'),
      policyRules: n('policy-rules'),
      policyNetworks: n('policy-networks'),
      runs: Math.max(1, n('runs')),
      moves: n('moves'),
      agents: Math.max(1, n('agents')),
      workers: Math.max(1, n('workers')),
      replicas: Math.max(2, n('replicas')),
      members: n('members'),
      pairs: n('pairs'),
      connectSeconds: n('connect-seconds'),
      convHosts: Math.max(2, n('conv-hosts')),
      changes: Math.max(1, n('changes')),
      seed: n('seed'),
      egress: n('egress'),
      flowRecords: Math.max(1000, n('flow-records')),
    },
  };
}

/** The flags to pass to a child so it sees the same sizes. */
export function childArgs(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--only' || a === '--child') {
      i++;
      continue;
    }
    if (a.startsWith('--only=') || a.startsWith('--child=') || a === '--help') continue;
    out.push(a);
  }
  return out;
}
