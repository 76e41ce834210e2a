// Browser tests of the web terminal's copy/paste, resize and reconnect, and of the Settings
// page (issue 18): real headless Chromium (Debian's package) driven by playwright-core,
// against a real cove-server with its embedded agent on the Docker engine (started by
// scripts/test-ui.sh). The steps depend on each other and run in order.
import { test as nodeTest, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { basicAuth, call, gitIn } from './lib.mjs';

const URL = process.env.COVE_URL;
const USER = process.env.COVE_USER;
const PASSWORD = process.env.COVE_PASSWORD;
const SHOTS = process.env.COVE_SCREENSHOTS;
const CHROMIUM = process.env.COVE_CHROMIUM || '/usr/bin/chromium';
if (!URL || !USER || !PASSWORD || !SHOTS) {
  throw new Error('run through scripts/test-ui.sh (COVE_URL, COVE_USER, COVE_PASSWORD, COVE_SCREENSHOTS)');
}
const REPO = 'termapp';
const DEVFILE = `schemaVersion: 2.2.0
metadata:
  name: termapp
components:
  - name: app
    container:
      image: cove/universal:latest
`;

let browser;
let context;
let page;
let work;
let envId;
let failed = null;
// The terminal WebSockets of the page, routed through Playwright so a test can cut them.
const sockets = [];
let networkDown = false;

function test(name, fn) {
  nodeTest(name, async (t) => {
    if (failed) {
      t.skip(`an earlier step failed: ${failed}`);
      return;
    }
    try {
      await fn(t);
    } catch (err) {
      failed = name;
      if (page) await shot(`FAILED-${name.replace(/[^a-z0-9]+/gi, '-').slice(0, 40)}`).catch(() => {});
      throw err;
    }
  });
}

setTimeout(() => {
  console.error('terminal tests: watchdog (6 min) expired');
  process.exit(1);
}, 6 * 60 * 1000).unref();

const shot = (name) => page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
const rest = (method, p, body) => call(basicAuth(USER, PASSWORD), method, p, body);
const git = (args) => gitIn(work, args);



/** The terminal's text, one string per row (xterm's DOM renderer). */
async function terminalRows() {
  return page.$$eval('#terminal .xterm-rows > div', (rows) => rows.map((r) => r.textContent.replace(/\u00a0/g, ' ').trimEnd()));
}

/** Waits (20 s) until a terminal row is exactly `text`; the rows. */
async function waitForRow(text, count = 1) {
  let rows = [];
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    rows = await terminalRows();
    if (rows.filter((r) => r.trim() === text).length >= count) return rows;
    await page.waitForTimeout(200);
  }
  assert.fail(`no terminal row ${JSON.stringify(text)} (x${count}): ${JSON.stringify(rows)}`);
}

async function typeLine(line) {
  await page.locator('#terminal').click();
  await page.keyboard.type(line, { delay: 5 });
  await page.keyboard.press('Enter');
}

before(async () => {
  work = mkdtempSync(path.join(tmpdir(), 'cove-term-repo-'));
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
  context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: URL });
  page = await context.newPage();
  page.on('dialog', (d) => d.accept());
  page.on('pageerror', (err) => console.error('page error:', err.message));
  // Every terminal socket passes through here; with the network "down" new ones fail at once.
  await page.routeWebSocket(/\/api\/v1\/environments\/[^/]+\/terminal\?/, (ws) => {
    if (networkDown) {
      ws.close({ code: 4001, reason: 'network down (test)' });
      return;
    }
    const server = ws.connectToServer();
    sockets.push({ ws, server });
  });
});

after(async () => {
  if (envId) await rest('DELETE', `/environments/${encodeURIComponent(envId)}`).catch(() => {});
  await rest('PUT', '/user/settings', { dotfiles: null }).catch(() => {});
  if (browser) await browser.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

test('set up: a repository with a devfile, an environment, logged in', async () => {
  await rest('POST', '/repos', { name: REPO });
  git(['init', '-q', '-b', 'main']);
  writeFileSync(path.join(work, 'devfile.yaml'), DEVFILE);
  git(['add', '.']);
  git(['commit', '-q', '-m', 'devfile']);
  const u = new globalThis.URL(`${URL}/git/${USER}/${REPO}.git`);
  u.username = USER;
  u.password = PASSWORD;
  git(['push', '-q', u.toString(), 'main']);
  const env = await rest('POST', `/repos/${USER}/${REPO}/environments`, { name: 'term-ui', idle_timeout_secs: 0 });
  envId = env.id;
  await page.goto(`${URL}/`);
  await page.getByLabel('User name').fill(USER);
  await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await page.keyboard.press('Enter');
  await page.locator('[data-testid=username]', { hasText: USER }).waitFor();
});

test('settings: the dotfiles repository is shown, set, refused with the server\'s reason, and cleared', async () => {
  await page.getByRole('link', { name: 'Settings' }).click();
  await page.waitForURL(/#\/settings$/);
  await page.getByRole('heading', { name: 'Settings' }).waitFor();
  await page.locator('#dotfiles-current', { hasText: 'No dotfiles repository is set.' }).waitFor();
  // a Cove repository the user can read
  await page.getByLabel('Dotfiles repository').fill(`${USER}/${REPO}`);
  await page.getByRole('button', { name: 'Save', exact: true }).click();
  await page.locator('#settings-status', { hasText: 'Saved.' }).waitFor();
  await page.locator('#dotfiles-current code', { hasText: `${USER}/${REPO}` }).waitFor();
  assert.equal((await rest('GET', '/user/settings')).dotfiles, `${USER}/${REPO}`);
  // something the server refuses: its reason is shown, the setting is unchanged
  await page.getByLabel('Dotfiles repository').fill('file:///etc/passwd');
  await page.getByRole('button', { name: 'Save', exact: true }).click();
  const error = page.locator('#settings-error');
  await error.filter({ hasText: /\S/ }).waitFor();
  const reason = await error.textContent();
  assert.doesNotMatch(reason, /^\d{3} /, `the server's reason, not only a status: ${reason}`);
  await shot('settings-dotfiles-error');
  assert.equal((await rest('GET', '/user/settings')).dotfiles, `${USER}/${REPO}`);
  // after a reload the stored value is shown
  await page.reload();
  await page.locator('#dotfiles-current code', { hasText: `${USER}/${REPO}` }).waitFor();
  assert.equal(await page.getByLabel('Dotfiles repository').inputValue(), `${USER}/${REPO}`);
  await shot('settings');
  await page.getByRole('button', { name: 'Clear' }).click();
  await page.locator('#settings-status', { hasText: 'Cleared.' }).waitFor();
  await page.locator('#dotfiles-current', { hasText: 'No dotfiles repository is set.' }).waitFor();
  assert.equal((await rest('GET', '/user/settings')).dotfiles ?? null, null);
});

test('settings: the editor of new environments is chosen and kept beside the dotfiles', async () => {
  await rest('PUT', '/user/settings', { dotfiles: `${USER}/${REPO}`, editor: 'terminal' });
  // the page may already show #/settings (the step above): reload to read the new settings
  await page.goto(`${URL}/#/settings`);
  await page.reload();
  await page.locator('#dotfiles-current code', { hasText: `${USER}/${REPO}` }).waitFor();
  assert.equal(await page.locator('#editor').inputValue(), 'terminal');
  await page.locator('#editor').selectOption('vscode');
  await page.getByRole('button', { name: 'Save editor' }).click();
  await page.locator('#settings-status', { hasText: 'Editor saved.' }).waitFor();
  const settings = await rest('GET', '/user/settings');
  assert.equal(settings.editor, 'vscode');
  assert.equal(settings.dotfiles, `${USER}/${REPO}`, 'saving the editor keeps the dotfiles');
  await page.reload();
  await page.locator('#dotfiles-current code', { hasText: `${USER}/${REPO}` }).waitFor();
  assert.equal(await page.locator('#editor').inputValue(), 'vscode');
  await rest('PUT', '/user/settings', { dotfiles: null, editor: 'terminal' });
});

test('the terminal opens when the environment runs', async () => {
  await page.goto(`${URL}/#/envs/${encodeURIComponent(envId)}`);
  await page.locator('#env-state[data-state=running]').waitFor({ timeout: 180_000 });
  await page.locator('.term-status[data-state=connected]').waitFor({ timeout: 30_000 });
  await page.waitForFunction(() => [...document.querySelectorAll('#terminal .xterm-rows > div')]
    .some((r) => /[#$]$/.test(r.textContent.replace(/\u00a0/g, ' ').trim())), null, { timeout: 20_000 });
});

test('copy and paste: output selected and copied with Ctrl+Shift+C, pasted back with Ctrl+Shift+V, runs', async () => {
  await typeLine("clear; echo 'echo pasted-$((6*7))'");
  await waitForRow('echo pasted-$((6*7))');
  // triple click selects the row
  const row = page.locator('#terminal .xterm-rows > div').filter({ hasText: /^echo pasted-\$\(\(6\*7\)\)\s*$/ }).first();
  const box = await row.boundingBox();
  await page.mouse.click(box.x + 30, box.y + box.height / 2, { clickCount: 3 });
  await page.keyboard.press('Control+Shift+C');
  let copied = '';
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline) {
    copied = await page.evaluate(() => navigator.clipboard.readText());
    if (copied.trim()) break;
    await page.waitForTimeout(100);
  }
  assert.equal(copied.trim(), 'echo pasted-$((6*7))');
  await shot('terminal-copied');
  await page.keyboard.press('Control+Shift+V');
  // the paste reads the clipboard asynchronously: Enter once the line is on the prompt
  await page.waitForFunction(() => [...document.querySelectorAll('#terminal .xterm-rows > div')]
    .some((r) => /[#$] echo pasted-\$\(\(6\*7\)\)\s*$/.test(r.textContent.replace(/\u00a0/g, ' '))), null, { timeout: 10_000 });
  await page.keyboard.press('Enter');
  await waitForRow('pasted-42');
});

test('resize: the terminal fits its element and `stty size` agrees after the viewport changes', async () => {
  const size = () => page.locator('#terminal').evaluate((el) => ({ cols: Number(el.dataset.cols), rows: Number(el.dataset.rows) }));
  const before = await size();
  await typeLine('clear; stty size');
  await waitForRow(`${before.rows} ${before.cols}`);
  await page.setViewportSize({ width: 820, height: 900 });
  await page.waitForFunction((cols) => Number(document.querySelector('#terminal').dataset.cols) !== cols, before.cols);
  const after = await size();
  assert.ok(after.cols < before.cols, `narrower: ${JSON.stringify({ before, after })}`);
  // the terminal's columns fill the element: the screen is as wide as the box's content
  const fill = await page.locator('#terminal').evaluate((el) => {
    const screen = el.querySelector('.xterm-screen').getBoundingClientRect().width;
    const style = getComputedStyle(el);
    const inner = el.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    return { screen, inner };
  });
  assert.ok(fill.screen <= fill.inner && fill.screen > fill.inner - 20, `fits: ${JSON.stringify(fill)}`);
  await typeLine('clear; stty size');
  await waitForRow(`${after.rows} ${after.cols}`);
  await shot('terminal-resized');
  // wider again: more columns, and the shell is told
  await page.setViewportSize({ width: 1280, height: 900 });
  await page.waitForFunction((cols) => Number(document.querySelector('#terminal').dataset.cols) > cols, after.cols);
  const wide = await size();
  await typeLine('clear; stty size');
  await waitForRow(`${wide.rows} ${wide.cols}`);
});

test('reconnect: after a network blip the page shows "Reconnecting…", then the same shell is back', async () => {
  await typeLine('clear; export X=42; echo ready-$((40+2))');
  await waitForRow('ready-42');
  // the network goes down: the open socket is cut on both sides, new ones fail
  networkDown = true;
  const { ws, server } = sockets.at(-1);
  server.close({ code: 4001, reason: 'network blip (test)' });
  ws.close({ code: 4001, reason: 'network blip (test)' });
  const status = page.locator('.term-status');
  await page.locator('.term-status[data-state=reconnecting]').waitFor({ timeout: 10_000 });
  assert.match(await status.textContent(), /^Reconnecting…/);
  // it keeps trying, with back-off
  await page.locator('.term-status', { hasText: 'attempt 2' }).waitFor({ timeout: 10_000 });
  await shot('terminal-reconnecting');
  // the network is back: the page reconnects by itself to the same shell
  const opened = sockets.length;
  networkDown = false;
  await page.locator('.term-status[data-state=connected]').waitFor({ timeout: 30_000 });
  assert.ok(sockets.length > opened, 'a new socket was opened');
  await typeLine('echo "val:$X:"');
  const rows = await waitForRow('val:42:');
  // output shown before the blip is not shown twice (the replay starts where the page was)
  assert.equal(rows.filter((r) => r.trim() === 'ready-42').length, 1, JSON.stringify(rows));
  await shot('terminal-reconnected');
});
