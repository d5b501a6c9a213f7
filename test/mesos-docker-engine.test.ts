/**
 * The agent's Docker Engine client (src/mesos/docker-engine.ts): the documented ContainerInspect
 * answer parses, what is not its shape is refused by name, and the client reads the Docker double
 * over a real Unix socket.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DockerEngine, parseInspect } from '../src/mesos/docker-engine.js';
import { packageRoot } from '../src/package-root.js';
import { DockerEngineDouble, dockerId } from './support/docker-engine-double.js';

const inspect = JSON.parse(readFileSync(join(packageRoot(), 'test/fixtures/docker-engine-payloads/container-inspect.json'), 'utf8')) as Record<string, any>;

describe('parseInspect on the payload of the Engine API specification', () => {
  it('the documented answer: its Id and, running, its pid', () => {
    expect(parseInspect(inspect)).toEqual({ id: 'aa86eacfb3b3ed4cd362c1e88fc89a53908ad05fb3a4103bca3f9b28292d14bf', pid: 1234 });
  });

  it('a container that is not running has no pid', () => {
    expect(parseInspect({ ...inspect, State: { ...inspect.State, Running: false, Pid: 0 } })).toEqual({ id: inspect.Id, pid: undefined });
  });

  it.each([
    [[], 'not a JSON object'],
    [{ ...inspect, Id: 'abc' }, 'Id is not 64 hexadecimal digits'],
    [{ ...inspect, Id: `${'a'.repeat(63)}/` }, 'Id is not 64 hexadecimal digits'],
    [{ ...inspect, State: null }, 'no State object'],
    [{ ...inspect, State: { ...inspect.State, Pid: -1 } }, 'State.Pid is not a non-negative integer'],
    [{ ...inspect, State: { ...inspect.State, Pid: '1234' } }, 'State.Pid is not a non-negative integer'],
  ])('refuses %j: %s', (body, message) => {
    expect(parseInspect(body)).toContain(message);
  });
});

describe('DockerEngine against the Docker double (Unix socket)', () => {
  const double = new DockerEngineDouble();
  let socketPath = '';
  beforeAll(async () => {
    socketPath = await double.start();
  });
  afterAll(async () => {
    await double.stop();
  });

  it('inspects mesos-<container id>: found, not running, not there', async () => {
    const engine = new DockerEngine({ socketPath });
    double.containers.set('c-run', { id: dockerId('run'), pid: 4711 });
    double.containers.set('c-stopped', { id: dockerId('stopped') });
    expect(await engine.inspect('c-run')).toEqual({ id: dockerId('run'), pid: 4711 });
    expect(await engine.inspect('c-stopped')).toEqual({ id: dockerId('stopped'), pid: undefined });
    expect(await engine.inspect('c-none')).toBeUndefined();
  });

  it('a server error and a missing socket are errors naming the socket and the container', async () => {
    double.failing = true;
    try {
      await expect(new DockerEngine({ socketPath }).inspect('c-run')).rejects.toThrow(new RegExp(`Docker ${socketPath}: inspect mesos-c-run answered HTTP 500`));
    } finally {
      double.failing = false;
    }
    const gone = `${socketPath}.missing`;
    await expect(new DockerEngine({ socketPath: gone }).inspect('c-run')).rejects.toThrow(new RegExp(`Docker ${gone}: inspect mesos-c-run: .*ENOENT`));
  });
});
