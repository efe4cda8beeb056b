// The shell: login, hash routes (#/board, #/person/42, #/admin), the connection indicator.

import { api, claims, saveSession, session } from './api.js';
import { h } from './live.js';
import { board } from './board.js';
import { person } from './person.js';
import { admin } from './admin.js';

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const conn = document.getElementById('conn');
let leave = () => {};

function setConn(state, detail) {
  conn.hidden = false;
  conn.dataset.state = state;
  conn.querySelector('.label').textContent = detail ? `${state}: ${detail}` : state;
}

function login() {
  nav.hidden = true;
  conn.hidden = true;
  const err = h('p', { class: 'result err', role: 'alert' });
  const email = h('input', { id: 'email', type: 'email', name: 'email', autocomplete: 'username', required: true });
  const password = h('input', { id: 'password', type: 'password', name: 'password', autocomplete: 'current-password', required: true });
  const f = h('form', { class: 'login', 'aria-labelledby': 'login-title' },
    h('h1', { id: 'login-title' }, 'Sign in to Chex'),
    h('label', { for: 'email' }, 'Email'), email,
    h('label', { for: 'password' }, 'Password'), password,
    h('button', { type: 'submit' }, 'Sign in'), err);
  f.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      saveSession(await api('/api/auth/login', { method: 'POST', body: { email: email.value, password: password.value } }));
      if (location.hash.startsWith('#/board')) route(); else location.hash = '#/board'; // hashchange routes
    } catch (x) {
      err.textContent = x.status === 401 ? 'Wrong email or password.' : x.message;
    }
  });
  main.replaceChildren(f);
  email.focus();
}

let generation = 0;

async function route() {
  // A newer navigation wins: a page that finishes loading after it is closed again at once.
  generation += 1;
  const mine = generation;
  leave();
  leave = () => {};
  const settle = (close) => { if (mine === generation) leave = close; else close(); };
  if (!session()) { login(); return; }
  nav.hidden = false;
  nav.querySelector('[data-admin]').hidden = claims()?.role !== 'admin';
  const [path, query] = location.hash.replace(/^#/, '').split('?');
  const params = new URLSearchParams(query || '');
  const parts = path.split('/').filter(Boolean);
  try {
    if (parts[0] === 'person' && parts[1]) {
      conn.hidden = true;
      settle(await person(main, Number(parts[1])));
    } else if (parts[0] === 'admin') {
      conn.hidden = true;
      settle(await admin(main));
    } else {
      settle(await board(main, setConn, params));
    }
    main.focus({ preventScroll: true });
  } catch (x) {
    if (x.status === 401) { saveSession(null); login(); return; }
    main.replaceChildren(h('p', { class: 'result err', role: 'alert' }, x.message));
  }
}

document.getElementById('logout').addEventListener('click', async () => {
  try { await api('/api/auth/logout', { method: 'POST', body: { refresh_token: session()?.refresh_token } }); } catch { /* gone anyway */ }
  saveSession(null);
  location.hash = '';
  route();
});
window.addEventListener('hashchange', route);
route();
