/**
 * `npm run bench`: runs the selected scenarios, each in a fresh child process (so memory figures
 * are not polluted by another scenario), collects their figures and prints one results table
 * with targets and PASS/MISS. `--help` lists the size flags.
 *
 * Runner mode: `node dist/test/bench/main.js [flags]`. Child mode (internal):
 * `node dist/test/bench/main.js --child <scenario> [flags]` runs one scenario and prints figures
 * as `@@FIGURE` lines (see figures.ts).
 */
import { spawn } from 'node:child_process';
import { cpus, freemem, release, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import { formatTable, parseFigureLine, verdict, type Figure } from './figures.js';
import { childArgs, parseOptions, usage, UsageError, type BenchOptions, type ChildName, type ScenarioName } from './options.js';

/** The child processes of a scenario: `compile` runs its large-policy case in a process of its own. */
function childrenOf(name: ScenarioName, options: BenchOptions): ChildName[] {
  return name === 'compile' && options.policyRules > 0 ? ['compile-policy', 'compile'] : [name];
}

async function runScenario(name: ChildName, options: BenchOptions): Promise<void> {
  switch (name) {
    case 'compile-policy':
      return (await import('./bench-large-policy.js')).benchLargePolicy(options);
    case 'compile':
      return (await import('./bench-compile.js')).benchCompile(options);
    case 'kernel':
      return (await import('./bench-kernel-apply.js')).benchKernelApply(options);
    case 'packet':
      return (await import('./bench-packet-path.js')).benchPacketPath(options);
    case 'egress':
      return (await import('./bench-egress.js')).benchEgress(options);
    case 'flows':
      return (await import('./bench-flows.js')).benchFlows(options);
    case 'suggest':
      return (await import('./bench-suggest.js')).benchSuggest(options);
    case 'fanout':
      return (await import('./bench-fanout.js')).benchFanout(options);
    case 'convergence':
      return (await import('./bench-convergence.js')).benchConvergence(options);
    case 'flow-store':
      return (await import('./bench-flow-store.js')).benchFlowStore(options);
    case 'replicas':
      return (await import('./bench-replicas.js')).benchReplicas(options);
  }
}

function runChild(name: ChildName, args: readonly string[]): Promise<{ figures: Figure[]; code: number }> {
  const self = fileURLToPath(import.meta.url);
  const child = spawn(process.execPath, ['--max-old-space-size=4096', self, '--child', name, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  const figures: Figure[] = [];
  let buffer = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    buffer += chunk;
    let nl: number;
    while ((nl = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 1);
      const figure = parseFigureLine(line);
      if (figure) {
        figures.push(figure);
        const v = verdict(figure);
        process.stdout.write(`  = ${figure.name}: ${figure.value.toFixed(2)} ${figure.unit}${v ? ` [${v}]` : ''}\n`);
      } else {
        process.stdout.write(`${line}\n`);
      }
    }
  });
  return new Promise((resolve) => child.on('close', (code) => resolve({ figures, code: code ?? 1 })));
}

function machine(): string {
  const cpu = cpus();
  return [
    `machine: ${cpu.length} cpu (${cpu[0]?.model ?? 'unknown'}), ${(totalmem() / 2 ** 30).toFixed(1)} GiB memory (${(freemem() / 2 ** 30).toFixed(1)} free)`,
    `kernel ${release()}, node ${process.version}, root: ${process.getuid?.() === 0 ? 'yes' : 'no'}`,
  ].join('\n');
}

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  let parsed;
  try {
    parsed = parseOptions(argv);
  } catch (e) {
    if (e instanceof UsageError || (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`bench: ${(e as Error).message}\n\n${usage()}\n`);
      return 2;
    }
    throw e;
  }
  if (parsed.help) {
    process.stdout.write(`${usage()}\n`);
    return 0;
  }
  if (parsed.child) {
    await runScenario(parsed.child, parsed.options);
    return 0;
  }
  process.stdout.write(`${machine()}\n`);
  const all: Figure[] = [];
  const failed: string[] = [];
  const started = Date.now();
  for (const name of parsed.options.only) {
    process.stdout.write(`\n## ${name}\n`);
    const t0 = Date.now();
    for (const child of childrenOf(name, parsed.options)) {
      const { figures, code } = await runChild(child, childArgs(argv));
      all.push(...figures);
      if (code !== 0) failed.push(`${child} (exit ${code})`);
    }
    process.stdout.write(`  (${name}: ${((Date.now() - t0) / 1000).toFixed(1)} s)\n`);
  }
  process.stdout.write(`\n## results (${((Date.now() - started) / 1000).toFixed(0)} s)\n${formatTable(all)}\n`);
  const missed = all.filter((f) => verdict(f) === 'MISS').length;
  const passed = all.filter((f) => verdict(f) === 'PASS').length;
  process.stdout.write(`\n${passed} PASS, ${missed} MISS${failed.length > 0 ? `; scenarios that failed: ${failed.join(', ')}` : ''}\n`);
  return failed.length > 0 ? 1 : 0;
}

main().then(
  // Exit explicitly: a scenario may leave sockets or timers of libraries behind (stdout is a pipe,
  // written synchronously on Linux, so nothing is lost).
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`bench: ${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  },
);
