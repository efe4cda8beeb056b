// Session and REST: the access token lives in sessionStorage (this tab only, never a cookie),
// and a 401 is answered by spending the refresh token once before giving up.

const KEY = 'chex.session';

export function session() {
  try { return JSON.parse(sessionStorage.getItem(KEY)) || null; } catch { return null; }
}

export function saveSession(s) {
  if (s) sessionStorage.setItem(KEY, JSON.stringify(s)); else sessionStorage.removeItem(KEY);
}

/** The JWT's claims (unverified: for display only; the server checks every request). */
export function claims(token = session()?.access_token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(part));
  } catch { return null; }
}

export class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

let refreshing = null;

/** Trades the refresh token for a new session; shared by concurrent callers. */
export async function refresh() {
  const s = session();
  if (!s?.refresh_token) return false;
  refreshing ??= fetch('/api/auth/refresh', {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ refresh_token: s.refresh_token }),
  }).then(async (r) => {
    if (!r.ok) return false;
    saveSession(await r.json());
    return true;
  }).catch(() => false).finally(() => { refreshing = null; });
  return refreshing;
}

export async function api(path, { method = 'GET', body, retry = true } = {}) {
  const headers = {};
  const s = session();
  if (s) headers.authorization = `Bearer ${s.access_token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (r.status === 401 && retry && path !== '/api/auth/login' && await refresh()) {
    return api(path, { method, body, retry: false });
  }
  const data = await r.json().catch(() => null);
  if (!r.ok) {
    throw new ApiError(r.status, data?.error?.code ?? 'error', data?.error?.message ?? r.statusText);
  }
  return data;
}

/** Every page of a cursor-paged list. */
export async function all(path, key) {
  const out = [];
  let cursor = null;
  do {
    const sep = path.includes('?') ? '&' : '?';
    const page = await api(`${path}${sep}limit=1000${cursor ? `&cursor=${cursor}` : ''}`);
    out.push(...page[key]);
    cursor = page.next_cursor;
  } while (cursor);
  return out;
}

/** A token good for at least another 30 s, refreshing when needed (for sockets). */
export async function freshToken() {
  const c = claims();
  if (c && c.exp * 1000 - Date.now() < 30000) await refresh();
  return session()?.access_token ?? null;
}
