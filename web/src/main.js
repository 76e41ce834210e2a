// Cove web UI: a small hash router over pages that render into <main>. Each page returns a
// cleanup function (closing event streams and terminals) that runs when the route changes.
import '@xterm/xterm/css/xterm.css';
import './style.css';
import { api, setCsrf, setUnauthorizedHandler } from './api.js';
import { h, replace } from './dom.js';
import { loginPage } from './pages/login.js';
import { reposPage, repoPage } from './pages/repos.js';
import { envsPage } from './pages/envs.js';
import { envPage } from './pages/env.js';
import { runsPage, runPage } from './pages/runs.js';
import { pullsPage, pullPage } from './pages/pulls.js';
import { codePage } from './pages/code.js';
import { sshKeysPage } from './pages/keys.js';
import { settingsPage } from './pages/settings.js';
// issues and the board (issue 16)
import { issuesPage, issuePage } from './pages/issues.js';
import { boardPage } from './pages/board.js';
import { deployEnvsPage, deployEnvPage } from './pages/deploy.js';
// projects and members (issue 16)
import { projectsPage, projectPage } from './pages/projects.js';

const app = document.getElementById('app');
let session = null;
let cleanup = null;
let firstRender = true;

const routes = [
  [/^\/login$/, () => loginPage],
  [/^\/?$/, () => envsPage],
  [/^\/repos$/, () => reposPage],
  [/^\/repos\/([^/]+)\/([^/]+)$/, () => repoPage],
  [/^\/repos\/([^/]+)\/([^/]+)\/runs$/, () => runsPage],
  [/^\/repos\/([^/]+)\/([^/]+)\/pulls$/, () => pullsPage],
  [/^\/repos\/([^/]+)\/([^/]+)\/pulls\/(\d+)$/, () => pullPage],
  [/^\/repos\/([^/]+)\/([^/]+)\/code$/, () => codePage],
  // issues and the board (issue 16)
  [/^\/repos\/([^/]+)\/([^/]+)\/issues$/, () => issuesPage],
  [/^\/repos\/([^/]+)\/([^/]+)\/issues\/(\d+)$/, () => issuePage],
  [/^\/repos\/([^/]+)\/([^/]+)\/board$/, () => boardPage],
  [/^\/repos\/([^/]+)\/([^/]+)\/deploy$/, () => deployEnvsPage],
  [/^\/repos\/([^/]+)\/([^/]+)\/deploy\/([^/]+)$/, () => deployEnvPage],
  // projects and members (issue 16)
  [/^\/projects$/, () => projectsPage],
  [/^\/projects\/([^/]+)$/, () => projectPage],
  [/^\/envs$/, () => envsPage],
  [/^\/envs\/([^/]+)$/, () => envPage],
  [/^\/runs\/(\d+)$/, () => runPage],
  [/^\/settings$/, () => settingsPage],
  [/^\/settings\/ssh-keys$/, () => sshKeysPage],
];

export function navigate(hash) {
  if (location.hash === hash) render();
  else location.hash = hash;
}

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const [path, query = ''] = raw.split('?');
  return { path, query: new URLSearchParams(query) };
}

function header() {
  const { path } = parseHash();
  const link = (href, label, active) =>
    h('a', { href, 'aria-current': active ? 'page' : undefined }, label);
  return h(
    'header',
    { class: 'top' },
    h('a', { href: '#/', class: 'brand', 'aria-label': 'Cove home' }, 'Cove'),
    h(
      'nav',
      { 'aria-label': 'Main' },
      link('#/repos', 'Repositories', path.startsWith('/repos')),
      link('#/envs', 'Environments', path === '/' || path.startsWith('/envs')),
      link('#/settings/ssh-keys', 'SSH keys', path.startsWith('/settings/ssh-keys')),
      link('#/settings', 'Settings', path === '/settings'),
      // projects and members (issue 16)
      link('#/projects', 'Projects', path.startsWith('/projects')),
    ),
    h(
      'div',
      { class: 'who' },
      h('span', { 'data-testid': 'username' }, session.username),
      h('button', { type: 'button', class: 'secondary', onclick: logout }, 'Log out'),
    ),
  );
}

async function logout() {
  try {
    await api('/session', { method: 'DELETE' });
  } catch {
    /* the session may already be gone */
  }
  session = null;
  setCsrf(null);
  navigate('#/login');
}

export function loggedIn(info) {
  session = info;
  setCsrf(info.csrf_token);
}

async function render() {
  if (cleanup) {
    try {
      cleanup();
    } catch {
      /* ignore */
    }
    cleanup = null;
  }
  const { path, query } = parseHash();
  if (!session && path !== '/login') {
    try {
      loggedIn(await api('/session'));
    } catch {
      sessionStorage.setItem('cove.after-login', location.hash);
      navigate('#/login');
      return;
    }
  }
  const main = h('main', { id: 'main', tabindex: '-1' });
  if (path === '/login') {
    replace(app, main);
  } else {
    replace(app, header(), main);
  }
  const match = routes.find(([re]) => re.test(path));
  if (!match) {
    main.append(h('h1', {}, 'Not found'), h('p', {}, h('a', { href: '#/' }, 'Back to environments')));
    return;
  }
  const params = path.match(match[0]).slice(1).map(decodeURIComponent);
  const page = match[1]();
  try {
    cleanup = (await page(main, { params, query, session, navigate })) || null;
  } catch (err) {
    main.append(h('p', { role: 'alert', class: 'error' }, String(err.message || err)));
  }
  const heading = main.querySelector('h1');
  if (heading) {
    document.title = `${heading.textContent} · Cove`;
    heading.setAttribute('tabindex', '-1');
    // Moving focus to the new page's heading tells keyboard and screen-reader users that the
    // route changed; on the first load the browser's own focus order starts at the skip link.
    if (path !== '/login' && !firstRender) heading.focus({ preventScroll: true });
  }
  firstRender = false;
}

setUnauthorizedHandler(() => {
  if (session) {
    session = null;
    setCsrf(null);
    sessionStorage.setItem('cove.after-login', location.hash);
    navigate('#/login');
  }
});

document.querySelector('.skip').addEventListener('click', (ev) => {
  ev.preventDefault();
  const main = document.getElementById('main');
  if (main) main.focus();
});
window.addEventListener('hashchange', render);
render();
