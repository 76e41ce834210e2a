// Issues (issue 16): the list with filters and pages (#/repos/O/N/issues?column=&assignee=
// &label=&q=&offset=), a new-issue form, and the issue page (#/repos/O/N/issues/N) with its
// fields, description and comments (Markdown: markdown.js, text nodes only), links to
// branches and pull requests, and "Create branch". Readers see no controls that change
// anything (the server refuses them anyway: GET …/access says what the caller may do).
import { api } from '../api.js';
import { h, ago } from '../dom.js';
import { renderMarkdownIn } from '../markdown.js';

export const PRIORITIES = ['none', 'low', 'medium', 'high'];
export const ESTIMATES = ['', 'XS', 'S', 'M', 'L', 'XL'];
// a project that estimates in points (its `estimate_kind`, from GET …/access)
export const POINTS = ['', '0', '1', '2', '3', '5', '8', '13', '21'];
const estimatesOf = (access) => (access.estimate_kind === 'points' ? POINTS : ESTIMATES);
const PAGE = 25;

const list = (text) => text.split(',').map((s) => s.trim()).filter(Boolean);

function repoBase(owner, name) {
  return `/repos/${encodeURIComponent(owner)}/${encodeURIComponent(name)}`;
}

function priorityBadge(p) {
  return h('span', { class: `prio prio-${p}`, 'data-priority': p }, p === 'none' ? '—' : p);
}

function select(id, label, values, current, labels = (v) => v || '—') {
  return [
    h('label', { for: id }, label),
    h('select', { id }, values.map((v) => h('option', { value: v, selected: v === current }, labels(v)))),
  ];
}

export async function issuesPage(main, { params, query, navigate }) {
  const [owner, name] = params;
  const base = repoBase(owner, name);
  const q = new URLSearchParams();
  for (const key of ['column', 'assignee', 'label', 'q']) if (query.get(key)) q.set(key, query.get(key));
  const offset = Math.max(0, Number(query.get('offset')) || 0);
  const [access, board, page] = await Promise.all([
    api(`${base}/access`),
    api(`${base}/board`),
    api(`${base}/issues?${q}&limit=${PAGE}&offset=${offset}`),
  ]);
  const columns = board.columns.map((c) => c.name);
  const here = `#/repos/${owner}/${name}/issues`;
  main.append(
    h('p', { class: 'crumbs' }, h('a', { href: `#/repos/${owner}/${name}` }, `${owner}/${name}`)),
    h('h1', {}, `Issues of ${owner}/${name}`),
    h('p', {}, h('a', { href: `#/repos/${owner}/${name}/board` }, 'Board')),
  );

  const filters = h(
    'form',
    { class: 'inline filters', id: 'issue-filters', 'aria-label': 'Filter issues' },
    select('filter-column', 'Column', ['', ...columns], query.get('column') || '', (v) => v || 'any'),
    h('label', { for: 'filter-assignee' }, 'Assignee'),
    h('input', { id: 'filter-assignee', value: query.get('assignee') || '', size: '10' }),
    h('label', { for: 'filter-label' }, 'Label'),
    h('input', { id: 'filter-label', value: query.get('label') || '', size: '10' }),
    h('label', { for: 'filter-q' }, 'Text'),
    h('input', { id: 'filter-q', type: 'search', value: query.get('q') || '' }),
    h('button', { type: 'submit', class: 'secondary' }, 'Filter'),
  );
  filters.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const s = new URLSearchParams();
    for (const [key, id] of [['column', 'filter-column'], ['assignee', 'filter-assignee'], ['label', 'filter-label'], ['q', 'filter-q']]) {
      const v = filters.querySelector(`#${id}`).value.trim();
      if (v) s.set(key, v);
    }
    navigate(`${here}?${s}`);
  });
  main.append(filters);

  if (!page.issues.length) {
    main.append(h('p', { id: 'no-issues' }, page.total ? 'No issues on this page.' : 'No issues match.'));
  } else {
    main.append(
      h(
        'table',
        { id: 'issue-list' },
        h('thead', {}, h('tr', {}, ['#', 'Title', 'Column', 'Priority', 'Estimate', 'Assignees', 'Labels'].map((t) => h('th', { scope: 'col' }, t)))),
        h(
          'tbody',
          {},
          page.issues.map((i) =>
            h(
              'tr',
              { 'data-issue': i.number },
              h('td', {}, `#${i.number}`),
              h('td', {}, h('a', { href: `${here}/${i.number}` }, i.title)),
              h('td', {}, i.column),
              h('td', {}, priorityBadge(i.priority)),
              h('td', {}, i.estimate || '—'),
              h('td', {}, i.assignees.join(', ')),
              h('td', {}, i.labels.map((l) => h('span', { class: 'label' }, l))),
            ),
          ),
        ),
      ),
    );
  }
  const pageLink = (o, text) => {
    const s = new URLSearchParams(q);
    if (o) s.set('offset', String(o));
    return h('a', { href: `${here}?${s}` }, text);
  };
  main.append(
    h(
      'p',
      { class: 'pager', id: 'issue-pager' },
      `${page.total ? offset + 1 : 0}–${offset + page.issues.length} of ${page.total} `,
      offset > 0 ? pageLink(Math.max(0, offset - PAGE), 'Previous') : null,
      ' ',
      offset + page.issues.length < page.total ? pageLink(offset + PAGE, 'Next') : null,
    ),
  );
  if (access.can_write) main.append(newIssueForm(base, owner, name, columns, navigate, estimatesOf(access)));
  return null;
}

function newIssueForm(base, owner, name, columns, navigate, estimates) {
  const error = h('p', { role: 'alert', class: 'error' });
  const form = h(
    'form',
    { id: 'new-issue', class: 'stack', 'aria-labelledby': 'new-issue-h' },
    h('h2', { id: 'new-issue-h' }, 'New issue'),
    h('label', { for: 'issue-title' }, 'Title'),
    h('input', { id: 'issue-title', required: true, maxlength: '512' }),
    h('label', { for: 'issue-description' }, 'Description (Markdown; @user notifies, #N links)'),
    h('textarea', { id: 'issue-description', rows: '5' }),
    h('div', { class: 'inline' },
      select('issue-column', 'Column', columns, columns[0]),
      select('issue-priority', 'Priority', PRIORITIES, 'none'),
      select('issue-estimate', 'Estimate', estimates, ''),
    ),
    h('label', { for: 'issue-assignees' }, 'Assignees (comma-separated)'),
    h('input', { id: 'issue-assignees' }),
    h('label', { for: 'issue-labels' }, 'Labels (comma-separated)'),
    h('input', { id: 'issue-labels' }),
    h('button', { type: 'submit' }, 'Create issue'),
    error,
  );
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    error.textContent = '';
    const v = (id) => form.querySelector(`#${id}`).value;
    try {
      const issue = await api(`${base}/issues`, {
        method: 'POST',
        body: {
          title: v('issue-title'),
          description: v('issue-description'),
          column: v('issue-column'),
          priority: v('issue-priority'),
          estimate: v('issue-estimate') || null,
          assignees: list(v('issue-assignees')),
          labels: list(v('issue-labels')),
        },
      });
      navigate(`#/repos/${owner}/${name}/issues/${issue.number}`);
    } catch (err) {
      error.textContent = err.message;
    }
  });
  return form;
}

function commentView(c, ctx) {
  const article = h(
    'article',
    { class: 'comment', 'data-comment': c.id },
    h('header', {}, h('strong', {}, c.author), ' ', h('span', { class: 'muted-text' }, ago(c.created_at_ms)), c.updated_at_ms > c.created_at_ms ? h('span', { class: 'muted-text' }, ' (edited)') : null),
    h('div', { class: 'md' }, renderMarkdownIn(c.body, ctx.repo)),
  );
  if (!ctx.canWrite || c.author !== ctx.me) return article;
  const url = `${ctx.base}/comments/${c.id}`;
  const error = h('p', { role: 'alert', class: 'error' });
  const area = h('textarea', { rows: '3', 'aria-label': 'Edit your comment' });
  const form = h('form', { class: 'reply-form', hidden: true }, area, h('div', { class: 'inline' }, h('button', { type: 'submit', class: 'small' }, 'Save'), h('button', { type: 'button', class: 'secondary small', onclick: () => (form.hidden = true) }, 'Cancel')));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      await api(url, { method: 'PATCH', body: { body: area.value } });
      ctx.reload();
    } catch (err) {
      error.textContent = err.message;
    }
  });
  const edit = () => {
    area.value = c.body;
    form.hidden = false;
    area.focus();
  };
  const remove = async () => {
    if (!window.confirm('Delete this comment?')) return;
    try {
      await api(url, { method: 'DELETE' });
      ctx.reload();
    } catch (err) {
      error.textContent = err.message;
    }
  };
  article.append(
    h('div', { class: 'comment-actions' }, h('button', { type: 'button', class: 'secondary small', onclick: edit }, 'Edit'), h('button', { type: 'button', class: 'danger small', onclick: remove }, 'Delete')),
    form,
    error,
  );
  return article;
}

export async function issuePage(main, { params, session, navigate }) {
  const [owner, name, number] = params;
  const base = `${repoBase(owner, name)}/issues/${number}`;
  const repo = `${owner}/${name}`;
  const [access, issue, comments, links, board] = await Promise.all([
    api(`${repoBase(owner, name)}/access`),
    api(base),
    api(`${base}/comments`),
    api(`${base}/links`),
    api(`${repoBase(owner, name)}/board`),
  ]);
  const canWrite = access.can_write;
  const reload = () => navigate(`#/repos/${owner}/${name}/issues/${number}`);
  const error = h('p', { role: 'alert', class: 'error', id: 'issue-error' });
  main.append(
    h('p', { class: 'crumbs' }, h('a', { href: `#/repos/${owner}/${name}` }, repo), ' / ', h('a', { href: `#/repos/${owner}/${name}/issues` }, 'Issues'), ' / ', h('a', { href: `#/repos/${owner}/${name}/board` }, 'Board')),
    h('h1', {}, `#${issue.number} ${issue.title}`),
    h(
      'dl',
      { class: 'facts', id: 'issue-facts' },
      h('dt', {}, 'Column'), h('dd', { id: 'issue-column' }, issue.column, issue.done ? ' (done)' : ''),
      h('dt', {}, 'Priority'), h('dd', { id: 'issue-priority-value' }, priorityBadge(issue.priority)),
      h('dt', {}, 'Estimate'), h('dd', { id: 'issue-estimate-value' }, issue.estimate || '—'),
      h('dt', {}, 'Assignees'), h('dd', { id: 'issue-assignees-value' }, issue.assignees.join(', ') || '—'),
      h('dt', {}, 'Labels'), h('dd', {}, issue.labels.length ? issue.labels.map((l) => h('span', { class: 'label' }, l)) : '—'),
      h('dt', {}, 'Author'), h('dd', {}, issue.author, ' ', h('span', { class: 'muted-text' }, ago(issue.created_at_ms))),
    ),
    h('section', { class: 'md description', 'aria-label': 'Description', id: 'issue-description-view' }, issue.description ? renderMarkdownIn(issue.description, repo) : h('p', { class: 'muted-text' }, 'No description.')),
    error,
  );

  if (canWrite) {
    const columns = board.columns.map((c) => c.name);
    const fields = h(
      'form',
      { id: 'issue-edit', class: 'stack', 'aria-labelledby': 'issue-edit-h' },
      h('h2', { id: 'issue-edit-h' }, 'Plan'),
      h('div', { class: 'inline' },
        select('edit-column', 'Column', columns, issue.column),
        select('edit-priority', 'Priority', PRIORITIES, issue.priority),
        select('edit-estimate', 'Estimate', estimatesOf(access), issue.estimate || ''),
      ),
      h('label', { for: 'edit-assignees' }, 'Assignees (comma-separated)'),
      h('input', { id: 'edit-assignees', value: issue.assignees.join(', ') }),
      h('label', { for: 'edit-labels' }, 'Labels (comma-separated)'),
      h('input', { id: 'edit-labels', value: issue.labels.join(', ') }),
      h('label', { for: 'edit-title' }, 'Title'),
      h('input', { id: 'edit-title', value: issue.title, maxlength: '512' }),
      h('label', { for: 'edit-description' }, 'Description (Markdown)'),
      h('textarea', { id: 'edit-description', rows: '5' }, issue.description),
      h('div', { class: 'inline' },
        h('button', { type: 'submit' }, 'Save'),
        h('button', { type: 'button', class: 'secondary', id: 'issue-close', onclick: async () => {
          try {
            await api(`${base}/close`, { method: 'POST' });
            reload();
          } catch (err) {
            error.textContent = err.message;
          }
        } }, 'Close issue'),
        h('button', { type: 'button', class: 'secondary', id: 'issue-branch', onclick: async () => {
          try {
            await api(`${base}/branch`, { method: 'POST', body: {} });
            reload();
          } catch (err) {
            error.textContent = err.message;
          }
        } }, 'Create branch'),
      ),
    );
    fields.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      error.textContent = '';
      const v = (id) => fields.querySelector(`#${id}`).value;
      try {
        await api(base, {
          method: 'PATCH',
          body: {
            title: v('edit-title'),
            description: v('edit-description'),
            priority: v('edit-priority'),
            estimate: v('edit-estimate'),
            assignees: list(v('edit-assignees')),
            labels: list(v('edit-labels')),
          },
        });
        if (v('edit-column') !== issue.column) {
          await api(`${base}/move`, { method: 'POST', body: { column: v('edit-column') } });
        }
        reload();
      } catch (err) {
        error.textContent = err.message;
      }
    });
    main.append(fields);
  }

  main.append(
    h('h2', {}, 'Linked'),
    h(
      'ul',
      { id: 'issue-links' },
      links.branches.map((b) => h('li', { 'data-branch': b }, 'Branch ', h('a', { href: `#/repos/${owner}/${name}/code?ref=${encodeURIComponent(b)}` }, b))),
      links.pulls.map((p) => h('li', { 'data-pull': p.number }, `Pull request `, h('a', { href: `#/repos/${owner}/${name}/pulls/${p.number}` }, `!${p.number} ${p.title}`), ` (${p.state}${p.fixes ? ', fixes' : ''})`)),
      !links.branches.length && !links.pulls.length ? h('li', { class: 'muted-text' }, 'No branches or pull requests yet.') : null,
    ),
  );

  const ctx = { canWrite, me: session && session.username, base, repo, reload };
  main.append(h('h2', {}, 'Comments'), h('div', { id: 'issue-comments' }, comments.map((c) => commentView(c, ctx))));
  if (canWrite) {
    const area = h('textarea', { id: 'comment-body', rows: '3' });
    const cerr = h('p', { role: 'alert', class: 'error' });
    const form = h('form', { id: 'issue-comment', class: 'stack' }, h('label', { for: 'comment-body' }, 'Comment'), area, h('button', { type: 'submit' }, 'Comment'), cerr);
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      try {
        await api(`${base}/comments`, { method: 'POST', body: { body: area.value } });
        reload();
      } catch (err) {
        cerr.textContent = err.message;
      }
    });
    main.append(form);
  }
  return null;
}
