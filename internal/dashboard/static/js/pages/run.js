// run.js: run a script on PCs, a group or everyone, and watch the
// per-PC results arrive. /run?exec=<id>[,<id>] reopens the live view.

import { get, mutate } from '../api.js';
import { card, clear, confirmAction, empty, errorBox, field, h, link, pageHeader, seg, select } from '../ui.js';
import { liveExecution } from './results.js';

const SHELLS = [['', 'PC default'], 'sh', 'bash', 'powershell', 'pwsh', 'cmd'];
// LIST_MAX: up to this many expected PCs are listed as pending rows;
// beyond it only their number is shown.
const LIST_MAX = 200;

async function expectedPCs(target, signal) {
  const params = { limit: LIST_MAX };
  if (target.group) params.group = target.group;
  const d = await get('/api/agents', { params, signal });
  return d.total <= LIST_MAX ? { pcs: d.agents.map((a) => a.pc_id) } : { count: d.total };
}

function showResults(ctx, box, execs) {
  clear(box);
  const live = liveExecution(ctx, { execs });
  box.append(card('Results',
    h('p', { class: 'muted small' }, 'Execution ', execs.map((x, i) => [i ? ', ' : '', link('/executions/' + seg(x.id), x.id)]), ' · per-PC results appear here as they arrive.'),
    live.el));
  return live.ready;
}

export async function render(ctx) {
  ctx.setTitle('Run');
  ctx.main.append(pageHeader('Run a script'));
  const resultsBox = h('div', { id: 'run-results' });

  const preset = ctx.query.get('exec');
  if (!ctx.can('operator')) {
    ctx.main.append(empty('Running scripts needs the operator role.'));
  } else {
    ctx.main.append(runForm(ctx, resultsBox));
  }
  ctx.main.append(resultsBox);
  if (preset) {
    const execs = preset.split(',').filter(Boolean).map((id) => ({ id }));
    await showResults(ctx, resultsBox, execs);
  }
}

function runForm(ctx, resultsBox) {
  const q = ctx.query;
  const kind = q.get('group') ? 'group' : q.get('all') ? 'all' : 'pcs';
  const radios = [['pcs', 'PC(s)'], ['group', 'Group'], ['all', 'All PCs']].map(([v, l]) =>
    h('label', { class: 'radio' }, h('input', { type: 'radio', name: 'target', value: v, checked: v === kind }), ' ', l));
  const pcs = h('input', { type: 'text', name: 'pcs', id: 'run-pcs', value: q.get('pc') || '', placeholder: 'pc-042, pc-043', autocomplete: 'off', list: 'pc-options' });
  const datalist = h('datalist', { id: 'pc-options' });
  const group = h('input', { type: 'text', name: 'group', id: 'run-group', value: q.get('group') || '', placeholder: 'canary', autocomplete: 'off' });
  const shell = select('shell', SHELLS, q.get('shell') || '', { id: 'run-shell' });
  const script = h('textarea', { name: 'script', id: 'run-script', rows: 6, spellcheck: 'false', required: true, placeholder: 'echo hello' });
  const timeout = h('input', { type: 'text', name: 'timeout', id: 'run-timeout', placeholder: '60s', autocomplete: 'off', size: 8 });
  const pcsField = field('PC ids (comma or space separated)', h('span', null, pcs, datalist));
  const groupField = field('Group', group);
  const status = h('div', { class: 'form-status' });
  const submit = h('button', { type: 'submit', id: 'run-submit' }, 'Run');
  const form = h('form', { class: 'run-form card', id: 'run-form' },
    h('fieldset', { class: 'target' }, h('legend', null, 'Target'), h('div', { class: 'radios' }, radios), pcsField, groupField),
    h('div', { class: 'row' }, field('Shell', shell), field('Timeout', timeout, 'e.g. 30s, 10m; empty: the agent default')),
    field('Script', script),
    h('div', { class: 'actions' }, submit), status);

  const sync = () => {
    const k = form.elements.target.value;
    pcsField.hidden = k !== 'pcs';
    groupField.hidden = k !== 'group';
  };
  form.addEventListener('change', sync);
  sync();

  get('/api/agents', { params: { limit: 500, online: 'true' }, signal: ctx.signal }).then((d) => {
    datalist.append(...d.agents.map((a) => h('option', { value: a.pc_id }, a.hostname || a.pc_id)));
  }).catch(() => {});

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    status.replaceChildren();
    const k = form.elements.target.value;
    let targets;
    if (k === 'pcs') {
      const list = [...new Set(pcs.value.split(/[\s,]+/).filter(Boolean))];
      if (list.length === 0) return status.append(errorBox('Name at least one PC.'));
      targets = list.map((pc) => ({ pc }));
    } else if (k === 'group') {
      if (!group.value.trim()) return status.append(errorBox('Name a group.'));
      targets = [{ group: group.value.trim() }];
    } else {
      targets = [{ all: true }];
    }
    if (!script.value.trim()) return status.append(errorBox('The script is empty.'));
    const what = k === 'pcs' ? targets.map((t) => t.pc).join(', ') : k === 'group' ? `every PC in group ${targets[0].group}` : 'EVERY PC of the fleet';
    const ok = await confirmAction({
      title: 'Run script',
      confirmLabel: 'Run',
      danger: k === 'all',
      body: [h('p', null, 'Run on ', h('strong', null, what), ` with ${shell.value || 'the PC\'s default shell'}${timeout.value ? `, timeout ${timeout.value}` : ''}:`), h('pre', { class: 'preview' }, script.value)],
    });
    if (!ok) return;
    submit.disabled = true;
    try {
      const execs = [];
      for (const t of targets) {
        const body = { target: t, shell: shell.value, script: script.value };
        if (timeout.value.trim()) body.timeout = timeout.value.trim();
        const out = await mutate({ method: 'POST', path: '/api/run', body, action: 'run', target: (o) => o.exec_id,
          onError: (err) => status.append(errorBox(err)) });
        if (!out) break;
        const x = { id: out.exec_id };
        if (t.pc) x.pcs = [t.pc];
        else Object.assign(x, await expectedPCs(t, ctx.signal).catch(() => ({})));
        execs.push(x);
      }
      if (execs.length) {
        ctx.setQuery({ exec: execs.map((x) => x.id).join(',') });
        await showResults(ctx, resultsBox, execs);
        resultsBox.scrollIntoView({ block: 'nearest' });
      }
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}
