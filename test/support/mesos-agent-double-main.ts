/**
 * The Mesos agent API double (mesos-agent-double.ts) as a process of its own, so it can run inside
 * a test host's network namespace next to a real agent process (the test process cannot be reached
 * from there). Compiled to dist/test/support/mesos-agent-double-main.js.
 *
 *   node mesos-agent-double-main.js <tasks.json> [<cgroups root>]
 *
 * Listens on 127.0.0.1, port 0, and prints one line `{"ready":true,"url":"http://127.0.0.1:PORT"}`.
 * Every call re-reads <tasks.json> (a JSON array of ScriptedTask; the test rewrites it by rename),
 * so the tasks it answers are the file's at that moment; an unreadable file answers as no task.
 * SIGTERM, SIGINT and the end of stdin exit 0.
 */
import { readFileSync } from 'node:fs';
import { MesosAgentDouble, type ScriptedTask } from './mesos-agent-double.js';

const [tasksFile, cgroupsRoot] = process.argv.slice(2);
if (tasksFile === undefined) {
  process.stderr.write('usage: mesos-agent-double-main.js <tasks.json> [<cgroups root>]\n');
  process.exit(2);
}

class FileDouble extends MesosAgentDouble {
  override answer(type: string): unknown {
    try {
      this.tasks = JSON.parse(readFileSync(tasksFile as string, 'utf8')) as ScriptedTask[];
    } catch {
      this.tasks = [];
    }
    return super.answer(type);
  }
}

const double = new FileDouble();
if (cgroupsRoot !== undefined) double.cgroupsRoot = cgroupsRoot;
const url = await double.start();
process.stdout.write(`${JSON.stringify({ ready: true, url })}\n`);
const stop = (): void => {
  void double.stop().finally(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdin.on('end', stop).resume();
