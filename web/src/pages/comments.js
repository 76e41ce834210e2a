// Pull-request comment threads: a root comment, its replies and a reply form. Bodies are
// Markdown rendered by markdown.js (text nodes only).
import { h, ago } from '../dom.js';
import { renderMarkdown } from '../markdown.js';

/** A comment with its author, time and Markdown body. */
function commentView(c) {
  return h(
    'article',
    { class: 'comment', 'data-comment': c.id },
    h('header', {}, h('strong', {}, c.author), ' ', h('span', { class: 'muted-text' }, ago(c.created_at_ms)), c.updated_at_ms > c.created_at_ms ? h('span', { class: 'muted-text' }, ' (edited)') : null),
    h('div', { class: 'md' }, renderMarkdown(c.body)),
  );
}

/**
 * A thread: the root comment, its replies and a reply form. `post(body, parentId)` sends a
 * comment and resolves once the page has re-rendered.
 */
export function threadView(root, replies, post, canWrite) {
  const box = h('div', { class: 'thread', 'data-thread': root.id }, commentView(root), replies.map((r) => h('div', { class: 'reply' }, commentView(r))));
  if (!canWrite) return box;
  const area = h('textarea', { rows: '2', 'aria-label': `Reply to ${root.author}` });
  const error = h('p', { role: 'alert', class: 'error' });
  const form = h('form', { class: 'reply-form', hidden: true }, area, h('div', { class: 'inline' }, h('button', { type: 'submit', class: 'small' }, 'Reply'), h('button', { type: 'button', class: 'secondary small', onclick: () => (form.hidden = true) }, 'Cancel')), error);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    error.textContent = '';
    try {
      await post(area.value, root.id);
    } catch (err) {
      error.textContent = err.message;
    }
  });
  box.append(
    h('button', { type: 'button', class: 'secondary small reply-open', onclick: () => { form.hidden = false; area.focus(); } }, 'Reply'),
    form,
  );
  return box;
}

/** Groups comments into threads: roots in order, replies under their root. */
export function threads(comments) {
  const byRoot = new Map();
  const roots = [];
  for (const c of comments) {
    if (c.parent_id == null) {
      roots.push(c);
      byRoot.set(String(c.id), []);
    }
  }
  for (const c of comments) {
    if (c.parent_id != null) (byRoot.get(String(c.parent_id)) || []).push(c);
  }
  return roots.map((r) => [r, byRoot.get(String(r.id))]);
}
