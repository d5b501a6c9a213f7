// @ts-check
/**
 * From the ObservedFlow records of /flows (flows-spec section 5) to what the page shows: the
 * nodes and edges of the dependency map, and the text of a table row. Pure (no DOM), so the
 * same functions draw the map and fill the table.
 *
 * Nodes: an app (the destination's owners; the source app of an egress record, or the one app
 * of a source host), a cluster host whose several apps could all have opened the connection,
 * a named network of the policy, an outside address. Edges: one per (source node, destination
 * node, verdict), summing the connections of its flows and listing their ports.
 */

/**
 * @typedef {{ appId: string, taskIds: readonly string[] }} FlowEndpointApp
 * @typedef {{
 *   key: string, direction: 'ingress' | 'egress', verdict: 'allowed' | 'denied' | 'audit', reportedBy: string,
 *   source: { address: string, kind: 'app' | 'host' | 'network' | 'outside', hostId?: string, apps: readonly string[], networks: readonly string[] },
 *   destination: { hostId: string, address: string, protocol: 'tcp' | 'udp', port: number, apps: readonly FlowEndpointApp[], portName?: string },
 *   decidedBy: { tier: string, rule?: string, at?: string, reason: string },
 *   packets: number, bytes: number, firstSeen: string, lastSeen: string,
 * }} ObservedFlow
 * @typedef {{ id: string, label: string, kind: 'app' | 'host' | 'network' | 'outside' }} GraphNode
 * @typedef {{ id: string, source: string, target: string, verdict: string, packets: number, ports: string[], label: string }} GraphEdge
 */

export const VERDICTS = /** @type {const} */ (['allowed', 'denied', 'audit']);

/**
 * The source of a flow as a node.
 * @param {ObservedFlow} flow
 * @returns {GraphNode}
 */
export function sourceNode(flow) {
  const s = flow.source;
  if (s.kind === 'app' || (s.kind === 'host' && s.apps.length === 1)) return appNode(s.apps[0] ?? '');
  if (s.kind === 'host') {
    const host = s.hostId ?? s.address;
    return { id: `host:${host}`, label: s.apps.length ? `${host} (${s.apps.join(', ')})` : `${host} (host)`, kind: 'host' };
  }
  if (s.kind === 'network' && s.networks.length > 0) return { id: `net:${s.networks[0]}`, label: `${s.networks[0]} (network)`, kind: 'network' };
  return { id: `addr:${s.address}`, label: s.address, kind: 'outside' };
}

/**
 * @param {string} appId
 * @returns {GraphNode}
 */
function appNode(appId) {
  return { id: `app:${appId}`, label: appId, kind: 'app' };
}

/**
 * The destination of a flow as nodes: each owner of the claim (one, except on a shared port).
 * @param {ObservedFlow} flow
 * @returns {GraphNode[]}
 */
export function destinationNodes(flow) {
  const owners = flow.destination.apps.map((a) => a.appId).filter((id) => id !== '');
  if (owners.length === 0) return [{ id: `host:${flow.destination.hostId}`, label: `${flow.destination.hostId} (unmanaged port)`, kind: 'host' }];
  return owners.map(appNode);
}

/**
 * The port as the policy names it: its name when it has one, else proto/number.
 * @param {ObservedFlow} flow
 */
export function portLabel(flow) {
  return flow.destination.portName || `${flow.destination.protocol}/${flow.destination.port}`;
}

/**
 * The nodes and edges of `flows`, in a stable order (nodes by id, edges by id).
 * @param {readonly ObservedFlow[]} flows
 * @returns {{ nodes: GraphNode[], edges: GraphEdge[] }}
 */
export function buildGraph(flows) {
  /** @type {Map<string, GraphNode>} */
  const nodes = new Map();
  /** @type {Map<string, GraphEdge>} */
  const edges = new Map();
  for (const flow of flows) {
    const from = sourceNode(flow);
    nodes.set(from.id, from);
    for (const to of destinationNodes(flow)) {
      if (!nodes.has(to.id)) nodes.set(to.id, to);
      const id = JSON.stringify([from.id, to.id, flow.verdict]);
      const edge = edges.get(id) ?? { id, source: from.id, target: to.id, verdict: flow.verdict, packets: 0, ports: [], label: '' };
      edge.packets += flow.packets;
      const port = portLabel(flow);
      if (!edge.ports.includes(port)) edge.ports.push(port);
      edges.set(id, edge);
    }
  }
  for (const edge of edges.values()) {
    edge.ports.sort();
    const shown = edge.ports.length > 3 ? [...edge.ports.slice(0, 3), `+${edge.ports.length - 3}`] : edge.ports;
    edge.label = `${shown.join(', ')} ×${edge.packets}`;
  }
  const byId = (/** @type {{ id: string }} */ a, /** @type {{ id: string }} */ b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
  return { nodes: [...nodes.values()].sort(byId), edges: [...edges.values()].sort(byId) };
}

/**
 * The SOURCE column: the app(s), network or address, with the host.
 * @param {ObservedFlow} flow
 */
export function sourceText(flow) {
  const s = flow.source;
  const at = s.hostId ? ` @ ${s.hostId}` : '';
  if (s.kind === 'app' || s.kind === 'host') return `${s.apps.length ? s.apps.join(', ') : s.address}${at}`;
  if (s.kind === 'network') return `${s.networks.join(', ')} (${s.address})`;
  return s.address;
}

/**
 * The DESTINATION column: app:portname (or app:port) of each owner, with the host.
 * @param {ObservedFlow} flow
 */
export function destinationText(flow) {
  const d = flow.destination;
  const port = d.portName || String(d.port);
  const owners = d.apps.map((a) => a.appId).filter((id) => id !== '');
  const at = ` @ ${d.hostId}${d.address ? ` (${d.address})` : ''}`;
  return `${owners.length ? owners.map((id) => `${id}:${port}`).join(', ') : `unmanaged:${d.port}`}${at}`;
}

/**
 * The DECIDED BY column: the tier and the rule.
 * @param {ObservedFlow} flow
 */
export function decidedText(flow) {
  const d = flow.decidedBy;
  return d.rule ? `${d.tier}: ${d.rule}` : d.tier;
}

/**
 * Merges `changed` aggregates into `flows` by key (a changed one replaces the one it updates),
 * sorted as /flows sorts: packets descending, then key.
 * @param {readonly ObservedFlow[]} flows
 * @param {readonly ObservedFlow[]} changed
 * @returns {ObservedFlow[]}
 */
export function mergeFlows(flows, changed) {
  const byKey = new Map(flows.map((f) => [f.key, f]));
  for (const f of changed) byKey.set(f.key, f);
  return [...byKey.values()].sort((a, b) => b.packets - a.packets || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}
