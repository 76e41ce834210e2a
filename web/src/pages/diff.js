// The "Files changed" tab of a pull request: per file its status, paths (renames shown as
// old → new), counts and the unified diff as a table with the old and new line numbers; a
// comment button on every line opens a form that posts a line comment (path, side, line,
// commit), and line comments are shown under their line. Diff text is only set as text.
import { api } from '../api.js';
import { h, append } from '../dom.js';
import { threads, threadView } from './comments.js';

/**
 * Parses a unified diff into rows: {kind: 'hunk'|'add'|'del'|'ctx'|'note', text, old, new}.
 * Header lines before the first hunk (diff --git, index, ---/+++) are dropped.
 */
export function parsePatch(patch) {
  const rows = [];
  let oldNo = 0;
  let newNo = 0;
  let inHunk = false;
  const lines = patch.split('\n');
  if (lines.length && lines[lines.length - 1] === '') lines.pop();
  for (const line of lines) {
    const m = line.match(/^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@(.*)$/);
    if (m) {
      oldNo = Number(m[1]);
      newNo = Number(m[2]);
      inHunk = true;
      rows.push({ kind: 'hunk', text: line });
    } else if (!inHunk) {
      continue;
    } else if (line.startsWith('+')) {
      rows.push({ kind: 'add', text: line.slice(1), new: newNo++ });
    } else if (line.startsWith('-')) {
      rows.push({ kind: 'del', text: line.slice(1), old: oldNo++ });
    } else if (line.startsWith('\\')) {
      rows.push({ kind: 'note', text: line });
    } else {
      rows.push({ kind: 'ctx', text: line.slice(1), old: oldNo++, new: newNo++ });
    }
  }
  return rows;
}

function fileTitle(f) {
  if (f.status === 'renamed' || f.status === 'copied') return `${f.old_path} → ${f.new_path}`;
  return f.new_path || f.old_path;
}

/** Where a row's comments attach: the new side for added and context lines, else the old. */
function position(file, row) {
  if (row.kind === 'del') return { path: file.old_path, side: 'old', line: row.old };
  if (row.kind === 'add' || row.kind === 'ctx') return { path: file.new_path, side: 'new', line: row.new };
  return null;
}

const key = (p) => `${p.side}\u0000${p.path}\u0000${p.line}`;

export async function diffTab(ctx) {
  const { base, pull, comments, post, canWrite } = ctx;
  const diff = await api(`${base}/diff`);
  // Line threads by position; replies inherit their root's position.
  const lineThreads = new Map();
  for (const [root, replies] of threads(comments.filter((c) => c.path && c.line))) {
    const k = key({ side: root.side || 'new', path: root.path, line: root.line });
    if (!lineThreads.has(k)) lineThreads.set(k, []);
    lineThreads.get(k).push([root, replies]);
  }
  const shown = new Set();
  const summary = h(
    'p',
    { id: 'diff-summary' },
    `${diff.files_changed} file${diff.files_changed === 1 ? '' : 's'} changed, `,
    h('span', { class: 'add-count' }, `+${diff.additions}`),
    ' ',
    h('span', { class: 'del-count' }, `−${diff.deletions}`),
    ` · against the merge base ${diff.merge_base.slice(0, 8)}`,
  );
  const out = h('div', { id: 'diff' }, summary);
  if (diff.truncated) {
    out.append(h('p', { class: 'banner', role: 'note', id: 'diff-truncated' }, `Truncated: ${diff.truncated_reason || 'the diff is larger than the server shows'}. ${diff.files.length} of ${diff.files_changed} files listed.`));
  }
  if (!diff.files.length) out.append(h('p', {}, 'No changes.'));

  diff.files.forEach((file, index) => {
    const title = fileTitle(file);
    const head = h(
      'header',
      { class: 'diff-file-head' },
      h('span', { class: `badge file-${file.status}` }, file.status),
      ' ',
      h('strong', { class: 'diff-path' }, title),
      ' ',
      h('span', { class: 'add-count' }, `+${file.additions}`),
      ' ',
      h('span', { class: 'del-count' }, `−${file.deletions}`),
      file.binary ? h('span', { class: 'badge muted' }, 'binary') : null,
      file.truncated ? h('span', { class: 'badge warn file-truncated' }, 'truncated') : null,
    );
    const section = h('section', { class: 'diff-file', 'data-path': file.new_path || file.old_path, 'aria-label': `Diff of ${title}` }, head);
    const rows = file.patch ? parsePatch(file.patch) : [];
    if (file.binary) {
      section.append(h('p', { class: 'muted-text' }, 'Binary file: not shown.'));
    } else if (!rows.length) {
      section.append(h('p', { class: 'muted-text' }, file.truncated ? 'Patch left out: the diff is too large.' : 'No change to the content.'));
    }
    if (rows.length) {
      const tbody = h('tbody');
      for (const row of rows) {
        if (row.kind === 'hunk' || row.kind === 'note') {
          tbody.append(h('tr', { class: row.kind }, h('td', { class: 'num', colspan: '2' }), h('td', { class: 'code' }, row.text)));
          continue;
        }
        const pos = position(file, row);
        const where = `${pos.path} ${pos.side === 'old' ? 'old' : 'new'} line ${pos.line}`;
        const codeCell = h('td', { class: 'code' }, h('span', { class: 'marker', 'aria-hidden': 'true' }, row.kind === 'add' ? '+' : row.kind === 'del' ? '−' : ' '), row.text);
        const tr = h(
          'tr',
          { class: `line ${row.kind}`, 'data-side': pos.side, 'data-line': pos.line, 'data-old': row.old ?? '', 'data-new': row.new ?? '' },
          h('td', { class: 'num old' }, row.old ?? ''),
          h('td', { class: 'num new' }, row.new ?? ''),
          codeCell,
        );
        if (canWrite) {
          codeCell.prepend(h('button', { type: 'button', class: 'line-comment', 'aria-label': `Comment on ${where}`, onclick: () => openForm(tr, pos, where) }, '+'));
        }
        tbody.append(tr);
        const k = key(pos);
        for (const [root, replies] of lineThreads.get(k) || []) {
          shown.add(k);
          tbody.append(threadRow(root, replies));
        }
      }
      section.append(h('table', { class: 'diff-table', id: `diff-${index}` }, h('caption', { class: 'sr-only' }, `Changes to ${title}`), tbody));
    }
    // Line comments on lines this diff no longer shows (an earlier revision, or cut).
    const elsewhere = [...lineThreads.entries()].filter(([k]) => !shown.has(k) && [file.old_path, file.new_path].some((p) => p && k.split('\u0000')[1] === p));
    if (elsewhere.length) {
      append(section, [h('p', { class: 'muted-text' }, 'Comments on lines not in this diff:'), elsewhere.flatMap(([, list]) => list.map(([root, replies]) => threadView(root, replies, ctx)))]);
      for (const [k] of elsewhere) shown.add(k);
    }
    out.append(section);
  });

  function threadRow(root, replies) {
    return h('tr', { class: 'line-thread' }, h('td', { colspan: '3' }, threadView(root, replies, ctx)));
  }

  function openForm(tr, pos, where) {
    const next = tr.nextElementSibling;
    if (next && next.classList.contains('line-form')) {
      next.querySelector('textarea').focus();
      return;
    }
    const area = h('textarea', { rows: '3', 'aria-label': `Comment on ${where}`, class: 'line-comment-body' });
    const error = h('p', { role: 'alert', class: 'error' });
    const form = h(
      'form',
      { class: 'line-comment-form', 'aria-label': `Line comment on ${where}` },
      area,
      h('div', { class: 'inline' }, h('button', { type: 'submit', class: 'small' }, 'Add line comment'), h('button', { type: 'button', class: 'secondary small', onclick: () => row.remove() }, 'Cancel')),
      error,
    );
    const row = h('tr', { class: 'line-form' }, h('td', { colspan: '3' }, form));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      error.textContent = '';
      try {
        await post(area.value, null, { path: pos.path, side: pos.side, line: pos.line, commit: pull.head_sha });
      } catch (err) {
        error.textContent = err.message;
      }
    });
    tr.after(row);
    area.focus();
  }

  return out;
}
