// VS Code in the browser (issue 18, docs/vscode.md), in Chromium against the real server of
// scripts/test-ui.sh: an environment created with the editor `vscode` shows "Open in VS Code";
// the link opens code-server through the server's proxy; a file of /projects is opened, edited
// and saved with Ctrl+S, and the change is read back with the API's exec. Another user gets
// 404 on the editor's URL. The image cove/code-server must exist (images/build.sh): without it
// the environment fails and so does this test.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { gitIn, logIn } from './lib.mjs';

const URL = process.env.COVE_URL;
const USER = process.env.COVE_USER;
const PASSWORD = process.env.COVE_PASSWORD;
const ADMIN_TOKEN = process.env.COVE_ADMIN_TOKEN;
const SHOTS = process.env.COVE_SCREENSHOTS;
const CHROMIUM = process.env.COVE_CHROMIUM || '/usr/bin/chromium';
if (!URL || !USER || !PASSWORD || !SHOTS || !ADMIN_TOKEN) {
  throw new Error('run through scripts/test-ui.sh (COVE_URL, COVE_USER, COVE_PASSWORD, COVE_ADMIN_TOKEN, COVE_SCREENSHOTS)');
}
const REPO = 'vscodeapp';
const DEVFILE = `schemaVersion: 2.2.0
metadata:
  name: vscodeapp
components:
  - name: dev
    container:
      image: cove/universal:latest
      mountSources: true
      memoryLimit: 2Gi
`;

// Never hang the test command.
setTimeout(() => {
  console.error('vscode ui test: watchdog (6 min) expired');
  process.exit(1);
}, 6 * 60 * 1000).unref();

let browser;
let context;
let page;
let work;
let env;

const shot = (pg, name) => pg.screenshot({ path: path.join(SHOTS, `vscode-${name}.png`) });


const git = (args) => gitIn(work, args);

/** A REST call with the page's session (and its CSRF token). */
async function api(method, p, body) {
  const res = await page.evaluate(async ({ method, p, body }) => {
    const s = await (await fetch('/api/v1/session', { headers: { 'X-Cove-UI': '1' } })).json();
    const r = await fetch(`/api/v1${p}`, {
      method,
      headers: { 'X-Cove-UI': '1', 'X-Cove-CSRF': s.csrf_token, 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: r.status, text: await r.text() };
  }, { method, p, body });
  assert.ok(res.status < 300, `${method} ${p}: ${res.status} ${res.text}`);
  return res.text ? JSON.parse(res.text) : null;
}


before(async () => {
  work = mkdtempSync(path.join(tmpdir(), 'cove-ui-vscode-'));
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
  context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  page = await context.newPage();
  page.on('pageerror', (err) => console.error('page error:', err.message));
});

after(async () => {
  if (env) await api('DELETE', `/environments/${env.id}`).catch(() => {});
  if (browser) await browser.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

test('VS Code in the browser: open a file from /projects, type, save; the change is in the environment', async () => {
  const t0 = Date.now();
  const mark = (step) => console.log(`[vscode] ${step}: ${Date.now() - t0} ms`);
  await logIn(page, USER, PASSWORD);
  await api('POST', '/repos', { name: REPO });
  git(['init', '-q', '-b', 'main']);
  writeFileSync(path.join(work, 'devfile.yaml'), DEVFILE);
  writeFileSync(path.join(work, 'hello.txt'), 'hello\n');
  git(['add', '.']);
  git(['commit', '-q', '-m', 'start']);
  const push = new globalThis.URL(`${URL}/git/${USER}/${REPO}.git`);
  push.username = USER;
  push.password = PASSWORD;
  git(['push', '-q', push.toString(), 'main']);

  env = await api('POST', `/repos/${USER}/${REPO}/environments`, { name: 'vsc', editor: 'vscode' });
  assert.equal(env.editor, 'vscode');
  assert.equal(env.editor_url, `${URL}/env/${env.id}/vscode/`);
  await page.goto(`${URL}/#/envs/${encodeURIComponent(env.id)}`);
  await page.locator('#env-state[data-state=running]').waitFor({ timeout: 180_000 });
  const link = page.getByRole('link', { name: 'Open in VS Code' });
  await link.waitFor();
  assert.equal(await link.getAttribute('href'), env.editor_url);
  await shot(page, 'env-page');
  mark('environment running');

  // code-server starts within seconds of the environment; until it listens the proxy says 503
  for (let i = 0; i < 120; i += 1) {
    const r = await page.request.get(env.editor_url);
    if (r.status() === 200) break;
    assert.equal(r.status(), 503, await r.text());
    await new Promise((res) => setTimeout(res, 500));
  }
  const [editor] = await Promise.all([context.waitForEvent('page'), link.click()]);
  editor.on('pageerror', (err) => console.error('editor page error:', err.message));
  await editor.locator('.monaco-workbench').waitFor({ timeout: 120_000 });
  mark('workbench shown');
  assert.match(editor.url(), new RegExp(`/env/${env.id}/vscode/\\?folder=/projects/${REPO}`));
  // the explorer lists the sources; open hello.txt
  const row = editor.locator('.explorer-folders-view .monaco-list-row', { hasText: 'hello.txt' });
  await row.waitFor({ timeout: 120_000 });
  mark('explorer lists hello.txt');
  await row.dblclick();
  const lines = editor.locator('.editor-instance .monaco-editor .view-lines');
  await lines.filter({ hasText: 'hello' }).waitFor({ timeout: 60_000 });
  mark('file open');
  await lines.click();
  await editor.keyboard.press('Control+End');
  await editor.keyboard.type('typed in VS Code', { delay: 20 });
  await lines.filter({ hasText: 'typed in VS Code' }).waitFor();
  await editor.keyboard.press('Control+S');
  await shot(editor, 'editor');
  mark('typed and saved');

  // the file in the environment has the change (read with the API's exec)
  let out = '';
  for (let i = 0; i < 60; i += 1) {
    const r = await api('POST', `/environments/${env.id}/exec`, { command: ['cat', `/projects/${REPO}/hello.txt`] });
    out = r.stdout;
    if (out.includes('typed in VS Code')) break;
    await new Promise((r2) => setTimeout(r2, 500));
  }
  assert.equal(out, 'hello\ntyped in VS Code');
  mark('change read back with exec');

  // an open editor is activity for the idle stop (its WebSocket, every 30 s), like an SSH
  // session: nothing else touches the environment meanwhile
  const before = (await api('GET', `/environments/${env.id}`)).last_activity_ms;
  await new Promise((r) => setTimeout(r, 40_000));
  const later = (await api('GET', `/environments/${env.id}`)).last_activity_ms;
  assert.ok(later > before, `last activity ${before} -> ${later} with the editor open`);
  mark('activity recorded while open');
  await editor.close();
});

test('VS Code in the browser: another user gets 404 on the editor URL', async () => {
  const name = 'vscode-stranger';
  const password = `vs-${Date.now()}-pw`;
  const r = await fetch(`${URL}/api/v1/users`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${ADMIN_TOKEN}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ username: name, password, is_admin: false }),
  });
  assert.ok(r.status < 300, `create user: ${r.status}`);
  const other = await browser.newContext();
  try {
    const pg = await other.newPage();
    await logIn(pg, name, password);
    const res = await pg.goto(env.editor_url);
    assert.equal(res.status(), 404);
  } finally {
    await other.close();
  }
});
