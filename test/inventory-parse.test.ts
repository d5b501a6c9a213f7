/** The static inventory parser: the shipped example, then error cases with their line:col. */
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseStaticInventory } from '../src/inventory/static-inventory.js';
import { formatDiagnostic } from '../src/diagnostic.js';
import { loadInventory } from '../src/sources/inventory-file.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const EXAMPLE = join(ROOT, 'policies/inventory.yaml');

describe('the example inventory', () => {
  it('parses into a sorted ClusterState', async () => {
    const result = await loadInventory(EXAMPLE);
    if (!result.ok) throw new Error(result.errors.map(formatDiagnostic).join('\n'));
    const { hosts, apps, tasks } = result.cluster;
    expect(hosts).toEqual([1, 2, 3, 4].map((n) => ({ id: `node-${n}`, addresses: [`10.0.1.1${n}`, `fd00:1::1${n}`] })));
    const ids = (xs: readonly { id: string }[]): string[] => xs.map((x) => x.id);
    expect(ids(apps)).toEqual([...ids(apps)].sort());
    expect(ids(tasks)).toEqual([...ids(tasks)].sort());
    expect(new Set(apps.map((a) => a.networkMode))).toEqual(new Set(['host', 'bridge']));
    expect(apps.some((a) => a.ports.some((p) => p.protocols.includes('udp')))).toBe(true);
    expect(apps.some((a) => a.ports.some((p) => p.labels['portcullis.allow-from'] !== undefined))).toBe(true);
    const api = apps.find((a) => a.id === '/shop/api')!;
    expect(api.ports[0]).toEqual({ name: 'http', protocols: ['tcp'], containerPort: 8080, labels: {} });
    const statsd = apps.find((a) => a.id === '/monitoring/statsd')!;
    expect(statsd.ports[0]!.protocols).toEqual(['tcp', 'udp']);
    // A host runs several groups' tasks.
    const onNode1 = new Set(tasks.filter((t) => t.hostId === 'node-1').map((t) => t.appId));
    expect(onNode1.size).toBeGreaterThanOrEqual(3);
    for (const t of tasks) expect(t.hostPorts.length).toBe(apps.find((a) => a.id === t.appId)!.ports.length);
  });

  it('names tasks as Marathon does (<app id without the leading / and with _ for />.<n>) by default, in file order per app', () => {
    const text = 'hosts:\n  - { id: h1 }\n  - { id: h2 }\napps:\n  - { id: /a, ports: [{}] }\ntasks:\n  - { app: /a, host: h2, ports: [2] }\n  - { app: /a, host: h1, ports: [1] }\n  - { id: custom, app: /a, host: h1, ports: [3] }\n';
    const result = parseStaticInventory('i.yaml', text);
    if (!result.ok) throw new Error(result.errors.map(formatDiagnostic).join('\n'));
    expect(result.cluster.tasks).toEqual([
      { id: 'a.1', appId: '/a', hostId: 'h2', hostPorts: [2] },
      { id: 'a.2', appId: '/a', hostId: 'h1', hostPorts: [1] },
      { id: 'custom', appId: '/a', hostId: 'h1', hostPorts: [3] },
    ]);
    // Two app ids of one form get distinct defaults; every default can stand in an egress member.
    const two = parseStaticInventory('i.yaml', 'hosts:\n  - { id: h1 }\napps:\n  - { id: /a/b, ports: [{}] }\n  - { id: /a_b, ports: [{}] }\ntasks:\n  - { app: /a/b, host: h1, ports: [1] }\n  - { app: /a_b, host: h1, ports: [2] }\n');
    if (!two.ok) throw new Error(two.errors.map(formatDiagnostic).join('\n'));
    expect(two.cluster.tasks.map((t) => t.id)).toEqual(['a_b.1', 'a_b.1-2']);
    expect(result.cluster.apps[0]).toEqual({ id: '/a', labels: {}, networkMode: 'host', ports: [{ protocols: ['tcp'], labels: {} }] });
  });

  it('an emptied file is an error at 1:1; an inventory without hosts says so', () => {
    for (const text of ['', '\n\n', '# hosts:\n#   - { id: node-1 }\n']) {
      const result = parseStaticInventory('i.yaml', text);
      expect(result.ok).toBe(false);
      if (result.ok) return;
      expect(result.errors).toEqual([expect.objectContaining({ file: 'i.yaml', line: 1, col: 1 })]);
      expect(result.errors[0]!.message).toMatch(/^the inventory file is empty .*write 'hosts: \[\]'/);
    }
    expect(parseStaticInventory('i.yaml', 'hosts: []\n')).toEqual({ ok: true, cluster: { hosts: [], apps: [], tasks: [] } });
  });

  it('canonicalises addresses', () => {
    const result = parseStaticInventory('i.yaml', 'hosts:\n  - { id: h, addresses: ["FD00:0001:0:0::11", 10.0.0.1, "fd00:1::11"] }\n');
    expect(result.ok && result.cluster.hosts[0]!.addresses).toEqual(['fd00:1::11', '10.0.0.1']);
  });
});

const H = 'hosts:\n  - { id: node-1, addresses: [10.0.1.11] }\n  - { id: node-2, addresses: ["fd00:1::12"] }\n';
const A = 'apps:\n  - id: /a\n    ports: [{ name: http }, { name: dns, protocol: "udp,tcp" }]\n';

describe('inventory errors', () => {
  const cases: { name: string; text: string; want: [number, number, string][] }[] = [
    { name: 'unknown top-level key', text: 'host: []\n', want: [[1, 1, "unknown key 'host' in the top level of an inventory file (did you mean 'hosts'?)"]] },
    { name: 'unknown host key', text: 'hosts:\n  - { id: n1, adresses: [10.0.0.1] }\n', want: [[2, 15, "unknown key 'adresses' in a host (did you mean 'addresses'?)"]] },
    { name: 'bad addresses', text: 'hosts:\n  - { id: n1, addresses: [10.0.0.256, "fd00::1/64", nonsense] }\n', want: [
      [2, 27, "'10.0.0.256' is not a valid IPv4 address"], [2, 39, "'fd00::1/64' is a CIDR"], [2, 53, "'nonsense' is not an IPv4 or IPv6 address"]] },
    { name: 'an IPv4-mapped IPv6 address (IPv4 traffic never matches it)', text: 'hosts:\n  - { id: n1, addresses: ["::ffff:10.0.1.11", "::FFFF:a00:10c"] }\n', want: [
      [2, 27, "bad address of host 'n1': '::ffff:10.0.1.11' is an IPv4-mapped IPv6 address (inside ::ffff:0:0/96): IPv4 traffic is matched as IPv4 and never matches it; write 10.0.1.11 instead"],
      [2, 47, "'::FFFF:a00:10c' is an IPv4-mapped IPv6 address (inside ::ffff:0:0/96): IPv4 traffic is matched as IPv4 and never matches it; write 10.0.1.12 instead"]] },
    { name: 'duplicate host id', text: 'hosts:\n  - { id: n1 }\n  - { id: n1 }\n', want: [[3, 11, "duplicate host id 'n1': already defined at i.yaml:2:5"]] },
    { name: 'one address on two hosts', text: 'hosts:\n  - { id: n1, addresses: [10.0.0.1] }\n  - { id: n2, addresses: [10.0.0.1] }\n',
      want: [[3, 27, "address 10.0.0.1 of host 'n2' is already an address of host 'n1'"]] },
    { name: 'duplicate app id', text: 'apps:\n  - { id: /a }\n  - { id: /a }\n', want: [[3, 5, "duplicate app id '/a'"]] },
    { name: 'app id without slash', text: 'apps:\n  - { id: a }\n', want: [[2, 11, "app id 'a' must start with '/'"]] },
    { name: 'bad network mode', text: 'apps:\n  - { id: /a, network: brige }\n', want: [[2, 24, "unknown network mode 'brige' of app '/a' (did you mean 'bridge'?)"]] },
    { name: 'containerPort on a host app', text: 'apps:\n  - { id: /a, ports: [{ containerPort: 80 }] }\n', want: [[2, 25, "'containerPort' of port #1 of app '/a' only applies to bridge networking"]] },
    { name: 'bad protocol and container port', text: 'apps:\n  - { id: /a, network: bridge, ports: [{ protocol: sctp, containerPort: 0 }] }\n', want: [
      [2, 52, "unknown protocol 'sctp' of port #1 of app '/a'"], [2, 73, 'must be a port number from 1 to 65535, found the number 0']] },
    { name: 'label value not a string', text: 'apps:\n  - { id: /a, labels: { x: 1 } }\n', want: [[2, 28, "label 'x' of app '/a' (Marathon label values are text) must be a string"]] },
    { name: 'duplicate port name', text: 'apps:\n  - { id: /a, ports: [{ name: http }, { name: http }] }\n', want: [[2, 47, "app '/a' already has a port named 'http'"]] },
    { name: 'unknown app', text: `${H}${A}tasks:\n  - { app: /b, host: node-1, ports: [1, 2] }\n`, want: [[8, 12, "unknown app '/b' in task #1 (did you mean '/a'?)"]] },
    { name: 'unknown host', text: `${H}${A}tasks:\n  - { app: /a, host: node-9, ports: [1, 2] }\n`, want: [[8, 22, "unknown host 'node-9' in task #1 (did you mean 'node-1'?)"]] },
    { name: 'port count mismatch', text: `${H}${A}tasks:\n  - { app: /a, host: node-1, ports: [31000] }\n`, want: [[8, 37, "task #1 has 1 host port(s) but app '/a' declares 2"]] },
    { name: 'ports out of range', text: `${H}${A}tasks:\n  - { app: /a, host: node-1, ports: [0, 70000] }\n`, want: [
      [8, 38, 'found the number 0'], [8, 41, 'found the number 70000']] },
    { name: 'two tasks share a host port on one host', text:
      `${H}${A}tasks:\n  - { app: /a, host: node-1, ports: [31000, 31001] }\n  - { app: /a, host: node-1, ports: [31002, 31001] }\n  - { app: /a, host: node-2, ports: [31000, 31001] }\n`,
      want: [[9, 45, "host port 31001 (tcp, udp) on host 'node-1' is already used by task 'a.1'"]] },
    { name: 'duplicate task id', text: `${H}${A}tasks:\n  - { id: t1, app: /a, host: node-1, ports: [1, 2] }\n  - { id: t1, app: /a, host: node-2, ports: [1, 2] }\n`,
      want: [[9, 11, "duplicate task id 't1': already used by the task at i.yaml:8:5"]] },
    { name: 'task without app and host', text: 'tasks:\n  - { ports: [] }\n', want: [[2, 5, "task #1 has no 'app'"], [2, 5, "task #1 has no 'host'"]] },
    { name: 'duplicate key', text: 'hosts:\n  - id: a\n    id: b\n', want: [[3, 5, "duplicate key 'id' in a host: already given at i.yaml:2:5"]] },
    { name: 'YAML syntax error', text: 'hosts: [\n', want: [[2, 1, 'YAML syntax error']] },
  ];

  it.each(cases)('$name', ({ text, want }) => {
    const result = parseStaticInventory('i.yaml', text);
    expect(result.ok).toBe(false);
    if (result.ok) return;
    const got = result.errors.map((e) => [e.line, e.col, e.message] as const);
    expect(got.length, got.map((g) => g.join(':')).join('\n')).toBe(want.length);
    want.forEach(([line, col, text], i) => {
      expect(got[i]![0], `line of ${text}`).toBe(line);
      expect(got[i]![1], `col of ${text}`).toBe(col);
      expect(got[i]![2]).toContain(text);
      expect(result.errors[i]!.file).toBe('i.yaml');
    });
  });

  it.each(readdirSync(join(ROOT, 'test/fixtures/inventory')))('fixture %s reports every expected error', (name) => {
    const path = join(ROOT, 'test/fixtures/inventory', name);
    const text = readFileSync(path, 'utf8');
    const wanted = [...text.matchAll(/^# expect: (\d+):(\d+) (.+)$/gm)].map((m) => ({ line: Number(m[1]), col: Number(m[2]), text: m[3]! }));
    expect(wanted.length).toBeGreaterThan(0);
    const result = parseStaticInventory(path, text);
    expect(result.ok).toBe(false);
    if (result.ok) return;
    const shown = result.errors.map(formatDiagnostic).join('\n');
    for (const w of wanted) {
      expect(result.errors.some((e) => e.file === path && e.line === w.line && e.col === w.col && e.message.includes(w.text)), `${w.line}:${w.col} ${w.text}\n${shown}`).toBe(true);
    }
    expect(result.errors.length, shown).toBe(wanted.length);
  });

  it('reports an unreadable file at line 1 col 1', async () => {
    const missing = join(ROOT, 'test/fixtures/inventory/does-not-exist.yaml');
    const result = await loadInventory(missing);
    expect(result).toEqual({ ok: false, errors: [expect.objectContaining({ file: missing, line: 1, col: 1 })] });
  });
});
