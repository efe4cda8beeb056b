// The dashboard and widget in Debian's Chromium, driven by playwright-core, against a real Chex
// (`chex serve`) and a separate Slack simulator (`chex sim slack`), set up the way an operator
// would: CLI for the first admin, REST for the workspace token and the check.
//
// Run by tests/it/browser.rs (`cargo test`), which passes CHEX_BIN. SCREENSHOT_DIR, when set,
// receives board.png, person.png and widget.png (docs/screenshots in the repo).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const BIN = process.env.CHEX_BIN;
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const SHOTS = process.env.SCREENSHOT_DIR;
const TEAM = 'T0WEB';
const USERS = 12;
const ADMIN = { email: 'admin@web.test', password: 'admin-password-123' };
const MEMBER = { email: 'member@web.test', password: 'member-password-123' };

const dir = mkdtempSync(join(tmpdir(), 'chex-browser-'));
let simPort; let port; let sim; let server; let browser; let base; let simBase;

function freePort() {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
}

const serverEnv = () => ({
  ...process.env,
  CHEX_DATABASE_URL: `sqlite://${dir}/chex.db?mode=rwc`,
  CHEX_BIND: `127.0.0.1:${port}`,
  CHEX_JWT_SECRET: 'browser-test-secret-browser-test-secret',
  CHEX_SECRET_KEY: 'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=',
  CHEX_SLACK_API_URL: `${simBase}/api`,
  CHEX_SLACK_RATE_SCALE: '10',
  CHEX_POLL_WATCHED_INTERVAL: '1',
  CHEX_POLL_SWEEP_INTERVAL: '1',
  CHEX_POLL_DND_INTERVAL: '5',
  CHEX_LOG: 'warn',
});

async function waitFor(fn, what, ms = 20000) {
  const deadline = Date.now() + ms;
  for (;;) {
    try { if (await fn()) return; } catch { /* not yet */ }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function startServer() {
  server = spawn(BIN, ['serve'], { env: serverEnv(), stdio: ['ignore', 'ignore', 'inherit'] });
  return waitFor(async () => (await fetch(`${base}/readyz`)).ok, 'chex to be ready');
}

async function stopServer() {
  const gone = new Promise((r) => server.once('exit', r));
  server.kill('SIGTERM');
  await gone;
}

async function rest(path, { method = 'GET', body, token } = {}) {
  const headers = { 'content-type': 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  const r = await fetch(`${base}${path}`, { method, headers, body: body && JSON.stringify(body) });
  const data = await r.json().catch(() => null);
  return { status: r.status, data };
}

async function simStatus(user, text, emoji = ':zap:') {
  const r = await fetch(`${simBase}/_sim/status`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ team: TEAM, user, text, emoji }),
  });
  assert.equal(r.status, 200);
}

async function adminToken() {
  return (await rest('/api/auth/login', { method: 'POST', body: ADMIN })).data.access_token;
}

async function logIn(page, who) {
  await page.goto(`${base}/`);
  await page.getByLabel('Email').fill(who.email);
  await page.getByLabel('Password').fill(who.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

let people;

before(async () => {
  assert.ok(BIN, 'CHEX_BIN names the chex binary');
  simPort = await freePort();
  port = await freePort();
  base = `http://127.0.0.1:${port}`;
  simBase = `http://127.0.0.1:${simPort}`;
  sim = spawn(BIN, ['sim', 'slack', '--bind', `127.0.0.1:${simPort}`, '--team', TEAM, '--users', String(USERS),
    '--change-every', '0', '--rate-scale', '0'], { stdio: ['ignore', 'ignore', 'inherit'] });
  await waitFor(async () => (await fetch(`${simBase}/_sim/users?team=${TEAM}`)).ok, 'the simulator');
  for (const [who, admin] of [[ADMIN, true], [MEMBER, false]]) {
    execFileSync(BIN, ['admin', 'create-account', '--email', who.email, '--org', 'web', ...(admin ? ['--admin'] : [])],
      { env: { ...serverEnv(), CHEX_ADMIN_PASSWORD: who.password }, stdio: ['ignore', 'ignore', 'inherit'] });
  }
  await startServer();
  const token = await adminToken();
  const conn = await rest('/api/connections/slack', {
    method: 'POST', token,
    body: { token: `xoxb-sim-${TEAM.toLowerCase()}`, signing_secret: `signing-secret-${TEAM.toLowerCase()}` },
  });
  assert.equal(conn.status, 201, JSON.stringify(conn.data));
  const check = await rest('/api/chex/slack', { method: 'POST', token, body: { connection_id: conn.data.id, interval_secs: 1 } });
  assert.equal(check.status, 201, JSON.stringify(check.data));
  await fetch(`${simBase}/_sim/events_url`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ url: `${base}/slack/events` }),
  });
  await waitFor(async () => {
    const r = await rest('/api/users?limit=1000', { token });
    people = r.data.users;
    return people.length === USERS && people.every((p) => p.status);
  }, 'the workspace to be swept');
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
  });
});

after(async () => {
  await browser?.close();
  server?.kill('SIGKILL');
  sim?.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

test('the board shows the workspace, takes live changes, and survives a server restart', async () => {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  await logIn(page, ADMIN);
  const cards = page.locator('#board li.card');
  await waitFor(async () => (await cards.count()) === USERS, 'every card');
  await page.locator('#conn[data-state="live"]').waitFor();
  assert.match(await page.locator('.counts').textContent(), new RegExp(`${USERS} people`));

  const target = people[0];
  const started = Date.now();
  await simStatus(target.slack_id, 'Browser test');
  await page.locator('#board li.card', { hasText: 'Browser test' }).waitFor({ timeout: 2000 });
  console.log(`live change on the board after ${Date.now() - started} ms`);

  // The same page, not a reload: a marker set now must still be there afterwards.
  await page.evaluate(() => { window.chexMarker = 42; });
  await stopServer();
  await page.locator('#conn[data-state="offline"]').waitFor({ timeout: 10000 });
  await simStatus(target.slack_id, 'Changed while down', ':palm_tree:');
  await startServer();
  await page.locator('#board li.card', { hasText: 'Changed while down' }).waitFor({ timeout: 20000 });
  await page.locator('#conn[data-state="live"]').waitFor({ timeout: 20000 });
  assert.equal(await page.evaluate(() => window.chexMarker), 42, 'the page was not reloaded');

  // Search filters by name.
  const name = target.display_name || target.name;
  await page.getByLabel('Search by name').fill(name);
  await waitFor(async () => (await page.locator('#board li.card:visible').count()) >= 1, 'search results');
  assert.ok((await page.locator('#board li.card:visible').count()) < USERS);
  await page.getByLabel('Search by name').fill('');
  if (SHOTS) await page.screenshot({ path: join(SHOTS, 'board.png') });
  await page.close();
});

test('the person page draws the timeline, the summary and the history', async () => {
  const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
  await logIn(page, ADMIN);
  await page.locator('#board li.card').first().waitFor();
  await page.locator('#board li.card a', { hasText: people[0].display_name || people[0].name }).first().click();
  await page.locator('svg.timeline rect.band').first().waitFor();
  assert.ok(await page.locator('svg.timeline rect.band').count() >= 3, 'bands for presence, DND and status');
  await page.locator('table.history tbody tr').first().waitFor();
  assert.ok(await page.locator('.summary dt').count() >= 1);
  if (SHOTS) await page.screenshot({ path: join(SHOTS, 'person.png'), fullPage: true });
  await page.getByRole('button', { name: 'This week' }).click();
  await page.locator('[data-range="week"][aria-pressed="true"]').waitFor();
  assert.ok(await page.locator('svg.timeline rect.band').count() >= 3);
  await page.close();
});

test('a member cannot open the admin pages; an admin can', async () => {
  const page = await browser.newPage();
  await logIn(page, MEMBER);
  await page.locator('#board li.card').first().waitFor();
  assert.equal(await page.locator('nav [data-admin]').isVisible(), false, 'no admin link for members');
  await page.goto(`${base}/#/admin`);
  await page.locator('#denied').waitFor();
  const member = (await rest('/api/auth/login', { method: 'POST', body: MEMBER })).data.access_token;
  assert.equal((await rest('/api/accounts', { token: member })).status, 403, 'and the API agrees');
  await page.close();

  const adminPage = await browser.newPage();
  adminPage.on('pageerror', (e) => console.log('page error:', e.message));
  adminPage.on('console', (m) => { if (m.type() === 'error') console.log('console error:', m.text()); });
  await logIn(adminPage, ADMIN);
  await adminPage.locator('#board li.card').first().waitFor();
  await adminPage.goto(`${base}/#/admin`);
  await adminPage.locator('#workspaces').getByRole('cell', { name: TEAM, exact: true }).waitFor({ timeout: 10000 }).catch(async (e) => {
    console.log(await adminPage.locator('main').innerText());
    throw e;
  });
  await adminPage.locator('#accounts').getByRole('cell', { name: MEMBER.email, exact: true }).waitFor();
  await adminPage.getByLabel('Name').fill('wall display');
  await adminPage.getByRole('button', { name: 'Create token' }).click();
  await adminPage.locator('#new-token').waitFor();
  assert.match(await adminPage.locator('#new-token').textContent(), /^chex_bot_/);
  await adminPage.close();
});

test('the widget renders with a scoped token and refuses another team', async () => {
  const token = await adminToken();
  const bot = await rest('/api/tokens', { method: 'POST', token, body: { name: 'intranet widget', topics: [`team:${TEAM}`] } });
  assert.equal(bot.status, 201);
  const page = await browser.newPage({ viewport: { width: 300, height: 420 } });
  await page.goto(`${base}/widget?team=${TEAM}#token=${bot.data.token}`);
  await waitFor(async () => (await page.locator('#people li').count()) === USERS, 'widget rows');
  await page.locator('#state', { hasText: 'active' }).waitFor();
  await simStatus(people[1].slack_id, 'Widget live');
  await page.locator('#people li', { hasText: 'Widget live' }).waitFor({ timeout: 2000 });
  if (SHOTS) await page.screenshot({ path: join(SHOTS, 'widget.png') });

  await page.goto(`${base}/widget?team=T0OTHER#token=${bot.data.token}`);
  await page.locator('#error', { hasText: 'Not allowed' }).waitFor();
  assert.equal(await page.locator('#people li').count(), 0);
  await page.close();
});
