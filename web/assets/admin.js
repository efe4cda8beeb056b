// Admin pages: accounts, source connections (Slack, Jira, Gmail), checks and bot tokens of the
// caller's organization.
// The server enforces the admin role on every call; this page only avoids showing dead ends.

import { api, claims } from './api.js';
import { h } from './live.js';

function form(label, fields, submit) {
  const out = h('p', { class: 'result', role: 'status', 'aria-live': 'polite' });
  const inputs = fields.map(([name, text, type = 'text', required = true]) => {
    const id = `f-${label}-${name}`.replace(/\W/g, '-');
    return [name, h('label', { for: id }, text), h('input', { id, name, type, required, autocomplete: 'off' })];
  });
  const f = h('form', { class: 'inline', 'aria-label': label },
    ...inputs.map(([, l, i]) => h('span', { class: 'field' }, l, i)),
    h('button', { type: 'submit' }, label), out);
  f.addEventListener('submit', async (e) => {
    e.preventDefault();
    const body = {};
    for (const [name, , input] of inputs) if (input.value !== '') body[name] = input.value;
    try {
      out.textContent = await submit(body) || 'Done.';
      out.className = 'result ok';
      f.reset();
    } catch (err) {
      out.textContent = err.message;
      out.className = 'result err';
    }
  });
  return f;
}

function table(headers, rows) {
  return h('table', {}, h('thead', {}, h('tr', {}, ...headers.map((x) => h('th', { scope: 'col' }, x)))),
    h('tbody', {}, ...rows));
}

export async function admin(main) {
  if (claims()?.role !== 'admin') {
    main.replaceChildren(h('h1', {}, 'Admins only'), h('p', { id: 'denied' }, 'Your account cannot open the admin pages. Ask an admin of your organization.'));
    return () => {};
  }
  const sections = { accounts: h('section', { id: 'accounts' }), workspaces: h('section', { id: 'workspaces' }),
    checks: h('section', { id: 'checks' }), tokens: h('section', { id: 'tokens' }) };
  main.replaceChildren(h('h1', {}, 'Admin'), ...Object.values(sections));

  async function accounts() {
    const { accounts: list } = await api('/api/accounts');
    sections.accounts.replaceChildren(h('h2', {}, 'Accounts'),
      table(['Email', 'Role', 'State', ''], list.map((a) => h('tr', {},
        h('td', {}, a.email), h('td', {}, a.role), h('td', {}, a.disabled ? 'disabled' : 'active'),
        h('td', {},
          h('button', { type: 'button', onclick: async () => { await api(`/api/accounts/${a.id}`, { method: 'PATCH', body: { role: a.role === 'admin' ? 'member' : 'admin' } }); accounts(); } },
            a.role === 'admin' ? 'Make member' : 'Make admin'),
          h('button', { type: 'button', onclick: async () => { await api(`/api/accounts/${a.id}`, { method: 'PATCH', body: { disabled: !a.disabled } }); accounts(); } },
            a.disabled ? 'Enable' : 'Disable'))))),
      form('Create account', [['email', 'Email', 'email'], ['password', 'Password', 'password']], async (b) => {
        await api('/api/accounts', { method: 'POST', body: b }); accounts(); return 'Account created.';
      }));
  }

  async function workspaces() {
    const { connections } = await api('/api/connections');
    const connected = (c) => { workspaces(); checks(); return `Connected ${c.name} (${c.fingerprint}).`; };
    sections.workspaces.replaceChildren(h('h2', {}, 'Connections'),
      table(['Source', 'Account', 'Name', 'Credential', 'State', 'Last error', ''], connections.map((c) => h('tr', {},
        h('td', {}, c.kind), h('td', {}, c.team_id ?? c.external_id), h('td', {}, c.name), h('td', {}, h('code', {}, c.fingerprint)),
        h('td', {}, c.status), h('td', {}, c.last_error ?? ''),
        h('td', {}, h('button', { type: 'button', onclick: async () => {
          if (confirm(`Delete ${c.name}? Polling stops.`)) { await api(`/api/connections/${c.id}`, { method: 'DELETE' }); workspaces(); }
        } }, 'Delete'))))),
      form('Upload token', [['token', 'Slack bot token (xoxb-…)', 'password'], ['signing_secret', 'Signing secret', 'password', false]],
        async (b) => connected(await api('/api/connections/slack', { method: 'POST', body: b }))),
      form('Connect Jira', [['site_url', 'Site (https://…atlassian.net)', 'url'], ['email', 'Account email', 'email'], ['api_token', 'API token', 'password']],
        async (b) => connected(await api('/api/connections/jira', { method: 'POST', body: b }))),
      form('Connect Gmail', [['client_id', 'OAuth client id'], ['client_secret', 'Client secret', 'password'], ['refresh_token', 'Refresh token', 'password']],
        async (b) => connected(await api('/api/connections/gmail', { method: 'POST', body: b }))));
  }

  async function checks() {
    const { checks: list } = await api('/api/chex');
    sections.checks.replaceChildren(h('h2', {}, 'Checks'),
      table(['Kind', 'Subject', 'Every', 'Last polled', 'Last error', 'Enabled'], list.map((c) => h('tr', {},
        h('td', {}, c.kind), h('td', {}, c.subject), h('td', {}, `${c.interval_secs} s`),
        h('td', {}, c.last_polled_at ? new Date(c.last_polled_at).toLocaleString() : '—'), h('td', {}, c.last_error ?? ''),
        h('td', {}, h('input', { type: 'checkbox', checked: c.enabled, 'aria-label': `Check ${c.id} enabled`,
          onchange: async (e) => { await api(`/api/chex/${c.id}`, { method: 'PATCH', body: { enabled: e.target.checked } }); } }))))));
  }

  async function tokens() {
    const { tokens: list } = await api('/api/tokens');
    const shown = h('p', { class: 'once', role: 'status', 'aria-live': 'polite' });
    sections.tokens.replaceChildren(h('h2', {}, 'Bot tokens'),
      table(['Name', 'Topics', 'Expires', 'State', ''], list.map((t) => h('tr', {},
        h('td', {}, t.name), h('td', {}, (t.topics || []).join(', ') || 'all'),
        h('td', {}, t.expires_at ? new Date(t.expires_at).toLocaleString() : 'never'), h('td', {}, t.revoked_at ? 'revoked' : 'active'),
        h('td', {}, t.revoked_at ? '' : h('button', { type: 'button', onclick: async () => { await api(`/api/tokens/${t.id}`, { method: 'DELETE' }); tokens(); } }, 'Revoke'))))),
      form('Create token', [['name', 'Name'], ['topics', 'Topics (comma-separated, optional)', 'text', false]], async (b) => {
        const body = { name: b.name };
        if (b.topics) body.topics = b.topics.split(',').map((x) => x.trim()).filter(Boolean);
        const t = await api('/api/tokens', { method: 'POST', body });
        await tokens();
        sections.tokens.append(h('p', { class: 'once' }, 'Copy it now, it is shown once: ', h('code', { id: 'new-token' }, t.token)));
        return 'Token created.';
      }), shown);
  }

  await Promise.all([accounts(), workspaces(), checks(), tokens()]);
  return () => {};
}
