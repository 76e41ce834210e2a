// The environment page's "Endpoints" and "SSH" sections (issue 18, docs/ports.md and
// docs/ssh.md): kept apart from env.js so the page itself only places them.
import { h } from '../dom.js';

/** A command line with a Copy button (the text stays selectable when the clipboard is not). */
function copyLine(text, label) {
  const status = h('span', { class: 'copy-status', role: 'status' });
  const button = h(
    'button',
    {
      type: 'button',
      class: 'secondary small',
      'aria-label': `Copy: ${label}`,
      onclick: async () => {
        try {
          await navigator.clipboard.writeText(text);
          status.textContent = 'Copied';
        } catch {
          status.textContent = 'Select the line to copy it';
        }
      },
    },
    'Copy',
  );
  return h('div', { class: 'inline copy-line' }, h('pre', { class: 'command' }, h('code', {}, text)), button, status);
}

/**
 * The devfile's endpoints: public ones with an "Open" link through the server's proxy while
 * the environment runs; internal ones with their address on the agent's host; `none` ones are
 * never listed by the server. `mine`: the viewer may forward ports (creator or admin).
 */
export function endpointsSection(env, mine) {
  const running = env.state === 'running';
  const items = env.endpoints.map((e) => {
    const name = `${e.name} (${e.port}, ${e.exposure})`;
    if (e.exposure === 'public') {
      return h(
        'li',
        { dataset: { endpoint: e.name } },
        name,
        ' ',
        running && e.url
          ? h('a', { href: e.url, target: '_blank', rel: 'noopener', 'aria-label': `Open ${e.name}` }, 'Open')
          : h('span', { class: 'muted' }, '— opens while the environment runs'),
        e.url ? h('span', { class: 'muted' }, ` ${e.url}`) : '',
      );
    }
    return h(
      'li',
      { dataset: { endpoint: e.name } },
      name,
      h('span', { class: 'muted' }, e.url ? ` — on the agent's host: ${e.url}` : ' — not exposed through the server'),
    );
  });
  const forward = mine && env.endpoints.length
    ? [
        h('p', {}, 'Forward a port to this machine:'),
        copyLine(`cove env port-forward ${env.name} ${env.endpoints[0].port}:${env.endpoints[0].port}`, 'port-forward command'),
      ]
    : [];
  return [
    h('h2', { id: 'ep-h' }, 'Endpoints'),
    env.endpoints.length ? h('ul', { class: 'endpoints' }, items) : h('p', {}, 'No endpoints in the devfile.'),
    ...forward,
  ];
}

/** How to SSH into the environment (its creator or an administrator only). */
export function sshSection(env, mine) {
  if (!mine) return [];
  return h(
    'section',
    { 'aria-labelledby': 'ssh-h' },
    h('h2', { id: 'ssh-h' }, 'SSH'),
    h('p', {}, 'Register your public key under ', h('a', { href: '#/settings/ssh-keys' }, 'SSH keys'), ', then write the host entries and connect (VS Code Remote-SSH, scp, rsync and git use the same host):'),
    copyLine('cove config-ssh', 'config-ssh command'),
    copyLine(`ssh cove.${env.name}`, 'ssh command'),
  );
}
