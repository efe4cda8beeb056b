// The live connection: first-frame auth (the token never rides in a URL), subscribe, and on any
// drop a reconnect with jittered exponential backoff that resumes with `since`, so a change made
// while the page was offline still arrives, exactly once.

export class Live {
  /**
   * @param {object} o
   * @param {() => Promise<string|null>} o.token  current token (may refresh)
   * @param {string[]} o.topics
   * @param {(e: object, live: boolean) => void} o.onStatus   one status event (snapshot entries too, live=false)
   * @param {(state: string, detail?: string) => void} o.onState  connecting | live | offline | denied
   * @param {(topic: string, snapshot: object[]) => void} [o.onSnapshot]
   */
  constructor(o) {
    this.o = o;
    this.seqs = new Map(); // person topic -> last seq held
    this.attempt = 0;
    this.closed = false;
    this.connect();
  }

  url() {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    return `${proto}//${location.host}/ws`;
  }

  async connect() {
    if (this.closed) return;
    this.o.onState('connecting');
    const token = await this.o.token();
    if (!token) { this.o.onState('denied', 'not signed in'); return; }
    const ws = new WebSocket(this.url());
    this.ws = ws;
    ws.onopen = () => ws.send(JSON.stringify({ type: 'auth', token }));
    ws.onmessage = (m) => this.onMessage(JSON.parse(m.data));
    ws.onclose = (e) => this.onClose(e);
  }

  onMessage(m) {
    switch (m.type) {
      case 'authenticated': {
        const since = {};
        for (const [topic, seq] of this.seqs) since[topic] = seq;
        this.ws.send(JSON.stringify({ type: 'subscribe', id: 'live', topics: this.o.topics, since }));
        break;
      }
      case 'subscribed':
        this.attempt = 0;
        this.o.onState('live');
        for (const e of m.snapshot) this.take(e, false);
        this.o.onSnapshot?.(m.topics, m.snapshot);
        break;
      case 'resync':
        for (const e of m.snapshot) this.take(e, false);
        this.o.onSnapshot?.([m.topic], m.snapshot);
        break;
      case 'status':
        this.take(m, true);
        break;
      case 'error':
        if (m.code === 'forbidden' || m.code === 'unauthorized') {
          this.closed = true;
          this.o.onState('denied', m.message);
          this.ws.close();
        } else if (m.id === 'live') {
          // The subscription itself failed (the server was busy, say): start over with backoff.
          this.ws.close();
        }
        break;
      default:
        break;
    }
  }

  /** Applies an event once: replays and live frames may overlap, seqs decide. `live` is false
   * for snapshot entries (the state as of now, not a change happening now). */
  take(e, live) {
    const topic = e.user.topic;
    const held = this.seqs.get(topic) ?? 0;
    if (e.seq <= held) return;
    this.seqs.set(topic, e.seq);
    this.o.onStatus(e, live);
  }

  onClose(e) {
    if (this.closed) return;
    this.o.onState('offline');
    // 4001: the token expired or was revoked; `token()` refreshes before the next try.
    this.attempt += 1;
    const base = Math.min(15000, 500 * 2 ** Math.min(this.attempt - 1, 5));
    const delay = base / 2 + Math.random() * base / 2;
    this.timer = setTimeout(() => this.connect(), e.code === 4001 ? 100 : delay);
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    this.ws?.close();
  }
}

/** "2 min ago", "3 h ago". */
export function ago(iso, now = Date.now()) {
  if (!iso) return '';
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 60) return 'just now';
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

/** "for 25 min", "for 3 h" until an expiry. */
export function left(iso, now = Date.now()) {
  if (!iso) return '';
  const s = Math.round((Date.parse(iso) - now) / 1000);
  if (s <= 0) return '';
  if (s < 3600) return `${Math.max(1, Math.round(s / 60))} min left`;
  if (s < 86400) return `${Math.round(s / 3600)} h left`;
  return `${Math.round(s / 86400)} d left`;
}

/** Slack emoji codes to characters, for the common ones; others show as their code. */
const EMOJI = {
  ':calendar:': '📅', ':palm_tree:': '🌴', ':house:': '🏠', ':house_with_garden:': '🏡', ':car:': '🚗',
  ':spiral_calendar_pad:': '🗓️', ':face_with_thermometer:': '🤒', ':coffee:': '☕', ':brain:': '🧠',
  ':headphones:': '🎧', ':zap:': '⚡', ':one:': '1️⃣', ':airplane:': '✈️', ':hamburger:': '🍔',
  ':bus:': '🚌', ':speech_balloon:': '💬', ':computer:': '💻', ':sleeping:': '😴', ':male-technologist:': '👨‍💻',
};
export function emoji(code) { return code ? (EMOJI[code] ?? code) : ''; }

/** A text node-safe element builder. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
