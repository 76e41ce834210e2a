// The code browser: a repository's tree at a branch (…/tree, one directory at a time) and a
// file view (…/files/{path}). #/repos/OWNER/NAME/code?ref=BRANCH&dir=DIR&file=PATH.
// File names and contents are only set as text; binary and large files are not shown.
import { api } from '../api.js';
import { h, append, shortSha } from '../dom.js';
// in-browser edits (issue 16)
import { editButton, committedNote } from './editor.js';

/** Files above this many bytes are listed but not displayed. */
export const MAX_SHOWN_BYTES = 1024 * 1024;

const encPath = (p) => p.split('/').map(encodeURIComponent).join('/');

function formatSize(n) {
  if (n == null) return '';
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

export async function codePage(main, { params, query, navigate, session }) {
  const [owner, name] = params;
  const repoPath = `/repos/${encodeURIComponent(owner)}/${encodeURIComponent(name)}`;
  const [repo, branches] = await Promise.all([api(repoPath), api(`${repoPath}/branches`)]);
  const ref = query.get('ref') || repo.default_branch;
  const file = query.get('file') || '';
  const dir = query.has('dir') ? query.get('dir') : file.split('/').slice(0, -1).join('/');
  const link = (q) => {
    const s = new URLSearchParams({ ref, ...q });
    return `#/repos/${owner}/${name}/code?${s}`;
  };

  const select = h('select', { id: 'code-ref' }, branches.map((b) => h('option', { value: b.name, selected: b.name === ref }, b.name)));
  if (!branches.some((b) => b.name === ref)) select.prepend(h('option', { value: ref, selected: true }, ref));
  select.addEventListener('change', () => navigate(`#/repos/${owner}/${name}/code?ref=${encodeURIComponent(select.value)}`));

  // Breadcrumbs of the directory: root / a / b.
  const parts = dir ? dir.split('/') : [];
  const crumbs = h(
    'nav',
    { class: 'path-crumbs', 'aria-label': 'Directory' },
    h('a', { href: link({ dir: '' }) }, name),
    parts.map((p, i) => [' / ', h('a', { href: link({ dir: parts.slice(0, i + 1).join('/') }) }, p)]),
    file ? [' / ', h('span', { 'aria-current': 'page' }, file.split('/').pop())] : null,
  );
  main.append(
    h('p', { class: 'crumbs' }, h('a', { href: `#/repos/${owner}/${name}` }, `${owner}/${name}`)),
    h('h1', {}, file ? file : `Code of ${owner}/${name}`),
    h('div', { class: 'inline' }, h('label', { for: 'code-ref' }, 'Branch'), select),
    crumbs,
  );
  if (!branches.length) {
    main.append(h('p', {}, 'Empty repository.'));
    return null;
  }

  const treeBox = h('nav', { class: 'code-tree', 'aria-label': 'Files' });
  const fileBox = h('section', { class: 'code-file', 'aria-label': file ? `File ${file}` : 'File' });
  main.append(h('div', { class: 'code-layout' }, treeBox, fileBox));

  let listing;
  try {
    listing = await api(`${repoPath}/tree?ref=${encodeURIComponent(ref)}&path=${encodeURIComponent(dir)}`);
  } catch (err) {
    treeBox.append(h('p', { role: 'alert', class: 'error' }, err.message));
    return null;
  }
  append(treeBox, [
    h('p', { class: 'muted-text' }, 'at ', h('code', {}, shortSha(listing.commit))),
    h(
      'ul',
      { id: 'code-tree' },
      dir ? h('li', {}, h('a', { href: link({ dir: parts.slice(0, -1).join('/') }), class: 'dir' }, '..')) : null,
      listing.entries.map((e) => {
        if (e.kind === 'dir') return h('li', { 'data-kind': 'dir' }, h('a', { href: link({ dir: e.path }), class: 'dir' }, `${e.name}/`));
        if (e.kind === 'submodule') return h('li', { 'data-kind': 'submodule' }, `${e.name} (submodule)`);
        return h('li', { 'data-kind': e.kind }, h('a', { href: link({ dir, file: e.path }), 'aria-current': e.path === file ? 'page' : undefined }, e.name), h('span', { class: 'muted-text' }, ` ${formatSize(e.size)}`));
      }),
    ),
    listing.truncated ? h('p', { class: 'muted-text' }, 'More entries than shown.') : null,
  ]);

  if (!file) {
    fileBox.append(h('p', { class: 'muted-text' }, 'Choose a file.'));
    return null;
  }
  const entry = listing.entries.find((e) => e.path === file);
  if (entry && entry.size > MAX_SHOWN_BYTES) {
    fileBox.append(h('p', { class: 'banner', id: 'file-large' }, `Large file (${formatSize(entry.size)}): not shown.`));
    return null;
  }
  let content;
  try {
    content = await api(`${repoPath}/files/${encPath(file)}?ref=${encodeURIComponent(ref)}`);
  } catch (err) {
    fileBox.append(h('p', { role: 'alert', class: 'error' }, err.message));
    return null;
  }
  fileBox.append(h('p', { class: 'muted-text' }, `${formatSize(content.size)}`));
  if (content.encoding !== 'utf8') {
    fileBox.append(h('p', { class: 'banner', id: 'file-binary' }, `Binary file (${formatSize(content.size)}): not shown.`));
  } else if (content.size > MAX_SHOWN_BYTES) {
    fileBox.append(h('p', { class: 'banner', id: 'file-large' }, `Large file (${formatSize(content.size)}): not shown.`));
  } else {
    // In-browser edits (issue 16): writers get "Edit file" (the server refuses the others).
    const access = await api(`${repoPath}/access`).catch(() => ({ can_write: false }));
    const note = committedNote();
    if (note) fileBox.prepend(note);
    const view = h('div', { class: 'file-view' });
    if (access.can_write) fileBox.append(editButton(view, { repoPath, owner, name, ref, file, content, session, navigate }));
    fileBox.append(view);
    const lines = content.content.split('\n');
    if (lines.length > 1 && lines[lines.length - 1] === '') lines.pop();
    view.append(
      h(
        'pre',
        { class: 'code-view', id: 'file-content', tabindex: '0' },
        lines.map((l, i) => h('span', { class: 'code-line' }, h('span', { class: 'ln', 'aria-hidden': 'true' }, String(i + 1)), `${l}\n`)),
      ),
    );
  }
  return null;
}
