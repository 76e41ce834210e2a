// Browser tests of issues, the board and in-browser edits (issue 16): real headless Chromium
// (Debian's package) driven by playwright-core against a real cove-server (started by
// scripts/test-ui.sh, which passes COVE_URL, COVE_USER, COVE_PASSWORD, COVE_ADMIN_TOKEN …).
// A card dragged between columns stays there after a reload; a file edited in the browser
// and committed is the branch's new commit by the logged-in user (read back through the
// API); a reader sees no move or edit controls and the API answers them 403.
import { test as nodeTest, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { admin, gitIn, logIn } from './lib.mjs';

const URL = process.env.COVE_URL;
const USER = process.env.COVE_USER;
const PASSWORD = process.env.COVE_PASSWORD;
const ADMIN = process.env.COVE_ADMIN_TOKEN;
const SHOTS = process.env.COVE_SCREENSHOTS;
const CHROMIUM = process.env.COVE_CHROMIUM || '/usr/bin/chromium';
if (!URL || !USER || !PASSWORD || !ADMIN || !SHOTS) {
  throw new Error('run through scripts/test-ui.sh (COVE_URL, COVE_USER, COVE_PASSWORD, COVE_ADMIN_TOKEN, COVE_SCREENSHOTS)');
}
const OWNER = 'admin';
const REPO = `plan${Date.now() % 100000}`;
const FULL = `${OWNER}/${REPO}`;
const READER = `reader${Date.now() % 100000}`;
const READER_PASSWORD = 'a reader password that is long';

let browser;
let page;
let work;
let failed = null;

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
      if (page) await shot(`FAILED-issues-${name.replace(/[^a-z0-9]+/gi, '-').slice(0, 40)}`).catch(() => {});
      throw err;
    }
  });
}

setTimeout(() => {
  console.error('issues ui tests: watchdog (5 min) expired');
  process.exit(1);
}, 5 * 60 * 1000).unref();

const shot = (name) => page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });

/** The issue numbers of a board column, top to bottom. */
async function column(name) {
  return page.$$eval(`section.board-col[data-column="${name}"] li.card`, (cards) => cards.map((c) => Number(c.dataset.number)));
}

before(async () => {
  work = mkdtempSync(path.join(tmpdir(), 'cove-ui-issues-'));
  await admin('POST', '/repos', { name: REPO });
  await admin('POST', '/users', { username: READER, password: READER_PASSWORD, is_admin: false });
  await admin('PUT', `/repos/${FULL}/members/${USER}`, { role: 'writer' });
  await admin('PUT', `/repos/${FULL}/members/${READER}`, { role: 'reader' });
  gitIn(work, ['init', '-q', '-b', 'main']);
  writeFileSync(path.join(work, 'README.md'), '# Plan\n');
  gitIn(work, ['add', '.']);
  gitIn(work, ['commit', '-q', '-m', 'readme']);
  const u = new globalThis.URL(`${URL}/git/${FULL}.git`);
  u.username = 'cove';
  u.password = ADMIN;
  gitIn(work, ['push', '-q', u.toString(), 'main']);
  for (const title of ['Add a copyright footer', 'Second card', 'Third card']) {
    await admin('POST', `/repos/${FULL}/issues`, { title, description: 'Touch `README.md`; see #2.' });
  }
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  page = await context.newPage();
  page.on('dialog', (d) => d.accept());
  page.on('pageerror', (err) => console.error('page error:', err.message));
});

after(async () => {
  if (browser) await browser.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

test('a writer drags a card between columns and it stays there after a reload', async () => {
  await logIn(page, USER, PASSWORD);
  await page.goto(`${URL}/#/repos/${FULL}/board`);
  await page.getByRole('heading', { name: `Board of ${FULL}` }).waitFor();
  await page.locator('section.board-col[data-column="Backlog"] li.card').first().waitFor();
  assert.deepEqual(await column('Backlog'), [1, 2, 3]);
  await page.dragAndDrop('li.card[data-number="1"]', 'section.board-col[data-column="In progress"]');
  await page.locator('#board-status', { hasText: 'Moved #1 to In progress' }).waitFor();
  // Within a column: #3 dropped above #2 (at the top of Backlog).
  await page.dragAndDrop('li.card[data-number="3"]', 'li.card[data-number="2"]', { targetPosition: { x: 10, y: 2 } });
  await page.locator('#board-status', { hasText: 'Moved #3 to Backlog' }).waitFor();
  await page.reload();
  await page.locator('section.board-col[data-column="In progress"] li.card').first().waitFor();
  assert.deepEqual(await column('In progress'), [1]);
  assert.deepEqual(await column('Backlog'), [3, 2]);
  const issue = await admin('GET', `/repos/${FULL}/issues/1`);
  assert.equal(issue.column, 'In progress');
  await shot('issues-board');
});

test('the issue page shows its fields and Markdown with #N and file links; a comment is added', async () => {
  await page.goto(`${URL}/#/repos/${FULL}/issues/1`);
  await page.getByRole('heading', { name: '#1 Add a copyright footer' }).waitFor();
  assert.match(await page.locator('#issue-column').textContent(), /In progress/);
  await page.locator('#issue-description-view a.ref', { hasText: '#2' }).waitFor();
  assert.equal(await page.locator('#issue-description-view a.file-ref').getAttribute('href'), `#/repos/${FULL}/code?file=README.md`);
  await page.locator('#edit-priority').selectOption('high');
  await page.locator('#edit-estimate').selectOption('S');
  await page.getByRole('button', { name: 'Save' }).click();
  await page.locator('#issue-priority-value [data-priority=high]').waitFor();
  await page.getByLabel('Comment', { exact: true }).fill('Working on it, **now**');
  await page.getByRole('button', { name: 'Comment', exact: true }).click();
  await page.locator('#issue-comments article.comment strong', { hasText: 'now' }).waitFor();
  await page.getByRole('button', { name: 'Create branch' }).click();
  await page.locator('#issue-links li[data-branch="issue-1-add-a-copyright-footer"]').waitFor();
  await shot('issues-issue');
});

test('a file edited in the browser and committed is the branch head, by the user', async () => {
  await page.goto(`${URL}/#/repos/${FULL}/code?ref=main&file=README.md`);
  await page.locator('#file-content').waitFor();
  await page.getByRole('button', { name: 'Edit file' }).click();
  await page.locator('#editor').fill('# Plan\n\n(c) Cove contributors\n');
  await page.getByLabel('Commit message').fill('Add a copyright footer\n\nFixes #1');
  await shot('issues-editor');
  await page.getByRole('button', { name: 'Commit changes' }).click();
  await page.locator('#committed', { hasText: 'to main' }).waitFor();
  await page.locator('#file-content', { hasText: '(c) Cove contributors' }).waitFor();
  const commits = await admin('GET', `/repos/${FULL}/commits?branch=main&limit=1`);
  assert.equal(commits[0].summary, 'Add a copyright footer');
  assert.equal(commits[0].author_name, USER);
  const file = await admin('GET', `/repos/${FULL}/files/README.md?ref=main`);
  assert.equal(file.content, '# Plan\n\n(c) Cove contributors\n');
  // The push to main said Fixes #1: the issue is done.
  const deadline = Date.now() + 20_000;
  let issue;
  do {
    issue = await admin('GET', `/repos/${FULL}/issues/1`);
    if (issue.column === 'Done') break;
    await new Promise((r) => setTimeout(r, 200));
  } while (Date.now() < deadline);
  assert.equal(issue.column, 'Done');
  // A stale editor: the commit it was based on changed the file since; refused with a message.
  await page.goto(`${URL}/#/repos/${FULL}/code?ref=main&file=README.md`);
  await page.getByRole('button', { name: 'Edit file' }).click();
  await admin('PUT', `/repos/${FULL}/contents/README.md`, { branch: 'main', base_commit: commits[0].id, content: '# Plan by admin\n', message: 'admin edit' });
  await page.locator('#editor').fill('# Plan by the UI\n');
  await page.getByRole('button', { name: 'Commit changes' }).click();
  await page.locator('#commit-error', { hasText: 'nothing was overwritten' }).waitFor();
  const after = await admin('GET', `/repos/${FULL}/files/README.md?ref=main`);
  assert.equal(after.content, '# Plan by admin\n');
});

test('an owner sets a column limit on the board; a move past it shows the server\'s refusal', async () => {
  await admin('PUT', `/repos/${FULL}/members/${USER}`, { role: 'owner' });
  await page.goto(`${URL}/#/repos/${FULL}/board`);
  await page.locator('#board-columns').waitFor();
  await page.waitForFunction(() => document.querySelector('#board-columns').value.includes('In progress'));
  const text = await page.locator('#board-columns').inputValue();
  await page.locator('#board-columns').fill(text.replace('In progress', 'In progress: 1'));
  await page.getByRole('button', { name: 'Save columns' }).click();
  await page.locator('section.board-col[data-column="In progress"] .count', { hasText: '0/1' }).waitFor();
  await page.dragAndDrop('li.card[data-number="2"]', 'section.board-col[data-column="In progress"]');
  await page.locator('#board-status', { hasText: 'Moved #2 to In progress' }).waitFor();
  await page.locator('li.card[data-number="3"] select.card-move').selectOption('In progress');
  await page.locator('#board-error', { hasText: 'limit of 1' }).waitFor();
  assert.deepEqual(await column('In progress'), [2]);
  await shot('issues-board-limit');
  // Back as it was for the reader's step.
  await admin('POST', `/repos/${FULL}/issues/2/move`, { column: 'Backlog' });
  await admin('PUT', `/repos/${FULL}/members/${USER}`, { role: 'writer' });
});

test('a reader sees no move or edit controls, and the API refuses them with 403', async () => {
  await page.goto(`${URL}/#/`);
  await page.getByRole('button', { name: 'Log out' }).click();
  await page.waitForSelector('#login-user');
  await logIn(page, READER, READER_PASSWORD);
  await page.goto(`${URL}/#/repos/${FULL}/board`);
  await page.locator('section.board-col li.card').first().waitFor();
  assert.equal(await page.locator('li.card[draggable=true]').count(), 0, 'no draggable cards');
  assert.equal(await page.locator('select.card-move').count(), 0, 'no move lists');
  await page.goto(`${URL}/#/repos/${FULL}/issues/2`);
  await page.getByRole('heading', { name: '#2 Second card' }).waitFor();
  assert.equal(await page.locator('#issue-edit, #issue-comment').count(), 0, 'no edit or comment forms');
  await page.goto(`${URL}/#/repos/${FULL}/code?ref=main&file=README.md`);
  await page.locator('#file-content').waitFor();
  assert.equal(await page.getByRole('button', { name: 'Edit file' }).count(), 0, 'no Edit file');
  const statuses = await page.evaluate(async (full) => {
    const session = await (await fetch('/api/v1/session', { headers: { 'X-Cove-UI': '1' } })).json();
    const headers = { 'X-Cove-UI': '1', 'X-Cove-CSRF': session.csrf_token, 'Content-Type': 'application/json' };
    const move = await fetch(`/api/v1/repos/${full}/issues/2/move`, { method: 'POST', headers, body: JSON.stringify({ column: 'Done' }) });
    const head = await (await fetch(`/api/v1/repos/${full}/commits?branch=main&limit=1`, { headers })).json();
    const edit = await fetch(`/api/v1/repos/${full}/contents/README.md`, { method: 'PUT', headers, body: JSON.stringify({ branch: 'main', base_commit: head[0].id, content: 'x', message: 'm' }) });
    return [move.status, edit.status];
  }, FULL);
  assert.deepEqual(statuses, [403, 403]);
  const issue = await admin('GET', `/repos/${FULL}/issues/2`);
  assert.equal(issue.column, 'Backlog');
  await shot('issues-reader-board');
});
