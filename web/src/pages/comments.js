// Pull-request comment threads: a root comment, its replies and a reply form. Bodies are
// Markdown rendered by markdown.js (text nodes only).
import { api } from '../api.js';
import { h, ago } from '../dom.js';
import { renderMarkdown } from '../markdown.js';

/** A comment with its author, time and Markdown body; its author may edit or delete it. */
function commentView(c, ctx) {
  const body = h('div', { class: 'md' }, renderMarkdown(c.body));
  const article = h(
    'article',
    { class: 'comment', 'data-comment': c.id },
    h('header', {}, h('strong', {}, c.author), ' ', h('span', { class: 'muted-text' }, ago(c.created_at_ms)), c.updated_at_ms > c.created_at_ms ? h('span', { class: 'muted-text' }, ' (edited)') : null),
    body,
  );
  if (!ctx.canWrite || c.author !== ctx.me) return article;
  const url = `${ctx.base}/comments/${c.id}`;
  const error = h('p', { role: 'alert', class: 'error' });
  const area = h('textarea', { rows: '3', 'aria-label': 'Edit your comment' });
  const form = h('form', { class: 'reply-form', hidden: true }, area, h('div', { class: 'inline' }, h('button', { type: 'submit', class: 'small' }, 'Save'), h('button', { type: 'button', class: 'secondary small', onclick: () => (form.hidden = true) }, 'Cancel')));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    error.textContent = '';
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
    error.textContent = '';
    if (!window.confirm('Delete this comment and its replies?')) return;
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

/**
 * A thread: the root comment, its replies and a reply form. `ctx`: `{ post(body, parentId),
 * canWrite, me, base, reload }`; `post` sends a comment and re-renders the page.
 */
export function threadView(root, replies, ctx) {
  const box = h('div', { class: 'thread', 'data-thread': root.id }, commentView(root, ctx), replies.map((r) => h('div', { class: 'reply' }, commentView(r, ctx))));
  if (!ctx.canWrite) return box;
  const area = h('textarea', { rows: '2', 'aria-label': `Reply to ${root.author}` });
  const error = h('p', { role: 'alert', class: 'error' });
  const form = h('form', { class: 'reply-form', hidden: true }, area, h('div', { class: 'inline' }, h('button', { type: 'submit', class: 'small' }, 'Reply'), h('button', { type: 'button', class: 'secondary small', onclick: () => (form.hidden = true) }, 'Cancel')), error);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    error.textContent = '';
    try {
      await ctx.post(area.value, root.id);
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
