// log.js: the fleet-wide timeline (filter by kind and PC) and the audit
// trail (who changed what, filtered by action, actor and target), newest
// first. Both are paged by the server (keyset: before=<next>), so an older
// page costs the same however deep it is; the newest page refreshes itself.

import { get } from '../api.js';
import { card, clear, field, fmtTime, h, link, pageHeader, seg, select, table } from '../ui.js';
import { eventsTable } from './agents.js';

const LIMITS = ['100', '250', '500', '1000'];

// AUDIT_ACTIONS are the actions the API records (the action filter's
// suggestions; the filter takes any value).
const AUDIT_ACTIONS = ['run', 'kill', 'exec', 'revoke', 'unrevoke', 'job_put', 'job_delete', 'schedule_put', 'schedule_delete',
  'schedule_enable', 'schedule_disable', 'set_groups', 'config_put', 'config_delete', 'rollout_set', 'rollout_clear', 'login', 'logout'];

// pageURL is path with the non-empty params (the URL a filter or a page
// is bookmarked as).
function pageURL(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v != null && v !== '') q.set(k, String(v));
  const qs = q.toString();
  return path + (qs ? '?' + qs : '');
}

// olderPager links to the newest page and to the next older one (next is
// the server's cursor; empty on the last page).
function olderPager(path, params, before, next, what) {
  return h('div', { class: 'pager', id: 'older-pager' },
    before ? link(pageURL(path, params), '« Newest') : h('span'),
    next ? link(pageURL(path, { ...params, before: next }), 'Older ›') : h('span', { class: 'muted' }, `No older ${what}`));
}

export async function renderEvents(ctx) {
  ctx.setTitle('Events');
  const q = ctx.query;
  const st = { kind: q.get('kind') || '', pc: q.get('pc') || '', limit: LIMITS.includes(q.get('limit')) ? q.get('limit') : '100' };
  const before = q.get('before') || '';
  const kinds = h('datalist', { id: 'kinds' });
  const kind = h('input', { type: 'text', name: 'kind', value: st.kind, list: 'kinds', placeholder: 'any kind', autocomplete: 'off' });
  const pc = h('input', { type: 'text', name: 'pc', value: st.pc, placeholder: 'any PC', autocomplete: 'off' });
  const limit = select('limit', LIMITS, st.limit);
  const form = h('form', { class: 'filters', role: 'search' }, field('Kind', h('span', null, kind, kinds)), field('PC', pc), field('Show', limit), h('button', { type: 'submit' }, 'Filter'));
  const box = h('div', { id: 'events' });
  const nav = h('div');
  ctx.main.append(pageHeader('Events'), form, card(null, box), nav);
  const params = () => ({ kind: st.kind, pc: st.pc, limit: st.limit === '100' ? '' : st.limit });
  const seen = new Set();
  const load = async () => {
    const d = await get('/api/timeline', { params: { kind: st.kind, pc: st.pc, limit: st.limit, before }, signal: ctx.signal });
    for (const e of d.events) {
      if (!seen.has(e.kind)) {
        seen.add(e.kind);
        kinds.append(h('option', { value: e.kind }));
      }
    }
    clear(box).append(eventsTable(d.events));
    clear(nav).append(olderPager('/events', params(), before, d.next, 'events'));
  };
  // A new filter starts again from the newest events.
  const apply = (e) => {
    if (e) e.preventDefault();
    st.kind = kind.value.trim();
    st.pc = pc.value.trim();
    st.limit = limit.value;
    ctx.navigate(pageURL('/events', params()), { replace: true });
  };
  form.addEventListener('submit', apply);
  limit.addEventListener('change', apply);
  await load();
  // An older page stays as it is; only the newest one gains events.
  if (!before) ctx.every(10000, load);
}

export async function renderAudit(ctx) {
  ctx.setTitle('Audit');
  const q = ctx.query;
  const st = { action: q.get('action') || '', actor: q.get('actor') || '', target: q.get('target') || '', limit: LIMITS.includes(q.get('limit')) ? q.get('limit') : '100' };
  // ?seq=N (the "view" link of an audit toast) highlights entry N and
  // starts the page at it, so it is on screen however much came after.
  const highlight = q.get('seq') || '';
  let before = q.get('before') || '';
  if (!before && /^[1-9][0-9]*$/.test(highlight)) before = String(Number(highlight) + 1);
  const actions = h('datalist', { id: 'audit-actions' },
    AUDIT_ACTIONS.map((a) => h('option', { value: a })));
  const text = (name, value, placeholder) => h('input', { type: 'text', name, id: 'audit-' + name, value, placeholder, autocomplete: 'off' });
  const action = text('action', st.action, 'any action');
  const actor = text('actor', st.actor, 'anyone');
  const target = text('target', st.target, 'any target');
  action.setAttribute('list', 'audit-actions');
  const limit = select('limit', LIMITS, st.limit);
  const form = h('form', { class: 'filters', role: 'search', id: 'audit-filters' },
    field('Action', h('span', null, action, actions)), field('Actor', actor), field('Target', target), field('Show', limit), h('button', { type: 'submit' }, 'Filter'));
  const box = h('div', { id: 'audit' });
  const nav = h('div');
  ctx.main.append(pageHeader('Audit'), form,
    h('p', { class: 'muted small' }, 'Filters match exactly. Every change made through the API is recorded before it is carried out; a change whose record cannot be stored is refused.'),
    card(null, box), nav);
  const params = () => ({ action: st.action, actor: st.actor, target: st.target, limit: st.limit === '100' ? '' : st.limit });
  // filterLink shows a value as a link to the entries sharing it.
  const filterLink = (key, value) => link(pageURL('/audit', { ...params(), [key]: value }), value);
  const load = async () => {
    const d = await get('/api/audit', { params: { action: st.action, actor: st.actor, target: st.target, limit: st.limit, before }, signal: ctx.signal });
    clear(box).append(table({
      id: 'audit-table',
      columns: [
        { label: '#', class: 'num', render: (e) => String(e.seq) },
        { label: 'When', render: (e) => fmtTime(e.at) },
        { label: 'Actor', render: (e) => filterLink('actor', e.actor) },
        { label: 'Action', render: (e) => filterLink('action', e.action) },
        { label: 'Target', class: 'mono wrap', render: (e) => targetLink(e) },
        { label: 'Details', class: 'wrap grow', render: (e) => (e.payload ? h('details', { class: 'output' }, h('summary', null, 'payload'), h('pre', null, JSON.stringify(e.payload, null, 2))) : null) },
      ],
      rows: d.audit || [],
      rowClass: (e) => (String(e.seq) === highlight ? 'row-highlight' : null),
      empty: 'No audit entries.',
    }));
    clear(nav).append(olderPager('/audit', params(), before, d.next, 'entries'));
  };
  const apply = (e) => {
    if (e) e.preventDefault();
    st.action = action.value.trim();
    st.actor = actor.value.trim();
    st.target = target.value.trim();
    st.limit = limit.value;
    ctx.navigate(pageURL('/audit', params()), { replace: true });
  };
  form.addEventListener('submit', apply);
  limit.addEventListener('change', apply);
  await load();
  if (!before) ctx.every(10000, load);
}

// targetLink links an audit target to its page when there is one.
function targetLink(e) {
  if (!e.target) return null;
  switch (e.action) {
    case 'run':
    case 'kill':
      return link('/executions/' + seg(e.target), e.target);
    case 'set_groups':
      return link('/agents/' + seg(e.target) + '?tab=groups', e.target);
    case 'job_put':
    case 'exec':
    case 'revoke':
    case 'unrevoke':
      return link('/jobs/' + seg(e.target), e.target);
    case 'rollout_set':
    case 'rollout_clear':
      return link('/rollout', e.target);
    default:
      return e.target;
  }
}
