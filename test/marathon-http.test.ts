/**
 * The Marathon HTTP client on its own: truncated bodies are errors even when what arrived parses,
 * redirects are bounded, and https → http redirects are refused.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { HttpClient } from '../src/marathon/http-client.js';
import { waitFor } from './support/marathon-double.js';

const servers: http.Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }
});

async function serve(handler: http.RequestListener): Promise<string> {
  const s = http.createServer(handler);
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
}

const get = (url: string, path = '/v2/apps'): Promise<{ status: number; text: string }> =>
  new HttpClient({ urls: [url] }).getText(path, { accept: 'application/json', timeoutMs: 3000, maxBytes: 1 << 20 });

describe('HttpClient', () => {
  it('an endless body without Content-Length: reading stops past maxBytes and the connection is closed', async () => {
    let written = 0;
    let closed = false;
    const url = await serve((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.on('close', () => (closed = true));
      const chunk = Buffer.alloc(16 * 1024, 0x20);
      const pump = (): void => {
        // Bounded: at most 4096 chunks (64 MiB), stopping as soon as the client hangs up.
        while (!closed && written < 4096 * chunk.length) {
          written += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
        res.end();
      };
      pump();
    });
    await expect(get(url)).rejects.toThrow(`answer larger than the limit of ${1 << 20} bytes`);
    await waitFor(() => closed, 'the server sees the client hang up');
    expect(written).toBeLessThan(16 << 20);
  });

  it('a Content-Length above maxBytes is refused before reading', async () => {
    const url = await serve((_req, res) => {
      res.writeHead(200, { 'Content-Length': 2 << 20 });
      res.write('{"apps":[');
    });
    await expect(get(url)).rejects.toThrow(`answer of ${2 << 20} bytes announced, larger than the limit of ${1 << 20} bytes`);
  });

  it('a body cut short of its Content-Length is an error even if it parses as JSON', async () => {
    const url = await serve((_req, res) => {
      res.writeHead(200, { 'Content-Length': 100 });
      res.write('{"apps":[]}', () => res.destroy());
    });
    await expect(get(url)).rejects.toThrow(/truncated/);
  });

  it('a chunked body cut mid-way is an error', async () => {
    const url = await serve((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.write('{"apps":[]}', () => res.destroy());
    });
    await expect(get(url)).rejects.toThrow(/truncated|closed|aborted|socket hang up/);
  });

  it('keeps the base URL path prefix and sends paths as given', async () => {
    const seen: string[] = [];
    const url = await serve((req, res) => {
      seen.push(req.url ?? '');
      res.end('{}');
    });
    await get(`${url}/marathon/`, '/v2/apps/a%2Fb/..x?embed=app.tasks');
    expect(seen).toEqual(['/marathon/v2/apps/a%2Fb/..x?embed=app.tasks']);
  });

  it('redirect loops stop after 5 hops', async () => {
    let hits = 0;
    const url = await serve((req, res) => {
      hits++;
      res.writeHead(307, { Location: req.url ?? '/' }).end();
    });
    await expect(get(url)).rejects.toThrow(/too many redirects/);
    expect(hits).toBe(6);
  });

  it('refuses a redirect from https to http', async () => {
    // No TLS server is needed: the check happens before connecting to the redirect target,
    // so a plain server that answers the first hop stands in for the https leader via a stub.
    const client = new HttpClient({ urls: ['http://127.0.0.1:1'] });
    const follow = (client as unknown as { follow: (o: URL, p: string, opt: unknown) => Promise<unknown> }).follow.bind(client);
    const once = (): Promise<unknown> => Promise.resolve(Object.assign(new http.IncomingMessage(null as never), { status: 302, statusCode: 302, headers: { location: 'http://evil/' } }));
    (client as unknown as { once: typeof once }).once = once;
    await expect(follow(new URL('https://leader'), '/v2/apps', { accept: '*/*', timeoutMs: 100 })).rejects.toThrow(/refusing redirect/);
  });
});
