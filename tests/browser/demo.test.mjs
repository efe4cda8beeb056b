// `chex demo` in Chromium: the one command a newcomer runs shows Slack, Jira and Gmail on the
// board — presence and status from the Slack simulator, in-progress issues and their last move
// from the Jira simulator, out-of-office from the Gmail simulator.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN, SHOTS, launchBrowser, waitFor } from './harness.mjs';

const PASSWORD = 'demo-browser-password';
let demo;
let dir;
let base;
let browser;

before(async () => {
  const port = await new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
  dir = mkdtempSync(join(tmpdir(), 'chex-demo-'));
  base = `http://127.0.0.1:${port}`;
  demo = spawn(BIN, ['demo', '--users', '12', '--change-every', '2'], {
    env: {
      ...process.env,
      CHEX_DATABASE_URL: `sqlite://${dir}/chex.db?mode=rwc`,
      CHEX_BIND: `127.0.0.1:${port}`,
      CHEX_DEMO_PASSWORD: PASSWORD,
      CHEX_POLL_JIRA_INTERVAL: '1',
      CHEX_POLL_GMAIL_INTERVAL: '1',
      CHEX_LOG: 'warn',
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  await waitFor(async () => (await fetch(`${base}/readyz`)).ok, 'the demo');
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  demo?.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

test('the demo board shows all three sources', async () => {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await page.goto(`${base}/`);
  await page.getByLabel('Email').fill('admin@demo.chex');
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('li.card').first().waitFor();
  // The first mailbox starts on vacation; Jira issues are in progress for most people.
  await waitFor(async () => (await page.locator('li.card .ooo').count()) > 0, 'an out-of-office badge', 20000);
  assert.match(await page.locator('li.card .ooo').first().innerText(), /Out of office until/);
  await waitFor(async () => (await page.locator('li.card .jira .issue').count()) > 0, 'a Jira issue', 20000);
  assert.match(await page.locator('li.card .jira .issue').first().innerText(), /^OPS-\d+$/);
  // Issues keep moving in the simulator: a move shows on a card without a reload.
  await waitFor(async () => (await page.locator('li.card .jira .moved').count()) > 0, 'a Jira move', 30000);
  assert.match(await page.locator('li.card .jira .moved').first().innerText(), /^OPS-\d+(: .+)? → .+$/);
  if (SHOTS) await page.screenshot({ path: join(SHOTS, 'demo-board.png') });
  await page.close();
});
