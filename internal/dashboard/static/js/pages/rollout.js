// rollout.js: published agent releases, the target version set at each
// scope with the share of its PCs already on it (live), and starting or
// stopping a rollout at a scope (the same compare-and-set writes as
// `kanade agent rollout`).

import { get, mutate } from '../api.js';
import { badge, bars, bytes, card, clear, confirmAction, errorBox, field, fmtTime, h, link, num, pageHeader, seg, select, stack, table, toast } from '../ui.js';

// progress counts a target's PCs and those already on its version.
export async function progress(t, total, versions, signal) {
  const [kind, ...rest] = t.key.split('.');
  const name = rest.join('.');
  if (kind === 'global') {
    const on = (versions.find((v) => v.agent_version === t.target_version) || { agents: 0 }).agents;
    return { on, of: total };
  }
  if (kind === 'groups') {
    const [all, on] = await Promise.all([
      get('/api/agents', { params: { group: name, limit: 1 }, signal }),
      get('/api/agents', { params: { group: name, version: t.target_version, limit: 1 }, signal }),
    ]);
    return { on: on.total, of: all.total };
  }
  try {
    const a = await get('/api/agents/' + seg(name), { signal });
    return { on: a.agent_version === t.target_version ? 1 : 0, of: 1 };
  } catch {
    return { on: 0, of: 1 };
  }
}

// progressBar shows how many of a scope's PCs run the target version.
export function progressBar(p) {
  return h('div', { class: 'progress' },
    stack([{ label: 'on target', value: p.on, kind: 'ok' }, { label: 'not yet', value: Math.max(0, p.of - p.on), kind: 'muted' }]),
    h('span', { class: 'small' }, `${num(p.on)} of ${num(p.of)} PCs${p.of > 0 && p.on >= p.of ? ' · complete' : ''}`));
}

export async function render(ctx) {
  ctx.setTitle('Rollout');
  const targetsBox = h('div', { id: 'rollout-targets' });
  const versionsBox = h('div');
  const releasesBox = h('div', { id: 'releases' });
  const formBox = h('div');
  ctx.main.append(pageHeader('Agent rollout'), targetsBox, formBox, versionsBox, releasesBox);

  const rel = await get('/api/releases', { signal: ctx.signal }).catch((err) => {
    if (err.status === 401) throw err;
    return { releases: [], error: err };
  });
  const releases = rel.releases || [];
  clear(releasesBox).append(card('Published releases',
    rel.error ? errorBox(rel.error) : null,
    table({
      id: 'releases-table',
      columns: [
        { label: 'Version', class: 'mono', render: (r) => r.version },
        { label: 'Platform', render: (r) => `${r.os}/${r.arch}` },
        { label: 'Size', class: 'num', render: (r) => bytes(r.size) },
        { label: 'Signed', render: (r) => (r.signed ? badge('signed', 'ok', r.key_id) : badge('unsigned', 'warn')) },
        { label: 'Published', render: (r) => fmtTime(r.published_at) },
        { label: 'Problem', class: 'wrap', render: (r) => (r.problem ? badge(r.problem, 'bad') : null) },
      ],
      rows: releases,
      empty: 'No release published yet: `kanade agent publish ./kanade-agent --version 1.4.0`.',
    })));

  const draw = async () => {
    const [ro, health] = await Promise.all([get('/api/rollout', { signal: ctx.signal }), get('/api/health/fleet', { signal: ctx.signal })]);
    const versions = ro.versions || [];
    const targets = ro.targets || [];
    const rows = await Promise.all(targets.map(async (t) => ({ ...t, progress: t.target_version ? await progress(t, health.total, versions, ctx.signal) : null })));
    const canWrite = (t) => (t.key === 'global' ? ctx.can('admin') : ctx.can('operator'));
    clear(targetsBox).append(card('Target version per scope',
      table({
        id: 'targets',
        columns: [
          { label: 'Scope', class: 'mono', render: (t) => t.scope },
          { label: 'Target', class: 'mono', render: (t) => t.target_version || '—' },
          { label: 'Jitter', render: (t) => t.target_version_jitter || 'default' },
          { label: 'Progress', class: 'grow', render: (t) => (t.progress ? progressBar(t.progress) : null) },
          { label: 'Problem', class: 'wrap', render: (t) => (t.problem ? badge(t.problem, 'bad') : null) },
          { label: '', class: 'actions-cell', render: (t) => (canWrite(t) && t.target_version ? h('button', { type: 'button', class: 'danger small', onclick: () => stop(t) }, 'Stop') : null) },
        ],
        rows,
        empty: 'No scope sets target_version: every agent keeps its version.',
      })));
    clear(versionsBox).append(card('Agents per version',
      bars(versions.map((v) => ({ label: v.agent_version || '(unknown)', value: v.agents, part: v.online, href: v.agent_version ? '/agents?version=' + seg(v.agent_version) : null })), { partLabel: 'online', valueLabel: 'No agents yet.' })));
  };

  const stop = async (t) => {
    if (!(await confirmAction({ title: 'Stop rollout', danger: true, confirmLabel: 'Stop', body: h('p', null, `Remove target_version from ${t.scope}? Its PCs then follow a less specific scope's target, or keep the version they run.`) }))) return;
    const out = await mutate({ method: 'DELETE', path: '/api/rollout/' + seg(t.key), params: { revision: t.revision }, action: 'rollout_clear', target: t.key, done: `Rollout at ${t.scope} stopped` });
    if (out) await draw();
  };

  if (ctx.can('operator')) formBox.append(startForm(ctx, releases, draw));
  await draw();
  ctx.every(10000, draw);
}

function startForm(ctx, releases, redraw) {
  const kinds = [['groups', 'group'], ['pcs', 'PC']];
  if (ctx.can('admin')) kinds.unshift(['global', 'the whole fleet (global)']);
  const kind = select('scope', kinds, 'groups', { id: 'rollout-scope' });
  const name = h('input', { type: 'text', name: 'name', id: 'rollout-name', placeholder: 'canary', autocomplete: 'off' });
  const versions = [...new Set(releases.map((r) => r.version))];
  const version = versions.length ? select('version', versions, versions[0], { id: 'rollout-version' }) : h('input', { type: 'text', name: 'version', id: 'rollout-version', placeholder: '1.4.0' });
  const jitter = h('input', { type: 'text', name: 'jitter', id: 'rollout-jitter', placeholder: '10m', autocomplete: 'off', size: 6 });
  const nameField = field('Name', name);
  const status = h('div');
  const form = h('form', { class: 'inline-form wrap-form', id: 'rollout-form' }, field('Scope', kind), nameField, field('Version', version), field('Jitter', jitter), h('button', { type: 'submit' }, 'Start rollout'), status);
  const sync = () => { nameField.hidden = kind.value === 'global'; };
  kind.addEventListener('change', sync);
  sync();
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clear(status);
    const key = kind.value === 'global' ? 'global' : `${kind.value}.${name.value.trim()}`;
    if (kind.value !== 'global' && !name.value.trim()) return status.append(errorBox('Name the group or PC.'));
    if (!version.value.trim()) return status.append(errorBox('Choose a version.'));
    const where = kind.value === 'global' ? 'EVERY PC of the fleet' : `${kind.value === 'groups' ? 'group' : 'PC'} ${name.value.trim()}`;
    if (!(await confirmAction({ title: 'Start rollout', danger: kind.value === 'global', confirmLabel: 'Start', body: h('p', null, `Set target_version ${version.value} for ${where}? Agents download, verify and switch to it after a random delay within the jitter.`) }))) return;
    const body = { version: version.value.trim() };
    if (jitter.value.trim()) body.jitter = jitter.value.trim();
    const out = await mutate({ method: 'PUT', path: '/api/rollout/' + seg(key), body, action: 'rollout_set', target: key, done: `Rollout of ${body.version} at ${key} started`, onError: (err) => status.append(errorBox(err)) });
    if (!out) return;
    for (const w of out.warnings || []) toast('Warning: ' + w, { kind: 'info', ms: 15000 });
    if (out.overridden_by && out.overridden_by.length) toast(`Overridden for some PCs by: ${out.overridden_by.map((t) => t.scope).join(', ')}`, { kind: 'info', ms: 15000 });
    await redraw();
  });
  return card('Start a rollout', form, h('p', { class: 'muted small' }, 'Global needs the admin role; groups and PCs the operator role. Canary first: start at a group, then global. ', link('/agents', 'Agents'), ' shows who runs what.'));
}
