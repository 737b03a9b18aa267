// overview.js: the fleet at a glance, refreshed every 10 s.

import { get } from '../api.js';
import { ADHOC } from './executions.js';
import { progress, progressBar } from './rollout.js';
import { bars, card, wideCard, clear, empty, errorBox, h, link, num, pageHeader, seg, stack, table, timeCell } from '../ui.js';

// osItems turns the server's {os_family: agents} into chart rows, most
// common first; agents that reported no OS are "(unknown)".
function osItems(byOS) {
  return Object.entries(byOS || {})
    .sort(([a, x], [b, y]) => y - x || a.localeCompare(b))
    .map(([os, n]) => ({ label: os || '(unknown)', value: n, href: os ? '/agents?os=' + seg(os) : null }));
}

async function recentExecutions(signal) {
  try {
    const d = await get('/api/executions', { params: { limit: 50 }, signal });
    const since = Date.now() - 24 * 3600 * 1000;
    return (d.executions || []).filter((x) => new Date(x.first_seen_at).getTime() >= since);
  } catch (err) {
    if (err.status === 404 || err.status === 405) return null;
    throw err;
  }
}

export async function render(ctx) {
  ctx.setTitle('Overview');
  const body = h('div', { class: 'overview' });
  ctx.main.append(pageHeader('Fleet overview', h('span', { class: 'muted small', id: 'refreshed' })), body);

  const draw = async () => {
    const { signal } = ctx;
    // One request answers every agent figure (GET /api/health/fleet:
    // online, offline, stale, per OS and per version).
    const [health, ro, execs] = await Promise.all([
      get('/api/health/fleet', { signal }),
      get('/api/rollout', { signal }),
      recentExecutions(signal),
    ]);
    if (signal.aborted) return;
    const stale = health.stale || 0;
    const oses = osItems(health.by_os);
    const versions = health.by_version || [];
    const failing = execs ? execs.filter((x) => x.failed + x.killed > 0) : [];

    const stat = (label, value, kind, href) => h('a', { class: `stat ${kind}`, href, dataset: { stat: label } }, h('span', { class: 'stat-value' }, num(value)), h('span', { class: 'stat-label' }, label));
    const fleet = card('Agents',
      h('div', { class: 'stats' },
        stat('online', health.online, 'ok', '/agents?online=true'),
        stat('offline', health.offline - stale, 'bad', '/agents?online=false'),
        stat('stale', stale, 'warn', '/agents?online=false&sort=last_seen'),
        stat('total', health.total, 'muted', '/agents')),
      stack([{ label: 'online', value: health.online, kind: 'ok' }, { label: 'offline', value: health.offline - stale, kind: 'bad' }, { label: 'stale', value: stale, kind: 'warn' }]),
      h('p', { class: 'muted small' }, 'Stale: no heartbeat for 7 days or more. Broker: ', health.nats || '?'));

    const versionChart = card('Agent versions',
      bars(versions.map((v) => ({ label: v.agent_version || '(unknown)', value: v.agents, part: v.online, href: v.agent_version ? '/agents?version=' + seg(v.agent_version) : null })), { partLabel: 'online', valueLabel: 'No agents yet.' }));
    const osChart = card('Operating systems', bars(oses, { valueLabel: 'No agents yet.' }));

    let execCard;
    if (execs == null) {
      execCard = wideCard('Executions, last 24 h', empty('This server does not list executions (GET /api/executions).'));
    } else {
      execCard = wideCard(`Executions, last 24 h: ${num(execs.length)}${execs.length ? `, ${num(failing.length)} with failures` : ''}`,
        table({
          columns: [
            { label: 'Execution', render: (x) => link('/executions/' + seg(x.exec_id), x.exec_id), class: 'mono' },
            { label: 'Job', render: (x) => (x.job_id === ADHOC ? 'ad hoc' : x.job_id) },
            { label: 'Started', render: (x) => timeCell(x.first_seen_at) },
            { label: 'Results', render: (x) => num(x.results), class: 'num' },
            { label: 'Failed', render: (x) => num(x.failed + x.killed), class: 'num' },
            { label: 'Running', render: (x) => num(x.running), class: 'num' },
          ],
          rows: execs.slice(0, 10),
          rowClass: (x) => (x.failed + x.killed > 0 ? 'row-bad' : null),
          empty: 'Nothing ran in the last 24 hours.',
        }),
        execs.length > 10 ? h('p', null, link('/executions', `All ${num(execs.length)} executions…`)) : null);
    }

    const targets = (ro.targets || []).filter((t) => t.target_version);
    const progresses = await Promise.all(targets.map((t) => progress(t, health.total, versions, signal)));
    if (signal.aborted) return;
    const rolloutCard = wideCard('Rollouts',
      targets.length === 0 ? empty('No rollout in progress: no scope sets target_version.') :
        table({
          columns: [
            { label: 'Scope', class: 'mono', render: (t) => t.scope },
            { label: 'Target', class: 'mono', render: (t) => t.target_version },
            { label: 'Progress', class: 'grow', render: (t) => progressBar(progresses[targets.indexOf(t)]) },
          ],
          rows: targets,
        }),
      h('p', null, link('/rollout', 'Rollout page')));

    clear(body).append(fleet, versionChart, osChart, rolloutCard, execCard);
    document.getElementById('refreshed').textContent = 'Updated ' + new Date().toLocaleTimeString();
  };
  try {
    await draw();
  } catch (err) {
    if (err.status === 401) throw err;
    body.append(errorBox(err));
  }
  ctx.every(10000, draw);
}
