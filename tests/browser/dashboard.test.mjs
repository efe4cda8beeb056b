// The dashboard and widget in Debian's Chromium, driven by playwright-core, against a real Chex
// (`chex serve`) and a separate Slack simulator (`chex sim slack`): see harness.mjs.
//
// Run by tests/it/browser.rs (`cargo test`), which passes CHEX_BIN. SCREENSHOT_DIR, when set,
// receives board.png, person.png and widget.png (docs/screenshots in the repo).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { ADMIN, MEMBER, SHOTS, Stack, launchBrowser, waitFor } from './harness.mjs';

const TEAM = 'T0WEB';
const USERS = 12;
const stack = new Stack(TEAM, USERS);
let people;
let browser;
let base;

before(async () => {
  people = await stack.start();
  base = stack.base;
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  stack.stop();
});

const logIn = (page, who) => stack.logIn(page, who);
const simStatus = (user, text, emoji) => stack.setStatus(user, text, emoji);
const rest = (path, o) => stack.rest(path, o);
const adminToken = () => stack.adminToken();
const stopServer = () => stack.stopServer();
const startServer = () => stack.startServer();

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
