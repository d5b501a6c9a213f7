/**
 * The dashboard's pure part, ui/flow-graph.js (plain browser ES module, loaded here as is): which
 * nodes and edges a flow set draws, the text of the table's columns, and how live changes merge.
 * The browser test draws the common cases; these are the ones it does not: a source host with
 * several apps or none, a claim shared by two apps, a port no task claims any more, many ports
 * on one edge, IPv6 sources, and merging by key.
 */
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../src/package-root.js';
import { fixtureFlows, liveFlow, type FixtureFlow } from './support/dashboard-fixture.js';

/** The module's exports (plain JS: typed by its JSDoc in the browser, untyped here). */
let g: any;
beforeAll(async () => {
  g = await import(pathToFileURL(path.join(packageRoot(), 'ui', 'flow-graph.js')).href);
});

const base = (): FixtureFlow => liveFlow();
/** Edges as `source-id -> target-id verdict label`. */
const edgeText = (graph: { edges: { source: string; target: string; verdict: string; label: string }[] }) =>
  graph.edges.map((e) => `${e.source} -> ${e.target} ${e.verdict} ${e.label}`);

describe('ui/flow-graph.js', () => {
  it('a source host with several apps is one host node naming them; with none, the host', () => {
    const two = { ...base(), source: { ...base().source, apps: ['/a', '/b'] } };
    expect(g.sourceNode(two)).toEqual({ id: 'host:node-4', label: 'node-4 (/a, /b)', kind: 'host' });
    const none = { ...base(), source: { ...base().source, apps: [] } };
    expect(g.sourceNode(none)).toEqual({ id: 'host:node-4', label: 'node-4 (host)', kind: 'host' });
    expect(g.sourceText(two)).toBe('/a, /b @ node-4');
  });

  it('an outside IPv6 source is an address node; a network source names its first network', () => {
    const v6 = { ...base(), source: { address: '2001:db8::7', kind: 'outside' as const, apps: [], networks: [] } };
    expect(g.sourceNode(v6)).toEqual({ id: 'addr:2001:db8::7', label: '2001:db8::7', kind: 'outside' });
    const net = { ...base(), source: { address: '10.8.0.5', kind: 'network' as const, apps: [], networks: ['office', 'vpn'] } };
    expect(g.sourceNode(net)).toEqual({ id: 'net:office', label: 'office (network)', kind: 'network' });
    expect(g.sourceText(net)).toBe('office, vpn (10.8.0.5)');
  });

  it('a claim shared by two apps draws an edge to each; an unclaimed port goes to its host', () => {
    const shared = { ...base(), destination: { ...base().destination, apps: [{ appId: '/x', taskIds: [] }, { appId: '/y', taskIds: [] }] } };
    expect(edgeText(g.buildGraph([shared]))).toEqual(['app:/monitoring/prometheus -> app:/x allowed metrics ×12', 'app:/monitoring/prometheus -> app:/y allowed metrics ×12']);
    expect(g.destinationText(shared)).toBe('/x:metrics, /y:metrics @ node-2');
    const gone = { ...base(), destination: { ...base().destination, apps: [{ appId: '', taskIds: [] }], portName: undefined } };
    expect(g.destinationNodes(gone)).toEqual([{ id: 'host:node-2', label: 'node-2 (unmanaged port)', kind: 'host' }]);
    expect(g.destinationText(gone)).toBe('unmanaged:31090 @ node-2');
    expect(g.portLabel(gone)).toBe('tcp/31090');
  });

  it('one edge per source, destination and verdict: counts summed, ports listed (more than 3 summarised)', () => {
    const ports = ['a', 'b', 'c', 'd', 'e'].map((name, i) => ({ ...base(), key: `k${i}`, packets: i + 1, destination: { ...base().destination, portName: name } }));
    const denied = { ...base(), key: 'kd', verdict: 'denied' as const, packets: 4 };
    const graph = g.buildGraph([...ports, denied]);
    expect(graph.nodes.map((n: { id: string }) => n.id)).toEqual(['app:/monitoring/prometheus', 'app:/shop/api']);
    expect(edgeText(graph)).toEqual(['app:/monitoring/prometheus -> app:/shop/api allowed a, b, c, +2 ×15', 'app:/monitoring/prometheus -> app:/shop/api denied metrics ×4']);
  });

  it('merges changed aggregates by key and sorts as /flows does', () => {
    const flows = fixtureFlows();
    const changed = { ...flows[4]!, packets: 100 };
    const merged = g.mergeFlows(flows, [changed, liveFlow()]);
    expect(merged.map((f: FixtureFlow) => [f.key, f.packets])).toEqual([
      ['a000000000000005', 100],
      ['a000000000000001', 40],
      ['a000000000000006', 12],
      ['a000000000000002', 7],
      ['a000000000000003', 3],
      ['a000000000000004', 2],
    ]);
  });

  it('the DECIDED BY text is the tier and the rule', () => {
    const [allowed, denied] = fixtureFlows();
    expect(g.decidedText(allowed)).toBe('policy: web-to-api');
    expect(g.decidedText(denied)).toBe('default');
  });
});
