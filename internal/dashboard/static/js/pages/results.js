// results.js: per-PC results of an execution, live (Run page and
// execution detail) or as a plain list (agent page).

import { get, mutate } from '../api.js';
import { add, clear, confirmAction, duration, errorBox, fmtTime, h, isZeroTime, link, num, output, seg, stateBadge, table, timeCell } from '../ui.js';

// SKIP_REASONS explain the exit codes of synthetic results (README, Exit codes).
export const SKIP_REASONS = {
  122: 'invalid command',
  123: 'refused: signature',
  124: 'version pin mismatch',
  125: 'start deadline passed',
  126: 'job revoked',
  127: 'strict staleness exceeded',
  128: 'the shell could not be started',
  129: 'outcome unknown after an agent crash',
};

function took(r) {
  if (isZeroTime(r.started_at) || isZeroTime(r.finished_at)) return null;
  return new Date(r.finished_at).getTime() - new Date(r.started_at).getTime();
}

// stateOf is a result's outcome, with a timeout told apart from a kill by
// the server's timed_out (agents that do not report timeouts show killed).
function stateOf(r) {
  return r.timed_out ? 'timed_out' : r.outcome;
}

function reasonOf(r) {
  if (!r.skipped && !(r.exit_code in SKIP_REASONS)) return null;
  return SKIP_REASONS[r.exit_code] || 'skipped';
}

function outputs(r, open = false) {
  const parts = [output('stdout', r.stdout, open), output('stderr', r.stderr, open && !r.stdout)];
  if (r.stdout_object) parts.push(h('p', { class: 'muted small' }, `Full stdout in object store result_output: ${r.stdout_object}`));
  if (r.stderr_object) parts.push(h('p', { class: 'muted small' }, `Full stderr in object store result_output: ${r.stderr_object}`));
  return parts.filter(Boolean).length ? h('div', { class: 'outputs' }, parts) : null;
}

// resultsTable lists results (newest first) with expandable output.
export function resultsTable(results, { showPC = true, showExec = true } = {}) {
  const cols = [{ label: 'Finished', render: (r) => timeCell(r.finished_at) }];
  if (showPC) cols.push({ label: 'PC', render: (r) => link('/agents/' + seg(r.pc_id), r.pc_id), class: 'mono' });
  if (showExec) cols.push({ label: 'Execution', render: (r) => link('/executions/' + seg(r.exec_id), r.job_id && r.job_id !== r.exec_id && r.job_id !== 'adhoc-run' ? `${r.job_id} · ${r.exec_id}` : r.exec_id), class: 'mono wrap' });
  cols.push(
    { label: 'State', render: (r) => stateBadge(stateOf(r), reasonOf(r)) },
    { label: 'Exit', render: (r) => String(r.exit_code), class: 'num' },
    { label: 'Duration', render: (r) => duration(took(r)), class: 'num' },
    { label: 'Output', render: (r) => outputs(r), class: 'wrap grow' });
  return table({ columns: cols, rows: results || [], empty: 'No results yet.', rowClass: (r) => (r.outcome === 'failed' || r.outcome === 'killed' ? 'row-bad' : null) });
}

// liveExecution shows one or more executions' per-PC states and keeps
// them current every 2 s while anything is pending or running.
//   execs: [{id, pcs?: [pc_id...], count?: n, deadline?: Date}] where pcs
//          are the PCs expected to answer (pending until they do) and
//          count how many are expected when they are not listed.
//   onUpdate(summary) is called after every refresh.
export function liveExecution(ctx, { execs, onUpdate, killable = true }) {
  const root = h('div', { class: 'live', dataset: { exec: execs.map((x) => x.id).join(' ') } });
  const summary = h('div', { class: 'live-summary', role: 'status', 'aria-live': 'polite' });
  const killBtn = h('button', { type: 'button', class: 'danger', id: 'kill', hidden: true }, 'Kill');
  const refreshBtn = h('button', { type: 'button', class: 'secondary', hidden: true }, 'Refresh');
  const body = h('tbody');
  const tbl = h('div', { class: 'table-wrap' }, h('table', { class: 'data live-table', id: 'live-results' },
    h('thead', null, h('tr', null, ['PC', 'State', 'Exit', 'Duration', 'Output'].map((l) => h('th', { scope: 'col', class: l === 'Exit' || l === 'Duration' ? 'num' : null }, l)))), body));
  const errBox = h('div');
  root.append(h('div', { class: 'live-head' }, summary, h('div', { class: 'page-actions' }, refreshBtn, killable && ctx.can('operator') ? killBtn : null)), errBox, tbl);

  const rows = new Map(); // key -> {tr, sig: {...}}
  const setCell = (row, i, key, value, make) => {
    if (row.sig[key] === value) return;
    row.sig[key] = value;
    const td = row.tr.children[i];
    add(clear(td), make());
  };
  const upsert = (key, pc, v) => {
    let row = rows.get(key);
    if (!row) {
      const tr = h('tr', { dataset: { pc, key } }, ['PC', 'State', 'Exit', 'Duration', 'Output'].map((l) => h('td', { dataset: { label: l } })));
      row = { tr, sig: {} };
      rows.set(key, row);
      tr.children[0].append(link('/agents/' + seg(pc), pc));
      tr.children[0].className = 'mono';
      tr.children[2].className = 'num';
      tr.children[3].className = 'num';
      tr.children[4].className = 'wrap grow';
    }
    setCell(row, 1, 'state', v.state + '|' + (v.reason || ''), () => [stateBadge(v.state, v.reason), v.reason ? h('span', { class: 'muted small reason' }, ' ' + v.reason) : null]);
    setCell(row, 2, 'exit', v.exit == null ? '—' : String(v.exit), () => (v.exit == null ? '—' : String(v.exit)));
    setCell(row, 3, 'dur', v.dur, () => v.dur);
    // A single PC's output is shown opened: that is what one looks for.
    setCell(row, 4, 'out', v.outKey || '', () => (v.result ? outputs(v.result, v.only) || '—' : '—'));
    row.tr.className = v.state === 'failed' || v.state === 'killed' || v.state === 'timed_out' ? 'row-bad' : v.state === 'running' ? 'row-run' : '';
    return row;
  };

  let lastChange = Date.now();
  let lastSig = '';
  let poller = null;
  let active = false;

  const refresh = async () => {
    const now = Date.now();
    const states = [];
    let counters = { results: 0, succeeded: 0, failed: 0, skipped: 0, killed: 0, running: 0 };
    let expectedTotal = 0;
    for (const x of execs) {
      const [ex, res] = await Promise.all([
        get('/api/executions/' + seg(x.id), { signal: ctx.signal }),
        get('/api/results', { params: { exec_id: x.id, limit: 1000 }, signal: ctx.signal }),
      ]);
      for (const k of Object.keys(counters)) counters[k] += (ex.counters && ex.counters[k]) || 0;
      const byResult = new Map((res.results || []).map((r) => [r.result_id, r]));
      const seen = new Set();
      for (const p of ex.pcs || []) {
        seen.add(p.pc_id);
        const r = byResult.get(p.result_id);
        const v = { state: p.timed_out ? 'timed_out' : p.state, exit: p.exit_code, dur: '—', result: r, outKey: r ? r.result_id : '' };
        if (r) {
          v.state = stateOf(r);
          v.reason = reasonOf(r);
          v.dur = duration(took(r));
        } else if (p.state === 'running' && !isZeroTime(p.started_at)) {
          v.dur = 'since ' + fmtTime(p.started_at).slice(11);
        }
        states.push([x.id + '/' + p.result_id, p.pc_id, v]);
      }
      // Results the execution's PC list does not know yet (projection lag).
      for (const r of res.results || []) {
        if (seen.has(r.pc_id)) continue;
        seen.add(r.pc_id);
        states.push([x.id + '/' + r.result_id, r.pc_id, { state: stateOf(r), reason: reasonOf(r), exit: r.exit_code, dur: duration(took(r)), result: r, outKey: r.result_id }]);
      }
      const late = x.deadline && now > x.deadline.getTime();
      for (const pc of x.pcs || []) {
        if (!seen.has(pc)) states.push([x.id + '/pending/' + pc, pc, { state: late ? 'never reached' : 'pending', reason: late ? 'no answer before the deadline' : null, exit: null, dur: '—' }]);
      }
      expectedTotal += x.pcs ? x.pcs.length : x.count || 0;
    }
    const keep = new Set();
    for (const [, , v] of states) v.only = states.length === 1;
    for (const [key, pc, v] of states) {
      keep.add(key);
      const row = upsert(key, pc, v);
      if (row.tr.parentNode !== body) body.append(row.tr);
    }
    for (const [key, row] of rows) {
      if (!keep.has(key)) {
        row.tr.remove();
        rows.delete(key);
      }
    }
    const pendingRows = states.filter(([, , v]) => v.state === 'pending').length;
    const unlisted = Math.max(0, expectedTotal - states.length);
    const pending = pendingRows + unlisted;
    const parts = [`${num(counters.results)} result${counters.results === 1 ? '' : 's'}`, `${num(counters.succeeded)} succeeded`];
    if (counters.failed) parts.push(`${num(counters.failed)} failed`);
    // Timeouts are counted as killed by the server; the rows tell which.
    const timedOut = states.filter(([, , v]) => v.state === 'timed_out').length;
    if (counters.killed) parts.push(`${num(counters.killed)} killed${timedOut ? ` (${num(timedOut)} timed out)` : ''}`);
    if (counters.skipped) parts.push(`${num(counters.skipped)} skipped`);
    if (counters.running) parts.push(`${num(counters.running)} running`);
    if (pending) parts.push(`${num(pending)} pending`);
    active = counters.running > 0 || pending > 0;
    summary.textContent = parts.join(' · ') + (active ? ' · live' : '');
    summary.dataset.active = active ? '1' : '0';
    killBtn.hidden = !active;
    const sig = JSON.stringify(counters) + pending;
    if (sig !== lastSig) {
      lastSig = sig;
      lastChange = now;
    }
    if (body.children.length === 0) body.append(h('tr', { class: 'empty-row' }, h('td', { colspan: 5 }, 'Waiting for the first PC to answer…')));
    else for (const tr of [...body.querySelectorAll('tr.empty-row')]) tr.remove();
    if (onUpdate) onUpdate({ counters, pending, active });
    // Stop polling once everything has answered, or after ten quiet
    // minutes (an offline PC may answer days later; Refresh asks again).
    if (poller && (!active || now - lastChange > 600000)) {
      poller.stop();
      poller = null;
      refreshBtn.hidden = false;
    }
  };

  const start = () => {
    refreshBtn.hidden = true;
    lastChange = Date.now();
    if (!poller) poller = ctx.every(2000, refresh);
  };
  refreshBtn.addEventListener('click', async () => {
    await refresh().catch((err) => errBox.replaceChildren(errorBox(err)));
    if (active) start();
  });
  killBtn.addEventListener('click', async () => {
    const ids = execs.map((x) => x.id);
    const ok = await confirmAction({ title: 'Kill execution', danger: true, confirmLabel: 'Kill',
      body: h('p', null, `Every PC running ${ids.join(', ')} ends the script's whole process tree now (exit -1). PCs that have not started it yet will not start it.`) });
    if (!ok) return;
    for (const id of ids) await mutate({ method: 'POST', path: '/api/executions/' + seg(id) + '/kill', action: 'kill', target: id, done: `Kill sent for ${id}` });
    start();
    poller.now();
  });

  const ready = refresh().then(() => { if (active) start(); else refreshBtn.hidden = false; }, (err) => {
    if (err.status === 401) throw err;
    errBox.replaceChildren(errorBox(err));
  });
  return { el: root, ready };
}
