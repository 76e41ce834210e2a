// In-browser edits (issue 16): the code browser's "Edit file" for writers — a textarea with
// the file's text and a commit dialog (message; this branch or a new one). Committed with
// PUT …/contents/{path} as the logged-in user, against the commit the file was read at, so a
// change made meanwhile is refused by the server (409, shown here) and never overwritten.
import { api } from '../api.js';
import { h, shortSha } from '../dom.js';

const encPath = (p) => p.split('/').map(encodeURIComponent).join('/');

/** The "Edit file" button and, once pressed, the editor in place of the file view. */
export function editButton(view, { repoPath, owner, name, ref, file, content, session, navigate }) {
  const open = () => {
    const area = h('textarea', { id: 'editor', rows: '24', spellcheck: 'false', 'aria-label': `Contents of ${file}` });
    area.value = content.content;
    const message = h('textarea', { id: 'commit-message', rows: '3', maxlength: '16384' });
    message.value = `Update ${file}`;
    const onBranch = h('input', { type: 'radio', name: 'commit-to', id: 'commit-here', value: 'here', checked: true });
    const onNew = h('input', { type: 'radio', name: 'commit-to', id: 'commit-new', value: 'new' });
    const branch = h('input', { id: 'new-branch', value: `${(session && session.username) || 'edit'}-patch-${Date.now() % 100000}`, 'aria-label': 'New branch name' });
    const error = h('p', { role: 'alert', class: 'error', id: 'commit-error' });
    const dialog = h(
      'form',
      { class: 'stack commit-dialog', id: 'commit-dialog', 'aria-labelledby': 'commit-h' },
      h('h2', { id: 'commit-h' }, 'Commit changes'),
      h('label', { for: 'commit-message' }, 'Commit message'),
      message,
      h('div', { class: 'inline' }, onBranch, h('label', { for: 'commit-here' }, `Commit to ${ref}`)),
      h('div', { class: 'inline' }, onNew, h('label', { for: 'commit-new' }, 'Commit to a new branch'), branch),
      h('p', { class: 'muted-text' }, `Based on ${shortSha(content.commit)}; a change made to this file since is refused, never overwritten.`),
      h('div', { class: 'inline' }, h('button', { type: 'submit' }, 'Commit changes'), h('button', { type: 'button', class: 'secondary', onclick: () => navigate(location.hash) }, 'Cancel')),
      error,
    );
    dialog.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      error.textContent = '';
      const body = { branch: ref, base_commit: content.commit, content: area.value, message: message.value };
      if (onNew.checked) body.new_branch = branch.value.trim();
      try {
        const done = await api(`${repoPath}/contents/${encPath(file)}`, { method: 'PUT', body });
        sessionStorage.setItem('cove.committed', `Committed ${shortSha(done.commit)} to ${done.branch}.`);
        navigate(`#/repos/${owner}/${name}/code?${new URLSearchParams({ ref: done.branch, file })}`);
      } catch (err) {
        error.textContent = err.message;
      }
    });
    view.replaceChildren(area, dialog);
    area.focus();
  };
  return h('button', { type: 'button', class: 'secondary', id: 'edit-file', onclick: open }, 'Edit file');
}

/** A one-time "Committed …" note after a commit from the editor. */
export function committedNote() {
  const text = sessionStorage.getItem('cove.committed');
  if (!text) return null;
  sessionStorage.removeItem('cove.committed');
  return h('p', { class: 'banner', role: 'status', id: 'committed' }, text);
}
