/**
 * `portcullis` command dispatcher.
 */
import type { CliIO, Command } from './command.js';
import { EXIT_OK, EXIT_USAGE, UsageError } from './command.js';
import { agentCommand } from './commands/agent.js';
import { certsCommand } from './commands/certs.js';
import { checkCommand } from './commands/check.js';
import { compileCommand } from './commands/compile.js';
import { controllerCommand } from './commands/controller.js';
import { diffCommand } from './commands/diff.js';
import { explainCommand } from './commands/explain.js';
import { statusCommand } from './commands/status.js';

// One line per command; keep the list in the order `--help` shows it.
const commands: readonly Command[] = [
  checkCommand,
  compileCommand,
  explainCommand,
  diffCommand,
  controllerCommand,
  agentCommand,
  statusCommand,
  certsCommand,
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
  const command = commands.find((c) => c.name === name);
  if (!command) {
    io.stderr(`portcullis: unknown command '${name}'\n\n${topHelp()}`);
    return EXIT_USAGE;
  }
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
