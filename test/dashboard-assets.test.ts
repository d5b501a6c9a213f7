/**
 * The dashboard's files over HTTP (src/status/ui-assets.ts on a real StatusServer): content
 * types, the content-security-policy of the design on every answer, only the allow-listed
 * files (no path outside ui/ and the vendored cytoscape, however it is spelled), the /ui
 * redirect, no /ui at all for a source that does not ask for it (the agent's), and no page
 * script that writes markup.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { request } from 'node:http';
import { createRequire } from 'node:module';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControllerStatus } from '../src/controller/controller-status.js';
import { packageRoot } from '../src/package-root.js';
import { StatusServer, type StatusSource } from '../src/status/status-server.js';
import { UI_CONTENT_SECURITY_POLICY, uiFileNames } from '../src/status/ui-assets.js';
import { fixtureSource } from './support/dashboard-fixture.js';

const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";
const UI_DIR = path.join(packageRoot(), 'ui');

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** A GET with the path sent exactly as written (no client-side normalisation of `..`). */
function get(port: number, rawPath: string, method = 'GET'): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: rawPath, method }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

async function serve(source: StatusSource): Promise<{ server: StatusServer; port: number }> {
  const server = new StatusServer(source);
  const { port } = await server.listen('127.0.0.1', 0);
  return { server, port };
}

describe('the dashboard files on the status listener', () => {
  let ui: { server: StatusServer; port: number };
  let plain: { server: StatusServer; port: number };

  beforeAll(async () => {
    ui = await serve(fixtureSource);
    plain = await serve({ ...fixtureSource, ui: false });
  });
  afterAll(async () => {
    await ui?.server.close();
    await plain?.server.close();
  });

  it('serves the page, its modules and style with their content types and the CSP', async () => {
    expect(UI_CONTENT_SECURITY_POLICY).toBe(CSP);
    const cases: [string, string, string][] = [
      ['/ui/', 'text/html; charset=utf-8', 'index.html'],
      ['/ui/index.html', 'text/html; charset=utf-8', 'index.html'],
      ['/ui/dashboard.css', 'text/css; charset=utf-8', 'dashboard.css'],
      ['/ui/dashboard.js', 'text/javascript; charset=utf-8', 'dashboard.js'],
      ['/ui/flow-graph.js', 'text/javascript; charset=utf-8', 'flow-graph.js'],
    ];
    for (const [url, type, file] of cases) {
      const a = await get(ui.port, url);
      expect(a.status, url).toBe(200);
      expect(a.headers['content-type'], url).toBe(type);
      expect(a.headers['content-security-policy'], url).toBe(CSP);
      expect(a.headers['x-content-type-options'], url).toBe('nosniff');
      expect(a.body.equals(readFileSync(path.join(UI_DIR, file))), url).toBe(true);
    }
  });

  it('serves cytoscape from node_modules as a module, not from a CDN', async () => {
    const a = await get(ui.port, '/ui/vendor/cytoscape.js');
    expect(a.status).toBe(200);
    expect(a.headers['content-type']).toBe('text/javascript; charset=utf-8');
    expect(a.headers['content-security-policy']).toBe(CSP);
    const file = path.join(path.dirname(createRequire(import.meta.url).resolve('cytoscape')), 'cytoscape.esm.min.mjs');
    expect(a.body.equals(readFileSync(file))).toBe(true);
    expect(a.body.toString('utf8')).toMatch(/export\s*\{\s*\w+ as default\s*\}/);
    // Nothing on the page is fetched from elsewhere.
    for (const name of uiFileNames()) expect(readFileSync(path.join(UI_DIR, name), 'utf8'), name).not.toMatch(/https?:\/\//);
  });

  it('redirects /ui and / to /ui/', async () => {
    for (const url of ['/ui', '/']) {
      const a = await get(ui.port, url);
      expect(a.status, url).toBe(308);
      // Relative: from /ui and from / alike it names /ui/.
      expect(a.headers['location'], url).toBe('ui/');
      expect(new URL(a.headers['location'] as string, `http://status${url}`).pathname).toBe('/ui/');
    }
  });

  it('answers 404 for anything not on the allow-list, however the path is spelled', async () => {
    for (const url of [
      '/ui/../package.json',
      '/ui/%2e%2e/package.json',
      '/ui/..%2fpackage.json',
      '/ui/vendor/../../package.json',
      '/ui/unknown.js',
      '/ui/Dashboard.js',
      '/ui/dashboard.js/',
      '/ui//dashboard.js',
      '/ui/vendor/cytoscape.min.js',
      '/ui/vendor/',
      '/ui/vendor/%2e%2e%2fdashboard.js',
      '/ui/%2fetc%2fpasswd',
      '/uix',
    ]) {
      const a = await get(ui.port, url);
      expect(a.status, url).toBe(404);
      expect(a.body.toString('utf8'), url).not.toContain('"name": "portcullis"');
    }
    expect((await get(ui.port, '/ui/', 'POST')).status).toBe(405);
  });

  it('the controller asks for it', () => {
    // The constructor only keeps its inputs; `ui` is what the status server reads.
    expect(new ControllerStatus({} as ConstructorParameters<typeof ControllerStatus>[0]).ui).toBe(true);
  });

  it('serves no dashboard on a listener whose source does not ask for it (the agent)', async () => {
    expect((await get(plain.port, '/ui/')).status).toBe(404);
    expect((await get(plain.port, '/ui/dashboard.js')).status).toBe(404);
    expect((await get(plain.port, '/status')).status).toBe(200);
  });

  it('lists every file of ui/ and no other', () => {
    expect(uiFileNames().sort()).toEqual(readdirSync(UI_DIR).sort());
  });

  it('the page scripts never write markup: server text goes in as text only', () => {
    for (const name of uiFileNames().filter((n) => n.endsWith('.js'))) {
      const source = readFileSync(path.join(UI_DIR, name), 'utf8');
      expect(source, name).not.toMatch(/innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|setAttribute\(\s*['"](on|style)/);
    }
  });
});
