/**
 * What the controller shows of its agents' egress (a real controller in-process, agents played
 * over raw gRPC streams with hand-made Hellos): /status per agent and in agentCounts, the
 * Prometheus gauges, the warn log line once per host and reason, and `portcullis status`.
 * The agents' reasons are untrusted: control characters never reach a log, a document or a
 * terminal.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UNSUPPORTED_REASON } from '../src/grpc/egress-status.js';
import { startEgressAgents, type EgressAgents } from './support/egress-agents.js';
import { openRawStream, waitFor } from './support/grpc-harness.js';
import { logCapture } from './support/log-capture.js';
import { runCli as cli } from './support/run-cli.js';

const HOSTILE = 'no cgroup2 mount\u001b]0;pwned\u0007\nforged: line';
const CLEAN = 'no cgroup2 mount ]0;pwned  forged: line';
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

let agents: EgressAgents;
const log = logCapture();

interface AgentRow {
  hostId: string;
  connected: boolean;
  egress: { supported: boolean; enforcing: boolean; reason: string; mappedTasks: number; unmappedTasks: number } | null;
}
interface StatusDoc {
  agentCounts: { known: number; connected: number };
  egress: { enforcing: number; hostLevel: number };
  agents: AgentRow[];
}

const get = async (path: string): Promise<string> => (await fetch(new URL(path, agents.base), { signal: AbortSignal.timeout(5000) })).text();
const status = async (): Promise<StatusDoc> => JSON.parse(await get('/status')) as StatusDoc;
const metric = async (name: string): Promise<number> => {
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(await get('/metrics'));
  if (!m) throw new Error(`no metric ${name}`);
  return Number(m[1]);
};
const cannotEnforce = () => log.lines.filter((l) => l['msg'] === 'sync: agent cannot enforce egress: host-level only on this host');

beforeAll(async () => {
  agents = await startEgressAgents(
    [
      { hostId: 'node-1', egress: { supported: true, enforcing: true, mappedTasks: 4, unmappedTasks: 0 } },
      { hostId: 'node-2', egress: { supported: true, enforcing: false, reason: HOSTILE, mappedTasks: 0, unmappedTasks: 2 } },
      { hostId: 'node-3' }, // a release before egress
    ],
    log.logger,
  );
}, 30_000);

afterAll(async () => {
  await agents?.close();
});

describe('the controller shows each agent\'s egress status', () => {
  it('/status: per agent (null for one that never connected), and counted over the connected agents', async () => {
    const doc = await status();
    const byHost = Object.fromEntries(doc.agents.map((a) => [a.hostId, a.egress]));
    expect(byHost).toEqual({
      'node-1': { supported: true, enforcing: true, reason: '', mappedTasks: 4, unmappedTasks: 0 },
      'node-2': { supported: true, enforcing: false, reason: CLEAN, mappedTasks: 0, unmappedTasks: 2 },
      'node-3': { supported: false, enforcing: false, reason: UNSUPPORTED_REASON, mappedTasks: 0, unmappedTasks: 0 },
      'node-4': null,
    });
    expect(doc.agentCounts).toMatchObject({ connected: 3 });
    expect(doc.egress).toEqual({ enforcing: 1, hostLevel: 2 });
  });

  it('/metrics: agents enforcing egress and those host-level only', async () => {
    expect(await metric('portcullis_agents_egress_enforcing')).toBe(1);
    expect(await metric('portcullis_agents_egress_host_level')).toBe(2);
  });

  it('logs one warn line per host that cannot enforce, its reason cleaned', () => {
    const lines = cannotEnforce();
    expect(lines.map((l) => [l['hostId'], l['reason'], l['level']])).toEqual([
      ['node-2', CLEAN, 40],
      ['node-3', UNSUPPORTED_REASON, 40],
    ]);
    expect(JSON.stringify(lines)).not.toMatch(/\\u001b|\\u0007/);
  });

  it('portcullis status: a summary, and a line per agent that cannot enforce, with its reason', async () => {
    const r = await cli(['status', '--controller', agents.base]);
    expect(r.code, r.err).toBe(0);
    const lines = r.out.split('\n');
    expect(lines).toContain('egress: 1 of 3 connected agents enforce it; 2 host-level only (below)');
    expect(lines).toContain(`node-2: egress: host-level only — ${CLEAN}`);
    expect(lines).toContain(`node-3: egress: host-level only — ${UNSUPPORTED_REASON}`);
    expect(lines.filter((l) => l.includes('egress: host-level only'))).toHaveLength(2);
    expect(r.out.replaceAll('\n', '')).not.toMatch(CONTROL);
  });

  it('an agent that goes away keeps its last report, shown as such; its reconnect with the same reason logs nothing new', async () => {
    agents.streams[1]!.close();
    await waitFor('node-2 gone', () => agents.controller.status.agentReports().find((a) => a.hostId === 'node-2')?.connected === false);
    const r = await cli(['status', '--controller', agents.base]);
    expect(r.out.split('\n')).toContain(`node-2: egress: host-level only — ${CLEAN} (its last report; the agent is not connected)`);
    expect(r.out.split('\n')).toContain('egress: 1 of 2 connected agents enforce it; 1 host-level only (below)');

    const again = openRawStream(agents.controller.grpcAddress);
    agents.streams.push(again);
    again.send({ hello: { hostId: 'node-2', addresses: [], agentVersion: 'raw', appliedVersion: '', egress: { supported: true, enforcing: false, reason: HOSTILE } } });
    await waitFor('node-2 back', () => again.messages.some((m) => m.msg === 'snapshot'));
    expect(agents.controller.status.agentReports().find((a) => a.hostId === 'node-2')?.connected).toBe(true);
    expect(cannotEnforce()).toHaveLength(2);
  });
});
