// A Chex stack for browser tests, set up the way an operator would: `chex sim slack` as Slack,
// `chex admin create-account` for the first admin and a member, `chex serve`, then REST for the
// workspace token and the check. Each stack has its own ports, database and simulator.

import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

export const BIN = process.env.CHEX_BIN;
export const SHOTS = process.env.SCREENSHOT_DIR;
export const ADMIN = { email: 'admin@web.test', password: 'admin-password-123' };
export const MEMBER = { email: 'member@web.test', password: 'member-password-123' };

function freePort() {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
}

export async function waitFor(fn, what, ms = 30000) {
  const deadline = Date.now() + ms;
  for (;;) {
    try { if (await fn()) return; } catch { /* not yet */ }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
  });
}

export class Stack {
  /** `env` overrides the server's environment (polling intervals, say). */
  constructor(team, users, env = {}) {
    this.team = team;
    this.users = users;
    this.extraEnv = env;
    this.dir = mkdtempSync(join(tmpdir(), 'chex-browser-'));
  }

  env() {
    return {
      ...process.env,
      CHEX_DATABASE_URL: `sqlite://${this.dir}/chex.db?mode=rwc`,
      CHEX_BIND: `127.0.0.1:${this.port}`,
      CHEX_JWT_SECRET: 'browser-test-secret-browser-test-secret',
      CHEX_SECRET_KEY: 'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=',
      CHEX_SLACK_API_URL: `${this.simBase}/api`,
      CHEX_SLACK_RATE_SCALE: '10',
      CHEX_POLL_WATCHED_INTERVAL: '1',
      CHEX_POLL_SWEEP_INTERVAL: '1',
      CHEX_POLL_DND_INTERVAL: '5',
      CHEX_LOG: 'warn',
      ...this.extraEnv,
    };
  }

  /** Starts everything and waits until every simulated person has a status; returns them. */
  async start() {
    assert.ok(BIN, 'CHEX_BIN names the chex binary');
    this.simPort = await freePort();
    this.port = await freePort();
    this.base = `http://127.0.0.1:${this.port}`;
    this.simBase = `http://127.0.0.1:${this.simPort}`;
    this.sim = spawn(BIN, ['sim', 'slack', '--bind', `127.0.0.1:${this.simPort}`, '--team', this.team,
      '--users', String(this.users), '--change-every', '0', '--rate-scale', '0'], { stdio: ['ignore', 'ignore', 'inherit'] });
    await waitFor(async () => (await fetch(`${this.simBase}/_sim/users?team=${this.team}`)).ok, 'the simulator');
    for (const [who, admin] of [[ADMIN, true], [MEMBER, false]]) {
      execFileSync(BIN, ['admin', 'create-account', '--email', who.email, '--org', 'web', ...(admin ? ['--admin'] : [])],
        { env: { ...this.env(), CHEX_ADMIN_PASSWORD: who.password }, stdio: ['ignore', 'ignore', 'inherit'] });
    }
    await this.startServer();
    const token = await this.adminToken();
    const lower = this.team.toLowerCase();
    const conn = await this.rest('/api/connections/slack', {
      method: 'POST', token, body: { token: `xoxb-sim-${lower}`, signing_secret: `signing-secret-${lower}` },
    });
    assert.equal(conn.status, 201, JSON.stringify(conn.data));
    const check = await this.rest('/api/chex/slack', { method: 'POST', token, body: { connection_id: conn.data.id, interval_secs: 1 } });
    assert.equal(check.status, 201, JSON.stringify(check.data));
    await fetch(`${this.simBase}/_sim/events_url`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ url: `${this.base}/slack/events` }),
    });
    let people = [];
    await waitFor(async () => {
      people = [];
      let cursor = null;
      do {
        const r = await this.rest(`/api/users?limit=1000${cursor ? `&cursor=${cursor}` : ''}`, { token });
        people.push(...r.data.users);
        cursor = r.data.next_cursor;
      } while (cursor);
      return people.length === this.users && people.every((p) => p.status);
    }, 'the workspace to be swept', 60000);
    return people;
  }

  startServer() {
    this.server = spawn(BIN, ['serve'], { env: this.env(), stdio: ['ignore', 'ignore', 'inherit'] });
    return waitFor(async () => (await fetch(`${this.base}/readyz`)).ok, 'chex to be ready');
  }

  async stopServer() {
    const gone = new Promise((r) => this.server.once('exit', r));
    this.server.kill('SIGTERM');
    await gone;
  }

  stop() {
    this.server?.kill('SIGKILL');
    this.sim?.kill('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
  }

  async rest(path, { method = 'GET', body, token } = {}) {
    const headers = { 'content-type': 'application/json' };
    if (token) headers.authorization = `Bearer ${token}`;
    const r = await fetch(`${this.base}${path}`, { method, headers, body: body && JSON.stringify(body) });
    const data = await r.json().catch(() => null);
    return { status: r.status, data };
  }

  /** Sets a custom status in the simulator, as a person editing their profile in Slack would. */
  async setStatus(user, text, emoji = ':zap:') {
    const r = await fetch(`${this.simBase}/_sim/status`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ team: this.team, user, text, emoji }),
    });
    assert.equal(r.status, 200);
  }

  async adminToken() {
    return (await this.rest('/api/auth/login', { method: 'POST', body: ADMIN })).data.access_token;
  }

  async logIn(page, who) {
    await page.goto(`${this.base}/`);
    await page.getByLabel('Email').fill(who.email);
    await page.getByLabel('Password').fill(who.password);
    await page.getByRole('button', { name: 'Sign in' }).click();
  }
}
