/**
 * ClusterStore's tasks of an older app definition (cluster-store.ts header): a task whose port
 * count no longer matches its app keeps its ports by name while its host ports are the same.
 */
import { describe, expect, it } from 'vitest';
import type { App, AppPort, Task } from '../src/inventory/cluster-state.js';
import { ClusterStore } from '../src/marathon/cluster-store.js';

const port = (name: string | undefined, ...protocols: ('tcp' | 'udp')[]): AppPort => ({ ...(name !== undefined ? { name } : {}), protocols: protocols.length > 0 ? protocols : ['tcp'], labels: {} });
const app = (...ports: AppPort[]): App => ({ id: '/a', labels: {}, networkMode: 'host', ports });
const task = (hostPorts: number[], id = 't1'): Task => ({ id, appId: '/a', hostId: 'h1', hostPorts });
const misaligned = (t: Task) => [{ task: t, problem: `task ${t.id}: port count` }];
const held = (s: ClusterStore) => s.snapshot().tasks.map((t) => [t.id, [...t.hostPorts]]);

describe('ClusterStore: tasks of an older definition', () => {
  it('a port removed: the old task keeps the ports whose names the new definition has', () => {
    const s = new ClusterStore();
    s.replaceAll([app(port('http'), port('metrics'))], [task([31000, 31001])]);
    s.replaceAll([app(port('metrics'))], [], [], misaligned(task([31000, 31001])));
    expect(held(s)).toEqual([['t1', [31001]]]);
    expect(s.unkeptProblems(misaligned(task([31000, 31001])))).toEqual([]);
  });

  it('a port whose protocols the old one does not share, or an unnamed port, gets none; no port at all is not kept', () => {
    const s = new ClusterStore();
    s.replaceAll([app(port('dns', 'udp'), port(undefined))], [task([31000, 31001])]);
    s.replaceApp('/a', app(port('dns', 'tcp'), port(undefined), port('dns2', 'udp')), [], misaligned(task([31000, 31001])));
    expect(held(s)).toEqual([]);
    expect(s.unkeptProblems(misaligned(task([31000, 31001])))).toEqual(['task t1: port count']);
    const t = new ClusterStore();
    t.replaceAll([app(port('dns', 'udp', 'tcp'), port('x'))], [task([31000, 31001])]);
    t.replaceApp('/a', app(port('dns', 'tcp'), port(undefined), port('y')), [], misaligned(task([31000, 31001])));
    expect(held(t)).toEqual([['t1', [31000, 0, 0]]]);
  });

  it('kept across lists while its host ports are the same; other host ports (a new task of that id) are not named from the old ones', () => {
    const s = new ClusterStore();
    s.replaceAll([app(port('http'))], [task([31000])]);
    const next = app(port('admin'), port('http'));
    s.replaceAll([next], [], [], misaligned(task([31000])));
    s.replaceAll([next], [task([31010, 31011], 't2')], [], misaligned(task([31000])));
    expect(held(s)).toEqual([['t1', [0, 31000]], ['t2', [31010, 31011]]]);
    s.replaceAll([next], [task([31010, 31011], 't2')], [], misaligned(task([32000])));
    expect(held(s)).toEqual([['t2', [31010, 31011]]]);
  });
});
