// Projects (issue 16): #/projects — the caller's projects and invitations (accept), a
// create form; #/projects/P — its repositories, the merged board, and the members with their
// roles: administrators invite by user name, change roles and remove members; everyone may
// leave. Non-administrators see no controls that change anyone else (the server refuses them
// anyway: the project's `role` says what the caller is).
import { api } from '../api.js';
import { h, replace } from '../dom.js';

export const PROJECT_ROLES = ['administrator', 'contributor', 'reviewer', 'reader'];
const enc = encodeURIComponent;

function roleSelect(id, current, label) {
  return h(
    'select',
    { id, 'aria-label': label },
    PROJECT_ROLES.map((r) => h('option', { value: r, selected: r === current }, r)),
  );
}

export async function projectsPage(main, { navigate }) {
  const error = h('p', { role: 'alert', class: 'error', id: 'projects-error' });
  main.append(h('h1', {}, 'Projects'), error);
  const projects = await api('/projects');
  const invited = projects.filter((p) => !p.role && p.invited_as);
  if (invited.length) {
    main.append(
      h('h2', {}, 'Invitations'),
      h(
        'ul',
        { id: 'invitations' },
        invited.map((p) =>
          h(
            'li',
            { 'data-project': p.name },
            `${p.name} as ${p.invited_as} `,
            h(
              'button',
              {
                type: 'button',
                class: 'accept-invitation',
                onclick: async () => {
                  try {
                    await api(`/projects/${enc(p.name)}/invitations/accept`, { method: 'POST', body: {} });
                    navigate(`#/projects/${enc(p.name)}`);
                  } catch (err) {
                    error.textContent = err.message;
                  }
                },
              },
              'Accept',
            ),
          ),
        ),
      ),
    );
  }
  const mine = projects.filter((p) => p.role || !p.invited_as);
  main.append(
    mine.length
      ? h(
          'ul',
          { id: 'project-list' },
          mine.map((p) =>
            h('li', {}, h('a', { href: `#/projects/${enc(p.name)}` }, p.name), ` — ${p.role || 'administrator of Cove'}`, p.description ? ` — ${p.description}` : ''),
          ),
        )
      : h('p', { id: 'no-projects' }, 'You are not a member of any project.'),
  );
  const form = h(
    'form',
    { class: 'inline', id: 'new-project', 'aria-label': 'New project' },
    h('label', { for: 'project-name' }, 'Name'),
    h('input', { id: 'project-name', required: true, pattern: '[A-Za-z0-9._-]+' }),
    h('label', { for: 'project-description' }, 'Description'),
    h('input', { id: 'project-description' }),
    h('label', { for: 'project-estimates' }, 'Estimates'),
    h('select', { id: 'project-estimates' }, h('option', { value: 'sizes' }, 'sizes (XS–XL)'), h('option', { value: 'points' }, 'points')),
    h('button', { type: 'submit' }, 'Create project'),
  );
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const name = form.querySelector('#project-name').value.trim();
    try {
      await api('/projects', {
        method: 'POST',
        body: {
          name,
          description: form.querySelector('#project-description').value,
          estimate_kind: form.querySelector('#project-estimates').value,
        },
      });
      navigate(`#/projects/${enc(name)}`);
    } catch (err) {
      error.textContent = err.message;
    }
  });
  main.append(h('h2', {}, 'New project'), form);
}

export async function projectPage(main, { params, session, navigate }) {
  const [name] = params;
  const base = `/projects/${enc(name)}`;
  const error = h('p', { role: 'alert', class: 'error', id: 'members-error' });
  const status = h('p', { role: 'status', class: 'muted-text', id: 'members-status' });
  const project = await api(base);
  // Cove's administrators act as project administrators
  const isAdmin = project.role === 'administrator' || (!project.role && session.is_admin);
  main.append(
    h('p', { class: 'crumbs' }, h('a', { href: '#/projects' }, 'Projects')),
    h('h1', {}, `Project ${project.name}`),
    project.description ? h('p', {}, project.description) : null,
    h('p', { id: 'project-role' }, `Your role: ${project.role || 'administrator of Cove'} · estimates in ${project.estimate_kind}`),
    h('h2', {}, 'Repositories'),
    project.repos.length
      ? h('ul', { id: 'project-repos' }, project.repos.map((r) => h('li', {}, h('a', { href: `#/repos/${r}` }, r), ' · ', h('a', { href: `#/repos/${r}/board` }, 'board'))))
      : h('p', {}, 'No repositories yet.'),
    h('h2', {}, 'Members'),
    error,
    status,
  );
  const table = h('table', { id: 'members' });
  main.append(table);

  async function act(what, fn) {
    error.textContent = '';
    try {
      await fn();
      status.textContent = what;
      await load();
    } catch (err) {
      error.textContent = err.message;
    }
  }

  async function load() {
    const members = await api(`${base}/members`);
    replace(
      table,
      h('thead', {}, h('tr', {}, ['User', 'Role', 'State', ''].map((t) => h('th', { scope: 'col' }, t)))),
      h(
        'tbody',
        {},
        members.map((m) => {
          const self = m.user === session.username;
          const role = isAdmin ? roleSelect(`role-${m.user}`, m.role, `Role of ${m.user}`) : m.role;
          if (isAdmin) {
            role.addEventListener('change', () =>
              act(`${m.user} is now ${role.value}`, () =>
                api(`${base}/members/${enc(m.user)}`, { method: 'PUT', body: { role: role.value } }),
              ),
            );
          }
          const remove =
            isAdmin || self
              ? h(
                  'button',
                  {
                    type: 'button',
                    class: 'secondary remove-member',
                    'aria-label': self ? 'Leave the project' : `Remove ${m.user}`,
                    onclick: () =>
                      act(self ? 'You left the project' : `${m.user} removed`, async () => {
                        await api(`${base}/members/${enc(m.user)}`, { method: 'DELETE' });
                        if (self) navigate('#/projects');
                      }),
                  },
                  self ? (m.pending ? 'Decline' : 'Leave') : m.pending ? 'Withdraw' : 'Remove',
                )
              : null;
          return h(
            'tr',
            { 'data-user': m.user },
            h('td', {}, m.user),
            h('td', { class: 'member-role' }, role),
            h('td', {}, m.pending ? `invited by ${m.invited_by || '—'}` : 'member'),
            h('td', {}, remove),
          );
        }),
      ),
    );
  }
  await load();

  if (isAdmin) {
    const invite = h(
      'form',
      { class: 'inline', id: 'invite-member', 'aria-label': 'Invite a member' },
      h('label', { for: 'invite-user' }, 'User name'),
      h('input', { id: 'invite-user', required: true }),
      h('label', { for: 'invite-role' }, 'Role'),
      roleSelect('invite-role', 'contributor', 'Role'),
      h('button', { type: 'submit' }, 'Invite'),
    );
    invite.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const user = invite.querySelector('#invite-user').value.trim();
      const role = invite.querySelector('#invite-role').value;
      act(`${user} invited as ${role}`, async () => {
        await api(`${base}/members`, { method: 'POST', body: { user, role } });
        invite.querySelector('#invite-user').value = '';
      });
    });
    main.append(h('h2', {}, 'Invite'), invite);
  }
}
