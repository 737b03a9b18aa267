// api.js: the only way pages talk to the server. Every request carries
// X-Kanade-Request: 1 (the API's CSRF defence for cookie sessions: a
// cross-site form cannot set a custom header) and the session cookie; a
// 401 sends the browser to the login page.

import { h, fmtTime, link, seg, toast } from './ui.js';

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// hooks the app installs: what to do when the session is gone.
const hooks = { unauthorized: () => {} };

export function onUnauthorized(fn) {
  hooks.unauthorized = fn;
}

// query builds "?a=1&b=2" from an object, leaving out empty values.
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v != null && v !== '') q.set(k, String(v));
  }
  const str = q.toString();
  return str ? '?' + str : '';
}

// api sends one request. body: an object (sent as JSON) or a string
// (sent as YAML). Returns the decoded JSON answer; throws ApiError.
export async function api(method, path, { body, params, signal, quiet401 = false } = {}) {
  const headers = { 'X-Kanade-Request': '1', Accept: 'application/json' };
  const init = { method, headers, credentials: 'same-origin', signal, cache: 'no-store' };
  if (body !== undefined) {
    if (typeof body === 'string') {
      headers['Content-Type'] = 'application/yaml';
      init.body = body;
    } else {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
  }
  const res = await fetch(path + query(params), init);
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!res.ok) {
    const e = data && data.error ? data.error : {};
    const err = new ApiError(res.status, e.code || `http_${res.status}`, e.message || `${method} ${path}: ${res.status} ${res.statusText}`);
    if (res.status === 401 && !quiet401) hooks.unauthorized(err);
    throw err;
  }
  return data;
}

export const get = (path, opts) => api('GET', path, opts);

// ROLES orders what a session may do (the API's viewer < operator < admin).
export const ROLES = { viewer: 1, operator: 2, admin: 3 };

// readSession returns {actor, role, auth_disabled}, or null when nobody
// is logged in.
export async function readSession() {
  try {
    return await api('GET', '/api/session', { quiet401: true });
  } catch (err) {
    if (err.status === 401) return null;
    throw err;
  }
}

// findAudit waits for the audit entry of an action the user just
// confirmed (the AUDIT stream is projected into SQLite asynchronously) and
// returns it, or null after a few seconds. The server filters: the newest
// entry of this action (on this target) is the one, once it is not older
// than the action itself.
export async function findAudit(action, target, since) {
  const deadline = Date.now() + 8000;
  while (Date.now() < deadline) {
    try {
      const data = await get('/api/audit', { params: { action, target, limit: 1 } });
      const hit = (data.audit || [])[0];
      if (hit && new Date(hit.at).getTime() >= since - 5000) return hit;
    } catch (err) {
      if (err.status === 403 || err.status === 401) return null;
    }
    await new Promise((r) => setTimeout(r, 400));
  }
  return null;
}

// mutate runs a confirmed change, then shows its audit entry (or the
// error) in a toast. Returns the API's answer, or null on failure.
export async function mutate({ method, path, body, params, action, target, done, onError }) {
  const since = Date.now();
  let out;
  try {
    out = await api(method, path, { body, params });
  } catch (err) {
    if (err.status !== 401) toast(h('span', null, h('strong', null, 'Failed: '), err.message), { kind: 'bad', ms: 15000 });
    if (onError) onError(err);
    return null;
  }
  const t = typeof target === 'function' ? target(out) : target;
  if (done) toast(done, { kind: 'ok', ms: 6000 });
  findAudit(action, t, since).then((e) => {
    if (!e) {
      toast(`Done; its audit entry (${action}) is not visible yet — see the Audit page.`, { kind: 'info' });
      return;
    }
    toast(h('div', { class: 'audit-toast', dataset: { action: e.action } },
      h('strong', null, `Audit #${e.seq}`), ' ',
      h('span', null, `${e.actor} · ${e.action}${e.target ? ' · ' + e.target : ''} · ${fmtTime(e.at)}`), ' ',
      link('/audit?seq=' + seg(e.seq), 'view')), { kind: 'ok', ms: 15000 });
  });
  return out;
}
