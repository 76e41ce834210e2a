// Browser tests of deployments (issue 21): real headless Chromium (Debian's package) driven by
// playwright-core against a real cove-server whose embedded agent runs jobs on the real Docker
// engine, with moto as the STS of the connections (scripts/test-ui.sh starts both and passes
// COVE_URL, COVE_USER, COVE_PASSWORD, COVE_ADMIN_TOKEN, COVE_MOTO_URL …).
// An owner creates environments dev and prod (API), an administrator adds their connections
// (API), the owner pushes: the run page says where each deploy action deploys, dev deploys
// (the agent assumes the role at moto), prod waits for the owner, who approves it on the run
// page, and it deploys; a push from a branch dev and prod do not allow is refused. The
// environment list and pages show the rows (run, action, who, state, reason); a writer may roll
// back from the history; a reader sees no controls and the API answers 403.
import { test as nodeTest, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { basicAuth, call as callAs, gitIn, logIn as logInOn } from './lib.mjs';

const URL = process.env.COVE_URL;
const USER = process.env.COVE_USER;
const PASSWORD = process.env.COVE_PASSWORD;
const ADMIN = process.env.COVE_ADMIN_TOKEN;
const SHOTS = process.env.COVE_SCREENSHOTS;
const MOTO = process.env.COVE_MOTO_URL;
const CHROMIUM = process.env.COVE_CHROMIUM || '/usr/bin/chromium';
if (!URL || !USER || !PASSWORD || !ADMIN || !SHOTS || !MOTO) {
  throw new Error('run through scripts/test-ui.sh (COVE_URL, COVE_USER, COVE_PASSWORD, COVE_ADMIN_TOKEN, COVE_SCREENSHOTS, COVE_MOTO_URL)');
}
const OWNER = 'admin';
const REPO = `ship${Date.now() % 100000}`;
const FULL = `${OWNER}/${REPO}`;
const READER = `watcher${Date.now() % 100000}`;
const READER_PASSWORD = 'a reader password that is long';
const ENVS = `/repos/${FULL}/deploy/environments`;
const DEV_ROLE = 'arn:aws:iam::111111111111:role/deploy';
const PROD_ROLE = 'arn:aws:iam::222222222222:role/deploy';

const WORKFLOW = `Name: ship
SchemaVersion: "1.0"
RunMode: PARALLEL
Triggers:
  - Type: PUSH
    Branches: ['.*']
Actions:
  DeployDev:
    Identifier: aws/build@v1
    Environment:
      Name: dev
      Connections:
        - Name: dev-account
          Role: ${DEV_ROLE}
    Configuration:
      Steps:
        - Run: echo "deployed to dev"
  DeployProd:
    Identifier: aws/build@v1
    DependsOn: [DeployDev]
    Environment:
      Name: prod
      Connections:
        - Name: prod-account
          Role: ${PROD_ROLE}
    Configuration:
      Steps:
        - Run: echo "deployed to prod"
`;

let browser;
let page;
let work;
let ownerToken;
let first; // the run of the push to main
let second; // the run of the push to feature
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
      if (page) await shot(`FAILED-deploy-${name.replace(/[^a-z0-9]+/gi, '-').slice(0, 40)}`).catch(() => {});
      throw err;
    }
  });
}

setTimeout(() => {
  console.error('deploy ui tests: watchdog (6 min) expired');
  process.exit(1);
}, 6 * 60 * 1000).unref();

const shot = (name) => page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });



/** A REST call with a bearer token (64-bit ids kept as strings). */
const call = (token, method, apiPath, body) => callAs(`Bearer ${token}`, method, apiPath, body, { bigIds: true });
const git = (args) => gitIn(work, args);
const logIn = (user, password) => logInOn(page, user, password);

/** Pushes `branch` as the owner (the user of scripts/test-ui.sh): the runs' "who". */
function push(branch) {
  const u = new globalThis.URL(`${URL}/git/${FULL}.git`);
  u.username = USER;
  u.password = PASSWORD;
  git(['push', '-q', u.toString(), branch]);
}


/** The run of `branch` (waits for the push to be turned into a run). */
async function runOf(branch) {
  for (let i = 0; i < 300; i++) {
    const runs = await call(ADMIN, 'GET', `/repos/${FULL}/runs?branch=${encodeURIComponent(branch)}`);
    if (runs.length) return runs[0];
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no run on ${branch}`);
}

/** The text of a history row of the environment page shown now. */
async function row(run, action) {
  const r = page.locator(`[data-testid="deployment-${run}-${action}"]`);
  await r.waitFor();
  return (await r.textContent()).replace(/\s+/g, ' ');
}

before(async () => {
  work = mkdtempSync(path.join(tmpdir(), 'cove-ui-deploy-'));
  await call(ADMIN, 'POST', '/repos', { name: REPO });
  await call(ADMIN, 'POST', '/users', { username: READER, password: READER_PASSWORD, is_admin: false });
  await call(ADMIN, 'PUT', `/repos/${FULL}/members/${USER}`, { role: 'owner' });
  await call(ADMIN, 'PUT', `/repos/${FULL}/members/${READER}`, { role: 'reader' });
  ownerToken = (await callAs(basicAuth(USER, PASSWORD), 'POST', '/tokens', { name: `deploy-ui-${REPO}`, scopes: ['read', 'write'] })).token;
  // The owner creates the environments; only an administrator may add their connections.
  await call(ownerToken, 'POST', ENVS, { name: 'dev', description: 'every push of main', protection: { branches: ['main'] } });
  await call(ownerToken, 'POST', ENVS, { name: 'prod', description: 'production', protection: { branches: ['main'], required_approvals: 1, approvers: [USER] } });
  await call(ownerToken, 'PUT', `${ENVS}/prod/variables/BUCKET`, { value: 'ship-prod' });
  for (const [env, conn, account, role] of [
    ['dev', 'dev-account', '111111111111', DEV_ROLE],
    ['prod', 'prod-account', '222222222222', PROD_ROLE],
  ]) {
    await assert.rejects(call(ownerToken, 'PUT', `${ENVS}/${env}/connections/${conn}`, { account_id: account, region: 'us-east-1', roles: [role], endpoints: 'moto' }), / 403 /);
    await call(ADMIN, 'PUT', `${ENVS}/${env}/connections/${conn}`, { account_id: account, region: 'us-east-1', roles: [role], endpoints: 'moto' });
  }
  git(['init', '-q', '-b', 'main']);
  mkdirSync(path.join(work, '.codecatalyst/workflows'), { recursive: true });
  writeFileSync(path.join(work, '.codecatalyst/workflows/ship.yaml'), WORKFLOW);
  git(['add', '.']);
  git(['commit', '-q', '-m', 'ship workflow']);
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

test('the run page says where each action deploys; dev deploys, prod waits and is approved there', async () => {
  await logIn(USER, PASSWORD);
  push('main');
  first = await runOf('main');
  const run = first;
  await page.goto(`${URL}/#/runs/${run.id}`);
  const dev = page.locator('#deploy-DeployDev');
  await dev.waitFor({ timeout: 30_000 });
  assert.match(await dev.textContent(), /^deploys to dev/);
  assert.equal(await dev.getByRole('link', { name: 'dev' }).getAttribute('href'), `#/repos/${FULL}/deploy/dev`);
  // dev deploys (the embedded agent assumes dev's role at moto); then prod waits for the owner.
  await page.locator('.job[data-action=DeployDev] [data-state=succeeded]').waitFor({ timeout: 180_000 });
  const prod = page.locator('#deploy-DeployProd', { hasText: `waiting for 1 approval(s) from ${USER}` });
  await prod.waitFor({ timeout: 30_000 });
  const banner = page.getByRole('region', { name: 'Approval needed: DeployProd' });
  await banner.waitFor();
  assert.match(await banner.textContent(), /Deploys to prod\./);
  assert.match(await banner.textContent(), new RegExp(`0 of 1 approval · may approve: ${USER}`));
  await page.locator('.job[data-action=DeployDev]').click();
  await page.locator('#job-log', { hasText: 'deployed to dev' }).waitFor({ timeout: 10_000 });
  await shot('deploy-run-waiting');

  await banner.getByLabel('Comment').fill('ship prod');
  await banner.getByRole('button', { name: 'Approve' }).click();
  await page.locator('#run-state[data-state=succeeded]').waitFor({ timeout: 180_000 });
  assert.equal(await page.locator('.job[data-action=DeployProd] [data-state]').getAttribute('data-state'), 'succeeded');
  assert.doesNotMatch(await page.locator('#deploy-DeployProd').textContent(), /waiting/);
  await page.locator('.job[data-action=DeployProd]').click();
  await page.locator('#job-log', { hasText: 'deployed to prod' }).waitFor({ timeout: 10_000 });
  await shot('deploy-run-approved');
});

test('a push from a branch the environments do not allow is refused before anything runs', async () => {
  git(['checkout', '-q', '-b', 'feature']);
  git(['commit', '-q', '--allow-empty', '-m', 'feature']);
  push('feature');
  second = await runOf('feature');
  const run = second;
  await page.goto(`${URL}/#/runs/${run.id}`);
  const dev = page.locator('#deploy-DeployDev', { hasText: 'refused' });
  await dev.waitFor({ timeout: 30_000 });
  await page.locator('#run-state[data-state=failed]').waitFor({ timeout: 30_000 });
  const error = await page.locator('.job[data-action=DeployDev] .job-error').textContent();
  assert.match(error, /deploy refused: branch `feature` may not deploy to environment `dev` \(allowed: main\)/);
  // prod is refused for the same reason (each deploy action is checked, none is leased).
  assert.equal(await page.locator('.job[data-action=DeployProd] [data-state]').getAttribute('data-state'), 'failed');
  assert.match(await page.locator('#deploy-DeployProd').textContent(), /deploys to prod · refused/);
  await shot('deploy-run-refused');
});

test('the environment list and pages show what is deployed, by whom, and the history', async () => {
  await page.goto(`${URL}/#/repos/${FULL}/deploy`);
  await page.getByRole('heading', { name: `Deployments · ${FULL}` }).waitFor();
  const rows = page.locator('table tbody tr');
  await rows.first().waitFor();
  const list = (await rows.allTextContents()).map((t) => t.replace(/\s+/g, ' '));
  assert.equal(list.length, 2, list.join(' | '));
  assert.match(list[0], new RegExp(`^dev#${first.number} [0-9a-f]{8} by ${USER}0main$`), list[0]);
  assert.match(list[1], new RegExp(`^prod#${first.number} [0-9a-f]{8} by ${USER}1main$`), list[1]);
  await shot('deploy-environments');

  await page.getByRole('link', { name: 'dev', exact: true }).click();
  await page.getByRole('heading', { name: `dev · ${FULL}` }).waitFor();
  assert.match(await page.locator('[data-testid=current]').textContent(), new RegExp(`Deployed: ${FULL}#${first.number} \\([0-9a-f]+, DeployDev\\) by ${USER}`));
  const ok = await row(first.number, 'DeployDev');
  assert.match(ok, new RegExp(`^${FULL}#${first.number}DeployDev[0-9a-f]{8}main${USER}.*succeeded`), ok);
  const refused = await row(second.number, 'DeployDev');
  assert.match(refused, new RegExp(`^${FULL}#${second.number}DeployDev[0-9a-f]{8}feature${USER}.*refused branch \`feature\` may not deploy to environment \`dev\``), refused);
  // The owner (a writer) may roll back to the successful deployment; not to the refused one.
  assert.equal(await page.locator(`[data-testid="deployment-${first.number}-DeployDev"] button[data-rollback]`).count(), 1);
  assert.equal(await page.locator(`[data-testid="deployment-${second.number}-DeployDev"] button`).count(), 0);
  await shot('deploy-environment-dev');

  await page.goto(`${URL}/#/repos/${FULL}/deploy/prod`);
  await page.getByRole('heading', { name: `prod · ${FULL}` }).waitFor();
  await page.locator('[data-testid=current]').waitFor();
  const prodText = (await page.locator('main').textContent()).replace(/\s+/g, ' ');
  assert.match(prodText, new RegExp(`Approvals: 1 from ${USER}`));
  assert.match(prodText, /prod-account: account 222222222222 \(us-east-1\), roles arn:aws:iam::222222222222:role\/deploy/);
  assert.match(prodText, /BUCKET=ship-prod/);
  assert.match(await row(first.number, 'DeployProd'), /succeeded/);
  assert.match(await row(second.number, 'DeployProd'), /refused branch `feature` may not deploy to environment `prod`/);
  await shot('deploy-environment-prod');

  // Rolling dev back starts a new run (trigger rollback) with only dev's deploy action.
  await page.goto(`${URL}/#/repos/${FULL}/deploy/dev`);
  await page.locator(`[data-testid="deployment-${first.number}-DeployDev"] button[data-rollback]`).click();
  await page.waitForURL(/#\/runs\/\d+$/);
  await page.locator('.run-state', { hasText: 'rollback' }).waitFor();
  assert.deepEqual(await page.locator('.job').evaluateAll((els) => els.map((e) => e.dataset.action)), ['DeployDev']);
  await page.locator('#run-state[data-state=succeeded]').waitFor({ timeout: 180_000 });
  await shot('deploy-rollback-run');
});

test('a reader sees the deployments but no controls, and the API refuses management with 403', async () => {
  await page.goto(`${URL}/#/`);
  await page.getByRole('button', { name: 'Log out' }).click();
  await page.waitForSelector('#login-user');
  await logIn(READER, READER_PASSWORD);
  await page.goto(`${URL}/#/repos/${FULL}/deploy/dev`);
  await page.getByRole('heading', { name: `dev · ${FULL}` }).waitFor();
  await row(first.number, 'DeployDev');
  assert.equal(await page.locator('main button').count(), 0, 'no buttons for a reader');
  const statuses = await page.evaluate(
    async ({ envs, run }) => {
      const session = await (await fetch('/api/v1/session', { headers: { 'X-Cove-UI': '1' } })).json();
      const headers = { 'X-Cove-UI': '1', 'X-Cove-CSRF': session.csrf_token, 'Content-Type': 'application/json' };
      const req = (method, p, body) => fetch(`/api/v1${envs}${p}`, { method, headers, body: body && JSON.stringify(body) }).then((r) => r.status);
      return [
        await req('POST', '', { name: 'qa' }),
        await req('PUT', '/dev', { description: 'mine', protection: {} }),
        await req('DELETE', '/prod'),
        await req('PUT', '/dev/variables/X', { value: 'y' }),
        await req('PUT', '/dev/connections/mine', { account_id: '333333333333', region: 'us-east-1', roles: [] }),
        await req('POST', '/dev/rollback', { run }),
        await req('GET', '/dev/deployments'),
      ];
    },
    { envs: ENVS, run: first.number },
  );
  assert.deepEqual(statuses, [403, 403, 403, 403, 403, 403, 200]);
  const envs = await call(ADMIN, 'GET', ENVS);
  assert.deepEqual(
    envs.map((e) => [e.name, e.description]),
    [
      ['dev', 'every push of main'],
      ['prod', 'production'],
    ],
  );
  await shot('deploy-reader');
});
