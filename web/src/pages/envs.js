import { api, subscribe } from '../api.js';
import { h, replace, badge } from '../dom.js';

/** Start/stop/restart/delete buttons that fit the state. */
export function envActions(env, { onError, onDeleted } = {}) {
  const act = (label, path, method = 'POST', confirmText) =>
    h(
      'button',
      {
        type: 'button',
        class: label === 'Delete' ? 'danger small' : 'secondary small',
        'aria-label': `${label} ${env.name}`,
        onclick: async (ev) => {
          if (confirmText && !window.confirm(confirmText)) return;
          ev.target.disabled = true;
          try {
            await api(`/environments/${env.id}${path}`, { method });
            if (label === 'Delete' && onDeleted) onDeleted();
          } catch (err) {
            if (onError) onError(err);
            ev.target.disabled = false;
          }
        },
      },
      label,
    );
  const out = [];
  if (env.state === 'stopped' || env.state === 'failed') out.push(act('Start', '/start'));
  if (env.state === 'running') out.push(act('Stop', '/stop'), act('Restart', '/restart'));
  if (env.state !== 'deleting') out.push(act('Delete', '', 'DELETE', `Delete ${env.name} and its volumes?`));
  return h('span', { class: 'actions' }, out);
}

function createForm(navigate) {
  const error = h('p', { role: 'alert', class: 'error' });
  const repo = h('select', { id: 'env-repo', required: true });
  const branch = h('select', { id: 'env-branch' });
  const newBranch = h('input', { id: 'env-new-branch', placeholder: 'optional', autocomplete: 'off' });
  const devfile = h('input', { id: 'env-devfile', placeholder: 'devfile.yaml (auto-detected)', autocomplete: 'off' });
  const idle = h('input', { id: 'env-idle', type: 'number', min: '0', value: '30', inputmode: 'numeric' });
  let loads = 0;
  const loadBranches = async () => {
    const mine = ++loads;
    const branches = repo.value ? await api(`/repos/${repo.value}/branches`).catch(() => []) : [];
    if (mine !== loads) return; // a newer choice of repository won
    replace(branch, branches.map((b) => h('option', { value: b.name }, b.name)));
  };
  repo.addEventListener('change', loadBranches);
  api('/repos').then(async (repos) => {
    for (const r of repos) repo.append(h('option', { value: r.full_name }, r.full_name));
    await loadBranches();
  });
  const form = h(
    'form',
    { class: 'card grid-form', 'aria-labelledby': 'new-env-h' },
    h('h2', { id: 'new-env-h' }, 'New environment'),
    h('div', { class: 'field' }, h('label', { for: 'env-repo' }, 'Repository'), repo),
    h('div', { class: 'field' }, h('label', { for: 'env-branch' }, 'Branch'), branch),
    h('div', { class: 'field' }, h('label', { for: 'env-new-branch' }, 'New branch from it'), newBranch),
    h('div', { class: 'field' }, h('label', { for: 'env-devfile' }, 'Devfile path'), devfile),
    h('div', { class: 'field' }, h('label', { for: 'env-idle' }, 'Idle timeout (minutes, 0 = never)'), idle),
    h('div', { class: 'field' }, h('button', { type: 'submit' }, 'Create environment')),
    error,
  );
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    error.textContent = '';
    const body = { idle_timeout_secs: Math.max(0, Number(idle.value || 0)) * 60 };
    if (newBranch.value.trim()) {
      body.new_branch = newBranch.value.trim();
      if (branch.value) body.from = branch.value;
    } else if (branch.value) {
      body.branch = branch.value;
    }
    if (devfile.value.trim()) body.devfile_path = devfile.value.trim();
    const submit = form.querySelector('button[type=submit]');
    submit.disabled = true;
    try {
      const env = await api(`/repos/${repo.value}/environments`, { method: 'POST', body });
      navigate(`#/envs/${env.id}`);
    } catch (err) {
      error.textContent = err.message;
      submit.disabled = false;
    }
  });
  return form;
}

export function envsPage(main, { navigate }) {
  const error = h('p', { role: 'alert', class: 'error' });
  const table = h('div', { 'aria-live': 'polite', 'aria-busy': 'true' }, h('p', {}, 'Loading…'));
  main.append(h('h1', {}, 'Environments'), error, table, createForm(navigate));
  return subscribe('/environments/stream', {
    environments(envs) {
      table.setAttribute('aria-busy', 'false');
      if (!envs.length) {
        replace(table, h('p', {}, 'No environments yet. Create one below, or open one from a repository branch.'));
        return;
      }
      replace(
        table,
        h(
          'table',
          { id: 'env-table' },
          h('caption', { class: 'sr-only' }, 'Environments, updated live'),
          h('thead', {}, h('tr', {}, ['Environment', 'Repository', 'Branch', 'State', 'Actions'].map((c) => h('th', { scope: 'col' }, c)))),
          h(
            'tbody',
            {},
            envs.map((env) =>
              h(
                'tr',
                { 'data-env': env.id },
                h('th', { scope: 'row' }, h('a', { href: `#/envs/${env.id}` }, env.name)),
                h('td', {}, env.repo),
                h('td', {}, env.branch),
                h('td', {}, badge(env.state), env.restart_required ? [' ', h('span', { class: 'badge warn' }, 'restart required')] : null, env.outdated ? [' ', h('span', { class: 'badge warn' }, 'outdated')] : null),
                h('td', {}, envActions(env, { onError: (err) => (error.textContent = err.message) })),
              ),
            ),
          ),
        ),
      );
    },
  });
}
