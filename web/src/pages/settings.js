// "Settings": the signed-in user's personal settings — the dotfiles repository
// (GET/PUT /user/settings; docs/dotfiles.md), the editor of new environments (terminal or
// VS Code in the browser; docs/vscode.md) — and a link to their SSH keys.
import { api } from '../api.js';
import { h, replace } from '../dom.js';

export async function settingsPage(main) {
  const error = h('p', { role: 'alert', class: 'error', id: 'settings-error' });
  const saved = h('p', { role: 'status', id: 'settings-status' });
  const current = h('p', { id: 'dotfiles-current' });
  const input = h('input', {
    id: 'dotfiles',
    type: 'text',
    maxlength: 2048,
    spellcheck: 'false',
    autocomplete: 'off',
    placeholder: 'https://git.example.org/you/dotfiles.git or owner/name',
    'aria-describedby': 'dotfiles-help',
  });
  const clear = h('button', { type: 'button', class: 'secondary' }, 'Clear');
  const form = h(
    'form',
    { class: 'stack', 'aria-labelledby': 'dotfiles-h' },
    h('h2', { id: 'dotfiles-h' }, 'Dotfiles'),
    h(
      'p',
      { id: 'dotfiles-help' },
      'A git repository cloned into ~/.dotfiles of every environment you create from now on; its install script (install.sh, bootstrap or setup) runs once. An http(s) URL, or a Cove repository as owner/name.',
    ),
    current,
    h('label', { for: 'dotfiles' }, 'Dotfiles repository'),
    input,
    h('div', { class: 'toolbar' }, h('button', { type: 'submit' }, 'Save'), clear),
  );

  const editor = h(
    'select',
    { id: 'editor', 'aria-describedby': 'editor-help' },
    h('option', { value: 'terminal' }, 'Terminal only'),
    h('option', { value: 'vscode' }, 'VS Code in the browser'),
  );
  const editorForm = h(
    'form',
    { class: 'stack', 'aria-labelledby': 'editor-h' },
    h('h2', { id: 'editor-h' }, 'Editor'),
    h(
      'p',
      { id: 'editor-help' },
      'What new environments open with when you create them without naming one (cove env create --editor). Every environment keeps its web terminal.',
    ),
    h('label', { for: 'editor' }, 'Editor of new environments'),
    editor,
    h('div', { class: 'toolbar' }, h('button', { type: 'submit' }, 'Save editor')),
  );
  let dotfiles = null;

  function show(settings) {
    dotfiles = settings.dotfiles || null;
    editor.value = settings.editor || 'terminal';
    input.value = settings.dotfiles || '';
    replace(current, settings.dotfiles ? ['Now: ', h('code', {}, settings.dotfiles)] : 'No dotfiles repository is set.');
    clear.disabled = !settings.dotfiles;
  }

  async function save(value, done) {
    error.textContent = '';
    saved.textContent = '';
    try {
      show(await api('/user/settings', { method: 'PUT', body: { dotfiles: value, editor: editor.value } }));
      saved.textContent = done;
    } catch (err) {
      // the server's reason (a URL it will not fetch, a repository you cannot read …)
      error.textContent = err.message;
    }
  }

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const value = input.value.trim();
    save(value || null, value ? 'Saved.' : 'Cleared.');
  });
  clear.addEventListener('click', () => save(null, 'Cleared.'));
  editorForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    // the PUT replaces the dotfiles too: send the current one back unchanged
    save(dotfiles, 'Editor saved.');
  });

  main.append(
    h('h1', {}, 'Settings'),
    error,
    saved,
    form,
    editorForm,
    h('section', { 'aria-labelledby': 'keys-h' }, h('h2', { id: 'keys-h' }, 'SSH keys'), h('p', {}, h('a', { href: '#/settings/ssh-keys' }, 'Manage your SSH keys'), ' (for ssh, scp and VS Code Remote-SSH into your environments).')),
  );
  show(await api('/user/settings'));
  return () => {};
}
