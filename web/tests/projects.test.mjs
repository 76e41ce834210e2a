// Browser tests of projects and members (issue 16): real headless Chromium (Debian's package)
// driven by playwright-core against a real cove-server (started by scripts/test-ui.sh, which
// passes COVE_URL, COVE_USER, COVE_PASSWORD, COVE_ADMIN_TOKEN …). The user accepts an
// invitation on the projects page, then as the project's administrator invites a user by
// name, changes the invitation's and then the member's role, and removes them — each read
// back through the API; a reader of the project sees the members without any control but
// "Leave", and the API answers their invitation 403.
import { test as nodeTest, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { logIn } from './lib.mjs';

const URL = process.env.COVE_URL;
const USER = process.env.COVE_USER;
const PASSWORD = process.env.COVE_PASSWORD;
const ADMIN = process.env.COVE_ADMIN_TOKEN;
const SHOTS = process.env.COVE_SCREENSHOTS;
const CHROMIUM = process.env.COVE_CHROMIUM || '/usr/bin/chromium';
if (!URL || !USER || !PASSWORD || !ADMIN || !SHOTS) {
  throw new Error('run through scripts/test-ui.sh (COVE_URL, COVE_USER, COVE_PASSWORD, COVE_ADMIN_TOKEN, COVE_SCREENSHOTS)');
}
const stamp = Date.now() % 100000;
const PROJECT = `team${stamp}`;
const REPO = `proj${stamp}`;
const INVITEE = `invitee${stamp}`;
const READER = `preader${stamp}`;
const OTHER_PASSWORD = 'another password that is long';

let browser;
let page;
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
      if (page) await shot(`FAILED-projects-${name.replace(/[^a-z0-9]+/gi, '-').slice(0, 40)}`).catch(() => {});
      throw err;
    }
  });
}

setTimeout(() => {
  console.error('projects ui tests: watchdog (3 min) expired');
  process.exit(1);
}, 3 * 60 * 1000).unref();

const shot = (name) => page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });

async function call(auth, method, apiPath, body) {
  const resp = await fetch(`${URL}/api/v1${apiPath}`, {
    method,
    headers: { Authorization: auth, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await resp.text();
  return { status: resp.status, body: text ? JSON.parse(text) : null };
}

async function admin(method, apiPath, body) {
  const r = await call(`Bearer ${ADMIN}`, method, apiPath, body);
  if (r.status >= 300) throw new Error(`${method} ${apiPath}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

const basic = (user, password) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

async function members() {
  return admin('GET', `/projects/${PROJECT}/members`);
}

before(async () => {
  for (const username of [INVITEE, READER]) {
    await admin('POST', '/users', { username, password: OTHER_PASSWORD, is_admin: false });
  }
  await admin('POST', '/repos', { name: REPO });
  await admin('POST', '/projects', { name: PROJECT, description: 'planning together' });
  await admin('POST', `/projects/${PROJECT}/repos`, { repo: `admin/${REPO}` });
  await admin('POST', `/projects/${PROJECT}/members`, { user: USER, role: 'administrator' });
  await admin('POST', `/projects/${PROJECT}/members`, { user: READER, role: 'reader' });
  const accepted = await call(basic(READER, OTHER_PASSWORD), 'POST', `/projects/${PROJECT}/invitations/accept`, {});
  assert.equal(accepted.status, 200);
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  page = await context.newPage();
  page.on('dialog', (d) => d.accept());
  page.on('pageerror', (err) => console.error('page error:', err.message));
});

after(async () => {
  if (browser) await browser.close();
});

test('the user accepts an invitation on the projects page', async () => {
  await logIn(page, USER, PASSWORD);
  await page.getByRole('link', { name: 'Projects' }).click();
  const invitation = page.locator(`#invitations li[data-project="${PROJECT}"]`);
  await invitation.waitFor();
  assert.match(await invitation.textContent(), /as administrator/);
  await invitation.getByRole('button', { name: 'Accept' }).click();
  await page.getByRole('heading', { name: `Project ${PROJECT}` }).waitFor();
  assert.match(await page.locator('#project-role').textContent(), /Your role: administrator/);
  await page.locator('#project-repos', { hasText: `admin/${REPO}` }).waitFor();
  const me = (await members()).find((m) => m.user === USER);
  assert.equal(me.role, 'administrator');
  assert.equal(me.pending, false);
  await shot('projects-1-accepted');
});

test('an administrator invites by name, changes roles and removes a member', async () => {
  await page.getByLabel('User name').fill(INVITEE);
  await page.locator('#invite-role').selectOption('reader');
  await page.getByRole('button', { name: 'Invite' }).click();
  const row = page.locator(`#members tr[data-user="${INVITEE}"]`);
  await row.waitFor();
  assert.match(await row.textContent(), new RegExp(`invited by ${USER}`));
  let invitee = (await members()).find((m) => m.user === INVITEE);
  assert.deepEqual([invitee.role, invitee.pending], ['reader', true]);
  // the invitation's role, then (once accepted) the member's
  await row.getByLabel(`Role of ${INVITEE}`).selectOption('reviewer');
  await page.locator('#members-status', { hasText: `${INVITEE} is now reviewer` }).waitFor();
  invitee = (await members()).find((m) => m.user === INVITEE);
  assert.equal(invitee.role, 'reviewer');
  const accepted = await call(basic(INVITEE, OTHER_PASSWORD), 'POST', `/projects/${PROJECT}/invitations/accept`, {});
  assert.equal(accepted.status, 200);
  assert.equal(accepted.body.role, 'reviewer');
  await page.reload();
  await page.locator(`#members tr[data-user="${INVITEE}"] td`, { hasText: /^member$/ }).waitFor();
  await page.locator(`#members tr[data-user="${INVITEE}"]`).getByLabel(`Role of ${INVITEE}`).selectOption('contributor');
  await page.locator('#members-status', { hasText: `${INVITEE} is now contributor` }).waitFor();
  invitee = (await members()).find((m) => m.user === INVITEE);
  assert.deepEqual([invitee.role, invitee.pending], ['contributor', false]);
  // the repository is theirs to write now
  const issue = await call(basic(INVITEE, OTHER_PASSWORD), 'POST', `/repos/admin/${REPO}/issues`, { title: 'from the project' });
  assert.equal(issue.status, 201);
  await shot('projects-2-members');
  await page.getByRole('button', { name: `Remove ${INVITEE}` }).click();
  await page.locator('#members-status', { hasText: `${INVITEE} removed` }).waitFor();
  await page.waitForFunction((u) => !document.querySelector(`#members tr[data-user="${u}"]`), INVITEE);
  assert.equal((await members()).find((m) => m.user === INVITEE), undefined);
  const after = await call(basic(INVITEE, OTHER_PASSWORD), 'GET', `/repos/admin/${REPO}`);
  assert.equal(after.status, 404);
});

test('a reader sees the members without controls and may only leave; the API refuses them', async () => {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const reader = await context.newPage();
  try {
    await logIn(reader, READER, OTHER_PASSWORD);
    await reader.goto(`${URL}/#/projects/${PROJECT}`);
    await reader.getByRole('heading', { name: `Project ${PROJECT}` }).waitFor();
    await reader.locator(`#members tr[data-user="${USER}"]`).waitFor();
    assert.equal(await reader.locator('#invite-member').count(), 0);
    assert.equal(await reader.locator('#members select').count(), 0);
    assert.equal(await reader.getByRole('button', { name: `Remove ${USER}` }).count(), 0);
    assert.equal(await reader.getByRole('button', { name: 'Leave the project' }).count(), 1);
    assert.match(await reader.locator(`#members tr[data-user="${READER}"] .member-role`).textContent(), /^reader$/);
    await reader.screenshot({ path: path.join(SHOTS, 'projects-3-reader.png'), fullPage: true });
    const invite = await call(basic(READER, OTHER_PASSWORD), 'POST', `/projects/${PROJECT}/members`, { user: INVITEE, role: 'reader' });
    assert.equal(invite.status, 403);
    const role = await call(basic(READER, OTHER_PASSWORD), 'PUT', `/projects/${PROJECT}/members/${READER}`, { role: 'administrator' });
    assert.equal(role.status, 403);
    // leaving through the UI ends the membership
    await reader.getByRole('button', { name: 'Leave the project' }).click();
    await reader.waitForURL(/#\/projects$/);
    assert.equal((await members()).find((m) => m.user === READER), undefined);
  } finally {
    await context.close();
  }
});
