/**
 * The local Docker Engine API, asked by a Portcullis agent where the Docker containerizer's HOST
 * tasks run: Mesos reports neither a cgroup nor an executor pid for them (its Docker
 * containerizer's ContainerStatus carries the container id only; the docker executor adds network
 * addresses), and their processes are in Docker's cgroup for the container, not under the Mesos
 * agent's cgroups root.
 *
 * - The Docker containerizer names the container `mesos-<container id>` (Mesos
 *   src/slave/containerizer/docker.cpp, DOCKER_NAME_PREFIX, Mesos 1.4 and later);
 *   `inspect(containerId)` is `GET /containers/mesos-<id>/json` (Engine API "ContainerInspect",
 *   moby api/swagger.yaml) over the daemon's Unix socket, and gives the container's `Id`
 *   (64 hex) and `State.Pid` (0 when it is not running). 404 ("No such container"): undefined.
 * - Untrusted as any answer: read bounded (src/json/bounded-body.ts), parsed bounded
 *   (src/json/bounded-json.ts); an Id that is not 64 hex digits or a Pid that is not a positive
 *   integer is an error naming the field, never used. The container id is checked by the caller
 *   (local-tasks.ts: `[A-Za-z0-9_.-]`) and is also URL-encoded here.
 * - Where the container's cgroup is comes from its pid (`/proc/<pid>/cgroup`), read by the agent
 *   (agent/egress-mapper.ts), which takes it only when the path names the container's Id.
 */
import http from 'node:http';
import { readBoundedBody } from '../json/bounded-body.js';
import { parseBoundedJson } from '../json/bounded-json.js';
import { previewJson } from '../json/json-preview.js';

export const DEFAULT_DOCKER_SOCKET = '/var/run/docker.sock';
/** What the Docker containerizer puts before the Mesos container id (Mesos ≥ 1.4). */
export const DOCKER_NAME_PREFIX = 'mesos-';

export interface DockerContainer {
  /** The container's full id (64 lowercase hex digits). */
  readonly id: string;
  /** Its main process, in the host's pid namespace; undefined when it is not running. */
  readonly pid: number | undefined;
}

export interface DockerEngineOptions {
  /** The daemon's Unix socket. Default /var/run/docker.sock. */
  readonly socketPath?: string;
  /** Per call, until the whole answer is read. Default 5 s. */
  readonly timeoutMs?: number;
}

/** Something the agent can ask about a Mesos container run by Docker (tests give doubles). */
export interface DockerLookup {
  /** Where this asks (for log lines and the status reason). */
  readonly where: string;
  inspect(containerId: string): Promise<DockerContainer | undefined>;
}

const MAX_BYTES = 4 * 1024 * 1024;
const ID = /^[0-9a-f]{64}$/i;

/** The parts of a ContainerInspect answer the agent uses; a string names what is wrong. */
export function parseInspect(body: unknown): DockerContainer | string {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return 'the answer is not a JSON object';
  const { Id, State } = body as { Id?: unknown; State?: unknown };
  if (typeof Id !== 'string' || !ID.test(Id)) return 'its Id is not 64 hexadecimal digits';
  if (typeof State !== 'object' || State === null) return 'it has no State object';
  const { Pid, Running } = State as { Pid?: unknown; Running?: unknown };
  if (typeof Pid !== 'number' || !Number.isInteger(Pid) || Pid < 0) return 'its State.Pid is not a non-negative integer';
  return { id: Id.toLowerCase(), pid: Running === true && Pid > 0 ? Pid : undefined };
}

export class DockerEngine implements DockerLookup {
  readonly where: string;
  private readonly socketPath: string;

  constructor(private readonly options: DockerEngineOptions = {}) {
    this.socketPath = options.socketPath ?? DEFAULT_DOCKER_SOCKET;
    this.where = `Docker ${this.socketPath}`;
  }

  async inspect(containerId: string): Promise<DockerContainer | undefined> {
    const name = `${DOCKER_NAME_PREFIX}${containerId}`;
    const where = `${this.where}: inspect ${name}`;
    const timer = AbortSignal.timeout(this.options.timeoutMs ?? 5_000);
    const answer = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = http.request({ socketPath: this.socketPath, path: `/containers/${encodeURIComponent(name)}/json`, method: 'GET', signal: timer, headers: { accept: 'application/json', host: 'docker' } }, (res) => {
        readBoundedBody(res, MAX_BYTES, timer).then((text) => resolve({ status: res.statusCode ?? 0, text }), reject);
      });
      req.on('error', (e) => reject(new Error(`${where}: ${timer.aborted ? 'timed out' : e.message}`)));
      req.end();
    }).catch((e: Error) => {
      throw e.message.startsWith(where) ? e : new Error(`${where}: ${e.message}`);
    });
    if (answer.status === 404) return undefined;
    if (answer.status !== 200) throw new Error(`${where} answered HTTP ${answer.status}: ${previewJson(answer.text, 200)}`);
    const parsed = parseBoundedJson(answer.text, { maxBytes: MAX_BYTES });
    if (!parsed.ok) throw new Error(`${where}: ${parsed.error}`);
    const c = parseInspect(parsed.value);
    if (typeof c === 'string') throw new Error(`${where}: ${c}`);
    return c;
  }
}
