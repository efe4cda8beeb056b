// A person's day and week: presence, DND and status text as bands on a timeline, the
// time-in-status summary, and the raw history with paging.

import { api } from './api.js';
import { emoji, h } from './live.js';

const NS = 'http://www.w3.org/2000/svg';

function svg(tag, attrs = {}, text) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

function rangeOf(kind) {
  const to = new Date();
  const from = new Date(to);
  from.setHours(0, 0, 0, 0);
  if (kind === 'week') from.setDate(from.getDate() - ((from.getDay() + 6) % 7));
  return { from, to };
}

function duration(s) {
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

/** Segments [{start, end, value}] of one field over the range, from ordered events. */
function segments(events, from, to, pick, initial) {
  const out = [];
  let at = from.getTime();
  let value = initial;
  for (const e of events) {
    const t = Date.parse(e.observed_at);
    if (t > at) out.push({ start: at, end: t, value });
    at = Math.max(at, t);
    value = pick(e.status);
  }
  if (to.getTime() > at) out.push({ start: at, end: to.getTime(), value });
  return out;
}

/** Jira's in-progress issues (linked to the site) and Gmail's out-of-office, when connected. */
function sources(status) {
  const j = status?.jira;
  const g = status?.gmail;
  if (!j && !g) return h('span', {});
  const day = (t) => new Date(t).toLocaleString(undefined, { weekday: 'short', day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit' });
  return h('section', { class: 'sources', 'aria-label': 'Jira and Gmail' },
    j ? h('div', {}, h('h2', {}, 'Jira'),
      j.issues.length
        ? h('ul', {}, ...j.issues.map((i) => h('li', {}, h('a', { href: i.url, target: '_blank', rel: 'noopener' }, i.key), ` ${i.summary} — ${i.status}`)))
        : h('p', { class: 'muted' }, 'Nothing in progress.'),
      ...j.moved.map((m) => h('p', { class: 'muted' }, `${m.key} ${m.from ? `moved from ${m.from} ` : ''}to ${m.to || 'gone'}`)),
      j.stale ? h('p', { class: 'muted' }, 'Jira cannot be reached: last known issues.') : null) : null,
    g ? h('div', {}, h('h2', {}, 'Gmail'),
      h('p', {}, g.out_of_office ? `Out of office${g.until ? ` until ${day(g.until)}` : ''}` : (g.auto_reply && g.since ? `Away from ${day(g.since)}` : 'In the office'),
        g.subject ? h('span', { class: 'muted' }, ` — “${g.subject}”`) : null),
      g.stale ? h('p', { class: 'muted' }, 'The mailbox cannot be read: last known state.') : null) : null);
}

function timeline(events, from, to) {
  const W = 1000; const lane = 26;
  const span = to.getTime() - from.getTime();
  const x = (t) => ((t - from.getTime()) / span) * W;
  const root = svg('svg', { viewBox: `0 0 ${W} ${lane * 3 + 24}`, class: 'timeline', role: 'img',
    'aria-label': `Presence, do-not-disturb and status from ${from.toLocaleString()} to ${to.toLocaleString()}` });
  const first = events[0];
  const initial = (field, fallback) => (first && first.previous && field in first.previous ? first.previous[field] : fallback);
  const lanes = [
    ['Presence', segments(events, from, to, (s) => s.presence, initial('presence', first?.status.presence ?? 'unknown')), (v) => `band ${v}`],
    ['DND', segments(events, from, to, (s) => (s.dnd?.enabled ? 'on' : 'off'), (initial('dnd', first?.status.dnd)?.enabled ? 'on' : 'off')), (v) => `band dnd-${v}`],
    ['Status', segments(events, from, to, (s) => (s.text ? `${emoji(s.emoji)} ${s.text}` : ''), initial('text', first?.status.text ?? '')), (v) => (v ? 'band text' : 'band none')],
  ];
  lanes.forEach(([name, segs, cls], i) => {
    const y = i * lane;
    for (const s of segs) {
      const w = Math.max(0.5, x(s.end) - x(s.start));
      const g = svg('g', { class: 'seg' });
      g.append(svg('rect', { x: x(s.start), y, width: w, height: lane - 4, class: cls(s.value) }));
      g.append(svg('title', {}, `${name}: ${s.value || 'none'} · ${new Date(s.start).toLocaleTimeString()}–${new Date(s.end).toLocaleTimeString()}`));
      if (name === 'Status' && s.value && w > 60) {
        g.append(svg('text', { x: x(s.start) + 4, y: y + lane / 2 + 2, class: 'label' }, s.value));
      }
      root.append(g);
    }
  });
  for (let k = 0; k <= 4; k += 1) {
    const t = from.getTime() + (span * k) / 4;
    root.append(svg('text', { x: Math.min(W - 60, (W * k) / 4), y: lane * 3 + 16, class: 'tick' },
      new Date(t).toLocaleString([], { weekday: 'short', hour: '2-digit', minute: '2-digit' })));
  }
  return root;
}

export async function person(main, id) {
  main.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
  const p = await api(`/api/users/${id}`);
  const chart = h('div', { class: 'chart' });
  const summary = h('div', { class: 'summary' });
  const rows = h('tbody');
  const more = h('button', { type: 'button' }, 'Load more');
  const tabs = ['today', 'week'].map((k) => h('button', { type: 'button', 'aria-pressed': 'false', 'data-range': k, onclick: () => show(k) },
    k === 'today' ? 'Today' : 'This week'));
  main.replaceChildren(
    h('p', {}, h('a', { href: '#/board' }, '← Board')),
    h('div', { class: 'person-head' },
      h('img', { class: 'avatar big', src: p.image_72 || '', alt: '', width: 72, height: 72 }),
      h('div', {}, h('h1', {}, p.display_name || p.name), h('p', { class: 'muted' }, [p.name, p.title, p.email].filter(Boolean).join(' · ')))),
    sources(p.status),
    h('div', { class: 'tabs', role: 'group', 'aria-label': 'Range' }, ...tabs),
    chart,
    h('h2', {}, 'Time in status'), summary,
    h('h2', {}, 'History'),
    h('table', { class: 'history' },
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'When'), h('th', { scope: 'col' }, 'Changed'),
        h('th', { scope: 'col' }, 'Presence'), h('th', { scope: 'col' }, 'Status'), h('th', { scope: 'col' }, 'DND'))),
      rows),
    more,
  );

  let cursor = null;
  async function page() {
    const { from, to } = rangeOf('week');
    const q = new URLSearchParams({ from: new Date(from.getTime() - 30 * 86400000).toISOString(), to: to.toISOString(), limit: '50' });
    if (cursor) q.set('cursor', cursor);
    const r = await api(`/api/users/${id}/history?${q}`);
    for (const e of r.events) {
      rows.append(h('tr', {},
        h('td', {}, new Date(e.observed_at).toLocaleString()), h('td', {}, e.changed.join(', ')),
        h('td', {}, e.status.presence), h('td', {}, `${emoji(e.status.emoji)} ${e.status.text}`.trim()),
        h('td', {}, e.status.dnd?.enabled ? 'on' : '')));
    }
    cursor = r.next_cursor;
    more.hidden = !cursor;
  }
  more.addEventListener('click', page);

  async function show(kind) {
    tabs.forEach((t) => t.setAttribute('aria-pressed', String(t.dataset.range === kind)));
    const { from, to } = rangeOf(kind);
    const q = `from=${encodeURIComponent(from.toISOString())}&to=${encodeURIComponent(to.toISOString())}`;
    const events = [];
    let c = null;
    do {
      const r = await api(`/api/users/${id}/history?${q}&limit=1000${c ? `&cursor=${c}` : ''}`);
      events.push(...r.events);
      c = r.next_cursor;
    } while (c);
    chart.replaceChildren(timeline(events, from, to),
      h('p', { class: 'legend' }, h('span', { class: 'key active' }, 'active'), h('span', { class: 'key away' }, 'away'),
        h('span', { class: 'key dnd-on' }, 'DND'), h('span', { class: 'key text' }, 'status text')));
    const s = await api(`/api/users/${id}/summary?${q}`);
    const list = h('dl', {});
    for (const [k, v] of Object.entries(s.presence)) list.append(h('dt', {}, k), h('dd', {}, duration(v)));
    list.append(h('dt', {}, 'do not disturb'), h('dd', {}, duration(s.dnd_seconds)));
    for (const [k, v] of Object.entries(s.status_text)) list.append(h('dt', {}, `“${k}”`), h('dd', {}, duration(v)));
    summary.replaceChildren(list);
  }
  await show('today');
  await page();
  return () => {};
}
