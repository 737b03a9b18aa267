// jobs.js: the job catalog and the schedules. Manifests are edited as
// YAML, exactly what `kanade job create -f` takes; the server validates
// them strictly and its problems ("line 4: execute.shel: unknown key")
// are shown next to the editor, each one selecting its line.

import { api, findAudit, get, mutate } from '../api.js';
import { badge, card, clear, confirmAction, empty, errorBox, field, h, kv, link, pageHeader, seg, table, toast } from '../ui.js';
import { describeTarget } from './executions.js';

// fromBase64 decodes a []byte field of the API (YAML text, UTF-8).
function fromBase64(b64) {
  if (!b64) return '';
  const bin = atob(b64);
  return new TextDecoder().decode(Uint8Array.from(bin, (c) => c.charCodeAt(0)));
}

// problems splits a strict-YAML error into its per-line problems.
export function problems(message) {
  const body = message.replace(/^invalid [^:]*: /, '');
  return body.split(/; (?=line \d+: )/).map((p) => {
    const m = /^line (\d+): (.*)$/s.exec(p);
    return m ? { line: Number(m[1]), text: m[2] } : { line: 0, text: p };
  });
}

function selectLine(textarea, line) {
  const lines = textarea.value.split('\n');
  let start = 0;
  for (let i = 0; i < line - 1 && i < lines.length; i++) start += lines[i].length + 1;
  const end = start + (lines[line - 1] || '').length;
  textarea.focus();
  textarea.setSelectionRange(start, end);
  const lh = parseFloat(getComputedStyle(textarea).lineHeight) || 18;
  textarea.scrollTop = Math.max(0, (line - 3) * lh);
}

// yamlEditor is a textarea with inline validation problems. save(text)
// returns true on success; it throws the ApiError otherwise.
export function yamlEditor({ text, save, readOnly, id = 'yaml', label = 'Save' }) {
  const area = h('textarea', { class: 'yaml', id, spellcheck: 'false', rows: Math.min(30, Math.max(10, text.split('\n').length + 2)), readOnly });
  area.value = text;
  const errs = h('div', { class: 'problems', id: id + '-problems', 'aria-live': 'polite' });
  const btn = h('button', { type: 'submit' }, label);
  const form = h('form', { class: 'yaml-form' }, area, errs, readOnly ? null : h('div', { class: 'actions' }, btn));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clear(errs);
    area.removeAttribute('aria-invalid');
    btn.disabled = true;
    try {
      await save(area.value);
    } catch (err) {
      area.setAttribute('aria-invalid', 'true');
      if (err.status === 400) {
        const list = problems(err.message);
        errs.append(h('p', { class: 'error-title' }, `${list.length} problem${list.length === 1 ? '' : 's'}; nothing was saved:`),
          h('ul', { class: 'problem-list' }, list.map((p) => h('li', null,
            p.line ? h('button', { type: 'button', class: 'link', onclick: () => selectLine(area, p.line) }, `line ${p.line}`) : null,
            p.line ? ': ' : '', p.text))));
        if (list[0] && list[0].line) selectLine(area, list[0].line);
      } else {
        errs.append(errorBox(err.status === 409 ? `${err.message} — reload the page to edit the current version.` : err.message));
      }
    } finally {
      btn.disabled = false;
    }
  });
  return form;
}

// saveYAML posts a manifest with compare-and-set, after confirmation,
// and shows its audit entry. Returns the answer, or null when cancelled.
async function saveYAML({ path, revision, text, what, action, idOf }) {
  const ok = await confirmAction({ title: `Save ${what}`, body: h('p', null, `Store this ${what}? Agents and the scheduler use it from the next run on.`), confirmLabel: 'Save' });
  if (!ok) return null;
  const since = Date.now();
  const out = await api('POST', path, { body: text, params: { revision } });
  mutateAudit(action, idOf(out), since);
  return out;
}

// mutateAudit shows the audit entry of a change made with api() directly
// (the YAML editors need the error to show it inline).
function mutateAudit(action, target, since) {
  findAudit(action, target, since).then((e) => {
    if (e) toast(h('div', { class: 'audit-toast', dataset: { action: e.action } }, h('strong', null, `Audit #${e.seq}`), ` ${e.actor} · ${e.action} · ${e.target}`), { kind: 'ok', ms: 15000 });
  });
}

const JOB_TEMPLATE = `id: my-job
version: "1"
description: what it does
execute:
  shell: sh            # powershell | pwsh | cmd | sh | bash; empty = the PC's default
  script: |
    echo hello
  timeout: 10m
staleness: {mode: cached}
`;

export async function renderList(ctx) {
  ctx.setTitle('Jobs');
  const d = await get('/api/jobs', { signal: ctx.signal });
  const editorBox = h('div');
  const newBtn = ctx.can('operator') ? h('button', { type: 'button', id: 'new-job' }, 'New job') : null;
  ctx.main.append(pageHeader('Jobs', newBtn), editorBox, card(null, table({
    id: 'jobs',
    columns: [
      { label: 'Job', class: 'mono', render: (e) => link('/jobs/' + seg(e.Manifest.id), e.Manifest.id) },
      { label: 'Version', render: (e) => e.Manifest.version },
      { label: 'Description', class: 'wrap', render: (e) => e.Manifest.description },
      { label: 'Shell', render: (e) => (e.Manifest.execute || {}).shell || 'default' },
      { label: 'Timeout', render: (e) => (e.Manifest.execute || {}).timeout },
      { label: 'Revision', class: 'num', render: (e) => String(e.Revision) },
    ],
    rows: d.jobs,
    empty: 'No jobs yet. Create one here or with `kanade job create -f job.yaml`.',
  })));
  const open = () => {
    clear(editorBox).append(card('New job', yamlEditor({ text: JOB_TEMPLATE, id: 'new-job-yaml', save: async (text) => {
      const out = await saveYAML({ path: '/api/jobs', revision: 0, text, what: 'job', action: 'job_put', idOf: (o) => o.id });
      if (out) ctx.navigate('/jobs/' + seg(out.id));
    } })));
  };
  if (newBtn) newBtn.addEventListener('click', open);
  if (ctx.query.has('new') && newBtn) open();
}

function targetForm(idPrefix) {
  const kind = h('select', { name: 'kind', id: idPrefix + '-kind' }, [['all', 'All PCs'], ['groups', 'Groups'], ['pcs', 'PCs']].map(([v, l]) => h('option', { value: v }, l)));
  const names = h('input', { type: 'text', name: 'names', id: idPrefix + '-names', placeholder: 'names, comma separated', autocomplete: 'off' });
  const namesField = field('Names', names);
  namesField.hidden = true;
  kind.addEventListener('change', () => { namesField.hidden = kind.value === 'all'; });
  return {
    el: h('div', { class: 'row' }, field('Target', kind), namesField),
    value: () => {
      if (kind.value === 'all') return { all: true };
      const list = names.value.split(/[\s,]+/).filter(Boolean);
      return list.length ? { [kind.value]: list } : null;
    },
  };
}

export async function renderDetail(ctx) {
  const id = ctx.params[0];
  ctx.setTitle('Job ' + id);
  let e;
  try {
    e = await get('/api/jobs/' + seg(id), { signal: ctx.signal });
  } catch (err) {
    if (err.status !== 404) throw err;
    ctx.main.append(pageHeader('Job ' + id), empty(`There is no job ${id}.`), h('p', null, link('/jobs', 'All jobs')));
    return;
  }
  const m = e.Manifest;
  const op = ctx.can('operator');
  // script_status is what the agents' gate reads (KV script_status): a
  // revoked job is refused (exit 126) until it is unrevoked.
  const revoked = e.script_status === 'revoked';
  const actions = [];
  if (op) {
    const reload = () => ctx.navigate(location.pathname + location.search, { replace: true });
    const toggle = revoked ? h('button', { type: 'button', class: 'secondary', id: 'unrevoke' }, 'Unrevoke') : h('button', { type: 'button', class: 'secondary', id: 'revoke' }, 'Revoke');
    toggle.addEventListener('click', async () => {
      const verb = revoked ? 'unrevoke' : 'revoke';
      const ok = revoked ?
        await confirmAction({ title: 'Unrevoke job', confirmLabel: 'Unrevoke', body: h('p', null, `Agents may start ${id} again.`) }) :
        await confirmAction({ title: 'Revoke job', danger: true, confirmLabel: 'Revoke', body: h('p', null, `Agents will refuse to start ${id} (exit 126) until it is unrevoked.`) });
      if (!ok) return;
      const out = await mutate({ method: 'POST', path: `/api/jobs/${seg(id)}/${verb}`, action: verb, target: id, done: `${id} ${verb}d` });
      if (out) reload();
    });
    const del = h('button', { type: 'button', class: 'danger' }, 'Delete');
    del.addEventListener('click', async () => {
      if (await confirmAction({ title: 'Delete job', danger: true, confirmLabel: 'Delete', body: h('p', null, `Delete ${id} from the catalog? Schedules that name it stop working.`) })) {
        const out = await mutate({ method: 'DELETE', path: '/api/jobs/' + seg(id), params: { revision: e.Revision }, action: 'job_delete', target: id, done: `${id} deleted` });
        if (out) ctx.navigate('/jobs');
      }
    });
    actions.push(toggle, del);
  }
  const statusBadge = revoked ? badge('revoked', 'bad', 'agents refuse to start it (exit 126)') : badge('active', 'ok');
  statusBadge.id = 'script-status';
  ctx.main.append(pageHeader(h('span', null, 'Job ', h('span', { class: 'mono' }, id)), ...actions));
  ctx.main.append(card('Summary', kv([
    ['Status', statusBadge],
    ['Version', m.version], ['Description', m.description], ['Shell', (m.execute || {}).shell || 'PC default'],
    ['Timeout', (m.execute || {}).timeout || 'agent default'], ['Staleness', m.staleness ? m.staleness.mode : 'cached'],
    ['Retry', m.retry ? `${m.retry.max} times, ${m.retry.backoff_secs || 0} s apart` : 'no'], ['Revision', String(e.Revision)],
  ])));
  if (op) {
    const tf = targetForm('exec');
    const status = h('div');
    const form = h('form', { class: 'inline-form wrap-form', id: 'run-now' }, tf.el, h('button', { type: 'submit' }, 'Run now'), status);
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      clear(status);
      const target = tf.value();
      if (!target) return status.append(errorBox('Name at least one group or PC.'));
      if (!(await confirmAction({ title: 'Run job now', confirmLabel: 'Run', danger: !!target.all, body: h('p', null, `Run ${id} version ${m.version} on ${describeTarget({ target })}?`) }))) return;
      const x = await mutate({ method: 'POST', path: '/api/exec', body: { job: id, plan: { target } }, action: 'exec', target: id });
      if (x) ctx.navigate('/executions/' + seg(x.exec_id));
    });
    ctx.main.append(card('Run now', form));
  }
  ctx.main.append(card('Manifest', yamlEditor({ text: fromBase64(e.YAML), id: 'job-yaml', readOnly: !op, save: async (text) => {
    const out = await saveYAML({ path: '/api/jobs', revision: e.Revision, text, what: 'job', action: 'job_put', idOf: (o) => o.id });
    if (out) ctx.navigate('/jobs/' + seg(out.id), { replace: true });
  } })));
}

// ---- schedules ---------------------------------------------------------

const SCHEDULE_TEMPLATE = `id: nightly
job: my-job
description: every night at two
enabled: true
cron: "0 2 * * *"
timezone: Europe/Berlin
target: {all: true}
jitter: 10m
`;

function when(s) {
  if (s.cron) return `${s.cron}${s.timezone ? ' (' + s.timezone + ')' : ''}`;
  if (s.per_pc) return s.per_pc === 'once' ? 'once per PC' : `per PC every ${s.per_pc.every || JSON.stringify(s.per_pc)}`;
  return '—';
}

export async function renderSchedules(ctx) {
  ctx.setTitle('Schedules');
  const d = await get('/api/schedules', { signal: ctx.signal });
  const op = ctx.can('operator');
  const editorBox = h('div', { id: 'schedule-editor' });
  const newBtn = op ? h('button', { type: 'button', id: 'new-schedule' }, 'New schedule') : null;
  const list = d.schedules || [];
  const edit = (entry) => {
    const isNew = !entry;
    clear(editorBox).append(card(isNew ? 'New schedule' : `Edit schedule ${entry.Schedule.id}`,
      yamlEditor({ text: isNew ? SCHEDULE_TEMPLATE : fromBase64(entry.YAML), id: 'schedule-yaml', readOnly: !op, save: async (text) => {
        const out = await saveYAML({ path: '/api/schedules', revision: isNew ? 0 : entry.Revision, text, what: 'schedule', action: 'schedule_put', idOf: (o) => o.id });
        if (out) ctx.navigate('/schedules', { replace: true });
      } }),
      h('button', { type: 'button', class: 'link', onclick: () => { clear(editorBox); ctx.setQuery({}); } }, 'Close')));
    ctx.setQuery({ edit: isNew ? 'new' : entry.Schedule.id });
    editorBox.scrollIntoView({ block: 'nearest' });
  };
  const toggle = async (s) => {
    const verb = s.enabled ? 'disable' : 'enable';
    if (!(await confirmAction({ title: `${verb[0].toUpperCase() + verb.slice(1)} schedule`, confirmLabel: verb[0].toUpperCase() + verb.slice(1), body: h('p', null, `${verb[0].toUpperCase() + verb.slice(1)} ${s.id}?`) }))) return;
    const out = await mutate({ method: 'POST', path: `/api/schedules/${seg(s.id)}/${verb}`, action: 'schedule_' + verb, target: s.id, done: `${s.id} ${verb}d` });
    if (out) ctx.navigate(location.pathname + location.search, { replace: true });
  };
  const runNow = async (s) => {
    if (!(await confirmAction({ title: 'Run now', confirmLabel: 'Run', body: h('p', null, `Run job ${s.job} on ${describeTarget({ target: s.target })} now, outside the schedule?`) }))) return;
    const x = await mutate({ method: 'POST', path: '/api/exec', body: { job: s.job, plan: { target: s.target } }, action: 'exec', target: s.job });
    if (x) ctx.navigate('/executions/' + seg(x.exec_id));
  };
  const remove = async (entry) => {
    const s = entry.Schedule;
    if (!(await confirmAction({ title: 'Delete schedule', danger: true, confirmLabel: 'Delete', body: h('p', null, `Delete schedule ${s.id}?`) }))) return;
    const out = await mutate({ method: 'DELETE', path: '/api/schedules/' + seg(s.id), params: { revision: entry.Revision }, action: 'schedule_delete', target: s.id, done: `${s.id} deleted` });
    if (out) ctx.navigate('/schedules', { replace: true });
  };
  ctx.main.append(pageHeader('Schedules', newBtn), editorBox, card(null, table({
    id: 'schedules',
    columns: [
      { label: 'Schedule', class: 'mono', render: (e) => e.Schedule.id },
      { label: 'Job', render: (e) => link('/jobs/' + seg(e.Schedule.job), e.Schedule.job) },
      { label: 'When', class: 'wrap', render: (e) => when(e.Schedule) },
      { label: 'Target', class: 'wrap', render: (e) => describeTarget({ target: e.Schedule.target }) },
      { label: 'State', render: (e) => (e.Schedule.enabled ? badge('enabled', 'ok') : badge('disabled')) },
      { label: 'Actions', class: 'actions-cell', render: (e) => (op ? h('span', { class: 'row-actions' },
        h('button', { type: 'button', class: 'secondary small', onclick: () => toggle(e.Schedule) }, e.Schedule.enabled ? 'Disable' : 'Enable'),
        h('button', { type: 'button', class: 'secondary small', onclick: () => runNow(e.Schedule) }, 'Run now'),
        h('button', { type: 'button', class: 'secondary small', onclick: () => edit(e) }, 'Edit'),
        h('button', { type: 'button', class: 'danger small', onclick: () => remove(e) }, 'Delete')) : h('button', { type: 'button', class: 'secondary small', onclick: () => edit(e) }, 'View')) },
    ],
    rows: list,
    empty: 'No schedules yet.',
  })));
  if (newBtn) newBtn.addEventListener('click', () => edit(null));
  const want = ctx.query.get('edit');
  if (want === 'new' && op) edit(null);
  else if (want) {
    const entry = list.find((e) => e.Schedule.id === want);
    if (entry) edit(entry);
  }
}
