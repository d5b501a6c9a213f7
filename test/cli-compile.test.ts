/** `portcullis compile` on the shipped example: JSON states and the agent's restore inputs. */
import { describe, expect, it } from 'vitest';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SET_KINDS } from '../src/compile/desired-state.js';
import { runCli as cli } from './support/run-cli.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

describe('portcullis compile', () => {
  it('prints one host state as JSON with its sets', async () => {
    const r = await cli(['compile', '--host', 'node-3', '--format', 'json']);
    expect(r.code, r.err).toBe(0);
    const state = JSON.parse(r.out);
    expect(state.hostId).toBe('node-3');
    expect(state.mode).toBe('enforce');
    expect(state.version).toMatch(/^[0-9a-f]{16}$/);
    expect(Object.keys(state.sets).sort()).toEqual([...SET_KINDS].sort());
    // node-3 runs payments 31200/31201, db 31300/31301, prometheus 31500, statsd 31510 (udp,tcp).
    expect(state.sets['managed-tcp']).toEqual(['31200', '31201', '31300', '31301', '31500', '31510']);
    expect(state.sets['managed-udp']).toEqual(['31510']);
    expect(state.sets['failsafe-tcp']).toEqual(['22', '5051', '7443']);
    // web hosts (node-1, node-2, node-4 run web or api) push statsd over udp.
    expect(state.sets['allow-ip4']).toContain('10.0.1.11,udp:31510');
  });

  it('prints every host as an object keyed by host id', async () => {
    const r = await cli(['compile', '--format', 'json']);
    expect(r.code).toBe(0);
    const states = JSON.parse(r.out);
    expect(Object.keys(states)).toEqual(['node-1', 'node-2', 'node-3', 'node-4']);
    for (const [host, s] of Object.entries(states)) expect((s as { hostId: string }).hostId).toBe(host);
  });

  it('prints the ipset and iptables-restore inputs the agent writes, under # --- headers', async () => {
    const r = await cli(['compile', '--host', 'node-1']);
    expect(r.code, r.err).toBe(0);
    const headers = r.out.split('\n').filter((l) => l.startsWith('# --- '));
    expect(headers).toEqual([
      '# --- host node-1: ipset restore (IPv4) ---',
      '# --- host node-1: iptables-restore --noflush (IPv4) ---',
      '# --- host node-1: ipset restore (IPv6) ---',
      '# --- host node-1: ip6tables-restore --noflush (IPv6) ---',
    ]);
    expect(r.out).toContain('create pcu4-allow-ip hash:ip,port family inet');
    expect(r.out).toContain('create pcu6-allow-ip hash:ip,port family inet6');
    expect(r.out).toContain('add pcu4-managed-tcp-tmp 31100');
    expect(r.out.match(/^\*mangle$/gm)).toHaveLength(2);
    expect(r.out.match(/^COMMIT$/gm)).toHaveLength(2);
    expect(r.out).toMatch(/^-I PREROUTING 1 .*-j PCU-PREROUTING$/m);
    expect(r.out).toMatch(/^-A PCU-MANAGED .*-j DROP$/m);
    expect(r.out).not.toContain('node-2');
  });

  it('prints every host when --host is absent', async () => {
    const r = await cli(['compile']);
    expect(r.code).toBe(0);
    for (const host of ['node-1', 'node-2', 'node-3', 'node-4']) expect(r.out).toContain(`# --- host ${host}: ipset restore (IPv4) ---`);
  });

  it('exits 1 on an unknown host, listing the known ones', async () => {
    const r = await cli(['compile', '--host', 'node-9']);
    expect(r.code).toBe(1);
    expect(r.err).toContain("unknown host 'node-9'; hosts of the inventory: node-1, node-2, node-3, node-4");
    expect(r.out).toBe('');
  });

  it('exits 1 with the diagnostics of a broken policy, 2 on usage errors', async () => {
    const r = await cli(['compile', '--policy', join(ROOT, 'test/fixtures/policy-errors/14-to-any.yaml')]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^test\/fixtures\/policy-errors\/14-to-any\.yaml:\d+:\d+: /m);
    expect((await cli(['compile', '--format', 'yaml'])).code).toBe(2);
    expect((await cli(['compile', 'node-1'])).code).toBe(2);
    const help = await cli(['compile', '--help']);
    for (const opt of ['--host', '--format', '--policy', '--inventory', 'default', 'Example']) expect(help.out).toContain(opt);
  });
});
