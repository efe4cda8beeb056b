// The embeddable presence widget: /widget?team=T123#token=… (the token rides in the fragment, so
// it never reaches a server log). It holds a scoped token (`topics` claim) and nothing else.

import { Live, emoji } from './live.js';

const params = new URLSearchParams(location.search);
const fragment = new URLSearchParams(location.hash.slice(1));
const token = fragment.get('token') || params.get('token');
const team = params.get('team');
const users = (params.get('users') || '').split(',').filter(Boolean);
const list = document.getElementById('people');
const state = document.getElementById('state');
const error = document.getElementById('error');
const rows = new Map();

if (params.get('title')) document.getElementById('title').textContent = params.get('title');

function fail(message) {
  error.hidden = false;
  error.textContent = message;
  state.textContent = 'refused';
  list.replaceChildren();
}

function row(e) {
  let li = rows.get(e.user.id);
  if (!li) {
    li = document.createElement('li');
    li.innerHTML = '<span class="dot" aria-hidden="true"></span><span class="name"></span><span class="text"></span>';
    rows.set(e.user.id, li);
    const name = e.user.display_name || e.user.name;
    li.dataset.name = name.toLowerCase();
    const after = [...list.children].find((x) => x.dataset.name > li.dataset.name);
    list.insertBefore(li, after || null);
  }
  const s = e.status;
  li.className = `${s.presence}${s.dnd?.enabled ? ' dnd' : ''}`;
  li.querySelector('.name').textContent = e.user.display_name || e.user.name;
  li.querySelector('.text').textContent = [emoji(s.emoji), s.text].filter(Boolean).join(' ');
  li.setAttribute('aria-label', `${e.user.display_name || e.user.name}: ${s.presence}${s.dnd?.enabled ? ', do not disturb' : ''}${s.text ? `, ${s.text}` : ''}`);
}

function activeCount() {
  return `${[...rows.values()].filter((r) => r.classList.contains('active')).length} active`;
}

const topics = team ? [`team:${team}`] : users.map((u) => `user:${u}`);
if (!token) fail('This widget needs a token: /widget?team=T123#token=…');
else if (!topics.length) fail('Name a team (?team=T123) or users (?users=1,2).');
else {
  new Live({
    token: async () => token,
    topics,
    onStatus: row,
    onState: (s, detail) => {
      if (s === 'denied') fail(`Not allowed: ${detail}`);
      else state.textContent = s === 'live' ? activeCount() : s;
    },
    onSnapshot: () => { state.textContent = activeCount(); },
  });
}
