// "SSH keys": the signed-in user's public keys (GET/POST /user/ssh-keys,
// DELETE /user/ssh-keys/{id}; docs/ssh.md "Keys").
import { api } from '../api.js';
import { h, replace, ago } from '../dom.js';

export async function sshKeysPage(main) {
  const error = h('p', { role: 'alert', class: 'error' });
  const list = h('div', { id: 'ssh-keys' });
  const keyInput = h('textarea', { id: 'ssh-key-text', rows: 3, required: true, placeholder: 'ssh-ed25519 AAAA… you@laptop', spellcheck: 'false' });
  const nameInput = h('input', { id: 'ssh-key-name', maxlength: 100, placeholder: 'the key’s comment' });
  const form = h(
    'form',
    { class: 'stack', 'aria-labelledby': 'add-key-h' },
    h('h2', { id: 'add-key-h' }, 'Add a key'),
    h('label', { for: 'ssh-key-text' }, 'Public key (one line of a .pub file)'),
    keyInput,
    h('label', { for: 'ssh-key-name' }, 'Name (optional)'),
    nameInput,
    h('button', { type: 'submit' }, 'Add key'),
  );

  async function load() {
    const keys = await api('/user/ssh-keys');
    if (!keys.length) {
      replace(list, h('p', {}, 'No keys yet.'));
      return;
    }
    replace(
      list,
      h(
        'table',
        {},
        h('thead', {}, h('tr', {}, h('th', {}, 'Name'), h('th', {}, 'Fingerprint'), h('th', {}, 'Type'), h('th', {}, 'Last used'), h('th', {}, ''))),
        h(
          'tbody',
          {},
          keys.map((k) =>
            h(
              'tr',
              { dataset: { key: String(k.id) } },
              h('td', {}, k.name),
              h('td', {}, h('code', {}, k.fingerprint)),
              h('td', {}, k.algorithm),
              h('td', {}, k.last_used_at ? ago(k.last_used_at * 1000) : 'never'),
              h(
                'td',
                {},
                h(
                  'button',
                  {
                    type: 'button',
                    class: 'secondary small',
                    'aria-label': `Remove key ${k.name}`,
                    onclick: async (ev) => {
                      ev.target.disabled = true;
                      error.textContent = '';
                      try {
                        await api(`/user/ssh-keys/${k.id}`, { method: 'DELETE' });
                        await load();
                      } catch (err) {
                        error.textContent = err.message;
                        ev.target.disabled = false;
                      }
                    },
                  },
                  'Remove',
                ),
              ),
            ),
          ),
        ),
      ),
    );
  }

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    error.textContent = '';
    const body = { public_key: keyInput.value.trim() };
    if (nameInput.value.trim()) body.name = nameInput.value.trim();
    try {
      await api('/user/ssh-keys', { method: 'POST', body });
      keyInput.value = '';
      nameInput.value = '';
      await load();
    } catch (err) {
      error.textContent = err.message;
    }
  });

  main.append(
    h('h1', {}, 'SSH keys'),
    h('p', {}, 'Keys you can use to SSH into your environments (', h('code', {}, 'ssh cove.<env>'), ' after ', h('code', {}, 'cove config-ssh'), ').'),
    error,
    list,
    form,
  );
  await load();
}
