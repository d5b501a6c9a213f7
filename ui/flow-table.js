// @ts-check
/**
 * The flow table and its filters. The filters are the query of /flows and /flows/events
 * (flows-spec section 5): from, to, port, direction, verdict (a comma list), since; the server filters,
 * the page only shows what it answered. The table has the columns of `portcullis flows`.
 */
import { el, replace, shortTime, table } from './dom.js';
import { VERDICTS, decidedText, destinationText, sourceText } from './flow-graph.js';

/** @typedef {import('./flow-graph.js').ObservedFlow} ObservedFlow */

/** The filters that are one form field each (the verdicts are three check boxes). */
export const FIELD_FILTERS = /** @type {const} */ (['from', 'to', 'port', 'direction', 'since']);

/**
 * The query string of the filter form: only the filters that are set.
 * @param {HTMLFormElement} form
 * @returns {URLSearchParams}
 */
export function filterQuery(form) {
  const q = new URLSearchParams();
  for (const name of FIELD_FILTERS) {
    const input = /** @type {HTMLInputElement | HTMLSelectElement | null} */ (form.elements.namedItem(name));
    const value = input?.value.trim() ?? '';
    if (value !== '') q.set(name, value);
  }
  const verdicts = VERDICTS.filter((v) => /** @type {HTMLInputElement | null} */ (form.elements.namedItem(`verdict-${v}`))?.checked);
  // All three ticked is the same as none: no verdict filter.
  if (verdicts.length > 0 && verdicts.length < VERDICTS.length) q.set('verdict', verdicts.join(','));
  return q;
}

/**
 * Sets one text filter of the form (a node picked on the map).
 * @param {HTMLFormElement} form
 * @param {'from' | 'to'} name
 * @param {string} value
 */
export function setFilter(form, name, value) {
  const input = /** @type {HTMLInputElement | null} */ (form.elements.namedItem(name));
  if (input) input.value = value;
}

/**
 * Fills `container` with the table of `flows`.
 * @param {HTMLElement} container
 * @param {readonly ObservedFlow[]} flows
 */
export function showFlowTable(container, flows) {
  const rows = flows.map((f) => [
    shortTime(f.lastSeen),
    el('span', { class: `verdict verdict-${f.verdict}` }, f.verdict),
    f.direction,
    sourceText(f),
    destinationText(f),
    f.destination.protocol,
    f.packets,
    el('span', { title: f.decidedBy.at ? `${f.decidedBy.reason} (${f.decidedBy.at})` : f.decidedBy.reason }, decidedText(f)),
  ]);
  replace(
    container,
    table(
      ['Last seen', 'Verdict', 'Direction', 'Source', 'Destination', 'Proto', 'Conns', 'Decided by'],
      rows,
      'No flows recorded for these filters.',
      (i) => ({ 'data-key': flows[i]?.key, 'data-verdict': flows[i]?.verdict }),
    ),
  );
}

/**
 * Fills `container` with the connections that could not be recorded (a full flow set).
 * @param {HTMLElement} container
 * @param {readonly { reportedBy: string, direction: string, verdict: string, family: number, packets: number }[]} lost
 */
export function showLost(container, lost) {
  const rows = lost.filter((l) => l.packets > 0).map((l) => [l.reportedBy, l.direction, l.verdict, `IPv${l.family}`, l.packets]);
  replace(
    container,
    rows.length === 0
      ? el('p', { class: 'empty' }, 'Every new connection was recorded (no flow set was full).')
      : el('div', {}, el('p', {}, 'New connections that could not be recorded because a flow set was full (traffic was not affected):'), table(['Host', 'Direction', 'Verdict', 'Family', 'Conns'], rows, '')),
  );
}

/**
 * The partial-view warning of a /flows answer merged over controller replicas (its `replicas`),
 * or '' when every replica answered. Names come from peers: untrusted text, shown as text only.
 * @param {unknown} replicas
 */
export function partialViewWarning(replicas) {
  if (!Array.isArray(replicas)) return '';
  const missing = replicas.filter((r) => r !== null && typeof r === 'object' && r.ok === false);
  if (missing.length === 0) return '';
  const names = missing.slice(0, 10).map((r) => String(r.name).slice(0, 100)).join(', ');
  return `Partial view: ${missing.length} of ${replicas.length} controller replicas did not answer (${names}${missing.length > 10 ? ', …' : ''}); the flows their agents reported are missing.`;
}
