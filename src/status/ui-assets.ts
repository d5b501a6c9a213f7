/**
 * The dashboard's files, served by the controller's status listener under /ui/ (README
 * "Dashboard"). The page is static: `ui/` at the package root (plain ES modules, no build step)
 * plus cytoscape from node_modules; it reads /status, /flows and /flows/events like any client.
 *
 * Only a fixed allow-list of request paths maps to files: the path is looked up as a whole in
 * the table below, never joined onto a directory, so `..`, percent-escapes or any other spelling
 * cannot reach another file; anything else under /ui is 404. `/ui` redirects to `/ui/` so the
 * page's relative URLs resolve below it. Every answer carries the content-security-policy of the
 * design (scripts, styles, connections from this origin only; no inline script or style, no
 * framing), `x-content-type-options: nosniff` and `no-store`, like the JSON endpoints.
 */
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import type { ServerResponse } from 'node:http';
import path from 'node:path';
import { packageRoot } from '../package-root.js';

export const UI_CONTENT_SECURITY_POLICY =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

const HTML = 'text/html; charset=utf-8';
const CSS = 'text/css; charset=utf-8';
const JS = 'text/javascript; charset=utf-8';

/** Files of `ui/` at the package root, by the name after `/ui/` (`''` is the page itself). */
const UI_FILES: ReadonlyMap<string, { readonly file: string; readonly type: string }> = new Map([
  ['', { file: 'index.html', type: HTML }],
  ['index.html', { file: 'index.html', type: HTML }],
  ['dashboard.css', { file: 'dashboard.css', type: CSS }],
  ...['dashboard.js', 'dom.js', 'flow-graph.js', 'flow-map.js', 'flow-table.js', 'status-view.js'].map(
    (file) => [file, { file, type: JS }] as const,
  ),
]);

/** Libraries from node_modules, by the name after `/ui/vendor/`. */
const VENDOR_FILES: ReadonlyMap<string, { readonly resolve: () => string; readonly type: string }> = new Map([
  // Its ESM build is one self-contained file with a default export; the package's `exports`
  // offer it to `import` only, so it is found beside the CommonJS entry `require` resolves.
  ['cytoscape.js', { resolve: () => path.join(path.dirname(createRequire(import.meta.url).resolve('cytoscape')), 'cytoscape.esm.min.mjs'), type: JS }],
]);

/** The names after `/ui/` that are served (for the test that every file of `ui/` is listed). */
export function uiFileNames(): string[] {
  return [...UI_FILES.values()].map((f) => f.file).filter((f, i, all) => all.indexOf(f) === i);
}

/** Where the file of a request path under /ui is, and its content type; undefined when none. */
export function uiAsset(pathname: string): { readonly path: string; readonly type: string } | undefined {
  if (!pathname.startsWith('/ui/')) return undefined;
  const name = pathname.slice('/ui/'.length);
  const own = UI_FILES.get(name);
  if (own) return { path: path.join(packageRoot(), 'ui', own.file), type: own.type };
  const vendor = name.startsWith('vendor/') ? VENDOR_FILES.get(name.slice('vendor/'.length)) : undefined;
  return vendor ? { path: vendor.resolve(), type: vendor.type } : undefined;
}

function head(type: string): Record<string, string> {
  return {
    'content-type': type,
    'content-security-policy': UI_CONTENT_SECURITY_POLICY,
    'x-content-type-options': 'nosniff',
    'cache-control': 'no-store',
    'referrer-policy': 'no-referrer',
  };
}

/** Answers a GET of `/`, `/ui` or a path below `/ui/` (the first two redirect to the page). */
export async function serveUi(pathname: string, res: ServerResponse): Promise<void> {
  if (pathname === '/ui' || pathname === '/') {
    res.writeHead(308, { ...head('text/plain; charset=utf-8'), location: 'ui/' });
    res.end('the dashboard is at /ui/\n');
    return;
  }
  const asset = uiAsset(pathname);
  if (asset === undefined) {
    res.writeHead(404, head('text/plain; charset=utf-8'));
    res.end('not found: the dashboard is at /ui/\n');
    return;
  }
  let body: Buffer;
  try {
    body = await readFile(asset.path);
  } catch {
    res.writeHead(500, head('text/plain; charset=utf-8'));
    res.end('the dashboard files are missing from this installation\n');
    return;
  }
  res.writeHead(200, { ...head(asset.type), 'content-length': String(body.length) });
  res.end(body);
}
