/**
 * `portcullis status` rendering, table-driven on /status documents: agents are counted from
 * streams (not from hosts with a state), and text from the controller (host names and errors
 * that came from Marathon or the kernel) cannot drive the terminal.
 */
import { describe, expect, it } from 'vitest';
import { renderStatus } from '../src/cli/commands/status.js';

const row = (hostId: string, over: Record<string, unknown> = {}) => ({
  hostId, connected: false, peer: null, addresses: [], agentVersion: null, appliedVersion: null,
  desiredVersion: '0123456789abcdef', inSync: false, lastError: null, lastSeen: null, ...over,
});

describe('portcullis status: the agents line', () => {
  it.each([
    ['no agent ever connected', [row('a'), row('b'), row('c')], 'agents: none has connected yet'],
    ['one connected and in sync, one gone, one never', [
      row('a', { connected: true, agentVersion: '0.1.0', appliedVersion: '0123456789abcdef', inSync: true, lastSeen: '2026-12-01T00:00:00.000Z' }),
      row('b', { agentVersion: '0.1.0', lastSeen: '2026-12-01T00:00:00.000Z' }),
      row('c'),
    ], 'agents: 2 known, 1 connected, 1 in sync'],
  ])('%s (a document without agentCounts)', (_, agents, line) => {
    const out = renderStatus({ ready: true, compile: { hosts: agents.length, reports: [] }, agents }, 'http://c');
    expect(out.split('\n')).toContain(line);
    expect(out).toMatch(new RegExp(`^hosts with a state: ${agents.length}; `, 'm'));
  });

  it('names the agents a replica holds because it is behind them, escaped', () => {
    const out = renderStatus({
      ready: true,
      agents: [
        row('a', { connected: true, heldBehind: 'policy index 7 < 8' }),
        row('b\u001b[2J', { connected: true, heldBehind: 'cluster as of 1000 < 5000' }),
        row('c', { connected: true, heldBehind: null }),
        row('d', { connected: false, heldBehind: 'policy index 1 < 2' }),
      ],
    }, 'http://c');
    const lines = out.split('\n').filter((l) => l.includes(': held: '));
    expect(lines).toEqual([
      'a: held: this replica is behind the state the agent applied (policy index 7 < 8); nothing is sent until it catches up',
      expect.stringMatching(/^b.*: held: .*\(cluster as of 1000 < 5000\)/),
    ]);
    expect(out).not.toContain('\u001b');
  });

  it('agentCounts of the controller win over counting rows', () => {
    const out = renderStatus({ ready: true, agentCounts: { known: 7, connected: 6, inSync: 5 }, agents: [row('a')] }, 'http://c');
    expect(out.split('\n')).toContain('agents: 7 known, 6 connected, 5 in sync');
  });

  it.each([
    ['plaintext', null, 'tls: off (--insecure): agents are not authenticated'],
    ['no refusal', { refusals: 0, byReason: {}, lastRefusal: null }, 'tls: 0 refused connections'],
    [
      'refusals',
      { refusals: 3, byReason: { unknown_ca: 3 }, lastRefusal: { peer: '10.0.0.9:51234', reason: 'unknown_ca', detail: 'certificate signed by an unknown authority', at: '2026-12-01T00:00:00.000Z' } },
      'tls: 3 refused connections; last 2026-12-01T00:00:00.000Z from 10.0.0.9:51234: unknown_ca (certificate signed by an unknown authority)',
    ],
  ])('the tls line: %s', (_, tls, line) => {
    expect(renderStatus({ ready: true, agents: [], tls }, 'http://c').split('\n')).toContain(line);
  });

  it('escapes control characters of names and errors', () => {
    const out = renderStatus({ ready: true, agents: [row('evil\u001b[2Jhost', { lastError: 'bad\u0007\nline' })] }, 'http://c');
    expect(out).not.toMatch(/[\u0000-\u0009\u000b-\u001f]/);
    expect(out).toContain('evil\\u001b[2Jhost');
    expect(out).toContain('bad\\u0007\\u000aline');
  });
});

describe('portcullis status: egress', () => {
  const egress = (enforcing: boolean, reason = '') => ({ supported: true, enforcing, reason, mappedTasks: 0, unmappedTasks: 0 });
  const agents = [
    row('a', { connected: true, egress: egress(true) }),
    row('b', { connected: true, egress: egress(false, 'no cgroup2 mount') }),
    row('c', { connected: false, agentVersion: '0.1.0', lastSeen: '2026-12-01T00:00:00.000Z', egress: egress(false, 'Mesos agent API unreachable') }),
    row('d'), // never connected: no report
  ];

  it('one line per agent that cannot enforce, with its reason; a gone agent\'s as its last report', () => {
    const lines = renderStatus({ ready: true, agentCounts: { known: 3, connected: 2, inSync: 0 }, egress: { enforcing: 1, hostLevel: 1 }, agents }, 'http://c').split('\n');
    expect(lines).toContain('egress: 1 of 2 connected agents enforce it; 1 host-level only (below)');
    expect(lines).toContain('b: egress: host-level only — no cgroup2 mount');
    expect(lines).toContain('c: egress: host-level only — Mesos agent API unreachable (its last report; the agent is not connected)');
    expect(lines.filter((l) => l.includes('egress: host-level only'))).toHaveLength(2);
  });

  it('no egress line from a controller that does not report egress, nor when every agent enforces', () => {
    const out = renderStatus({ ready: true, agents: [row('a', { connected: true })] }, 'http://c');
    expect(out).not.toMatch(/egress/);
    const all = renderStatus({ ready: true, agentCounts: { known: 1, connected: 1, inSync: 0 }, egress: { enforcing: 1, hostLevel: 0 }, agents: [agents[0]] }, 'http://c');
    expect(all.split('\n')).toContain('egress: 1 of 1 connected agents enforce it');
    expect(all).not.toMatch(/host-level only/);
  });

  it('escapes control characters of a reason', () => {
    const out = renderStatus({ ready: true, agents: [row('x', { connected: true, egress: egress(false, 'bad\u001b[2J\u202ereason') })] }, 'http://c');
    expect(out).toContain('x: egress: host-level only — bad\\u001b[2J\\u202ereason');
    expect(out).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u202e]/);
  });
});
