/**
 * A double of the local Docker daemon's Engine API, as the agent asks it where a Docker-
 * containerizer task runs (src/mesos/docker-engine.ts): HTTP over a Unix socket in a temp dir of
 * its own. No Docker daemon runs on our machines. Answers are the documented payloads of
 * test/fixtures/docker-engine-payloads/ (see SOURCES.md) with the scripted container's Id, Name
 * and State put in.
 *
 * Answered: `GET [/v1.NN]/containers/<name>/json` for the scripted containers (by Mesos container
 * id, named `mesos-<id>` as the Docker containerizer names them); 404 with the documented error
 * answer for any other name, 404 for any other path. `failing` makes every answer a 500.
 * `requests` counts the inspect calls.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packageRoot } from '../../src/package-root.js';

export interface ScriptedContainer {
  /** The Docker container's Id (64 hex). */
  readonly id: string;
  /** Its main process; 0 or undefined: not running. */
  readonly pid?: number;
}

const FIXTURES = join(packageRoot(), 'test', 'fixtures', 'docker-engine-payloads');

function fixture(name: string): Record<string, any> {
  return JSON.parse(readFileSync(join(FIXTURES, name), 'utf8')) as Record<string, any>;
}

/** A 64-hex Docker id made from a seed text (tests need many distinct ones). */
export function dockerId(seed: string): string {
  let out = '';
  for (let i = 0; out.length < 64; i++) out += ((seed.charCodeAt(i % seed.length) * 31 + i * 7) & 0xffff).toString(16).padStart(4, '0');
  return out.slice(0, 64);
}

export class DockerEngineDouble {
  /** By Mesos container id. */
  containers = new Map<string, ScriptedContainer>();
  failing = false;
  requests = 0;
  private server: http.Server | undefined;
  private dir: string | undefined;

  /** Listens; the socket's path. */
  async start(): Promise<string> {
    this.dir = mkdtempSync(join(tmpdir(), 'pcut-docker-'));
    const socketPath = join(this.dir, 'docker.sock');
    const inspect = fixture('container-inspect.json');
    const missing = fixture('not-found.json');
    this.server = http.createServer((req, res) => {
      const send = (status: number, body: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(body));
      };
      const m = /^(?:\/v1\.\d+)?\/containers\/([^/?]+)\/json(?:\?.*)?$/.exec(req.url ?? '');
      if (req.method !== 'GET' || !m) return send(404, { message: 'page not found' });
      this.requests++;
      if (this.failing) return send(500, { message: 'server error' });
      const name = decodeURIComponent(m[1]!);
      const c = name.startsWith('mesos-') ? this.containers.get(name.slice('mesos-'.length)) : undefined;
      if (!c) return send(404, { ...missing, message: `No such container: ${name}` });
      const running = c.pid !== undefined && c.pid > 0;
      const body = structuredClone(inspect);
      body.Id = c.id;
      body.Name = `/${name}`;
      body.State = { ...body.State, Running: running, Status: running ? 'running' : 'exited', Pid: running ? c.pid : 0 };
      send(200, body);
    });
    await new Promise<void>((resolve) => this.server!.listen(socketPath, resolve));
    return socketPath;
  }

  async stop(): Promise<void> {
    if (this.server) {
      this.server.closeAllConnections();
      await new Promise<void>((resolve) => this.server!.close(() => resolve()));
    }
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
    this.server = undefined;
    this.dir = undefined;
  }
}
