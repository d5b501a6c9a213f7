// @ts-check
/**
 * The app dependency map: cytoscape (served from node_modules at vendor/cytoscape.js) draws the
 * graph of flow-graph.js on a canvas. Labels are canvas text taken from element data, never
 * markup. Verdicts differ by colour AND line style (allowed solid green, denied dashed red,
 * audit dotted amber), as the legend beside the map says.
 */
import cytoscape from './vendor/cytoscape.js';
import { buildGraph } from './flow-graph.js';

/** @typedef {import('./flow-graph.js').ObservedFlow} ObservedFlow */

const STYLE = [
  {
    selector: 'node',
    style: {
      label: 'data(label)',
      'font-size': 11,
      'text-valign': 'bottom',
      'text-margin-y': 4,
      'text-wrap': 'ellipsis',
      'text-max-width': '180px',
      color: '#1d2733',
      'background-color': '#4a6fa5',
      width: 26,
      height: 26,
    },
  },
  { selector: 'node[kind = "app"]', style: { shape: 'round-rectangle', 'background-color': '#4a6fa5' } },
  { selector: 'node[kind = "host"]', style: { shape: 'ellipse', 'background-color': '#7a8796' } },
  { selector: 'node[kind = "network"]', style: { shape: 'hexagon', 'background-color': '#5b8c5a' } },
  { selector: 'node[kind = "outside"]', style: { shape: 'diamond', 'background-color': '#a05c7b' } },
  {
    selector: 'edge',
    style: {
      label: 'data(label)',
      'font-size': 10,
      'curve-style': 'bezier',
      'target-arrow-shape': 'triangle',
      width: 2,
      'text-background-color': '#ffffff',
      'text-background-opacity': 0.85,
      'text-background-padding': '2px',
      'text-rotation': 'autorotate',
    },
  },
  { selector: 'edge[verdict = "allowed"]', style: { 'line-color': '#2e7d32', 'target-arrow-color': '#2e7d32', 'line-style': 'solid' } },
  { selector: 'edge[verdict = "denied"]', style: { 'line-color': '#c62828', 'target-arrow-color': '#c62828', 'line-style': 'dashed' } },
  { selector: 'edge[verdict = "audit"]', style: { 'line-color': '#e0a100', 'target-arrow-color': '#e0a100', 'line-style': 'dotted', width: 3 } },
  { selector: ':selected', style: { 'overlay-opacity': 0.15, 'overlay-color': '#1d2733' } },
];

export class FlowMap {
  /**
   * @param {HTMLElement} container
   * @param {HTMLElement} summary an element whose data- attributes say what is drawn (for tests and assistive text)
   * @param {(node: { id: string, kind: string, label: string }) => void} onPick
   */
  constructor(container, summary, onPick) {
    this.summary = summary;
    /** @type {string} */
    this.shape = '';
    this.cy = cytoscape({ container, style: STYLE, wheelSensitivity: 0.3, minZoom: 0.2, maxZoom: 3 });
    this.cy.on('tap', 'node', (event) => {
      const d = event.target.data();
      onPick({ id: d.id, kind: d.kind, label: d.label });
    });
  }

  /**
   * Draws `flows`; lays the graph out again only when its nodes or edges changed.
   * @param {readonly ObservedFlow[]} flows
   */
  show(flows) {
    const { nodes, edges } = buildGraph(flows);
    const shape = JSON.stringify([nodes.map((n) => n.id), edges.map((e) => e.id)]);
    const cy = this.cy;
    cy.batch(() => {
      const keep = new Set([...nodes.map((n) => n.id), ...edges.map((e) => e.id)]);
      cy.elements().filter((e) => !keep.has(e.id())).remove();
      // Only what changed is touched: a live event usually changes a count or two.
      for (const n of nodes) {
        const existing = cy.getElementById(n.id);
        if (existing.empty()) cy.add({ group: 'nodes', data: { ...n } });
        else if (existing.data('label') !== n.label) existing.data('label', n.label);
      }
      for (const e of edges) {
        const existing = cy.getElementById(e.id);
        if (existing.empty()) cy.add({ group: 'edges', data: { ...e, ports: [...e.ports] } });
        else if (existing.data('label') !== e.label) existing.data({ label: e.label, packets: e.packets, ports: [...e.ports] });
      }
    });
    if (shape !== this.shape) {
      this.shape = shape;
      // Sources above the apps they reach: the map reads top down, the same on every refresh.
      cy.layout({ name: 'breadthfirst', directed: true, animate: false, spacingFactor: 1.1, nodeDimensionsIncludeLabels: true, padding: 30 }).run();
      cy.fit(undefined, 30);
    }
    this.summary.setAttribute('data-nodes', String(nodes.length));
    this.summary.setAttribute('data-edges', String(edges.length));
    this.summary.textContent = `${nodes.length} node${nodes.length === 1 ? '' : 's'}, ${edges.length} edge${edges.length === 1 ? '' : 's'}`;
  }
}
