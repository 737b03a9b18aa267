// login.js: the token form. The token goes to POST /api/session, which
// answers with an HttpOnly cookie; the page never stores the token itself
// (no localStorage, no sessionStorage), so script on the page cannot read
// it back later.

import { api, readSession } from '../api.js';
import { card, errorBox, h, link, pageHeader } from '../ui.js';

// safeNext keeps the redirect after login on this site.
function safeNext(next) {
  if (!next || !next.startsWith('/') || next.startsWith('//') || next.startsWith('/\\') || next.startsWith('/login')) return '/';
  return next;
}

export async function render(ctx) {
  ctx.setTitle('Log in');
  const next = safeNext(ctx.query.get('next'));
  const current = ctx.session || await readSession().catch(() => null);
  if (current) {
    ctx.setSession(current);
    ctx.main.append(pageHeader('Log in'), card(null,
      current.auth_disabled
        ? h('p', null, 'Authentication is disabled on this server (dev mode); there is nothing to log in to.')
        : h('p', null, `You are logged in as ${current.actor} (${current.role}).`),
      h('p', null, link(next, 'Continue'))));
    return;
  }
  const token = h('input', { type: 'password', name: 'token', id: 'token', autocomplete: 'off', spellcheck: 'false', required: true, autofocus: true });
  const status = h('div', { class: 'form-status' });
  const submit = h('button', { type: 'submit' }, 'Log in');
  const form = h('form', { class: 'login', id: 'login-form' },
    h('label', { class: 'field', for: 'token' }, h('span', { class: 'field-label' }, 'API token'), token,
      h('span', { class: 'hint' }, 'The server\'s static admin token, or a JWT your administrator issued.')),
    submit, status);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    submit.disabled = true;
    status.replaceChildren();
    try {
      await api('POST', '/api/session', { body: { token: token.value.trim() }, quiet401: true });
      token.value = '';
      const s = await readSession();
      ctx.setSession(s);
      ctx.navigate(next, { replace: true });
    } catch (err) {
      const msg = err.status === 401 ? 'That token was not accepted.' : err.status === 429 ? 'Too many failed attempts: wait a minute and try again.' : err.message;
      status.append(errorBox(msg));
      token.select();
    } finally {
      submit.disabled = false;
    }
  });
  ctx.main.append(h('div', { class: 'login-wrap' }, h('h1', null, 'Log in to kanade'), card(null, form)));
  token.focus();
}
