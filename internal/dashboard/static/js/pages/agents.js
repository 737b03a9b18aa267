// agents.js: the agents table (server-side filters, sort and pages, so
// it stays fast at 10,000 agents) and one agent's detail page.

import { api, get, mutate } from '../api.js';
import {
  add, badge, bytes, card, clear, confirmAction, empty, errorBox, field, fmtTime, h, kv, link, num, onlineBadge,
  pageHeader, pager, seg, select, table, timeCell, toast,
} from '../ui.js';
import { resultsTable } from './results.js';

const PAGE = 50;
// SORTS are the orders the API offers (a leading '-' is descending).
const SORTS = [['pc_id', 'PC id'], ['-pc_id', 'PC id, descending'], ['hostname', 'hostname'], ['-hostname', 'hostname, descending'],
  ['-last_seen', 'last seen, newest'], ['last_seen', 'last seen, oldest'], ['agent_version', 'version'], ['-agent_version', 'version, descending'],
  ['os_family', 'OS'], ['-os_family', 'OS, descending']];

// SIGNING describes the values of an agent's command_signing (its last
// heartbeat's): the badge, its colour and what the state means.
const SIGNING = {
  enforced: { label: 'enforced', kind: 'ok', means: 'only commands signed by a trusted key run' },
  off: { label: 'off', kind: 'muted', means: 'signed commands are not required: every command runs, signed or not' },
  no_keys: { label: 'no keys', kind: 'warn', means: 'signed commands are required but the key ring is empty, so nothing is enforced' },
  fail_closed: { label: 'fail closed', kind: 'bad', means: 'signed commands are required but the key ring could not be read: every command is refused' },
};
// SIGNING_FILTERS are the API's command_signing filter values.
const SIGNING_FILTERS = [['', 'any'], ['enforced', 'enforced'], ['off', 'off'], ['no_keys', 'no keys'], ['fail_closed', 'fail closed'], ['unknown', 'not reported']];

// signingBadge is an agent's signing state as a badge; null (shown as —)
// for an agent too old to report it.
function signingBadge(a) {
  const s = SIGNING[a.command_signing];
  if (s) return badge(s.label, s.kind, s.means);
  return a.command_signing ? badge(a.command_signing, 'muted') : null;
}

// signingDetail is the agent page's "Signed commands" row: the state, what
// it means and the ids of the keys the agent trusts.
function signingDetail(a) {
  const keys = a.command_key_fingerprints || [];
  const ids = keys.length ? h('span', { class: 'mono', id: 'command-keys' }, keys.join(', ')) : null;
  const box = h('span', { id: 'command-signing', dataset: { state: a.command_signing || 'unknown' } });
  switch (a.command_signing) {
    case 'enforced':
      return add(box, signingBadge(a), ' — ', keys.length === 1 ? 'key ' : 'keys ', ids);
    case 'off':
      return add(box, signingBadge(a), keys.length ? [' — not required; key ring ', ids] : ' — not required');
    case 'no_keys':
      return add(box, signingBadge(a), ' — required, but the key ring is empty: not enforcing');
    case 'fail_closed':
      return add(box, signingBadge(a), ' — key ring broken: every command is refused', ids ? ['; last keys ', ids] : null);
    case '':
    case undefined:
    case null:
      return add(box, h('span', { class: 'muted' }, 'not reported (agent too old)'));
    default:
      return add(box, signingBadge(a), ids ? [' — keys ', ids] : null);
  }
}

export async function renderList(ctx) {
  ctx.setTitle('Agents');
  const q = ctx.query;
  const st = {
    q: q.get('q') || '', online: q.get('online') || '', version: q.get('version') || '', os: q.get('os') || '',
    group: q.get('group') || '', signing: q.get('command_signing') || '', sort: q.get('sort') || 'pc_id', offset: Number(q.get('offset')) || 0,
  };
  let versions = [];
  try {
    versions = ((await get('/api/rollout', { signal: ctx.signal })).versions || []).map((v) => v.agent_version).filter(Boolean);
  } catch (err) {
    if (err.status === 401) throw err;
  }
  if (st.version && !versions.includes(st.version)) versions.push(st.version);

  const search = h('input', { type: 'search', name: 'q', value: st.q, placeholder: 'pc_id, hostname or machine id', autocomplete: 'off', 'aria-label': 'Search agents' });
  const online = select('online', [['', 'any state'], ['true', 'online'], ['false', 'offline']], st.online);
  const version = select('version', [['', 'any version'], ...versions], st.version);
  const os = select('os', [['', 'any OS'], 'windows', 'linux', 'darwin'], st.os);
  const group = h('input', { type: 'text', name: 'group', value: st.group, placeholder: 'group', autocomplete: 'off', 'aria-label': 'Group' });
  const signing = select('command_signing', SIGNING_FILTERS, st.signing, { id: 'agents-signing' });
  const sort = select('sort', SORTS, st.sort, { id: 'agents-sort' });
  const filters = h('form', { class: 'filters', role: 'search', onsubmit: (e) => e.preventDefault() },
    field('Search', search), field('State', online), field('Version', version), field('OS', os), field('Group', group),
    field('Signed commands', signing), field('Sort', sort));
  const summary = h('p', { class: 'muted small', id: 'agents-summary' });
  const tableBox = h('div', { id: 'agents-table' });
  const pagerBox = h('div');
  ctx.main.append(pageHeader('Agents'), filters, summary, tableBox, pagerBox);

  let seq = 0;
  const load = async () => {
    const mine = ++seq;
    ctx.setQuery({ q: st.q, online: st.online, version: st.version, os: st.os, group: st.group, command_signing: st.signing, sort: st.sort === 'pc_id' ? '' : st.sort, offset: st.offset || '' });
    const started = performance.now();
    let d;
    try {
      d = await get('/api/agents', { params: { q: st.q, online: st.online, version: st.version, os: st.os, group: st.group, command_signing: st.signing, sort: st.sort, limit: PAGE, offset: st.offset }, signal: ctx.signal });
    } catch (err) {
      if (mine !== seq || err.name === 'AbortError') return;
      clear(tableBox).append(errorBox(err));
      return;
    }
    if (mine !== seq) return; // a newer request is on its way
    if (st.offset > 0 && st.offset >= d.total) {
      st.offset = Math.max(0, Math.floor((d.total - 1) / PAGE) * PAGE);
      return load();
    }
    summary.textContent = `${num(d.total)} agent${d.total === 1 ? '' : 's'} · loaded in ${Math.round(performance.now() - started)} ms · refreshed every 10 s`;
    clear(tableBox).append(table({
      id: 'agents',
      columns: [
        { label: 'PC', sort: 'pc_id', class: 'mono', render: (a) => link('/agents/' + seg(a.pc_id), a.pc_id) },
        { label: 'Hostname', sort: 'hostname', render: (a) => a.hostname },
        { label: 'State', sort: 'last_seen', render: (a) => h('span', { class: 'state' }, onlineBadge(a), ' ', h('span', { class: 'muted small' }, 'seen '), timeCell(a.last_seen)) },
        { label: 'Version', sort: 'agent_version', render: (a) => a.agent_version },
        { label: 'OS', sort: 'os_family', render: (a) => [a.os_family, a.arch].filter(Boolean).join(' / ') },
        { label: 'Groups', render: (a) => (a.groups && a.groups.length ? h('span', { class: 'tags' }, a.groups.map((g) => badge(g))) : null) },
        { label: 'Signing', render: signingBadge },
      ],
      rows: d.agents,
      sort: st.sort,
      onSort: (s) => { st.sort = s; sort.value = s; st.offset = 0; load(); },
      empty: 'No agent matches.',
      rowClass: (a) => (a.online ? null : 'row-dim'),
    }));
    clear(pagerBox).append(pager({ offset: st.offset, limit: PAGE, total: d.total, onPage: (o) => { st.offset = o; load(); window.scrollTo(0, 0); } }));
  };

  let debounce = null;
  search.addEventListener('input', () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => { st.q = search.value.trim(); st.offset = 0; load(); }, 250);
  });
  group.addEventListener('input', () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => { st.group = group.value.trim(); st.offset = 0; load(); }, 250);
  });
  for (const [el, key] of [[online, 'online'], [version, 'version'], [os, 'os'], [signing, 'signing'], [sort, 'sort']]) {
    el.addEventListener('change', () => { st[key] = el.value; st.offset = 0; load(); });
  }
  await load();
  ctx.every(10000, load);
}

// ---- one agent ---------------------------------------------------------

const TABS = [['summary', 'Summary'], ['inventory', 'Inventory'], ['config', 'Config'], ['groups', 'Groups'], ['results', 'Results'], ['timeline', 'Timeline']];

export async function renderDetail(ctx) {
  const pc = ctx.params[0];
  const tab = TABS.some(([k]) => k === ctx.query.get('tab')) ? ctx.query.get('tab') : 'summary';
  ctx.setTitle(pc);
  let agent = null;
  try {
    agent = await get('/api/agents/' + seg(pc), { signal: ctx.signal });
  } catch (err) {
    if (err.status !== 404) throw err;
  }
  const stateBox = h('span', { class: 'head-state' }, agent ? onlineBadge(agent) : badge('never seen'));
  const ping = h('button', { type: 'button', class: 'secondary', id: 'ping' }, 'Ping');
  ping.addEventListener('click', async () => {
    ping.disabled = true;
    try {
      const r = await api('POST', '/api/agents/' + seg(pc) + '/ping');
      toast(`${pc} answered in ${r.rtt_ms.toFixed(1)} ms (agent ${r.heartbeat.agent_version || '?'})`, { kind: 'ok' });
    } catch (err) {
      toast(`${pc} did not answer: ${err.message}`, { kind: 'bad' });
    } finally {
      ping.disabled = false;
    }
  });
  const actions = [ping];
  if (ctx.can('operator')) actions.push(h('a', { class: 'button', href: '/run?pc=' + seg(pc) }, 'Run script'));
  ctx.main.append(pageHeader(h('span', null, h('span', { class: 'mono' }, pc), ' ', stateBox), ...actions));
  ctx.main.append(h('nav', { class: 'tabs', 'aria-label': 'Agent sections' }, TABS.map(([k, label]) =>
    h('a', { href: `/agents/${seg(pc)}?tab=${k}`, 'aria-current': k === tab ? 'page' : null, dataset: { tab: k } }, label))));
  const body = h('div', { class: 'tab-body', id: 'tab-' + tab });
  ctx.main.append(body);
  const tabs = { summary, inventory, config, groups, results, timeline };
  await tabs[tab](ctx, pc, agent, body);
}

function summary(ctx, pc, agent, body) {
  if (!agent) {
    body.append(empty(`No agent ${pc} has ever sent a heartbeat.`));
    return;
  }
  const draw = (a) => clear(body).append(card(null, kv([
    ['Hostname', a.hostname],
    ['State', h('span', null, onlineBadge(a), ' since ', fmtTime(a.since))],
    ['Last heartbeat', h('span', null, fmtTime(a.last_seen), ' (', timeCell(a.last_seen), ')')],
    ['First seen', fmtTime(a.first_seen)],
    ['Agent version', a.agent_version],
    ['OS', [a.os_family, a.arch].filter(Boolean).join(' / ')],
    ['Machine id', a.machine_id ? h('span', { class: 'mono' }, a.machine_id) : null],
    ['Groups', a.groups && a.groups.length ? h('span', { class: 'tags' }, a.groups.map((g) => badge(g))) : 'none'],
    ['Signed commands', signingDetail(a)],
    ['Heartbeat interval', `${a.heartbeat_interval_secs} s`],
    ['Agent memory', bytes(a.rss_bytes)],
    ['Agent CPU', a.cpu_pct == null ? null : `${a.cpu_pct.toFixed(1)} %`],
    ['Outbox depth', num(a.outbox_depth)],
    ['Quarantined versions', a.quarantined_versions && a.quarantined_versions.length ? a.quarantined_versions.join(', ') : 'none'],
  ])));
  draw(agent);
  ctx.every(10000, async () => draw(await get('/api/agents/' + seg(pc), { signal: ctx.signal })));
}

// ---- inventory ---------------------------------------------------------

const SECTION_NAMES = { hw: 'Hardware', os: 'Operating system', net: 'Network', sw: 'Software' };

function notes(list) {
  return list && list.length ? h('ul', { class: 'notes' }, list.map((n) => h('li', null, n))) : null;
}

function sectionCard(sec, ...content) {
  return h('section', { class: 'card inventory', dataset: { section: sec.section } },
    h('h2', null, SECTION_NAMES[sec.section] || sec.section),
    h('p', { class: 'muted small' }, 'Collected ', fmtTime(sec.collected_at), ', confirmed ', timeCell(sec.confirmed_at)),
    content);
}

function hardware(sec) {
  const d = sec.data || {};
  const cpu = d.cpu || {};
  const bios = d.bios || {};
  return sectionCard(sec,
    kv([
      ['Manufacturer', d.manufacturer], ['Model', d.model], ['Serial', d.serial], ['SMBIOS UUID', d.smbios_uuid],
      ['CPU', [cpu.model, cpu.sockets && `${cpu.sockets} socket(s)`, cpu.cores && `${cpu.cores} cores`, cpu.logical_processors && `${cpu.logical_processors} threads`].filter(Boolean).join(' · ')],
      ['Memory', d.ram_bytes ? bytes(d.ram_bytes) : null],
      ['BIOS', [bios.vendor, bios.version, bios.release_date].filter(Boolean).join(' · ')],
    ]),
    d.memory && d.memory.length ? table({ caption: 'Memory modules', columns: [
      { label: 'Slot', render: (m) => m.slot }, { label: 'Capacity', render: (m) => bytes(m.capacity_bytes) },
      { label: 'Manufacturer', render: (m) => m.manufacturer }, { label: 'Speed', render: (m) => (m.speed_mhz ? `${m.speed_mhz} MHz` : null) }], rows: d.memory }) : null,
    d.disks && d.disks.length ? table({ caption: 'Disks', columns: [
      { label: 'Volume', render: (x) => x.id, class: 'mono' }, { label: 'Mount', render: (x) => x.mount }, { label: 'File system', render: (x) => x.filesystem },
      { label: 'Size', render: (x) => bytes(x.size_bytes), class: 'num' }, { label: 'Free', render: (x) => bytes(x.free_bytes), class: 'num' }], rows: d.disks }) : null,
    notes(d.notes));
}

function osSection(sec) {
  const d = sec.data || {};
  return sectionCard(sec, kv([
    ['Name', d.name], ['Version', d.version], ['Build', d.build], ['Kernel', d.kernel], ['Architecture', d.arch],
    ['Installed', d.install_date ? fmtTime(d.install_date) : null], ['Last boot', d.last_boot ? fmtTime(d.last_boot) : null],
    ['Time zone', d.time_zone], ['Domain', d.domain], ['Workgroup', d.workgroup],
  ]), notes(d.notes));
}

function network(sec) {
  const d = sec.data || {};
  return sectionCard(sec,
    table({ caption: 'Interfaces', columns: [
      { label: 'Name', render: (i) => i.name, class: 'mono' }, { label: 'MAC', render: (i) => i.mac, class: 'mono' },
      { label: 'Up', render: (i) => (i.up ? badge('up', 'ok') : badge('down')) },
      { label: 'IPv4', render: (i) => (i.ipv4 || []).join(', '), class: 'mono wrap' }, { label: 'IPv6', render: (i) => (i.ipv6 || []).join(', '), class: 'mono wrap' }],
    rows: d.interfaces || [], empty: 'No interfaces reported.' }),
    kv([['Default gateways', (d.default_gateways || []).join(', ')], ['DNS servers', (d.dns_servers || []).join(', ')]]),
    notes(d.notes));
}

function software(sec) {
  const d = sec.data || {};
  const programs = d.programs || [];
  // Fewer rows on a phone, where each program is a card.
  const SHOW = window.matchMedia('(max-width: 600px)').matches ? 20 : 50;
  const search = h('input', { type: 'search', placeholder: 'Search programs', 'aria-label': 'Search programs', id: 'sw-search', autocomplete: 'off' });
  const info = h('p', { class: 'muted small', id: 'sw-count' });
  const box = h('div');
  let offset = 0;
  const draw = () => {
    const needle = search.value.trim().toLowerCase();
    const hits = needle ? programs.filter((p) => [p.name, p.publisher, p.version].some((v) => v && v.toLowerCase().includes(needle))) : programs;
    offset = Math.min(offset, Math.max(0, hits.length - 1));
    info.textContent = needle ? `${num(hits.length)} of ${num(programs.length)} programs match` : `${num(programs.length)} programs`;
    add(clear(box),
      table({ id: 'software', columns: [
        { label: 'Name', render: (p) => p.name, class: 'wrap' }, { label: 'Version', render: (p) => p.version, class: 'wrap' },
        { label: 'Publisher', render: (p) => p.publisher, class: 'wrap' }, { label: 'Source', render: (p) => p.source },
        { label: 'Installed', render: (p) => p.install_date }],
      rows: hits.slice(offset, offset + SHOW), empty: 'No program matches.' }),
      hits.length > SHOW ? pager({ offset, limit: SHOW, total: hits.length, onPage: (o) => { offset = o; draw(); } }) : null);
  };
  search.addEventListener('input', () => { offset = 0; draw(); });
  draw();
  const hotfixes = d.hotfixes || [];
  return sectionCard(sec, search, info, box,
    hotfixes.length ? table({ caption: 'Updates', columns: [
      { label: 'Id', render: (x) => x.id, class: 'mono' }, { label: 'Description', render: (x) => x.description }, { label: 'Installed', render: (x) => x.installed_on }], rows: hotfixes }) : null,
    notes(d.notes));
}

async function inventory(ctx, pc, agent, body) {
  let d;
  try {
    d = await get('/api/inventory/' + seg(pc), { signal: ctx.signal });
  } catch (err) {
    if (err.status === 404) {
      body.append(empty(`No inventory from ${pc} yet. Agents collect it after a random delay within inventory_jitter, then every inventory_interval.`));
      return;
    }
    throw err;
  }
  const bySection = Object.fromEntries((d.sections || []).map((x) => [x.section, x]));
  const render = { hw: hardware, os: osSection, net: network, sw: software };
  const grid = h('div', { class: 'inventory-grid' });
  for (const key of ['hw', 'os', 'net', 'sw']) {
    if (!bySection[key]) continue;
    const el = render[key](bySection[key]);
    if (key === 'net' || key === 'sw') el.classList.add('wide');
    grid.append(el);
  }
  body.append(grid);
}

// ---- effective config --------------------------------------------------

// shortDuration drops Go's zero units: "24h0m0s" → "24h", "1m0s" → "1m".
export function shortDuration(v) {
  if (!/^(\d+h)?(\d+m)?(\d+(\.\d+)?s)?$/.test(v) || v === '') return v;
  const out = v.replace(/(\d)h0m0s$/, '$1h').replace(/(\d)m0s$/, '$1m').replace(/(\d)h0m(\d)/, '$1h$2');
  return out;
}

async function config(ctx, pc, agent, body) {
  let rep;
  try {
    rep = await get('/api/agents/' + seg(pc) + '/config', { signal: ctx.signal });
  } catch (err) {
    if (err.status === 404 || err.status === 504) {
      body.append(empty(`The agent did not answer (${err.message}). Its effective config is asked live, so the agent must be connected.`));
      return;
    }
    throw err;
  }
  const eff = rep.effective || {};
  const fields = Object.keys(rep.sources || eff).sort();
  const layerBadge = (src) => badge(src, src === 'default' ? 'muted' : src === 'pc' ? 'warn' : 'run');
  add(body,
    card('Effective config',
      h('p', { class: 'muted small' }, rep.synced ? 'As the agent applies it now, with the layer that set each value.' : 'The agent has not read its config from KV yet; these are its defaults.'),
      rep.sync_error ? errorBox('Last read failed: ' + rep.sync_error) : null,
      table({ id: 'config', columns: [
        { label: 'Field', render: (f) => f, class: 'mono' },
        { label: 'Value', render: (f) => (eff[f] === undefined || eff[f] === '' ? '—' : shortDuration(String(eff[f]))), class: 'mono' },
        { label: 'Layer', render: (f) => layerBadge((rep.sources || {})[f] || 'default') }],
      rows: fields })),
    rep.conflicts && rep.conflicts.length ? card('Conflicts', h('ul', null, rep.conflicts.map((c) => h('li', null, `${c.field}: set by ${c.groups.join(', ')}; ${c.winner} wins`)))) : null,
    rep.problems && rep.problems.length ? card('Problems', h('ul', null, rep.problems.map((p) => h('li', null, `${p.layer}${p.field ? ' ' + p.field : ''}: ${p.message}`)))) : null);
}

// ---- groups ------------------------------------------------------------

async function groups(ctx, pc, agent, body) {
  const draw = async () => {
    const g = await get('/api/agents/' + seg(pc) + '/groups', { signal: ctx.signal });
    const change = async (next, verb, name) => {
      const ok = await confirmAction({ title: `${verb} group`, body: h('p', null, `${verb} ${pc} ${verb === 'Add' ? 'to' : 'from'} group `, h('strong', null, name), '? Commands sent to the group and its config layer follow at once.'), confirmLabel: verb });
      if (!ok) return;
      const res = await mutate({ method: 'PUT', path: '/api/agents/' + seg(pc) + '/groups', body: { groups: next, revision: g.revision }, action: 'set_groups', target: pc, done: `Groups of ${pc}: ${next.join(', ') || 'none'}` });
      if (res) await draw();
    };
    const canEdit = ctx.can('operator');
    const input = h('input', { type: 'text', name: 'group', placeholder: 'group name', autocomplete: 'off', 'aria-label': 'New group', id: 'group-name' });
    const form = h('form', { class: 'inline-form', onsubmit: (e) => {
      e.preventDefault();
      const name = input.value.trim();
      if (name && !g.groups.includes(name)) change([...g.groups, name].sort(), 'Add', name);
    } }, input, h('button', { type: 'submit' }, 'Add'));
    clear(body).append(card('Groups',
      g.groups.length === 0 ? empty(`${pc} is in no group.`) :
        h('ul', { class: 'group-list' }, g.groups.map((name) => h('li', null, badge(name), canEdit ? h('button', { type: 'button', class: 'link danger', onclick: () => change(g.groups.filter((x) => x !== name), 'Remove', name) }, 'remove') : null))),
      canEdit ? form : h('p', { class: 'muted small' }, 'Changing groups needs the operator role.'),
      h('p', { class: 'muted small' }, `KV agent_groups revision ${g.revision}.`)));
  };
  await draw();
}

// ---- results and timeline ---------------------------------------------

async function results(ctx, pc, agent, body) {
  const d = await get('/api/results', { params: { pc, limit: 50 }, signal: ctx.signal });
  body.append(card('Recent results', resultsTable(d.results, { showPC: false })));
}

async function timeline(ctx, pc, agent, body) {
  const d = await get('/api/timeline', { params: { pc, limit: 100 }, signal: ctx.signal });
  // The Events page pages further back.
  body.append(card('Timeline', eventsTable(d.events, { showPC: false }),
    d.next ? h('p', null, link('/events?pc=' + encodeURIComponent(pc) + '&before=' + encodeURIComponent(d.next), 'Older events of ' + pc + ' ›')) : null));
}

// eventsTable is shared with the fleet-wide Events page.
export function eventsTable(events, { showPC = true } = {}) {
  const cols = [{ label: 'When', render: (e) => h('span', { title: fmtTime(e.at) }, fmtTime(e.at)) }];
  if (showPC) cols.push({ label: 'PC', render: (e) => link('/agents/' + seg(e.pc_id), e.pc_id), class: 'mono' });
  cols.push(
    { label: 'Kind', render: (e) => link('/events?kind=' + seg(e.kind), e.kind) },
    { label: 'Source', render: (e) => e.source },
    { label: 'Details', class: 'wrap', render: (e) => (e.payload ? h('details', { class: 'output' }, h('summary', null, summarize(e.payload)), h('pre', null, JSON.stringify(e.payload, null, 2))) : null) });
  return table({ columns: cols, rows: events, empty: 'No events.' });
}

function summarize(payload) {
  if (payload == null || typeof payload !== 'object') return String(payload);
  const parts = Object.entries(payload).slice(0, 3).map(([k, v]) => `${k}: ${typeof v === 'object' ? JSON.stringify(v) : v}`);
  const text = parts.join(', ');
  return text.length > 80 ? text.slice(0, 77) + '…' : text;
}
