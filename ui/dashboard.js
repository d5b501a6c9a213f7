// @ts-check
/**
 * The Portcullis dashboard (README "Dashboard"): one page served by the controller's status
 * listener at /ui/, reading the same endpoints as the CLI, resolved against the page so a
 * reverse proxy may mount it under a prefix:
 *   /status        every 5 s: agents, policy, group modes, rejected labels, compile reports
 *   /flows         on load and when the filters change: the flow table and the dependency map
 *   /flows/events  Server-Sent Events (`event: flows`): changed aggregates, merged as they come;
 *                  the page reads /flows again shortly after, for the totals over the range
 * A failed read or a broken event stream shows "connection lost" until both work again. The
 * filters live in the page's query string, so a reload or a shared link keeps them.
 */
import { el, replace, shortTime } from './dom.js';
import { mergeFlows } from './flow-graph.js';
import { FlowMap } from './flow-map.js';
import { FIELD_FILTERS, filterQuery, partialViewWarning, setFilter, showFlowTable, showLost } from './flow-table.js';
import { showAgents, showOverview, showReports } from './status-view.js';

/** @typedef {import('./flow-graph.js').ObservedFlow} ObservedFlow */

const STATUS_EVERY_MS = 5000;
/** After an event, /flows is read again at most this often (events come at most 1/s). */
const RELOAD_AFTER_EVENT_MS = 2000;
/** What /flows answers at most without a `limit` (flows-spec section 5). */
const FLOWS_LIMIT = 1000;

/** @param {string} id */
function byId(id) {
  const node = document.getElementById(id);
  if (!node) throw new Error(`the page has no #${id}`);
  return node;
}

/** @param {string} path an endpoint of the status listener, relative to its root */
const api = (path) => new URL(`../${path}`, document.baseURI).toString();

/**
 * The aggregates of an answer or an event that have the shape the page reads; others are skipped.
 * @param {unknown} v
 * @returns {ObservedFlow[]}
 */
function flowsOf(v) {
  const flows = v !== null && typeof v === 'object' ? /** @type {{ flows?: unknown }} */ (v).flows : undefined;
  if (!Array.isArray(flows)) return [];
  return flows.filter(
    (f) =>
      f !== null &&
      typeof f === 'object' &&
      typeof f.key === 'string' &&
      typeof f.packets === 'number' &&
      f.source !== null && typeof f.source === 'object' && Array.isArray(f.source.apps) && Array.isArray(f.source.networks) &&
      f.destination !== null && typeof f.destination === 'object' && Array.isArray(f.destination.apps) &&
      f.decidedBy !== null && typeof f.decidedBy === 'object',
  );
}

class Dashboard {
  constructor() {
    this.form = /** @type {HTMLFormElement} */ (byId('filters'));
    this.connection = byId('connection');
    this.filterError = byId('filter-error');
    this.replicasWarning = byId('replicas-warning');
    this.flowCount = byId('flow-count');
    /** @type {ObservedFlow[]} */
    this.flows = [];
    this.query = new URLSearchParams();
    /** Reads of /flows started, and the number of the latest one for a filter change. */
    this.flowsAsked = 0;
    this.filterAsked = 0;
    /** @type {EventSource | undefined} */
    this.events = undefined;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.reloadTimer = undefined;
    this.statusOk = true;
    this.flowsOk = true;
    this.streamOk = true;
    /**
     * The last /flows answer named peer replicas: their records are merged into /flows, but
     * /flows/events carries only this replica's changes, so /flows is re-read on the status
     * interval too.
     */
    this.hasPeers = false;
    /** @type {string | undefined} */
    this.lostSince = undefined;
    this.picked = byId('picked');
    this.map = new FlowMap(byId('map'), byId('map-summary'), (node) => this.pick(node));
  }

  start() {
    const initial = new URLSearchParams(location.search);
    for (const name of FIELD_FILTERS) {
      const input = /** @type {HTMLInputElement | HTMLSelectElement | null} */ (this.form.elements.namedItem(name));
      if (input) input.value = initial.get(name) ?? '';
    }
    const verdicts = (initial.get('verdict') ?? '').split(',').filter(Boolean);
    for (const v of ['allowed', 'denied', 'audit']) {
      const box = /** @type {HTMLInputElement | null} */ (this.form.elements.namedItem(`verdict-${v}`));
      if (box) box.checked = verdicts.length === 0 || verdicts.includes(v);
    }
    this.form.addEventListener('submit', (event) => {
      event.preventDefault();
      void this.applyFilters();
    });
    // After the reset has cleared the fields.
    this.form.addEventListener('reset', () => setTimeout(() => void this.applyFilters(), 0));
    void this.applyFilters();
    void this.loadStatus();
    setInterval(() => {
      void this.loadStatus();
      // Nothing shown yet because the first read failed: try the filters again (filters the
      // controller refused wait for the person to change them). A stream the browser gave up
      // on (an HTTP error) is opened again; a failed read of /flows is retried.
      if (this.events === undefined) {
        if (!this.flowsOk) void this.applyFilters();
      } else if (this.events.readyState === EventSource.CLOSED) this.openEvents();
      else if (!this.flowsOk || this.hasPeers) void this.loadFlows();
    }, STATUS_EVERY_MS);
  }

  /** Reads /flows with the form's filters; when the controller takes them, follows their events. */
  async applyFilters() {
    const query = filterQuery(this.form);
    if (await this.loadFlows(query, true)) {
      this.query = query;
      const search = query.toString();
      history.replaceState(null, '', search ? `?${search}` : location.pathname);
      this.openEvents();
    }
  }

  async loadStatus() {
    try {
      const res = await fetch(api('status'), { cache: 'no-store' });
      if (!res.ok) throw new Error(`/status answered ${res.status}`);
      const status = await res.json();
      showOverview(byId('overview'), status);
      showAgents(byId('agents'), status);
      showReports(byId('labels'), byId('reports'), status);
      byId('status-time').textContent = `updated ${shortTime(new Date().toISOString())}`;
      this.setHealth('statusOk', true);
    } catch {
      this.setHealth('statusOk', false);
    }
  }

  /**
   * Shows /flows for `query` (by default the filters in force); false when the controller
   * refused the filters (what is shown stays), could not be read, or a later read made this
   * one's answer stale: a new filter change overtakes everything before it; a refresh is
   * dropped when any read started after it or the filters changed meanwhile.
   * @param {URLSearchParams} [query]
   * @param {boolean} [filterChange] the filters of the form, not yet in force
   */
  async loadFlows(query = this.query, filterChange = false) {
    const search = query.toString();
    const asked = ++this.flowsAsked;
    if (filterChange) this.filterAsked = asked;
    const stale = () => (filterChange ? asked !== this.filterAsked : asked !== this.flowsAsked || search !== this.query.toString());
    try {
      const res = await fetch(api(`flows${search ? `?${search}` : ''}`), { cache: 'no-store' });
      const body = await res.json().catch(() => ({}));
      if (stale()) return false;
      this.setHealth('flowsOk', res.ok || res.status === 400);
      if (res.status === 400) {
        this.filterError.textContent = `The controller refused these filters: ${String(body.error ?? 'bad request')}`;
        return false;
      }
      if (!res.ok) return false;
      this.filterError.textContent = '';
      this.replicasWarning.textContent = partialViewWarning(body.replicas);
      this.hasPeers = Array.isArray(body.replicas) && body.replicas.length > 1;
      this.flows = flowsOf(body);
      this.showFlows();
      showLost(byId('lost'), Array.isArray(body.lost) ? body.lost : []);
      return true;
    } catch {
      if (!stale()) this.setHealth('flowsOk', false);
      return false;
    }
  }

  openEvents() {
    this.events?.close();
    const query = this.query.toString();
    const events = new EventSource(api(`flows/events${query ? `?${query}` : ''}`));
    this.events = events;
    events.addEventListener('open', () => {
      this.setHealth('streamOk', true);
      // What happened while the stream was down is only in /flows.
      this.scheduleReload();
    });
    events.addEventListener('error', () => this.setHealth('streamOk', false));
    events.addEventListener('flows', (event) => {
      let changed;
      try {
        changed = flowsOf(JSON.parse(/** @type {MessageEvent} */ (event).data));
      } catch {
        return; // not JSON: nothing to merge
      }
      this.flows = mergeFlows(this.flows, changed);
      this.showFlows();
      this.scheduleReload();
    });
  }

  scheduleReload() {
    if (this.reloadTimer !== undefined) return;
    this.reloadTimer = setTimeout(() => {
      this.reloadTimer = undefined;
      void this.loadFlows();
    }, RELOAD_AFTER_EVENT_MS);
  }

  showFlows() {
    this.map.show(this.flows);
    showFlowTable(byId('flow-table'), this.flows);
    const total = this.flows.reduce((n, f) => n + f.packets, 0);
    const limit = Number(this.query.get('limit') ?? FLOWS_LIMIT);
    const capped = this.flows.length >= limit ? ` (the ${limit} with the most connections: narrow the filters to see others)` : '';
    this.flowCount.textContent = `${this.flows.length} flow${this.flows.length === 1 ? '' : 's'}, ${total} connection${total === 1 ? '' : 's'}${capped}`;
  }

  /** @param {{ id: string, kind: string, label: string }} node */
  pick(node) {
    // The filter value of a node: its app id, network name, address or host id.
    const value = node.id.slice(node.id.indexOf(':') + 1);
    const button = (/** @type {'from' | 'to'} */ name, /** @type {string} */ label) => {
      const b = el('button', { type: 'button' }, label);
      b.addEventListener('click', () => {
        setFilter(this.form, name, value);
        void this.applyFilters();
      });
      return b;
    };
    replace(this.picked, el('span', {}, `${node.kind} `, el('strong', {}, value), ': '), button('from', 'flows from it'), ' ', ...(node.kind === 'app' || node.kind === 'host' ? [button('to', 'flows to it')] : []));
  }

  /**
   * @param {'statusOk' | 'flowsOk' | 'streamOk'} part
   * @param {boolean} ok
   */
  setHealth(part, ok) {
    this[part] = ok;
    const live = this.statusOk && this.flowsOk && this.streamOk;
    if (!live && this.lostSince === undefined) this.lostSince = new Date().toISOString();
    if (live) this.lostSince = undefined;
    this.connection.setAttribute('data-state', live ? 'live' : 'lost');
    this.connection.textContent = live ? 'Live' : `Connection lost since ${shortTime(this.lostSince)}: retrying`;
  }
}

const dashboard = new Dashboard();
// For a person at the console and for the browser test: the graph as drawn.
Object.defineProperty(window, 'portcullisDashboard', { value: Object.freeze({ cy: dashboard.map.cy, flows: () => dashboard.flows }) });
dashboard.start();
