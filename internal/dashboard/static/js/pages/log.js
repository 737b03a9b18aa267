// log.js: the fleet-wide timeline (filter by kind and PC) and the audit
// trail (who changed what, newest first).

import { get } from '../api.js';
import { card, clear, field, fmtTime, h, link, pageHeader, seg, select, table } from '../ui.js';
import { eventsTable } from './agents.js';

const LIMITS = ['100', '250', '500', '1000'];

export async function renderEvents(ctx) {
  ctx.setTitle('Events');
  const st = { kind: ctx.query.get('kind') || '', pc: ctx.query.get('pc') || '', limit: LIMITS.includes(ctx.query.get('limit')) ? ctx.query.get('limit') : '100' };
  const kinds = h('datalist', { id: 'kinds' });
  const kind = h('input', { type: 'text', name: 'kind', value: st.kind, list: 'kinds', placeholder: 'any kind', autocomplete: 'off' });
  const pc = h('input', { type: 'text', name: 'pc', value: st.pc, placeholder: 'any PC', autocomplete: 'off' });
  const limit = select('limit', LIMITS, st.limit);
  const form = h('form', { class: 'filters', role: 'search' }, field('Kind', h('span', null, kind, kinds)), field('PC', pc), field('Show', limit), h('button', { type: 'submit' }, 'Filter'));
  const box = h('div', { id: 'events' });
  ctx.main.append(pageHeader('Events'), form, card(null, box));
  const seen = new Set();
  const load = async () => {
    ctx.setQuery({ kind: st.kind, pc: st.pc, limit: st.limit === '100' ? '' : st.limit });
    const d = await get('/api/timeline', { params: { kind: st.kind, pc: st.pc, limit: st.limit }, signal: ctx.signal });
    for (const e of d.events) {
      if (!seen.has(e.kind)) {
        seen.add(e.kind);
        kinds.append(h('option', { value: e.kind }));
      }
    }
    clear(box).append(eventsTable(d.events));
  };
  const apply = (e) => {
    if (e) e.preventDefault();
    st.kind = kind.value.trim();
    st.pc = pc.value.trim();
    st.limit = limit.value;
    load();
  };
  form.addEventListener('submit', apply);
  limit.addEventListener('change', apply);
  await load();
  ctx.every(10000, load);
}

export async function renderAudit(ctx) {
  ctx.setTitle('Audit');
  const st = { limit: LIMITS.includes(ctx.query.get('limit')) ? ctx.query.get('limit') : '100', q: ctx.query.get('q') || '' };
  const highlight = ctx.query.get('seq');
  const search = h('input', { type: 'search', name: 'q', value: st.q, placeholder: 'actor, action or target', autocomplete: 'off', 'aria-label': 'Filter audit entries' });
  const limit = select('limit', LIMITS, st.limit);
  const box = h('div', { id: 'audit' });
  ctx.main.append(pageHeader('Audit'), h('form', { class: 'filters', role: 'search', onsubmit: (e) => e.preventDefault() }, field('Filter', search), field('Show', limit)),
    h('p', { class: 'muted small' }, 'Every change made through the API is recorded before it is carried out; a change whose record cannot be stored is refused.'), card(null, box));
  let entries = [];
  const draw = () => {
    const needle = st.q.toLowerCase();
    const rows = needle ? entries.filter((e) => [e.actor, e.action, e.target].some((v) => v && v.toLowerCase().includes(needle))) : entries;
    clear(box).append(table({
      id: 'audit-table',
      columns: [
        { label: '#', class: 'num', render: (e) => String(e.seq) },
        { label: 'When', render: (e) => fmtTime(e.at) },
        { label: 'Actor', render: (e) => e.actor },
        { label: 'Action', render: (e) => e.action },
        { label: 'Target', class: 'mono wrap', render: (e) => targetLink(e) },
        { label: 'Details', class: 'wrap grow', render: (e) => (e.payload ? h('details', { class: 'output' }, h('summary', null, 'payload'), h('pre', null, JSON.stringify(e.payload, null, 2))) : null) },
      ],
      rows,
      rowClass: (e) => (String(e.seq) === highlight ? 'row-highlight' : null),
      empty: 'No audit entries.',
    }));
  };
  const load = async () => {
    ctx.setQuery({ limit: st.limit === '100' ? '' : st.limit, q: st.q, seq: highlight });
    entries = (await get('/api/audit', { params: { limit: st.limit }, signal: ctx.signal })).audit || [];
    draw();
  };
  search.addEventListener('input', () => { st.q = search.value.trim(); ctx.setQuery({ limit: st.limit === '100' ? '' : st.limit, q: st.q, seq: highlight }); draw(); });
  limit.addEventListener('change', () => { st.limit = limit.value; load(); });
  await load();
  ctx.every(10000, load);
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
