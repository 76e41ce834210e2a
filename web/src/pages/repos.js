import { api, subscribe } from '../api.js';
import { h, replace, badge, shortSha, ago } from '../dom.js';
import { openPullsSection } from './pulls.js';

function copyButton(text, label) {
  const status = h('span', { class: 'copied', role: 'status' });
  const button = h(
    'button',
    {
      type: 'button',
      class: 'secondary small',
      'aria-label': label,
      onclick: async () => {
        try {
          await navigator.clipboard.writeText(text);
          status.textContent = 'Copied';
        } catch {
          // Clipboard API unavailable (e.g. plain http): select the text instead.
          const input = button.previousElementSibling;
          if (input && input.select) input.select();
          status.textContent = 'Press Ctrl+C to copy';
        }
        setTimeout(() => (status.textContent = ''), 2000);
      },
    },
    'Copy',
  );
  return [button, status];
}

export function cloneUrl(url, id) {
  return h(
    'div',
    { class: 'clone' },
    h('label', { for: id }, 'Clone URL'),
    h('input', { id, value: url, readonly: true, class: 'mono', onfocus: (e) => e.target.select() }),
    copyButton(url, 'Copy clone URL'),
  );
}

export async function reposPage(main, { navigate }) {
  main.append(h('h1', {}, 'Repositories'));
  const list = h('div', { 'aria-live': 'polite' });
  const error = h('p', { role: 'alert', class: 'error' });
  const name = h('input', { id: 'repo-name', required: true, pattern: '[A-Za-z0-9][A-Za-z0-9._-]*', autocomplete: 'off' });
  const visibility = h('select', { id: 'repo-visibility' }, h('option', { value: 'private' }, 'private'), h('option', { value: 'public' }, 'public'));
  const form = h(
    'form',
    { class: 'card inline', 'aria-label': 'Create a repository' },
    h('h2', {}, 'New repository'),
    h('div', { class: 'field' }, h('label', { for: 'repo-name' }, 'Name'), name),
    h('div', { class: 'field' }, h('label', { for: 'repo-visibility' }, 'Visibility'), visibility),
    h('button', { type: 'submit' }, 'Create repository'),
    error,
  );
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    error.textContent = '';
    try {
      const repo = await api('/repos', { method: 'POST', body: { name: name.value.trim(), visibility: visibility.value } });
      navigate(`#/repos/${repo.owner}/${repo.name}`);
    } catch (err) {
      error.textContent = err.message;
    }
  });
  main.append(list, form);
  const repos = await api('/repos');
  if (!repos.length) {
    replace(list, h('p', {}, 'No repositories yet. Create one below, then push to its clone URL.'));
    return;
  }
  replace(
    list,
    h(
      'table',
      {},
      h('caption', { class: 'sr-only' }, 'Repositories you can read'),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Repository'), h('th', { scope: 'col' }, 'Visibility'), h('th', { scope: 'col' }, 'Default branch'), h('th', { scope: 'col' }, 'Clone URL'))),
      h(
        'tbody',
        {},
        repos.map((r, i) =>
          h(
            'tr',
            {},
            h('th', { scope: 'row' }, h('a', { href: `#/repos/${r.owner}/${r.name}` }, r.full_name)),
            h('td', {}, r.visibility),
            h('td', {}, r.default_branch),
            h('td', {}, h('code', { class: 'mono', id: `clone-${i}` }, r.clone_url), ' ', copyButton(r.clone_url, `Copy clone URL of ${r.full_name}`)),
          ),
        ),
      ),
    ),
  );
}

export function runBadgeLink(run) {
  const label = run.number ? `#${run.number}` : `#${run.id}`;
  return h('a', { href: `#/runs/${run.id}`, class: 'run-link', 'aria-label': `Run ${label} ${run.workflow}: ${run.state}` }, badge(run.state), ` ${label}`);
}

export async function repoPage(main, { params, navigate }) {
  const [owner, name] = params;
  const full = `${owner}/${name}`;
  const repo = await api(`/repos/${owner}/${name}`);
  main.append(
    h('h1', {}, full),
    h(
      'p',
      {},
      `${repo.visibility} · default branch ${repo.default_branch} · `,
      h('a', { href: `#/repos/${owner}/${name}/runs` }, 'All runs'),
      ' · ',
      h('a', { href: `#/repos/${owner}/${name}/pulls` }, 'Pull requests'),
      ' · ',
      h('a', { href: `#/repos/${owner}/${name}/code` }, 'Browse code'),
      // issues and the board (issue 16)
      ' · ',
      h('a', { href: `#/repos/${owner}/${name}/issues` }, 'Issues'),
      ' · ',
      h('a', { href: `#/repos/${owner}/${name}/board` }, 'Board'),
      ' · ',
      h('a', { href: `#/repos/${owner}/${name}/deploy` }, 'Deployments'),
    ),
    cloneUrl(repo.clone_url, 'clone-url'),
  );
  const error = h('p', { role: 'alert', class: 'error' });
  const branchesBox = h('section', { 'aria-labelledby': 'branches-h' }, h('h2', { id: 'branches-h' }, 'Branches'));
  main.append(error, branchesBox);
  const branches = await api(`/repos/${owner}/${name}/branches`);
  if (branches.length) main.insertBefore(await openPullsSection(owner, name), branchesBox);
  const envs = await api(`/environments?repo=${encodeURIComponent(full)}`);
  if (!branches.length) {
    branchesBox.append(
      h('p', {}, 'Empty repository. Push to it:'),
      h('pre', { class: 'mono' }, `git remote add cove ${repo.clone_url}\ngit push cove ${repo.default_branch}`),
    );
    return null;
  }
  const runCells = new Map();
  const tbody = h('tbody');
  for (const b of branches) {
    const cell = h('td', { class: 'runs-cell' }, '…');
    runCells.set(b.name, cell);
    const open = envs.filter((e) => e.branch === b.name);
    const openButton = h(
      'button',
      {
        type: 'button',
        'data-branch': b.name,
        onclick: async (ev) => {
          ev.target.disabled = true;
          error.textContent = '';
          try {
            const env = await api(`/repos/${owner}/${name}/environments`, { method: 'POST', body: { branch: b.name } });
            navigate(`#/envs/${env.id}`);
          } catch (err) {
            error.textContent = err.message;
            ev.target.disabled = false;
          }
        },
      },
      'Open environment',
    );
    tbody.append(
      h(
        'tr',
        {},
        h('th', { scope: 'row' }, b.name),
        h('td', {}, h('code', {}, shortSha(b.commit))),
        h('td', {}, openButton, open.map((e) => [' ', h('a', { href: `#/envs/${e.id}` }, e.name), ' ', badge(e.state)])),
        cell,
        h('td', {}, h('a', { href: `#/repos/${owner}/${name}/runs?branch=${encodeURIComponent(b.name)}` }, 'Runs')),
      ),
    );
  }
  branchesBox.append(
    h(
      'table',
      {},
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Branch'), h('th', { scope: 'col' }, 'Head'), h('th', { scope: 'col' }, 'Environments'), h('th', { scope: 'col' }, 'Recent runs'), h('th', { scope: 'col' }, h('span', { class: 'sr-only' }, 'Links')))),
      tbody,
    ),
  );
  return subscribe(`/repos/${owner}/${name}/runs/stream?limit=100`, {
    runs(runs) {
      for (const [branch, cell] of runCells) {
        const recent = runs.filter((r) => r.branch === branch).slice(0, 3);
        replace(cell, recent.length ? recent.map((r) => [runBadgeLink(r), ' ']) : h('span', { class: 'muted-text' }, 'no runs'));
      }
    },
  });
}

export { ago };
