// Deployment environments (issue 21, docs/deployments.md): per repository, what is deployed in
// each environment, its protection rule, account connections, variables (secret values never)
// and its history. Environments are managed with `cove deploy env …`; writers roll back to an
// earlier successful deployment from the history ("Roll back to #N": a new run under the
// environment's protections). Readers see no controls (`GET …/access`; the server refuses
// them anyway).
import { api } from '../api.js';
import { h, replace, badge, shortSha, ago } from '../dom.js';

function who(p) {
  const role = p.deployer_role ? `${p.deployer_role}s and above` : p.deployers.length ? '' : 'writers and above';
  return [role, p.deployers.join(', ')].filter(Boolean).join(', ');
}

function history(list, owner, name, rollback) {
  if (!list.length) return h('p', {}, 'No deployments yet.');
  return h(
    'table',
    {},
    h('caption', { class: 'sr-only' }, 'Deployments, newest first'),
    h(
      'thead',
      {},
      h('tr', {}, ...['Run', 'Action', 'Commit', 'Branch', 'By', 'When', 'Result', ...(rollback ? [''] : [])].map((t) => h('th', { scope: 'col' }, t))),
    ),
    h(
      'tbody',
      {},
      ...list.map((d) =>
        h(
          'tr',
          { 'data-testid': `deployment-${d.run_number}-${d.action}` },
          h('td', {}, h('a', { href: `#/runs/${d.run_id}` }, `${owner}/${name}#${d.run_number}`)),
          h('td', {}, d.action, d.rollback_of ? ' (rollback)' : ''),
          h('td', { class: 'mono' }, shortSha(d.commit_sha)),
          h('td', {}, d.branch),
          h('td', {}, d.actor || '—'),
          h('td', {}, ago(d.created_at_ms)),
          h('td', {}, badge(d.state), d.reason ? h('span', { class: 'muted' }, ` ${d.reason}`) : ''),
          rollback ? h('td', {}, d.state === 'succeeded' ? h('button', { type: 'button', class: 'secondary small', 'data-rollback': d.run_number, onclick: () => rollback(d.run_number) }, `Roll back to #${d.run_number}`) : '') : null,
        ),
      ),
    ),
  );
}

export async function deployEnvsPage(main, { params }) {
  const [owner, name] = params;
  main.append(h('h1', {}, `Deployments · ${owner}/${name}`));
  const envs = await api(`/repos/${owner}/${name}/deploy/environments`);
  if (!envs.length) {
    main.append(h('p', {}, 'No deployment environments. Create one with `cove deploy env create`.'));
    return;
  }
  main.append(
    h(
      'table',
      {},
      h('caption', { class: 'sr-only' }, 'Deployment environments'),
      h('thead', {}, h('tr', {}, ...['Environment', 'Deployed', 'Approvals', 'Branches'].map((t) => h('th', { scope: 'col' }, t)))),
      h(
        'tbody',
        {},
        ...envs.map((e) =>
          h(
            'tr',
            {},
            h('td', {}, h('a', { href: `#/repos/${owner}/${name}/deploy/${encodeURIComponent(e.name)}` }, e.name)),
            h('td', {}, e.current ? `#${e.current.run_number} ${shortSha(e.current.commit_sha)} by ${e.current.actor || '—'}` : 'nothing yet'),
            h('td', {}, String(e.protection.required_approvals)),
            h('td', {}, e.protection.branches.join(', ') || 'any'),
          ),
        ),
      ),
    ),
  );
}

export async function deployEnvPage(main, { params, navigate }) {
  const [owner, name, env] = params;
  main.append(h('h1', {}, `${env} · ${owner}/${name}`));
  const base = `/repos/${owner}/${name}/deploy/environments/${encodeURIComponent(env)}`;
  const [e, list, access] = await Promise.all([api(base), api(`${base}/deployments`), api(`/repos/${owner}/${name}/access`)]);
  const error = h('p', { role: 'alert', class: 'error' });
  const rollback = access.can_write
    ? async (run) => {
        if (!window.confirm(`Deploy ${owner}/${name}#${run} to ${env} again (a new run, under ${env}'s rules)?`)) return;
        error.textContent = '';
        try {
          const created = await api(`${base}/rollback`, { method: 'POST', body: { run } });
          navigate(`#/runs/${created.id}`);
        } catch (err) {
          error.textContent = err.message;
        }
      }
    : null;
  const p = e.protection;
  const current = e.current
    ? h('p', { 'data-testid': 'current' }, `Deployed: ${owner}/${name}#${e.current.run_number} (${shortSha(e.current.commit_sha)}, ${e.current.action}) by ${e.current.actor || '—'}, ${ago(e.current.finished_at_ms || e.current.created_at_ms)}`)
    : h('p', { 'data-testid': 'current' }, 'Nothing deployed yet.');
  const body = h('div', {});
  replace(
    body,
    e.description ? h('p', {}, e.description) : '',
    current,
    h('h2', {}, 'Protection'),
    h(
      'ul',
      {},
      h('li', {}, `Who may deploy: ${who(p)}`),
      h('li', {}, `Approvals: ${p.required_approvals}${p.approvers.length ? ` from ${p.approvers.join(', ')}` : ''}`),
      h('li', {}, `Branches: ${p.branches.join(', ') || 'any'}`),
    ),
    h('h2', {}, 'Account connections'),
    e.connections.length
      ? h('ul', {}, ...e.connections.map((c) => h('li', {}, `${c.name}: account ${c.account_id} (${c.region}), roles ${c.roles.join(', ')}`)))
      : h('p', {}, 'None (an administrator adds them).'),
    h('h2', {}, 'Variables'),
    e.variables.length
      ? h('ul', {}, ...e.variables.map((v) => h('li', { class: 'mono' }, v.secret ? `${v.name} (secret)` : `${v.name}=${v.value}`)))
      : h('p', {}, 'None.'),
    h('h2', {}, 'History'),
    error,
    history(list, owner, name, rollback),
  );
  main.append(body);
}
