/**
 * Consul answers are untrusted (src/consul/consul-payloads.ts, consul-http.ts): the documented
 * payloads parse to what they say; a malformed entry is skipped with a reason; an answer of the
 * wrong shape, too large, too deep, truncated, or not JSON is a clear error, never a crash (the
 * `consul` library walks KV answers in an event handler, where a throw would end the process).
 * Hostile answers come from a small raw HTTP server bound to 127.0.0.1 port 0.
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConsulClient } from '../src/consul/consul-client.js';
import { dialableAddress, parseAgentServices, parseCatalogService, parseHealthService, parseIndex, parseSessionInfo } from '../src/consul/consul-payloads.js';
import { packageRoot } from '../src/package-root.js';
import { ConsulDouble } from './support/consul-double.js';

const FIXTURES = join(packageRoot(), 'test/fixtures/consul-payloads');
const text = (name: string): string => readFileSync(join(FIXTURES, name), 'utf8');
const fixture = (name: string): unknown => JSON.parse(text(name));

describe('the documented payloads', () => {
  it('health/service: the redis instance at its service address', () => {
    const r = parseHealthService(fixture('health-service.json'));
    expect(r).toEqual({ ok: true, skipped: [], value: [{ node: 'foobar', id: 'redis', name: 'redis', address: '10.1.10.12', port: 8000, tags: ['primary'], meta: { redis_version: '4.0' } }] });
  });

  it('catalog/service: ServiceAddress and ServicePort', () => {
    const r = parseCatalogService(fixture('catalog-service.json'));
    expect(r.ok && r.value).toEqual([{ node: 't2.320', id: '32a2a47f7992:nodea:5000', name: 'web', address: '172.17.0.3', port: 5000, tags: ['prod'], meta: { web_meta_value: 'baz' } }]);
  });

  it('agent/services: an empty Address is kept as "no address of its own"', () => {
    const r = parseAgentServices(fixture('agent-services.json'), '-');
    expect(r.ok && r.value.map((s) => [s.id, s.name, s.port, s.address])).toEqual([['redis', 'redis', 8000, '-']]);
  });

  it('session/info', () => {
    const r = parseSessionInfo(fixture('session-info.json'));
    expect(r.ok && r.value).toEqual({ id: 'adf4238a-882b-9ddc-4a9d-5b6758e4159e', name: 'test-session', node: 'raja-laptop-02', ttl: '30s', behavior: 'release' });
  });

  it('the documented register payload is taken by the double as the docs describe it', async () => {
    const consul = new ConsulDouble();
    const url = await consul.start();
    try {
      const res = await fetch(`${url}/v1/agent/service/register`, { method: 'PUT', body: text('agent-service-register-payload.json') });
      expect(res.status).toBe(200);
      const [svc] = consul.localServices();
      expect(svc).toMatchObject({ id: 'redis1', name: 'redis', address: '127.0.0.1', port: 8000, tags: ['primary', 'v1'], meta: { redis_version: '4.0' } });
      expect(svc!.checks).toMatchObject([{ checkId: 'service:redis1', status: 'critical', interval: '10s', deregisterCriticalServiceAfter: '90m' }]);
      const session = await fetch(`${url}/v1/session/create`, { method: 'PUT', body: text('session-create-payload.json') });
      const { ID } = (await session.json()) as { ID: string };
      expect(consul.state.sessions.get(ID)).toMatchObject({ name: 'my-service-lock', node: 'foobar', ttl: '30s', behavior: 'release', lockDelayNs: 15e9 });
    } finally {
      await consul.close();
    }
  });
});

describe('malformed entries are skipped with a reason', () => {
  it('health/service: bad port, no address, non-string tags; the good entry stays', () => {
    const good = (fixture('health-service.json') as Record<string, any>[])[0]!;
    const bad = (patch: (e: any) => void): unknown => {
      const e = structuredClone(good);
      patch(e);
      return e;
    };
    const r = parseHealthService([
      good,
      bad((e) => (e.Service.Port = 0)),
      bad((e) => ((e.Service.Address = ''), (e.Node.Address = ''))),
      bad((e) => (e.Service.Tags = [1])),
      bad((e) => (e.Service.ID = 'a\nb')),
      null,
      bad((e) => (e.Service.Address = 'unix')),
      bad((e) => (e.Service.Address = 'host/../x')),
    ]);
    expect(r.ok && r.value.map((i) => i.id)).toEqual(['redis']);
    expect(r.ok && r.skipped.map((s) => s.reason)).toEqual([
      'port 0 is not 1..65535',
      'no usable address (service and node address empty or not printable)',
      'Tags is not a list of strings',
      'service ID missing or not a short printable string',
      'entry without Node and Service objects',
      'no usable address: "unix" is neither an IP address nor a host name',
      'no usable address: "host/../x" is neither an IP address nor a host name',
    ]);
  });

  it('an address is dialled only as an IP address or a host name, never as a grpc-js scheme', () => {
    for (const ok of ['10.0.0.1', '2001:db8::1', 'replica-1.dc1.consul', 'localhost', 'a.']) expect(dialableAddress(ok), ok).toBe(true);
    for (const bad of ['unix', 'DNS', 'ipv4', 'ipv6', 'unix:/tmp/s', 'host name', '-lead', 'a..b', `${'a'.repeat(64)}.x`, '']) expect(dialableAddress(bad), bad).toBe(false);
  });

  it('a top level of the wrong shape, or too many entries, is an error', () => {
    expect(parseHealthService({})).toEqual({ ok: false, error: 'health/service: expected a JSON list' });
    expect(parseHealthService([1, 2, 3], { maxEntries: 2 })).toEqual({ ok: false, error: 'health/service: 3 entries, more than the limit of 2' });
  });

  it('X-Consul-Index: whole numbers only', () => {
    expect([parseIndex('42'), parseIndex(undefined), parseIndex('-1'), parseIndex('1e3'), parseIndex('99999999999999999')]).toEqual([42, undefined, undefined, undefined, undefined]);
  });
});

describe('hostile answers over HTTP', () => {
  type Reply = (res: http.ServerResponse) => void;
  let reply: Reply;
  let server: http.Server;
  let client: ConsulClient;

  beforeEach(async () => {
    server = http.createServer((_req, res) => reply(res));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    client = new ConsulClient({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, timeoutMs: 5_000, maxBytes: 64 * 1024 });
  });

  afterEach(async () => {
    client.close();
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  });

  const json = (body: string, headers: Record<string, string> = {}): Reply => (res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), 'x-consul-index': '7', ...headers });
    res.end(body);
  };

  it('the documented KV answer: Value decoded from base64, the lock holder kept', async () => {
    reply = json(text('kv-get.json'));
    const r = await client.kvGet('zip');
    expect(r.index).toBe(7);
    expect(r.value).toMatchObject({ key: 'zip', flags: 0, lockIndex: 200, createIndex: 100, modifyIndex: 200, session: 'adf4238a-882b-9ddc-4a9d-5b6758e4159e' });
    expect(r.value?.value.toString()).toBe('test');
  });

  it('KV [null] (the library would throw in an event handler) and non-base64 values are errors', async () => {
    reply = json('[null]');
    await expect(client.kvList('p/')).rejects.toThrow(/KV answer holds a non-object entry/);
    reply = json('[{"Key":"k","Value":"not base64!","CreateIndex":1,"ModifyIndex":1,"LockIndex":0}]');
    await expect(client.kvGet('k')).rejects.toThrow(/not base64/);
    reply = json('{"Key":"k"}');
    await expect(client.kvGet('k')).rejects.toThrow(/KV answer is not a list/);
  });

  it('JSON nested too deep, or not JSON, is an error', async () => {
    reply = json(`${'['.repeat(100)}${']'.repeat(100)}`);
    await expect(client.healthService('x', true)).rejects.toThrow(/nested deeper than the limit of 64/);
    reply = json('[{"Node":');
    await expect(client.healthService('x', true)).rejects.toThrow(/invalid JSON/);
    reply = (res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('[]');
    };
    await expect(client.healthService('x', true)).rejects.toThrow(/not application\/json/);
  });

  it('an answer over maxBytes is refused, announced or not', async () => {
    reply = json(`[${'1,'.repeat(40_000)}1]`);
    await expect(client.healthService('x', true)).rejects.toThrow(/announced, larger than the limit of 65536 bytes/);
    reply = (res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      for (let i = 0; i < 40; i++) res.write(`${i === 0 ? '[' : ','}"${'x'.repeat(4096)}"`);
      res.end(']');
    };
    await expect(client.healthService('x', true)).rejects.toThrow(/larger than the limit of 65536 bytes/);
  });

  it('a body cut short is an error at once, not a wait for the timeout', async () => {
    reply = (res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '1000' });
      res.write('[{"Node":{}');
      setImmediate(() => res.socket?.destroy());
    };
    const started = Date.now();
    await expect(client.healthService('x', true)).rejects.toThrow(/truncated|mid-answer/);
    expect(Date.now() - started).toBeLessThan(4_000);
  });

  it('an answer without X-Consul-Index has no index (a follower treats it as a failed read)', async () => {
    reply = json('[]', { 'x-consul-index': '' });
    expect((await client.healthService('x', true)).index).toBeUndefined();
  });
});
