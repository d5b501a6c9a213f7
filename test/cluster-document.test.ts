/**
 * The cluster document (src/inventory/cluster-document.ts) of a cluster read from Marathon:
 * `clusterFromDocument(clusterDocument(c))` must give `c` back for whatever Marathon's parser
 * accepts, or `GET /cluster` (the CLI's `explain|diff|check --controller`) cannot be read.
 */
import { describe, expect, it } from 'vitest';
import { clusterDocument, clusterFromDocument } from '../src/inventory/cluster-document.js';
import type { ClusterState } from '../src/inventory/cluster-state.js';
import { parseApps } from '../src/marathon/parse-apps.js';

describe('the cluster document of a Marathon cluster', () => {
  it('round-trips a port with neither tcp nor udp (Marathon "sctp"), which the parser keeps unmanaged', () => {
    const parsed = parseApps({
      apps: [
        {
          id: '/telco/sigtran',
          networks: [{ mode: 'host' }],
          portDefinitions: [{ port: 0, name: 'sctp', protocol: 'sctp' }, { port: 0, name: 'http' }],
          tasks: [{ id: 'telco_sigtran.1', host: 'agent-1', ports: [31000, 31001], state: 'TASK_RUNNING' }],
        },
      ],
    });
    expect(parsed.apps[0]?.ports[0]?.protocols).toEqual([]);
    const cluster: ClusterState = { hosts: [{ id: 'agent-1', addresses: ['10.0.0.1'] }], apps: parsed.apps, tasks: parsed.tasks };
    expect(clusterFromDocument(JSON.parse(JSON.stringify(clusterDocument(cluster))))).toEqual({ ok: true, cluster });
  });
});
