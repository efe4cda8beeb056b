// The team board: one card per tracked person, updated in place from the live socket. Only the
// card whose person changed is touched, so 2,000 people cost one small DOM update per change.

import { all, freshToken } from './api.js';
import { Live, ago, left, emoji, h } from './live.js';

export async function board(main, setConn, params) {
  main.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
  const people = await all('/api/users', 'users');
  const teams = [...new Set(people.map((p) => p.team_id).filter(Boolean))].sort();
  const team = params.get('team') || teams[0];
  const mine = people.filter((p) => p.team_id === team && !p.deleted)
    .sort((a, b) => (a.display_name || a.name).localeCompare(b.display_name || b.name));

  const counts = h('p', { class: 'counts', 'aria-live': 'polite' });
  const search = h('input', { type: 'search', id: 'q', placeholder: 'Search by name', 'aria-label': 'Search by name' });
  const filter = h('select', { id: 'presence', 'aria-label': 'Filter by presence' },
    h('option', { value: '' }, 'Everyone'), h('option', { value: 'active' }, 'Active'),
    h('option', { value: 'away' }, 'Away'), h('option', { value: 'dnd' }, 'Do not disturb'));
  const teamPick = teams.length > 1
    ? h('select', { 'aria-label': 'Workspace', onchange: (e) => { location.hash = `#/board?team=${e.target.value}`; } },
      ...teams.map((t) => h('option', { value: t, selected: t === team }, t)))
    : null;
  const grid = h('ul', { class: 'grid', id: 'board', 'aria-label': 'People' });
  main.replaceChildren(
    h('div', { class: 'toolbar' }, h('h1', {}, `Team ${team ?? ''}`), counts, teamPick, filter, search),
    grid,
  );
  if (!team) { grid.replaceWith(h('p', {}, 'No workspace is connected yet. An admin can add one under Admin.')); return () => {}; }

  const cards = new Map(); // person id -> { person, status, observed_at, el }
  for (const p of mine) {
    const c = { person: p, status: p.status, seq: p.seq, observed_at: p.observed_at, el: h('li', { class: 'card' }) };
    cards.set(p.id, c);
    render(c);
    grid.append(c.el);
  }

  function render(c) {
    const s = c.status || { presence: 'unknown', dnd: {} };
    const dnd = s.dnd?.enabled;
    const name = c.person.display_name || c.person.name;
    c.el.dataset.presence = s.presence;
    c.el.dataset.dnd = dnd ? '1' : '';
    c.el.dataset.name = `${name} ${c.person.name}`.toLowerCase();
    c.el.replaceChildren(h('a', { href: `#/person/${c.person.id}`, class: 'card-link' },
      h('img', { class: 'avatar', src: c.person.image_72 || '', alt: '', width: 48, height: 48, loading: 'lazy' }),
      h('span', { class: 'who' },
        h('span', { class: 'name' }, name),
        h('span', { class: `presence ${s.presence}` },
          h('span', { class: 'dot', 'aria-hidden': 'true' }), s.presence,
          dnd ? h('span', { class: 'badge dnd', title: s.dnd.until ? `until ${new Date(s.dnd.until).toLocaleTimeString()}` : '' }, 'DND') : null),
        s.text || s.emoji
          ? h('span', { class: 'status' }, h('span', { class: 'emoji', 'aria-hidden': 'true' }, emoji(s.emoji)), ` ${s.text}`,
            s.expires_at ? h('span', { class: 'left' }, ` · ${left(s.expires_at)}`) : null)
          : h('span', { class: 'status muted' }, 'No status'),
        ooo(s.gmail),
        work(s.jira),
        h('span', { class: 'ago', 'data-at': c.observed_at || '' }, c.observed_at ? `changed ${ago(c.observed_at)}` : ''))));
    applyFilter(c);
  }

  // Gmail's vacation responder: "Out of office until Mon 2 Dec" (scheduled ones say from when).
  function ooo(g) {
    if (!g || !g.auto_reply) return null;
    const day = (t) => new Date(t).toLocaleDateString(undefined, { weekday: 'short', day: 'numeric', month: 'short' });
    const text = g.out_of_office
      ? `Out of office${g.until ? ` until ${day(g.until)}` : ''}`
      : `Away from ${g.since ? day(g.since) : 'soon'}`;
    return h('span', { class: `ooo${g.stale ? ' stale' : ''}`, title: g.subject || '' }, text);
  }

  // Jira: the issues in progress, and the last move when there was one.
  function work(j) {
    if (!j || (!j.issues.length && !j.moved.length)) return null;
    const last = j.moved[j.moved.length - 1];
    // Keys, not links: the whole card is already a link to the person.
    return h('span', { class: `jira${j.stale ? ' stale' : ''}` },
      ...j.issues.slice(0, 3).map((i) => h('span', { class: 'issue', title: `${i.summary} (${i.status})` }, i.key)),
      j.issues.length > 3 ? h('span', { class: 'more' }, `+${j.issues.length - 3}`) : null,
      last ? h('span', { class: 'moved' }, `${last.key}${last.from ? `: ${last.from}` : ''} → ${last.to || 'gone'}`) : null);
  }

  function applyFilter(c) {
    const q = search.value.trim().toLowerCase();
    const f = filter.value;
    const el = c.el;
    const ok = (!q || el.dataset.name.includes(q))
      && (!f || (f === 'dnd' ? el.dataset.dnd === '1' : el.dataset.presence === f));
    el.hidden = !ok;
  }

  function recount() {
    let a = 0; let w = 0; let d = 0;
    for (const c of cards.values()) {
      if (c.status?.presence === 'active') a += 1; else if (c.status?.presence === 'away') w += 1;
      if (c.status?.dnd?.enabled) d += 1;
    }
    counts.textContent = `${a} active · ${w} away · ${d} DND · ${cards.size} people`;
  }

  search.addEventListener('input', () => cards.forEach(applyFilter));
  filter.addEventListener('change', () => cards.forEach(applyFilter));
  recount();

  let pending = false;
  const live = new Live({
    token: freshToken,
    topics: [`team:${team}`],
    onState: setConn,
    onStatus: (e, isLive) => {
      let c = cards.get(e.user.id);
      if (!c) {
        c = { person: e.user, el: h('li', { class: 'card' }) };
        cards.set(e.user.id, c);
        grid.append(c.el);
      }
      // The snapshot mostly repeats what the page loaded: touch only cards that moved on.
      if (c.seq && e.seq <= c.seq) return;
      c.seq = e.seq;
      c.status = e.status;
      c.observed_at = e.observed_at;
      render(c);
      // Web Animations, not a class toggle: restarting a CSS animation needs a forced layout,
      // and a layout per card made a 2,000-card snapshot take seconds.
      if (isLive && c.el.animate) {
        c.el.animate([{ boxShadow: '0 0 0 3px #54aeff' }, { boxShadow: '0 0 0 0 transparent' }], { duration: 1200, easing: 'ease-out' });
      }
      if (!pending) { pending = true; requestAnimationFrame(() => { pending = false; recount(); }); }
    },
  });
  // Relative times age in place; nothing else is re-rendered.
  const tick = setInterval(() => {
    for (const span of grid.querySelectorAll('.ago[data-at]')) {
      const text = span.dataset.at ? `changed ${ago(span.dataset.at)}` : '';
      if (span.textContent !== text) span.textContent = text;
    }
  }, 30000);
  return () => { live.close(); clearInterval(tick); };
}
