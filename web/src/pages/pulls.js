// Pull requests: the list of a repository's pull requests (with a form to open one) and the
// pull-request page (description, reviewers, checks, conversation, commits, diff, review and
// merge). The diff tab lives in diff.js; user text is only ever set as text (dom.js h()), and
// Markdown goes through markdown.js.
import { api } from '../api.js';
import { h, badge, shortSha, ago } from '../dom.js';
import { renderMarkdown } from '../markdown.js';
import { diffTab } from './diff.js';
import { threads, threadView } from './comments.js';

const PR_STATE_CLASS = { open: 'ok', merged: 'run', closed: 'muted' };
const METHOD_LABEL = { fast_forward: 'Fast-forward', merge: 'Merge commit', squash: 'Squash' };
const VERDICT_LABEL = { approve: 'approved', request_changes: 'requested changes', comment: 'commented' };

/** A reviewer's standing verdict as a badge (text plus colour). */
function verdictBadge(verdict) {
  if (verdict === 'approve') return h('span', { class: 'badge ok' }, 'approved');
  if (verdict === 'request_changes') return h('span', { class: 'badge bad' }, 'changes requested');
  return h('span', { class: 'badge pending' }, 'no verdict yet');
}

/** A pull request's state as a badge (text plus colour). */
export function prBadge(state, extra = {}) {
  return h('span', { class: `badge ${PR_STATE_CLASS[state] || 'pending'}`, 'data-pr-state': state, ...extra }, state);
}

const prBase = (owner, name) => `/repos/${encodeURIComponent(owner)}/${encodeURIComponent(name)}`;

/** The open pull requests of a repository, for its page (at most `limit`). */
export async function openPullsSection(owner, name, limit = 10) {
  const pulls = await api(`${prBase(owner, name)}/pulls?state=open&limit=${limit}`);
  return h(
    'section',
    { 'aria-labelledby': 'open-prs-h', id: 'open-pulls' },
    h('h2', { id: 'open-prs-h' }, 'Open pull requests'),
    pulls.length
      ? h(
          'ul',
          { class: 'pr-list' },
          pulls.map((p) =>
            h('li', {}, h('a', { href: `#/repos/${owner}/${name}/pulls/${p.number}` }, `#${p.number} ${p.title}`), ` · ${p.source} → ${p.destination} · ${p.author}`),
          ),
        )
      : h('p', { class: 'muted-text' }, 'No open pull requests.'),
    h('p', {}, h('a', { href: `#/repos/${owner}/${name}/pulls` }, 'All pull requests')),
  );
}

export async function pullsPage(main, { params, query, navigate }) {
  const [owner, name] = params;
  const state = ['open', 'merged', 'closed', 'all'].includes(query.get('state')) ? query.get('state') : 'open';
  const [pulls, branches, repo] = await Promise.all([
    api(`${prBase(owner, name)}/pulls?state=${state}&limit=200`),
    api(`${prBase(owner, name)}/branches`),
    api(`${prBase(owner, name)}`),
  ]);
  const filter = h(
    'nav',
    { class: 'tabs', 'aria-label': 'Filter pull requests by state' },
    ['open', 'merged', 'closed', 'all'].map((s) =>
      h('a', { href: `#/repos/${owner}/${name}/pulls?state=${s}`, 'aria-current': s === state ? 'page' : undefined }, s[0].toUpperCase() + s.slice(1)),
    ),
  );
  const table = pulls.length
    ? h(
        'table',
        { id: 'pulls-table' },
        h('thead', {}, h('tr', {}, ['Pull request', 'State', 'Author', 'Branches', 'Updated'].map((c) => h('th', { scope: 'col' }, c)))),
        h(
          'tbody',
          {},
          pulls.map((p) =>
            h(
              'tr',
              { 'data-number': p.number },
              h('th', { scope: 'row' }, h('a', { href: `#/repos/${owner}/${name}/pulls/${p.number}` }, `#${p.number} `, p.title)),
              h('td', {}, prBadge(p.state)),
              h('td', {}, p.author),
              h('td', {}, h('code', {}, p.source), ' → ', h('code', {}, p.destination)),
              h('td', {}, ago(p.updated_at_ms)),
            ),
          ),
        ),
      )
    : h('p', {}, state === 'open' ? 'No open pull requests.' : `No ${state === 'all' ? '' : `${state} `}pull requests.`);
  main.append(
    h('p', { class: 'crumbs' }, h('a', { href: `#/repos/${owner}/${name}` }, `${owner}/${name}`)),
    h('h1', {}, 'Pull requests'),
    filter,
    table,
    createForm(owner, name, repo, branches, navigate),
  );
}

/** "New pull request": source, destination, title, description, reviewers. */
function createForm(owner, name, repo, branches, navigate) {
  const options = (selected) => branches.map((b) => h('option', { value: b.name, selected: b.name === selected }, b.name));
  const source = h('select', { id: 'pr-source' }, options(branches.find((b) => b.name !== repo.default_branch)?.name));
  const destination = h('select', { id: 'pr-destination' }, options(repo.default_branch));
  const title = h('input', { id: 'pr-title', required: true, maxlength: '512', autocomplete: 'off' });
  const description = h('textarea', { id: 'pr-description', rows: '4' });
  const reviewers = h('input', { id: 'pr-reviewers', autocomplete: 'off', placeholder: 'user, user' });
  const error = h('p', { role: 'alert', class: 'error' });
  const form = h(
    'form',
    { class: 'card grid-form', 'aria-label': 'New pull request' },
    h('h2', {}, 'New pull request'),
    h('div', { class: 'field' }, h('label', { for: 'pr-source' }, 'Source branch'), source),
    h('div', { class: 'field' }, h('label', { for: 'pr-destination' }, 'Into'), destination),
    h('div', { class: 'field' }, h('label', { for: 'pr-title' }, 'Title'), title),
    h('div', { class: 'field' }, h('label', { for: 'pr-reviewers' }, 'Required reviewers'), reviewers),
    h('div', { class: 'field wide' }, h('label', { for: 'pr-description' }, 'Description (Markdown)'), description),
    h('div', {}, h('button', { type: 'submit' }, 'Open pull request')),
    error,
  );
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    error.textContent = '';
    try {
      const pull = await api(`${prBase(owner, name)}/pulls`, {
        method: 'POST',
        body: {
          source: source.value,
          destination: destination.value,
          title: title.value.trim(),
          description: description.value,
          reviewers: reviewers.value.split(/[\s,]+/).filter(Boolean),
        },
      });
      navigate(`#/repos/${owner}/${name}/pulls/${pull.number}`);
    } catch (err) {
      error.textContent = err.message;
    }
  });
  return branches.length > 1 ? form : h('p', { class: 'muted-text' }, 'Push a second branch to open a pull request.');
}

export async function pullPage(main, { params, query, session, navigate }) {
  const [owner, name, number] = params;
  const base = `${prBase(owner, name)}/pulls/${number}`;
  const tab = ['conversation', 'commits', 'diff'].includes(query.get('tab')) ? query.get('tab') : 'conversation';
  const here = `#/repos/${owner}/${name}/pulls/${number}`;
  const [pull, settings, mergeability, checks, comments, reviews, events] = await Promise.all([
    api(base),
    api(`${prBase(owner, name)}/pull-settings`),
    api(`${base}/mergeable`).catch((err) => ({ mergeable: false, reasons: [err.message] })),
    api(`${base}/checks`).catch(() => []),
    api(`${base}/comments`),
    api(`${base}/reviews`),
    api(`${base}/events`).catch(() => []),
  ]);
  const me = session && session.username;
  const open = pull.state === 'open';
  const error = h('p', { role: 'alert', class: 'error', id: 'pr-error' });
  const reload = () => navigate(`${here}${tab === 'conversation' ? '' : `?tab=${tab}`}`);

  async function post(body, parentId, position) {
    await api(`${base}/comments`, { method: 'POST', body: { body, parent_id: parentId == null ? null : BigInt(parentId), ...(position || {}) } });
    reload();
  }

  const envStatus = h('span', { role: 'status', class: 'muted-text' });
  const envButton = h(
    'button',
    {
      type: 'button',
      class: 'secondary',
      id: 'open-in-env',
      onclick: async () => {
        error.textContent = '';
        envButton.disabled = true;
        envStatus.textContent = 'Opening…';
        try {
          const env = await api(`${base}/environment`, { method: 'POST' });
          navigate(`#/envs/${env.id}`);
        } catch (err) {
          envStatus.textContent = '';
          error.textContent = `Open in environment: ${err.message}`;
          envButton.disabled = false;
        }
      },
    },
    'Open in environment',
  );

  main.append(
    h('p', { class: 'crumbs' }, h('a', { href: `#/repos/${owner}/${name}` }, `${owner}/${name}`), ' / ', h('a', { href: `#/repos/${owner}/${name}/pulls` }, 'pull requests')),
    h('h1', { id: 'pr-title' }, pull.title, h('span', { class: 'pr-number' }, ` #${pull.number}`)),
    h(
      'p',
      { class: 'pr-meta' },
      prBadge(pull.state, { id: 'pr-state' }),
      ` ${pull.author} wants to merge `,
      h('code', { id: 'pr-source' }, pull.source),
      ' → ',
      h('code', { id: 'pr-destination' }, pull.destination),
      ` · revision ${pull.revision} · head `,
      h('code', {}, shortSha(pull.head_sha)),
      pull.merge_sha ? [' · merged as ', h('code', { id: 'pr-merge-sha' }, shortSha(pull.merge_sha))] : null,
      ` · opened ${ago(pull.created_at_ms)}`,
    ),
    h('div', { class: 'toolbar' }, open ? [envButton, ' ', envStatus] : null, h('a', { href: `#/repos/${owner}/${name}/code?ref=${encodeURIComponent(open ? pull.source : pull.destination)}`, class: 'button-link' }, 'Browse code')),
    error,
    h(
      'nav',
      { class: 'tabs', 'aria-label': 'Pull request sections' },
      [
        ['conversation', 'Conversation'],
        ['commits', 'Commits'],
        ['diff', 'Files changed'],
      ].map(([t, label]) => h('a', { href: t === 'conversation' ? here : `${here}?tab=${t}`, 'aria-current': t === tab ? 'page' : undefined }, label)),
    ),
  );

  if (tab === 'commits') {
    const commits = await api(`${base}/commits`);
    main.append(
      h(
        'table',
        { id: 'pr-commits' },
        h('thead', {}, h('tr', {}, ['Commit', 'Summary', 'Author', 'When'].map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, commits.map((c) => h('tr', {}, h('td', {}, h('code', {}, shortSha(c.sha))), h('td', {}, c.summary), h('td', {}, c.author), h('td', {}, ago(c.time * 1000))))),
      ),
    );
    return null;
  }
  if (tab === 'diff') {
    main.append(await diffTab({ base, pull, comments, post, canWrite: open, me, reload }));
    return null;
  }

  // Conversation: description, reviewers and checks, the timeline, then the forms.
  const side = h(
    'aside',
    { class: 'pr-side' },
    h('h2', { id: 'reviewers-h' }, 'Reviewers'),
    pull.reviewers.length
      ? h(
          'ul',
          { id: 'pr-reviewers', 'aria-labelledby': 'reviewers-h' },
          pull.reviewers.map((r) =>
            h('li', { 'data-reviewer': r.username, 'data-verdict': r.verdict || 'pending' }, h('strong', {}, r.username), ' ', verdictBadge(r.verdict)),
          ),
        )
      : h('p', { class: 'muted-text' }, 'No required reviewers.'),
    h('h2', { id: 'checks-h' }, 'Checks'),
    checks.length
      ? h(
          'ul',
          { id: 'pr-checks', 'aria-labelledby': 'checks-h' },
          checks.map((c) => h('li', { 'data-check': c.name }, h('a', { href: `#/runs/${c.run_id}`, 'aria-label': `${c.name} run #${c.run_number}: ${c.state}` }, badge(c.state), ` ${c.name} #${c.run_number}`), h('span', { class: 'muted-text' }, ` ${c.trigger}`))),
        )
      : h('p', { class: 'muted-text' }, 'No checks on the head commit.'),
  );
  const description = h('div', { class: 'md card', id: 'pr-description' }, pull.description.trim() ? renderMarkdown(pull.description) : h('p', { class: 'muted-text' }, 'No description.'));

  const items = [];
  for (const e of events) {
    if (e.kind === 'comment_added' || e.kind === 'review_submitted') continue;
    const text = {
      pr_opened: 'opened this pull request',
      pr_revision: `pushed a new revision${e.detail ? ` (${e.detail})` : ''}`,
      pr_merged: `merged it${e.detail ? ` as ${shortSha(e.detail)}` : ''}`,
      pr_closed: 'closed it',
    }[e.kind] || e.kind;
    items.push([e.created_at_ms, 0, h('li', { class: 'event', 'data-event': e.kind }, h('strong', {}, e.actor || 'the server'), ` ${text} `, h('span', { class: 'muted-text' }, ago(e.created_at_ms)))]);
  }
  for (const r of reviews) {
    items.push([
      r.created_at_ms,
      1,
      h(
        'li',
        { class: `review verdict-${r.verdict}`, 'data-review': r.id, 'data-verdict': r.verdict },
        h('p', {}, h('strong', {}, r.reviewer), ` ${VERDICT_LABEL[r.verdict]} on revision ${r.revision} `, r.stale ? h('span', { class: 'badge muted' }, 'stale') : null, ' ', h('span', { class: 'muted-text' }, ago(r.created_at_ms))),
        r.body ? h('div', { class: 'md' }, renderMarkdown(r.body)) : null,
      ),
    ]);
  }
  for (const [root, replies] of threads(comments)) {
    const where = root.path ? h('p', { class: 'muted-text' }, 'on ', h('a', { href: `${here}?tab=diff` }, `${root.path}:${root.line}`), ` (${root.side || 'new'})`) : null;
    items.push([root.created_at_ms, 2, h('li', { class: 'comment-item' }, where, threadView(root, replies, { post, canWrite: open, me, base, reload }))]);
  }
  items.sort((a, b) => a[0] - b[0] || a[1] - b[1]);

  const commentBox = h('textarea', { id: 'pr-comment', rows: '3' });
  const commentError = h('p', { role: 'alert', class: 'error' });
  const commentForm = h('form', { class: 'card', 'aria-label': 'Add a comment' }, h('label', { for: 'pr-comment' }, 'Add a comment (Markdown)'), commentBox, h('button', { type: 'submit' }, 'Comment'), commentError);
  commentForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    commentError.textContent = '';
    try {
      await post(commentBox.value, null);
    } catch (err) {
      commentError.textContent = err.message;
    }
  });

  main.append(
    h(
      'div',
      { class: 'pr-layout' },
      h(
        'div',
        { class: 'pr-main' },
        description,
        h('h2', { id: 'conv-h' }, 'Conversation'),
        h('ol', { class: 'timeline', id: 'pr-timeline', 'aria-labelledby': 'conv-h' }, items.map((i) => i[2])),
        open ? [commentForm, reviewForm(base, pull, me, reload), mergeBox(base, pull, settings, mergeability, reload)] : null,
      ),
      side,
    ),
  );
  return null;
}

/** Approve / request changes / comment. The author may only comment. */
function reviewForm(base, pull, me, reload) {
  const own = pull.author === me;
  const choices = (own ? ['comment'] : ['approve', 'request_changes', 'comment']).map((v, i) =>
    h('label', { class: 'choice' }, h('input', { type: 'radio', name: 'verdict', value: v, checked: i === 0 }), ` ${{ approve: 'Approve', request_changes: 'Request changes', comment: 'Comment' }[v]}`),
  );
  const body = h('textarea', { id: 'review-body', rows: '3' });
  const error = h('p', { role: 'alert', class: 'error' });
  const form = h(
    'form',
    { class: 'card', 'aria-label': 'Review' },
    h('h2', {}, 'Review'),
    h('fieldset', {}, h('legend', {}, 'Verdict'), choices),
    h('label', { for: 'review-body' }, 'Review comment (Markdown)'),
    body,
    h('button', { type: 'submit' }, 'Submit review'),
    error,
  );
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    error.textContent = '';
    const verdict = form.querySelector('input[name=verdict]:checked').value;
    try {
      await api(`${base}/reviews`, { method: 'POST', body: { verdict, body: body.value } });
      reload();
    } catch (err) {
      error.textContent = err.message;
    }
  });
  return form;
}

/** The merge button (disabled with the server's reasons when not mergeable) and close. */
function mergeBox(base, pull, settings, mergeability, reload) {
  const methods = settings.allowed_merge_methods;
  const method = h('select', { id: 'merge-method' }, methods.map((m) => h('option', { value: m }, METHOD_LABEL[m] || m)));
  const del = h('input', { type: 'checkbox', id: 'merge-delete-source' });
  const error = h('p', { role: 'alert', class: 'error' });
  const blocked = !mergeability.mergeable || !methods.length;
  const button = h('button', { type: 'submit', id: 'merge-button', disabled: blocked, 'aria-describedby': blocked ? 'merge-reasons' : undefined }, 'Merge pull request');
  const reasons = blocked
    ? h('ul', { id: 'merge-reasons', class: 'reasons' }, (mergeability.reasons.length ? mergeability.reasons : ['no merge method is allowed']).map((r) => h('li', {}, r)))
    : h('p', { class: 'ok-text', id: 'merge-ready' }, 'Ready to merge.');
  const form = h(
    'form',
    { class: `card merge-box ${blocked ? 'blocked' : 'ready'}`, 'aria-label': 'Merge' },
    h('h2', {}, 'Merge'),
    reasons,
    h(
      'div',
      { class: 'inline' },
      h('label', { for: 'merge-method' }, 'Method'),
      method,
      h('label', { class: 'choice' }, del, ` Delete ${pull.source} after merging`),
      button,
      h('button', { type: 'button', class: 'danger', id: 'close-pr', onclick: close }, 'Close pull request'),
    ),
    error,
  );
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    error.textContent = '';
    button.disabled = true;
    try {
      await api(`${base}/merge`, { method: 'POST', body: { method: method.value, delete_source: del.checked } });
      reload();
    } catch (err) {
      error.textContent = err.message;
      button.disabled = false;
    }
  });
  async function close() {
    error.textContent = '';
    if (!window.confirm(`Close pull request #${pull.number} without merging?`)) return;
    try {
      await api(`${base}/close`, { method: 'POST' });
      reload();
    } catch (err) {
      error.textContent = err.message;
    }
  }
  return form;
}
