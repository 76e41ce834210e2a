// Helpers shared by the browser tests (not a test file: scripts/test-ui.sh runs tests/*.test.mjs).
// They read the server's address and the administrator's token from the environment that
// scripts/test-ui.sh sets (COVE_URL, COVE_ADMIN_TOKEN).
import { execFileSync } from 'node:child_process';

const URL = process.env.COVE_URL;
const ADMIN = process.env.COVE_ADMIN_TOKEN;

/**
 * A call to the REST API with `authorization` (the whole header value: `Bearer …`, `Basic …`);
 * the JSON answer, or an error naming the status and the body. `bigIds`: 64-bit ids are kept as
 * strings (JavaScript numbers would round them).
 */
export async function call(authorization, method, apiPath, body, { bigIds = false } = {}) {
  const resp = await fetch(`${URL}/api/v1${apiPath}`, {
    method,
    headers: { Authorization: authorization, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await resp.text();
  if (!resp.ok) throw new Error(`${method} ${apiPath}: ${resp.status} ${text}`);
  if (!text) return null;
  return JSON.parse(bigIds ? text.replace(/:\s*(\d{16,})/g, ':"$1"') : text);
}

/** The `Authorization` value of HTTP basic authentication as `user`. */
export function basicAuth(user, password) {
  return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
}

/** A call to the REST API as the administrator (see `call`). */
export async function admin(method, apiPath, body) {
  return call(`Bearer ${ADMIN}`, method, apiPath, body);
}

/** `git ARGS` in `cwd` with a fixed identity and no prompts; its stdout. */
export function gitIn(cwd, args) {
  return execFileSync('git', args, {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, GIT_AUTHOR_NAME: 'UI', GIT_AUTHOR_EMAIL: 'ui@test.invalid', GIT_COMMITTER_NAME: 'UI', GIT_COMMITTER_EMAIL: 'ui@test.invalid', GIT_TERMINAL_PROMPT: '0' },
  });
}

/** Logs `user` in on `page` through the login form and waits for the header to name them. */
export async function logIn(page, user, password) {
  await page.goto(`${URL}/#/login`);
  await page.waitForSelector('#login-user');
  await page.getByLabel('User name').fill(user);
  await page.getByLabel('Password', { exact: true }).fill(password);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.locator('[data-testid=username]', { hasText: user }).waitFor();
}
