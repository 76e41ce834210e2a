import { api, b64 } from '../api.js';
import { h } from '../dom.js';
import { loggedIn, navigate } from '../main.js';

export function loginPage(main) {
  const error = h('p', { role: 'alert', class: 'error', id: 'login-error' });
  const user = h('input', { id: 'login-user', name: 'username', autocomplete: 'username', required: true });
  const pass = h('input', { id: 'login-pass', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const submit = h('button', { type: 'submit' }, 'Log in');
  const form = h(
    'form',
    { class: 'card login', 'aria-describedby': 'login-error' },
    h('h1', {}, 'Log in to Cove'),
    h('label', { for: 'login-user' }, 'User name'),
    user,
    h('label', { for: 'login-pass' }, 'Password'),
    pass,
    submit,
    error,
    h('p', { class: 'hint' }, 'Accounts with a password are created by an administrator (see docs/ui.md). API tokens work for the CLI and git, not here.'),
  );
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    error.textContent = '';
    submit.disabled = true;
    try {
      const info = await api('/session', { method: 'POST', auth: `Basic ${b64(`${user.value}:${pass.value}`)}` });
      loggedIn(info);
      const after = sessionStorage.getItem('cove.after-login');
      sessionStorage.removeItem('cove.after-login');
      navigate(after && after !== '#/login' ? after : '#/envs');
    } catch (err) {
      error.textContent = err.status === 401 ? 'Wrong user name or password.' : err.message;
      submit.disabled = false;
      pass.select();
    }
  });
  main.append(form);
  user.focus();
}
