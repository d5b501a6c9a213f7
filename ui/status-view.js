// @ts-check
/**
 * The parts of the page drawn from the controller's /status document (docs/status.md): the
 * policy and inventory in force, per-group modes, the agents and their sync state, rejected
 * labels and the other compile reports. Fields a controller of another release lacks are shown
 * as absent, never guessed.
 */
import { el, replace, shortTime, table } from './dom.js';

/**
 * @param {unknown} v
 * @returns {Record<string, any>}
 */
const obj = (v) => (v !== null && typeof v === 'object' ? /** @type {Record<string, any>} */ (v) : {});

/**
 * @param {unknown} v
 * @returns {any[]}
 */
const list = (v) => (Array.isArray(v) ? v : []);

/** @param {unknown} v */
const text = (v) => (v === null || v === undefined ? '' : String(v));

/**
 * @param {boolean} ok
 * @param {string} yes
 * @param {string} no
 */
const badge = (ok, yes, no) => el('span', { class: ok ? 'ok' : 'bad' }, ok ? yes : no);

/** @param {unknown} v a version hash */
const version = (v) => (typeof v === 'string' ? el('code', {}, v) : '—');

/**
 * The overview line: ready, policy, inventory, agent counts, group modes.
 * @param {HTMLElement} container
 * @param {unknown} status
 */
export function showOverview(container, status) {
  const s = obj(status);
  const policy = obj(s.policy);
  const inventory = obj(s.inventory);
  const counts = obj(s.agentCounts);
  const items = [
    el('li', {}, 'Controller: ', badge(s.ready === true, 'ready', 'not ready'), s.reason ? ` — ${text(s.reason)}` : ''),
    el('li', {}, 'Policy: ', badge(policy.valid === true, 'valid', 'invalid edit in place'), ` ${text(policy.path)}`, policy.loadedAt ? `, loaded ${shortTime(policy.loadedAt)}` : ''),
    el('li', {}, `Inventory: ${text(inventory.source)}`, inventory.ready === true ? `, ${text(inventory.hosts)} hosts, ${text(inventory.apps)} apps, ${text(inventory.tasks)} tasks` : ', not loaded', inventory.stale ? ` (stale: ${text(inventory.reason)})` : ''),
    el('li', {}, `Agents: ${text(counts.connected ?? 0)} connected, ${text(counts.inSync ?? 0)} in sync, ${text(counts.known ?? 0)} known`),
  ];
  if (s.flows !== null && typeof s.flows === 'object') {
    const f = obj(s.flows);
    const range = f.oldest ? `, ${shortTime(f.oldest)} to ${shortTime(f.newest)}` : '';
    const lost = Number(f.lost) > 0 ? `; ${text(f.lost)} new connections could not be recorded` : '';
    items.push(el('li', {}, `Flows kept: ${text(f.records ?? 0)} aggregates in ${text(f.windows ?? 0)} windows${range}${lost}`));
  }
  const modes = list(s.groupModes);
  if (modes.length > 0) {
    items.push(el('li', {}, 'Group modes: ', ...modes.flatMap((m, i) => [i > 0 ? ', ' : '', el('span', { class: `mode mode-${obj(m).mode === 'audit' ? 'audit' : 'enforce'}` }, `${text(obj(m).group)}: ${text(obj(m).mode)}`)])));
  }
  const problems = [...list(obj(policy.lastError).diagnostics), ...list(policy.warnings)].map((d) => el('li', { class: 'diagnostic' }, text(d)));
  replace(container, el('ul', { class: 'overview' }, ...items), ...(problems.length ? [el('ul', { class: 'diagnostics' }, ...problems)] : []));
}

/**
 * The agents table: one row per host, its sync state, egress and flow recording.
 * @param {HTMLElement} container
 * @param {unknown} status
 */
export function showAgents(container, status) {
  const agents = list(obj(status).agents).map(obj);
  const rows = agents.map((a) => {
    const egress = a.egress === null || a.egress === undefined ? null : obj(a.egress);
    const flows = a.flows === null || a.flows === undefined ? null : obj(a.flows);
    return [
      text(a.hostId),
      a.connected ? badge(true, 'connected', '') : el('span', { class: 'bad' }, a.lastSeen ? `lost (last ${shortTime(a.lastSeen)})` : 'never'),
      a.desiredVersion === null || a.desiredVersion === undefined || (!a.connected && !a.appliedVersion) ? '—' : badge(a.inSync === true, 'in sync', 'behind'),
      version(a.appliedVersion),
      version(a.desiredVersion),
      text(a.agentVersion) || '—',
      egress === null ? '—' : egress.enforcing ? 'per app' : `host level${egress.reason ? `: ${text(egress.reason)}` : ''}`,
      flows === null ? '—' : flows.recording ? `every ${text(flows.intervalSeconds)} s` : `off${flows.reason ? `: ${text(flows.reason)}` : ''}`,
      a.lastError ? el('span', { class: 'bad' }, text(a.lastError)) : '',
    ];
  });
  replace(
    container,
    table(['Host', 'Stream', 'Sync', 'Applied', 'Desired', 'Agent', 'Egress', 'Flow recording', 'Last error'], rows, 'No hosts have a state and no agent connected yet.', (i) => ({
      'data-host': text(agents[i]?.hostId),
    })),
  );
}

const LABEL_KINDS = new Set(['label-rejected', 'label-unknown-name']);

/**
 * Rejected labels (label declarations the guardrails refused) and the other compile reports.
 * @param {HTMLElement} labels
 * @param {HTMLElement} reports
 * @param {unknown} status
 */
export function showReports(labels, reports, status) {
  const all = list(obj(obj(status).compile).reports).map(obj);
  const row = (/** @type {Record<string, any>} */ r) => [text(r.kind), text(r.appId), [r.hostId, r.taskId].filter(Boolean).map(text).join(' / '), text(r.message)];
  replace(labels, table(['Kind', 'App', 'Host / task', 'Why'], all.filter((r) => LABEL_KINDS.has(r.kind)).map(row), 'No label declarations were rejected.'));
  replace(reports, table(['Kind', 'App', 'Host / task', 'Message'], all.filter((r) => !LABEL_KINDS.has(r.kind)).map(row), 'The compiler reported no problems.'));
}
