// executions.js: the list of executions (newest first, paged by cursor
// on the server) and one execution: plan and waves, who started it, and
// every PC's state, live while anything is pending or running.

import { get } from '../api.js';
import { badge, card, clear, empty, fmtTime, h, kv, link, num, pageHeader, seg, table, timeCell } from '../ui.js';
import { liveExecution } from './results.js';

// ADHOC is the job_id of ad-hoc runs (wire.AdhocJobID).
export const ADHOC = 'adhoc-run';

export async function renderList(ctx) {
  ctx.setTitle('Executions');
  const before = ctx.query.get('before') || '';
  const box = h('div', { id: 'executions' });
  const nav = h('div', { class: 'pager' });
  ctx.main.append(pageHeader('Executions'), box, nav);
  const load = async () => {
    let d;
    try {
      d = await get('/api/executions', { params: { limit: 50, before }, signal: ctx.signal });
    } catch (err) {
      if (err.status === 404 || err.status === 405) {
        clear(box).append(empty('This server does not list executions (GET /api/executions). Open one from the Run page, an agent\'s results or the Audit page.'));
        return;
      }
      throw err;
    }
    const list = d.executions || [];
    clear(box).append(table({
      columns: [
        { label: 'Execution', class: 'mono', render: (x) => link('/executions/' + seg(x.exec_id), x.exec_id) },
        { label: 'Job', render: (x) => (x.job_id && x.job_id !== ADHOC ? link('/jobs/' + seg(x.job_id), x.job_id) : 'ad hoc') },
        { label: 'Started', render: (x) => timeCell(x.first_seen_at) },
        { label: 'Last result', render: (x) => timeCell(x.last_result_at) },
        { label: 'Results', class: 'num', render: (x) => num(x.results) },
        { label: 'Succeeded', class: 'num', render: (x) => num(x.succeeded) },
        { label: 'Failed', class: 'num', render: (x) => (x.failed ? badge(num(x.failed), 'bad') : '0') },
        { label: 'Killed', class: 'num', render: (x) => (x.killed ? badge(num(x.killed), 'bad') : '0') },
        { label: 'Skipped', class: 'num', render: (x) => (x.skipped ? badge(num(x.skipped), 'warn') : '0') },
        { label: 'Running', class: 'num', render: (x) => (x.running ? badge(num(x.running), 'run') : '0') },
      ],
      rows: list,
      rowClass: (x) => (x.failed + x.killed > 0 ? 'row-bad' : null),
      empty: 'No executions yet.',
    }));
    clear(nav).append(
      before ? link('/executions', '« Newest') : h('span'),
      d.next ? link('/executions?before=' + encodeURIComponent(d.next), 'Older ›') : h('span', { class: 'muted' }, 'No older executions'));
  };
  await load();
  if (!before) ctx.every(10000, load);
}

// expectation works out which PCs an execution targets, from its plan.
async function expectation(ctx, x) {
  const plan = x.plan || {};
  const t = plan.target || {};
  const groups = new Set(t.groups || []);
  for (const w of (plan.rollout && plan.rollout.waves) || []) groups.add(w.group);
  let deadline = plan.deadline_at && !plan.deadline_at.startsWith('0001') ? new Date(plan.deadline_at) : null;
  for (const w of x.waves || []) {
    if (w.deadline_at) {
      const d = new Date(w.deadline_at);
      if (!deadline || d > deadline) deadline = d;
    }
  }
  if (t.all) {
    const d = await get('/api/agents', { params: { limit: 200 }, signal: ctx.signal });
    return d.total <= 200 ? { pcs: d.agents.map((a) => a.pc_id), deadline } : { count: d.total, deadline };
  }
  const pcs = new Set(t.pcs || []);
  for (const g of groups) {
    const d = await get('/api/agents', { params: { group: g, limit: 1000 }, signal: ctx.signal });
    for (const a of d.agents) pcs.add(a.pc_id);
  }
  return { pcs: [...pcs].sort(), deadline };
}

function wavesCard(x) {
  const waves = x.waves || [];
  const kinds = { pending: 'muted', publishing: 'run', published: 'ok', done: 'ok', stopped: 'bad', cancelled: 'warn', failed: 'bad' };
  return card('Waves',
    table({
      id: 'waves',
      columns: [
        { label: '#', render: (w) => String(waves.indexOf(w) + 1), class: 'num' },
        { label: 'Group', render: (w) => w.group || 'whole target' },
        { label: 'State', render: (w) => badge(w.state, kinds[w.state] || 'muted') },
        { label: 'Due', render: (w) => fmtTime(w.due_at) },
        { label: 'Published', render: (w) => (w.published_at ? fmtTime(w.published_at) : '—') },
        { label: 'Reason', render: (w) => w.reason, class: 'wrap' },
      ],
      rows: waves,
    }),
    x.plan && x.plan.rollout ? h('p', { class: 'muted small' }, `A wave is not published when more than ${x.plan.rollout.stop_if_failed_pct} % of the results so far failed.`) : null);
}

export async function renderDetail(ctx) {
  const id = ctx.params[0];
  ctx.setTitle('Execution ' + id);
  ctx.main.append(pageHeader(h('span', null, 'Execution ', h('span', { class: 'mono' }, id))));
  const info = h('div', { id: 'exec-info' });
  const wavesBox = h('div');
  const liveBox = h('div');
  ctx.main.append(info, wavesBox, liveBox);

  let x = null;
  try {
    x = (await get('/api/exec/' + seg(id), { signal: ctx.signal })).execution;
  } catch (err) {
    if (err.status !== 404) throw err;
  }
  let expect = {};
  if (x) {
    const cmd = x.command || {};
    info.append(card('Plan', kv([
      ['Job', h('span', null, link('/jobs/' + seg(x.job_id), x.job_id), ` version ${x.version}`)],
      ['Created', fmtTime(x.created_at)],
      ['Target', describeTarget(x.plan)],
      ['Shell', cmd.shell || 'PC default'],
      ['Timeout', cmd.timeout_secs ? `${cmd.timeout_secs} s` : 'agent default'],
      ['Script', cmd.script ? h('pre', { class: 'preview' }, cmd.script) : null],
    ])));
    wavesBox.append(wavesCard(x));
    expect = await expectation(ctx, x).catch(() => ({}));
    if ((x.waves || []).some((w) => w.state === 'pending' || w.state === 'publishing')) {
      const poll = ctx.every(2000, async () => {
        const nx = (await get('/api/exec/' + seg(id), { signal: ctx.signal })).execution;
        clear(wavesBox).append(wavesCard(nx));
        if (!(nx.waves || []).some((w) => w.state === 'pending' || w.state === 'publishing')) poll.stop();
      });
    }
  } else {
    // An ad-hoc run has no stored plan; its audit entry says who ran
    // what, where.
    const entry = await findRun(ctx, id);
    if (entry) {
      const p = entry.payload || {};
      info.append(card('Ad-hoc run', kv([
        ['Started by', entry.actor],
        ['At', fmtTime(entry.at)],
        ['Target', p.target ? describeTarget({ target: { all: p.target.all, groups: p.target.group ? [p.target.group] : null, pcs: p.target.pc ? [p.target.pc] : null } }) : null],
        ['Shell', p.shell || 'PC default'],
        ['Script', p.script ? h('pre', { class: 'preview' }, p.script) : null],
      ])));
      if (p.target && p.target.pc) expect = { pcs: [p.target.pc] };
    }
  }
  const live = liveExecution(ctx, { execs: [{ id, ...expect }] });
  liveBox.append(card('PCs', live.el));
  await live.ready;
}

// findRun is the audit entry of an ad-hoc run: the server finds it by
// action and target however old it is.
async function findRun(ctx, id) {
  try {
    const d = await get('/api/audit', { params: { action: 'run', target: id, limit: 1 }, signal: ctx.signal });
    return (d.audit || [])[0] || null;
  } catch (err) {
    if (err.status === 401) throw err;
    return null;
  }
}

export function describeTarget(plan) {
  const t = (plan && plan.target) || {};
  const parts = [];
  if (t.all) parts.push('all PCs');
  if (t.groups && t.groups.length) parts.push('groups ' + t.groups.join(', '));
  if (t.pcs && t.pcs.length) parts.push('PCs ' + t.pcs.join(', '));
  if (plan && plan.rollout) parts.push('waves ' + plan.rollout.waves.map((w) => w.group + (w.delay ? ` (+${w.delay})` : '')).join(' → '));
  return parts.join('; ') || '—';
}
