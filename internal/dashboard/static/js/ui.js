// ui.js: DOM helpers shared by every page. Everything that came from the
// API is put into the page as text (text nodes, textContent, attribute
// values), never parsed as markup: hostnames, script output and audit
// payloads are attacker-controlled.

const SVGNS = 'http://www.w3.org/2000/svg';

// Properties set as DOM properties rather than attributes.
const PROPS = new Set(['value', 'checked', 'disabled', 'open', 'hidden', 'selected', 'required', 'readOnly', 'multiple']);

function build(el, attrs, children, svg) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class' && !svg) el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (PROPS.has(k) && !svg) el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  add(el, children);
  return el;
}

// add appends children: nodes as they are, anything else as text.
export function add(el, ...children) {
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

// h builds an HTML element: h('a', {href: '/x', class: 'y'}, 'text').
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children, false);
}

// s builds an SVG element.
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVGNS, tag), attrs, children, true);
}

export function clear(el) {
  el.replaceChildren();
  return el;
}

// seg encodes one path segment of an internal URL.
export const seg = (v) => encodeURIComponent(String(v));

// link is an internal link handled by the router.
export function link(href, ...children) {
  return h('a', { href }, ...children);
}

// ---- formatting -------------------------------------------------------

const pad = (n) => String(n).padStart(2, '0');

export function isZeroTime(iso) {
  return !iso || iso.startsWith('0001-01-01');
}

// fmtTime shows a time in the browser's zone: 2025-11-27 15:04:05.
export function fmtTime(iso) {
  if (isZeroTime(iso)) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

// ago is a short relative time: "12 s ago", "3 h ago".
export function ago(iso, now = Date.now()) {
  if (isZeroTime(iso)) return 'never';
  const sec = Math.round((now - new Date(iso).getTime()) / 1000);
  if (sec < 0) return 'in ' + span(-sec);
  if (sec < 2) return 'just now';
  return span(sec) + ' ago';
}

// span formats a number of seconds: 45 s, 12 min, 3 h, 2 d.
export function span(sec) {
  if (sec < 60) return `${sec} s`;
  if (sec < 3600) return `${Math.floor(sec / 60)} min`;
  if (sec < 86400) return `${Math.floor(sec / 3600)} h`;
  return `${Math.floor(sec / 86400)} d`;
}

// timeCell shows a relative time with the exact time as a tooltip.
export function timeCell(iso) {
  return h('time', { datetime: isZeroTime(iso) ? null : iso, title: fmtTime(iso) }, ago(iso));
}

export function duration(ms) {
  if (ms == null || Number.isNaN(ms)) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
  const m = Math.floor(ms / 60000);
  return `${m} min ${Math.round((ms % 60000) / 1000)} s`;
}

export function bytes(n) {
  if (n == null) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = Number(n);
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${v < 10 && i > 0 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}

export const num = (n) => Number(n || 0).toLocaleString('en-US');

// badge is a small coloured label; kind is ok, bad, warn, run or muted.
export function badge(text, kind = 'muted', title) {
  return h('span', { class: `badge ${kind}`, title }, text);
}

// stateBadge colours a per-PC execution state; timed_out reads "timed out".
export function stateBadge(state, title) {
  const kinds = { succeeded: 'ok', failed: 'bad', killed: 'bad', timed_out: 'bad', running: 'run', pending: 'muted', skipped: 'warn', 'never reached': 'warn' };
  return badge(state === 'timed_out' ? 'timed out' : state, kinds[state] || 'muted', title);
}

// onlineBadge shows online / offline (and stale: offline for a week).
export function onlineBadge(agent) {
  if (agent.online) return badge('online', 'ok');
  const stale = Date.now() - new Date(agent.last_seen).getTime() > STALE_MS;
  return stale ? badge('stale', 'warn', 'no heartbeat for 7 days or more') : badge('offline', 'bad');
}

// STALE_MS: an offline agent silent this long is counted as stale.
export const STALE_MS = 7 * 24 * 3600 * 1000;

// ---- page chrome ------------------------------------------------------

export function pageHeader(title, ...extra) {
  return h('div', { class: 'page-head' }, h('h1', null, title), extra.length ? h('div', { class: 'page-actions' }, extra) : null);
}

export function card(title, ...body) {
  return h('section', { class: 'card' }, title ? h('h2', null, title) : null, body);
}

// wideCard is a card that spans every column of a grid layout.
export function wideCard(title, ...body) {
  const c = card(title, ...body);
  c.classList.add('wide');
  return c;
}

export function errorBox(err) {
  return h('div', { class: 'error', role: 'alert' }, err && err.message ? err.message : String(err));
}

export function empty(text) {
  return h('p', { class: 'muted empty' }, text);
}

// kv is a definition list of [label, value] pairs.
export function kv(pairs) {
  return h('dl', { class: 'kv' }, pairs.filter(Boolean).map(([k, v]) => [h('dt', null, k), h('dd', null, v == null || v === '' ? '—' : v)]));
}

// ---- tables -----------------------------------------------------------

// table builds a data table. columns: [{key, label, render(row), sort,
// class}]. sort is the current sort key ("-key" for descending); onSort
// is called with the next one when a sortable header is clicked. Below
// the narrow breakpoint CSS turns rows into cards labelled by data-label.
export function table({ columns, rows, sort, onSort, empty: emptyText = 'Nothing to show.', rowClass, caption, id }) {
  const cur = (sort || '').replace(/^-/, '');
  const desc = (sort || '').startsWith('-');
  const head = h('tr', null, columns.map((c) => {
    const thClass = c.class && c.class.split(' ').includes('num') ? 'num' : null;
    if (!c.sort || !onSort) return h('th', { scope: 'col', class: thClass }, c.label);
    const active = cur === c.sort;
    const next = active && !desc ? '-' + c.sort : c.sort;
    return h('th', { scope: 'col', class: thClass, 'aria-sort': active ? (desc ? 'descending' : 'ascending') : null },
      h('button', { type: 'button', class: 'sort', dataset: { sort: c.sort }, onclick: () => onSort(next) },
        c.label, h('span', { class: 'arrow', 'aria-hidden': 'true' }, active ? (desc ? ' ▼' : ' ▲') : '')));
  }));
  const body = h('tbody', null);
  fillRows(body, columns, rows, emptyText, rowClass);
  return h('div', { class: 'table-wrap' }, h('table', { class: 'data', id }, caption ? h('caption', null, caption) : null, h('thead', null, head), body));
}

export function fillRows(body, columns, rows, emptyText, rowClass) {
  clear(body);
  if (!rows || rows.length === 0) {
    body.append(h('tr', { class: 'empty-row' }, h('td', { colspan: columns.length }, emptyText || 'Nothing to show.')));
    return;
  }
  for (const r of rows) {
    body.append(h('tr', { class: rowClass ? rowClass(r) : null }, columns.map((c) => {
      const v = c.render ? c.render(r) : r[c.key];
      return h('td', { class: c.class, dataset: { label: c.label } }, v == null || v === '' ? '—' : v);
    })));
  }
}

// pager shows "1–50 of 10,000" with previous / next buttons.
export function pager({ offset, limit, total, onPage }) {
  const from = total === 0 ? 0 : offset + 1;
  const to = Math.min(offset + limit, total);
  return h('div', { class: 'pager' },
    h('button', { type: 'button', class: 'secondary', disabled: offset <= 0, onclick: () => onPage(Math.max(0, offset - limit)) }, '‹ Previous'),
    h('span', { class: 'pager-info' }, `${num(from)}–${num(to)} of ${num(total)}`),
    h('button', { type: 'button', class: 'secondary', disabled: offset + limit >= total, onclick: () => onPage(offset + limit) }, 'Next ›'));
}

// output is a collapsible block of script output with its own scroll.
export function output(label, text, open = false) {
  if (!text) return null;
  return h('details', { class: 'output', open }, h('summary', null, `${label} (${text.length.toLocaleString('en-US')} chars)`), h('pre', null, text));
}

// ---- charts -----------------------------------------------------------

// bars draws a horizontal bar chart in inline SVG: one row per item,
// label and value as HTML text (crisp at any width), the bar as SVG.
// items: [{label, value, part?, href?}]; part (≤ value) is drawn darker
// (online agents of a version, say).
export function bars(items, { title, partLabel, valueLabel } = {}) {
  const max = Math.max(1, ...items.map((i) => i.value));
  const rows = items.map((i) => {
    const w = (i.value / max) * 100;
    const pw = i.part != null ? (i.part / max) * 100 : null;
    const svg = s('svg', { viewBox: '0 0 100 10', preserveAspectRatio: 'none', class: 'bar', role: 'img', 'aria-label': `${i.label}: ${i.value}` },
      s('rect', { x: 0, y: 0, width: 100, height: 10, class: 'bar-bg' }),
      s('rect', { x: 0, y: 0, width: w, height: 10, class: pw == null ? 'bar-fg solid' : 'bar-fg' }),
      pw != null ? s('rect', { x: 0, y: 0, width: pw, height: 10, class: 'bar-part' }) : null);
    const label = i.href ? link(i.href, i.label) : i.label;
    const value = i.part != null ? `${num(i.value)} (${num(i.part)} ${partLabel || ''})` : num(i.value);
    return h('div', { class: 'bar-row' }, h('span', { class: 'bar-label', title: i.label }, label), svg, h('span', { class: 'bar-value' }, value));
  });
  return h('figure', { class: 'chart' }, title ? h('figcaption', null, title) : null, rows.length ? rows : empty(valueLabel || 'No data.'));
}

// stack draws one horizontal stacked bar: parts [{label, value, kind}].
export function stack(parts) {
  const total = parts.reduce((a, p) => a + p.value, 0) || 1;
  let x = 0;
  const rects = parts.map((p) => {
    const w = (p.value / total) * 100;
    const r = s('rect', { x, y: 0, width: w, height: 10, class: `seg ${p.kind}` }, s('title', null, `${p.label}: ${p.value}`));
    x += w;
    return r;
  });
  return s('svg', { viewBox: '0 0 100 10', preserveAspectRatio: 'none', class: 'stack', role: 'img', 'aria-label': parts.map((p) => `${p.label} ${p.value}`).join(', ') }, rects);
}

// ---- toasts and confirmation -------------------------------------------

// toast shows a message for a while; kind is ok, bad or info.
export function toast(content, { kind = 'info', ms = 10000 } = {}) {
  const box = document.getElementById('toasts');
  const close = h('button', { type: 'button', class: 'toast-close', 'aria-label': 'Dismiss' }, '×');
  const t = h('div', { class: `toast ${kind}`, role: kind === 'bad' ? 'alert' : 'status' }, h('div', { class: 'toast-body' }, content), close);
  const remove = () => t.remove();
  close.addEventListener('click', remove);
  box.append(t);
  if (ms > 0) setTimeout(remove, ms);
  return t;
}

// confirmAction asks before anything that changes the fleet. body may
// be nodes or text; resolves true only on an explicit confirmation.
export function confirmAction({ title, body, confirmLabel = 'Confirm', danger = false }) {
  const dlg = document.getElementById('confirm');
  document.getElementById('confirm-title').textContent = title;
  add(clear(document.getElementById('confirm-body')), body);
  const ok = document.getElementById('confirm-ok');
  ok.textContent = confirmLabel;
  ok.className = danger ? 'danger' : '';
  dlg.returnValue = '';
  return new Promise((resolve) => {
    dlg.addEventListener('close', () => resolve(dlg.returnValue === 'ok'), { once: true });
    dlg.showModal();
    ok.focus();
  });
}

// field wraps a control with its label.
export function field(label, control, hint) {
  return h('label', { class: 'field' }, h('span', { class: 'field-label' }, label), control, hint ? h('span', { class: 'hint' }, hint) : null);
}

export function select(name, options, value, attrs = {}) {
  return h('select', { name, ...attrs }, options.map((o) => {
    const [v, l] = Array.isArray(o) ? o : [o, o];
    return h('option', { value: v, selected: v === value }, l);
  }));
}
