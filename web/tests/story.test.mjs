// The planning story of issue 16 in the browser, end to end across two users: real headless
// Chromium (two browser contexts, one per person) against a real cove-server started by
// scripts/test-ui.sh, real git, and a webhook receiver on 127.0.0.1 (the server's
// `[notify] allow_private` admits loopback for this test run).
//
// A teammate files "Add a copyright footer" in the issue form: assigned to the developer,
// priority, estimate, a mention of the developer and of a file. The receiver hears the
// assignment and the mention, for the developer. The developer drags the card to In progress,
// creates the branch from the issue page, edits README.md in the browser's editor on that
// branch and commits, opens a pull request whose description says `Fixes #N` with the
// teammate as required reviewer, and drags the card to In review. The teammate approves and
// merges in the browser; the merge starts the main branch's workflow and the issue ends in
// Done, listing the branch and the pull request.
import { test as nodeTest, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, mkdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { admin, gitIn, logIn } from './lib.mjs';

const URL = process.env.COVE_URL;
const DEV = process.env.COVE_USER;
const DEV_PASSWORD = process.env.COVE_PASSWORD;
const ADMIN = process.env.COVE_ADMIN_TOKEN;
const SHOTS = process.env.COVE_SCREENSHOTS;
const CHROMIUM = process.env.COVE_CHROMIUM || '/usr/bin/chromium';
if (!URL || !DEV || !DEV_PASSWORD || !ADMIN || !SHOTS) {
  throw new Error('run through scripts/test-ui.sh (COVE_URL, COVE_USER, COVE_PASSWORD, COVE_ADMIN_TOKEN, COVE_SCREENSHOTS)');
}
const SUFFIX = Date.now() % 100000;
const REPO = `story${SUFFIX}`;
const FULL = `admin/${REPO}`;
const MATE = `mate${SUFFIX}`;
const MATE_PASSWORD = 'a teammate password that is long';
const BRANCH = 'issue-1-add-a-copyright-footer';
const WORKFLOW = `Name: ship
SchemaVersion: "1.0"
Triggers:
  - Type: PUSH
    Branches: [main]
Actions:
  Build:
    Identifier: aws/build@v1
    Configuration:
      Steps:
        - Run: grep -q Cove README.md
`;

let browser;
let work;
let hook;
const received = [];
const pages = {};
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
      for (const [who, p] of Object.entries(pages)) {
        await p.screenshot({ path: path.join(SHOTS, `FAILED-story-${who}.png`), fullPage: true }).catch(() => {});
      }
      throw err;
    }
  });
}

setTimeout(() => {
  console.error('story ui test: watchdog (5 min) expired');
  process.exit(1);
}, 5 * 60 * 1000).unref();

async function until(what, probe, ms = 30_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const got = await probe();
    if (got) return got;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function column(page, name) {
  return page.$$eval(`section.board-col[data-column="${name}"] li.card`, (cards) => cards.map((c) => Number(c.dataset.number)));
}

before(async () => {
  work = mkdtempSync(path.join(tmpdir(), 'cove-ui-story-'));
  // The webhook receiver: every JSON body posted to it.
  const server = createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      try {
        received.push(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      } catch {
        received.push({ unparsable: true });
      }
      res.writeHead(200, { 'Content-Length': '0' });
      res.end();
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  hook = server;
  await admin('POST', '/repos', { name: REPO });
  await admin('POST', '/users', { username: MATE, password: MATE_PASSWORD, is_admin: false });
  await admin('PUT', `/repos/${FULL}/members/${DEV}`, { role: 'writer' });
  await admin('PUT', `/repos/${FULL}/members/${MATE}`, { role: 'writer' });
  await admin('POST', `/repos/${FULL}/notifications/targets`, {
    kind: 'webhook',
    url: `http://127.0.0.1:${server.address().port}/hook`,
    events: ['issue_mentioned', 'issue_assigned'],
  });
  gitIn(work, ['init', '-q', '-b', 'main']);
  writeFileSync(path.join(work, 'README.md'), '# App\n');
  mkdirSync(path.join(work, '.codecatalyst/workflows'), { recursive: true });
  writeFileSync(path.join(work, '.codecatalyst/workflows/ship.yaml'), WORKFLOW);
  gitIn(work, ['add', '.']);
  gitIn(work, ['commit', '-q', '-m', 'start']);
  const u = new globalThis.URL(`${URL}/git/${FULL}.git`);
  u.username = 'cove';
  u.password = ADMIN;
  gitIn(work, ['push', '-q', u.toString(), 'main']);
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
  for (const who of ['mate', 'dev']) {
    const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    const page = await context.newPage();
    page.on('dialog', (d) => d.accept());
    page.on('pageerror', (err) => console.error(`${who} page error:`, err.message));
    pages[who] = page;
  }
  await logIn(pages.mate, MATE, MATE_PASSWORD);
  await logIn(pages.dev, DEV, DEV_PASSWORD);
});

after(async () => {
  if (browser) await browser.close();
  if (hook) hook.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

test('the teammate files the issue in the form; the assignee is notified of the assignment and the mention', async () => {
  const p = pages.mate;
  await p.goto(`${URL}/#/repos/${FULL}/issues`);
  await p.locator('#new-issue').waitFor();
  await p.locator('#issue-title').fill('Add a copyright footer');
  await p.locator('#issue-description').fill(`@${DEV} please add it to \`README.md\`.`);
  await p.locator('#issue-priority').selectOption('medium');
  await p.locator('#issue-estimate').selectOption('S');
  await p.locator('#issue-assignees').fill(DEV);
  await p.getByRole('button', { name: 'Create issue' }).click();
  await p.getByRole('heading', { name: '#1 Add a copyright footer' }).waitFor();
  assert.equal((await p.locator('#issue-assignees-value').textContent()).trim(), DEV);
  assert.equal(await p.locator('#issue-description-view a.file-ref').getAttribute('href'), `#/repos/${FULL}/code?file=README.md`);
  const assigned = await until('issue_assigned', () => received.find((v) => v.event === 'issue_assigned'));
  assert.deepEqual(assigned.data.assignees, [DEV]);
  const mentioned = await until('issue_mentioned', () => received.find((v) => v.event === 'issue_mentioned'));
  assert.deepEqual(mentioned.data.mentioned, [DEV]);
  assert.equal(mentioned.data.issue, 1);
  assert.equal(mentioned.data.actor, MATE);
});

test('the developer moves the card, creates the branch, edits the file in the browser and opens the pull request', async () => {
  const p = pages.dev;
  await p.goto(`${URL}/#/repos/${FULL}/board`);
  await p.locator('li.card[data-number="1"]').waitFor();
  await p.dragAndDrop('li.card[data-number="1"]', 'section.board-col[data-column="In progress"]');
  await p.locator('#board-status', { hasText: 'Moved #1 to In progress' }).waitFor();

  await p.goto(`${URL}/#/repos/${FULL}/issues/1`);
  await p.getByRole('heading', { name: '#1 Add a copyright footer' }).waitFor();
  await p.getByRole('button', { name: 'Create branch' }).click();
  await p.locator(`#issue-links li[data-branch="${BRANCH}"]`).waitFor();

  await p.goto(`${URL}/#/repos/${FULL}/code?ref=${BRANCH}&file=README.md`);
  await p.locator('#file-content').waitFor();
  await p.getByRole('button', { name: 'Edit file' }).click();
  await p.locator('#editor').fill('# App\n\n(c) Cove contributors\n');
  await p.getByLabel('Commit message').fill('Add a copyright footer');
  await p.getByRole('button', { name: 'Commit changes' }).click();
  await p.locator('#committed', { hasText: `to ${BRANCH}` }).waitFor();
  const commits = await admin('GET', `/repos/${FULL}/commits?branch=${BRANCH}&limit=1`);
  assert.equal(commits[0].summary, 'Add a copyright footer');
  assert.equal(commits[0].author_name, DEV);
  assert.equal((await admin('GET', `/repos/${FULL}/files/README.md?ref=main`)).content, '# App\n', 'main is untouched');

  await p.goto(`${URL}/#/repos/${FULL}/pulls`);
  await p.locator('#pr-source').waitFor();
  await p.locator('#pr-source').selectOption(BRANCH);
  await p.locator('#pr-destination').selectOption('main');
  await p.locator('#pr-title').fill('Copyright footer');
  await p.locator('#pr-reviewers').fill(MATE);
  await p.locator('#pr-description').fill('Fixes #1');
  await p.getByRole('button', { name: 'Open pull request' }).click();
  await p.waitForURL(/#\/repos\/[^/]+\/[^/]+\/pulls\/1$/);

  await p.goto(`${URL}/#/repos/${FULL}/board`);
  await p.locator('li.card[data-number="1"]').waitFor();
  await p.dragAndDrop('li.card[data-number="1"]', 'section.board-col[data-column="In review"]');
  await p.locator('#board-status', { hasText: 'Moved #1 to In review' }).waitFor();
  const links = await admin('GET', `/repos/${FULL}/issues/1/links`);
  assert.deepEqual(links.branches, [BRANCH]);
  assert.equal(links.pulls.length, 1);
  assert.equal(links.pulls[0].fixes, true);
});

test('the reviewer approves and merges; the workflow starts and the issue ends in Done', async () => {
  const p = pages.mate;
  await p.goto(`${URL}/#/repos/${FULL}/pulls/1`);
  await p.locator('#merge-button[disabled]').waitFor();
  await p.getByLabel('Approve').check();
  await p.getByRole('button', { name: 'Submit review' }).click();
  await p.locator('#merge-ready').waitFor();
  await p.locator('#merge-button:not([disabled])').click();
  await p.locator('#pr-merge-sha').waitFor();
  const issue = await until('the issue in Done', async () => {
    const i = await admin('GET', `/repos/${FULL}/issues/1`);
    return i.column === 'Done' ? i : null;
  });
  assert.equal(issue.done, true);
  const runs = await until('the main workflow run', async () => {
    const rs = await admin('GET', `/repos/${FULL}/runs`);
    return rs.some((r) => r.workflow === 'ship' && r.branch === 'main') ? rs : null;
  });
  assert.ok(runs.length >= 1);

  const d = pages.dev;
  await d.goto(`${URL}/#/repos/${FULL}/issues/1`);
  await d.locator('#issue-column', { hasText: 'Done' }).waitFor();
  await d.locator(`#issue-links li[data-branch="${BRANCH}"]`).waitFor();
  await d.goto(`${URL}/#/repos/${FULL}/board`);
  await d.locator('section.board-col[data-column="Done"] li.card[data-number="1"]').waitFor();
  assert.deepEqual(await column(d, 'Done'), [1]);
  await d.screenshot({ path: path.join(SHOTS, 'story-board-done.png'), fullPage: true });
});
