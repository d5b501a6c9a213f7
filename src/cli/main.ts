/**
 * `portcullis` command dispatcher. Each command's module is imported only when that command runs
 * (or prints its --help): `check`, `compile`, `explain` and `diff` must not pay for gRPC,
 * protobuf and pino, which only `controller` and `agent` need (test/cli-module-graph.test.ts).
 */
import type { CliIO, Command } from './command.js';
import { EXIT_OK, EXIT_USAGE } from './command.js';
import { UsageError } from '../usage-error.js';

interface CommandEntry {
  readonly name: string;
  /** One line for `portcullis --help`. */
  readonly summary: string;
  readonly load: () => Promise<Command>;
}

// One line per command; keep the list in the order `--help` shows it.
const commands: readonly CommandEntry[] = [
  { name: 'check', summary: 'Validate a policy against an inventory; print every problem as file:line:col', load: async () => (await import('./commands/check.js')).checkCommand },
  { name: 'compile', summary: "Print a host's compiled state: ipset/iptables-restore input or JSON", load: async () => (await import('./commands/compile.js')).compileCommand },
  { name: 'explain', summary: 'Say whether an app or address may reach an app port, and which rule decides', load: async () => (await import('./commands/explain.js')).explainCommand },
  { name: 'diff', summary: 'Show what a policy edit changes on each host', load: async () => (await import('./commands/diff.js')).diffCommand },
  { name: 'flows', summary: "Show the flows a running controller recorded (who talks to whom), or follow them live", load: async () => (await import('./commands/flows.js')).flowsCommand },
  { name: 'suggest', summary: 'Suggest the rules that would allow the recorded flows the policy does not allow yet', load: async () => (await import('./commands/suggest.js')).suggestCommand },
  { name: 'plan', summary: 'Show which recorded flows change verdict under a policy edit', load: async () => (await import('./commands/plan.js')).planCommand },
  { name: 'controller', summary: 'Run the controller: compile the policy and serve every agent its state (gRPC, mTLS)', load: async () => (await import('./commands/controller.js')).controllerCommand },
  { name: 'agent', summary: 'Run the agent on a host: apply its state to the kernel and keep it true', load: async () => (await import('./commands/agent.js')).agentCommand },
  { name: 'status', summary: "Show a running controller's readiness and every agent's applied vs desired version", load: async () => (await import('./commands/status.js')).statusCommand },
  { name: 'policy', summary: 'Push a checked policy to Consul KV for controller replicas, or show the one in force', load: async () => (await import('./commands/policy.js')).policyCommand },
  { name: 'certs', summary: 'Create a CA and issue controller/agent certificates for mTLS', load: async () => (await import('./commands/certs.js')).certsCommand },
];

function topHelp(): string {
  const width = Math.max(...commands.map((c) => c.name.length), 8);
  const lines = commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`);
  return [
    'Usage: portcullis <command> [options]',
    '',
    'Port-based firewall policy for Mesos/Marathon clusters.',
    '',
    'Commands:',
    ...lines,
    '',
    "Run 'portcullis <command> --help' for a command's options.",
    'Exit codes: 0 ok, 1 policy or input error, 2 usage error.',
    '',
  ].join('\n');
}

export const processIO: CliIO = {
  stdout: (text) => void process.stdout.write(text),
  stderr: (text) => void process.stderr.write(text),
  cwd: process.cwd(),
};

export async function main(argv: readonly string[], io: CliIO = processIO): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    io.stdout(topHelp());
    return name === undefined ? EXIT_USAGE : EXIT_OK;
  }
  const entry = commands.find((c) => c.name === name);
  if (!entry) {
    io.stderr(`portcullis: unknown command '${name}'\n\n${topHelp()}`);
    return EXIT_USAGE;
  }
  const command = await entry.load();
  if (rest.includes('--help') || rest.includes('-h')) {
    io.stdout(command.help);
    return EXIT_OK;
  }
  try {
    return await command.run(rest, io);
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr(`portcullis ${command.name}: ${err.message}\n\n${command.help}`);
      return EXIT_USAGE;
    }
    throw err;
  }
}
