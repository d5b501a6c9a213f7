// @ts-check
/**
 * The only way the dashboard makes elements. Text from the server (app ids, labels, host names,
 * reasons) is untrusted: it goes in through `textContent` and attribute setters only, never as
 * markup, so nothing it holds can become an element or a script.
 */

/**
 * An element with attributes and children (strings become text nodes).
 * @param {string} tag
 * @param {Record<string, string | number | boolean | undefined>} [attrs]
 * @param {...(Node | string | number | null | undefined)} children
 * @returns {HTMLElement}
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) continue;
    node.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === 'object' ? child : document.createTextNode(String(child)));
  }
  return node;
}

/**
 * Replaces the children of `parent`.
 * @param {Element} parent
 * @param {...(Node | string)} children
 */
export function replace(parent, ...children) {
  parent.replaceChildren(...children);
}

/**
 * `2026-12-01 16:17:31Z` from an ISO time; '' for none, the text itself when it is not a time.
 * @param {string | null | undefined} iso
 */
export function shortTime(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : `${d.toISOString().slice(0, 19).replace('T', ' ')}Z`;
}

/**
 * A table of `rows`, or a line saying there are none.
 * @param {readonly string[]} headers
 * @param {readonly (readonly (Node | string | number | null | undefined)[])[]} rows
 * @param {string} empty
 * @param {(row: number) => Record<string, string | undefined>} [rowAttrs]
 */
export function table(headers, rows, empty, rowAttrs) {
  if (rows.length === 0) return el('p', { class: 'empty' }, empty);
  return el(
    'table',
    {},
    el('thead', {}, el('tr', {}, ...headers.map((h) => el('th', { scope: 'col' }, h)))),
    el('tbody', {}, ...rows.map((cells, i) => el('tr', rowAttrs ? rowAttrs(i) : {}, ...cells.map((c) => el('td', {}, c))))),
  );
}
