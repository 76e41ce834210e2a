// "Open in VS Code" on the environment page (issue 18, docs/vscode.md): environments created
// with the editor `vscode` run code-server, which the server serves to their owner at
// `/env/<id>/vscode/`, never on an open port.
import { h } from '../dom.js';

/** The editor line of the page: a link while the environment runs, else why not. */
export function editorLink(env, mine) {
  if (!env.editor_url) return null;
  if (!mine) return h('p', { class: 'muted' }, `VS Code in the browser: only ${env.owner} can open it.`);
  if (env.state !== 'running') return h('p', { class: 'muted' }, `VS Code in the browser opens while the environment runs (now ${env.state}).`);
  return h(
    'p',
    { class: 'inline' },
    h('a', { href: env.editor_url, target: '_blank', rel: 'noopener', class: 'button-link', id: 'open-vscode' }, 'Open in VS Code'),
    h('span', { class: 'muted' }, ' VS Code in the browser, in this environment'),
  );
}
