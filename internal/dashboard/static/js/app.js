// app.js: boots the dashboard. It reads the session, then routes every
// page path (History API) to a page module; internal links are followed
// without reloading. Each page render gets a context whose AbortSignal
// ends its polling and pending requests when the user moves on.

import { ApiError, ROLES, onUnauthorized, readSession } from './api.js';
import { clear, errorBox, h, link, pageHeader } from './ui.js';
import * as overview from './pages/overview.js';
import * as agents from './pages/agents.js';
import * as run from './pages/run.js';
import * as executions from './pages/executions.js';
import * as jobs from './pages/jobs.js';
import * as rollout from './pages/rollout.js';
import * as log from './pages/log.js';
import * as login from './pages/login.js';

// routes: the same table as isPage in dashboard.go on the server.
const routes = [
  [/^\/$/, overview.render, '/'],
  [/^\/login$/, login.render, null],
  [/^\/agents$/, agents.renderList, '/agents'],
  [/^\/agents\/([^/]+)$/, agents.renderDetail, '/agents'],
  [/^\/run$/, run.render, '/run'],
  [/^\/executions$/, executions.renderList, '/executions'],
  [/^\/executions\/([^/]+)$/, executions.renderDetail, '/executions'],
  [/^\/jobs$/, jobs.renderList, '/jobs'],
  [/^\/jobs\/([^/]+)$/, jobs.renderDetail, '/jobs'],
  [/^\/schedules$/, jobs.renderSchedules, '/schedules'],
  [/^\/rollout$/, rollout.render, '/rollout'],
  [/^\/events$/, log.renderEvents, '/events'],
  [/^\/audit$/, log.renderAudit, '/audit'],
];

const state = { session: null, controller: null };

function notFound(ctx) {
  ctx.setTitle('Not found');
  ctx.main.append(pageHeader('Not found'), h('p', null, 'There is no page at ', h('code', null, location.pathname), '. ', link('/', 'Go to the overview'), '.'));
}

// every runs fn every ms milliseconds until the page changes or stop()
// is called; nothing runs while the tab is hidden, and a tick runs as soon
// as it is visible again. Ticks never overlap.
function every(signal, ms, fn) {
  let timer = null;
  let busy = false;
  let stopped = false;
  const tick = async () => {
    timer = null;
    if (stopped || signal.aborted || document.hidden || busy) return;
    busy = true;
    try {
      await fn();
    } catch (err) {
      if (!signal.aborted && err.name !== 'AbortError') console.warn('refresh failed', err);
    } finally {
      busy = false;
    }
    if (!stopped && !signal.aborted && !document.hidden) timer = setTimeout(tick, ms);
  };
  const onVisible = () => {
    if (!document.hidden && timer == null && !busy) tick();
  };
  const stop = () => {
    stopped = true;
    clearTimeout(timer);
    document.removeEventListener('visibilitychange', onVisible);
  };
  document.addEventListener('visibilitychange', onVisible);
  signal.addEventListener('abort', stop);
  timer = setTimeout(tick, ms);
  return { stop, now: () => { clearTimeout(timer); timer = null; return tick(); } };
}

function navigate(url, { replace = false } = {}) {
  if (replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  route();
}

function markNav(section) {
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.getAttribute('href') === section) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

function showSession() {
  const s = state.session;
  const banner = document.getElementById('banner');
  const who = document.getElementById('who');
  const logout = document.getElementById('logout');
  banner.hidden = !(s && s.auth_disabled);
  banner.textContent = s && s.auth_disabled ? 'Dev mode: authentication disabled. Anyone who can reach this address controls the fleet.' : '';
  who.textContent = s && !s.auth_disabled ? `${s.actor} (${s.role})` : '';
  logout.hidden = !s || !!s.auth_disabled;
  document.body.classList.toggle('signed-out', !s);
}

async function route() {
  if (state.controller) state.controller.abort();
  const controller = new AbortController();
  state.controller = controller;
  const path = location.pathname;
  const main = document.getElementById('main');
  main.dataset.ready = '';
  closeMenu();

  if (!state.session && path !== '/login') {
    state.session = await readSession().catch(() => null);
    showSession();
    if (controller.signal.aborted) return;
    if (!state.session) {
      navigate('/login?next=' + encodeURIComponent(path + location.search), { replace: true });
      return;
    }
  }

  let render = notFound;
  let params = [];
  let section = null;
  for (const [re, fn, nav] of routes) {
    const m = re.exec(path);
    if (m) {
      render = fn;
      params = m.slice(1).map(decodeURIComponent);
      section = nav;
      break;
    }
  }
  markNav(section);
  clear(main);
  const ctx = {
    main,
    params,
    query: new URLSearchParams(location.search),
    signal: controller.signal,
    session: state.session,
    can: (role) => !!state.session && (ROLES[state.session.role] || 0) >= ROLES[role],
    every: (ms, fn) => every(controller.signal, ms, fn),
    navigate,
    // setQuery records filter state in the URL without re-rendering.
    setQuery: (params) => {
      const q = new URLSearchParams();
      for (const [k, v] of Object.entries(params)) if (v != null && v !== '') q.set(k, String(v));
      const qs = q.toString();
      history.replaceState(null, '', location.pathname + (qs ? '?' + qs : ''));
    },
    setTitle: (t) => { document.title = t ? `${t} · kanade` : 'kanade'; },
    setSession: (s) => { state.session = s; showSession(); },
  };
  ctx.setTitle('');
  try {
    await render(ctx);
  } catch (err) {
    if (controller.signal.aborted || err.name === 'AbortError') return;
    if (err instanceof ApiError && err.status === 401) return; // on its way to /login
    main.append(errorBox(err));
  }
  main.dataset.page = section || (render === notFound ? 'notfound' : 'login');
  main.dataset.ready = '1';
}

function closeMenu() {
  document.getElementById('nav').classList.remove('open');
  document.getElementById('menu-toggle').setAttribute('aria-expanded', 'false');
}

function internalLink(e) {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const a = e.target.closest('a');
  if (!a || a.target || a.hasAttribute('download')) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || url.pathname.startsWith('/api/') || url.pathname.startsWith('/assets/')) return;
  e.preventDefault();
  if (url.pathname === location.pathname && url.search === location.search && url.hash) {
    location.hash = url.hash;
    return;
  }
  navigate(url.pathname + url.search + url.hash);
}

async function logout() {
  try {
    await fetch('/api/session', { method: 'DELETE', headers: { 'X-Kanade-Request': '1' }, credentials: 'same-origin' });
  } finally {
    state.session = null;
    showSession();
    navigate('/login', { replace: true });
  }
}

function boot() {
  document.addEventListener('click', internalLink);
  window.addEventListener('popstate', route);
  document.getElementById('logout').addEventListener('click', logout);
  document.getElementById('menu-toggle').addEventListener('click', () => {
    const nav = document.getElementById('nav');
    const open = nav.classList.toggle('open');
    document.getElementById('menu-toggle').setAttribute('aria-expanded', String(open));
  });
  onUnauthorized(() => {
    if (location.pathname === '/login') return;
    state.session = null;
    showSession();
    navigate('/login?next=' + encodeURIComponent(location.pathname + location.search), { replace: true });
  });
  route();
}

boot();
